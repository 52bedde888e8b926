"""The role check's models run in numpy: the MusiCoder tagger (encoder + hierarchical head) and the presence model,
from the same safetensors the torch modules train and export.

Why: `generate bass` / `generate accompaniment` ask "does the band already play this part?" before every take; the
models are small (2 transformer layers of width 128, a logistic regression), but importing torch for them cost
1.6 CPU-s, more than the take's own work. Training keeps the torch modules (`musicoder`, `tagger`,
`presence_model`); this is the one inference of their weights. Each forward is the torch module's equations (the encoder in
float32 as torch runs it, the small heads in float64; agreement to ~1e-6, tests/test_analysis_numpy.py):

* MusiCoder (`musicoder.MusiCoder`): CMVN, linear projection + sinusoidal positions, pre-LayerNorm encoder layers
  (x + MHA(LN₁ x), then x + W₂ GELU(W₁ LN₂ x)), a final LayerNorm; the clip embedding is [mean; max] over time.
* The tagger heads (`tagger.TaggerHead`): flat/gmp (grouped max), levelwise, topdown, resatt (softmax over the fine
  axis, coarse = Wᵀ fine, clamped to 0..1).
* Presence (`presence_model.PresenceModel`): standardise, an optional ReLU layer, a sigmoid per part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from backline.engines.analysis.tags import COARSE_TAGS, FINE_TAGS, HEADS, hierarchy_array
from backline.engines.core.dsp import gelu
from backline.engines.core.errors import ConfigError


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def sinusoidal_positions(n: int, dim: int) -> np.ndarray:
    """Eq. 1 of MusiCoder (`musicoder.sinusoidal_positions`): sin on even, cos on odd channels."""
    pos = np.arange(n, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim))
    pe = np.zeros((n, dim), np.float32)
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)[:, : dim // 2]
    return pe


def _f64(w: dict[str, np.ndarray], prefix: str, dtype=np.float64) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: np.asarray(v, dtype) for k, v in w.items() if k.startswith(prefix)}


def musicoder_shapes(enc: dict[str, Any], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a `musicoder.MusiCoder` with config `enc` (its state dict)."""
    h, ff, d = int(enc["hidden"]), int(enc["ff"]), int(enc.get("input_dim", 324))
    shapes = {"cmvn.mean": (d,), "cmvn.std": (d,), "proj.weight": (h, d), "proj.bias": (h,),
              "norm.weight": (h,), "norm.bias": (h,)}
    for i in range(int(enc["layers"])):
        layer = f"encoder.layers.{i}."
        shapes |= {layer + "self_attn.in_proj_weight": (3 * h, h), layer + "self_attn.in_proj_bias": (3 * h,),
                   layer + "self_attn.out_proj.weight": (h, h), layer + "self_attn.out_proj.bias": (h,),
                   layer + "linear1.weight": (ff, h), layer + "linear1.bias": (ff,),
                   layer + "linear2.weight": (h, ff), layer + "linear2.bias": (h,)}
        shapes |= {layer + f"norm{k}.{p}": (h,) for k in (1, 2) for p in ("weight", "bias")}
    return {prefix + k: v for k, v in shapes.items()}


class MusiCoderRunner:
    """`musicoder.MusiCoder.forward`/`embed` in numpy (eval mode: no dropout)."""

    def __init__(self, weights: dict[str, np.ndarray], heads: int) -> None:
        w = _f64(weights, "", np.float32)  # float32 as torch runs it: half the matmul time of float64
        self.w, self.heads = w, int(heads)
        self.layers = sum(1 for k in w if k.endswith("self_attn.in_proj_weight"))
        self.hidden = w["proj.weight"].shape[0]
        self._pe = sinusoidal_positions(1600, self.hidden)

    def forward(self, frames: np.ndarray) -> np.ndarray:
        """Raw frames [B, T, 324] -> hidden states [B, T, H]."""
        w = self.w
        if frames.shape[1] > len(self._pe):
            self._pe = sinusoidal_positions(frames.shape[1], self.hidden)
        x = (np.asarray(frames, np.float32) - w["cmvn.mean"]) / w["cmvn.std"]
        h = x @ w["proj.weight"].T + w["proj.bias"] + self._pe[: x.shape[1]]
        b, t, d = h.shape
        nh, hd = self.heads, d // self.heads
        for i in range(self.layers):
            p = f"encoder.layers.{i}."
            y = layer_norm(h, w[p + "norm1.weight"], w[p + "norm1.bias"])
            qkv = y @ w[p + "self_attn.in_proj_weight"].T + w[p + "self_attn.in_proj_bias"]
            q, k, v = (a.reshape(b, t, nh, hd).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, axis=-1))
            att = softmax(q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(hd)), axis=-1)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
            h = h + ctx @ w[p + "self_attn.out_proj.weight"].T + w[p + "self_attn.out_proj.bias"]
            y = layer_norm(h, w[p + "norm2.weight"], w[p + "norm2.bias"])
            y = gelu(y @ w[p + "linear1.weight"].T + w[p + "linear1.bias"]).astype(np.float32)
            h = h + y @ w[p + "linear2.weight"].T + w[p + "linear2.bias"]
        return layer_norm(h, w["norm.weight"], w["norm.bias"]).astype(np.float64)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Clip embedding [B, 2H]: mean and max of the last hidden states over time."""
        h = self.forward(frames)
        return np.concatenate([h.mean(1), h.max(1)], axis=-1)


def tagger_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a MusiCoder-based `tagger.Tagger` with config `config`."""
    if config.get("base", "musicoder") != "musicoder":
        raise ConfigError(f"tagger base {config.get('base')!r} has no numpy inference", fix="use a musicoder tagger")
    enc = config["encoder"]
    dim, nf, nc = 2 * int(enc["hidden"]), len(FINE_TAGS), len(COARSE_TAGS)
    shapes = musicoder_shapes(enc, "base.encoder.") | {
        "head.fine.weight": (nf, dim), "head.fine.bias": (nf,), "fine_thresholds": (nf,), "coarse_thresholds": (nc,)}
    head = config.get("head", "resatt")
    if head in ("levelwise", "topdown"):
        shapes |= {"head.coarse.weight": (nc, dim), "head.coarse.bias": (nc,)}
    if head == "resatt":
        shapes |= {"head.attention.weight": (nf * nc, dim), "head.attention.bias": (nf * nc,)}
    return shapes


@dataclass
class TagOutput:
    fine: np.ndarray  # [B, N_fine] probabilities
    coarse: np.ndarray  # [B, N_coarse]
    attention: np.ndarray | None  # [B, N_fine, N_coarse] (ResAtt) or the 0/1 GMP map


class TaggerRunner:
    """`tagger.Tagger` (MusiCoder base + one head) in numpy: frames [B, T, 324] -> `TagOutput`; the per-tag
    thresholds tuned at training come with it."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.kind = config.get("head", "resatt")
        if self.kind not in HEADS:
            raise ConfigError(f"unknown tagger head {self.kind!r}", fix=f"use one of {', '.join(HEADS)}")
        self.encoder = MusiCoderRunner({k[len("base.encoder."):]: v for k, v in weights.items()
                                        if k.startswith("base.encoder.")}, config["encoder"]["heads"])
        self.head = _f64(weights, "head.")
        self.fine_thresholds = np.asarray(weights["fine_thresholds"], np.float32)
        self.coarse_thresholds = np.asarray(weights["coarse_thresholds"], np.float32)
        self.hier = hierarchy_array().astype(np.float64)

    def __call__(self, frames: np.ndarray) -> TagOutput:
        z = self.encoder.embed(frames)
        hd, nf, nc = self.head, len(FINE_TAGS), len(COARSE_TAGS)

        def linear(name: str) -> np.ndarray:
            return z @ hd[f"{name}.weight"].T + hd[f"{name}.bias"]

        if self.kind == "topdown":
            coarse = sigmoid(linear("coarse"))
            fine = coarse[:, self.hier.argmax(1)] * sigmoid(linear("fine"))
            return _tag_output(fine, coarse, None)
        fine = sigmoid(linear("fine"))
        if self.kind == "levelwise":
            return _tag_output(fine, sigmoid(linear("coarse")), None)
        if self.kind == "resatt":
            w = softmax(linear("attention").reshape(-1, nf, nc), axis=1)  # softmax over the fine axis
            return _tag_output(fine, np.clip(np.einsum("bfc,bf->bc", w, fine), 0.0, 1.0), w)
        coarse = (fine[:, :, None] * self.hier).max(1)  # flat and gmp: grouped max-pooling
        return _tag_output(fine, coarse, np.broadcast_to(self.hier, (fine.shape[0], nf, nc)))


def _tag_output(fine: np.ndarray, coarse: np.ndarray, attention: np.ndarray | None) -> TagOutput:
    return TagOutput(fine.astype(np.float32), coarse.astype(np.float32),
                     None if attention is None else np.asarray(attention, np.float32))


def presence_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a `presence_model.PresenceModel` with config `config`."""
    n, parts, hidden = int(config["n_features"]), len(config["parts"]), int(config.get("hidden", 0))
    shapes = {"mean": (n,), "std": (n,), "linear.weight": (parts, hidden or n), "linear.bias": (parts,),
              "threshold": (parts,)}
    if hidden:
        shapes |= {"hidden.weight": (hidden, n), "hidden.bias": (hidden,)}
    return shapes


class PresenceRunner:
    """`presence_model.PresenceModel` in numpy: window features [W, F] -> P(part plays) [W, parts]."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.w = _f64(weights, "")
        self.parts = tuple(config["parts"])
        self.threshold = np.asarray(weights["threshold"], np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        w = self.w
        z = (np.asarray(x, np.float64) - w["mean"]) / w["std"]
        if "hidden.weight" in w:
            z = np.maximum(z @ w["hidden.weight"].T + w["hidden.bias"], 0.0)
        return sigmoid(z @ w["linear.weight"].T + w["linear.bias"]).astype(np.float32)
