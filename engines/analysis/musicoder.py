"""MusiCoder (paper 004): a bidirectional transformer over 324-dim acoustic frames, pretrained by masked
reconstruction with Contiguous Frames Masking (CFM) and Contiguous Channels Masking (CCM).

Faithful to the paper: linear input projection + sinusoidal positions, L-layer bidirectional encoder, a
2-layer GeLU + LayerNorm reconstruction head, Huber loss (δ = 1, eq. 3) on masked positions only, Adam
(0.9, 0.999, ε 1e-6) with the Noam schedule (eq. 4), max 1600 frames.

Deliberate choices where the paper is vague:
* Pre-LayerNorm blocks (plus a final LayerNorm) instead of BERT's post-LN: they train stably from a cold
  start with short CPU schedules; the paper gives no detail either way.
* CFM span lengths follow a geometric law Geo(0.2) truncated to 2..7 (P(ℓ) ∝ 0.8^(ℓ−1)): its mean is
  3.87 frames, exactly the paper's figure, which pins the truncation down. Spans never touch (at least
  one unmasked frame between them) so each is one contiguous run; sampling stops once 15 % of the frames
  are masked (the last span is kept whole, so the budget is overshot by < 7 frames).
* "Random masking frame" = one frame drawn from elsewhere in the same batch, copied over the whole span.
* CCM: for the log-mel (128) and the CQT (144) block separately, n ~ U{0..H} channels from a start
  ~ U{0..H−n} are zeroed for all frames (the paper's procedure, applied to each spectral block it names).
* The loss covers every masked element: whole frames chosen by CFM (including the 10 % "kept" spans, as
  in BERT) and the channels zeroed by CCM.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.analysis.features import FEATURE_DIM, FEATURE_SLICES
from backline.engines.core.errors import ConfigError

MAX_FRAMES = 1600


class CMVN(torch.nn.Module):
    """Global cepstral mean and variance normalisation with statistics stored as buffers (saved with weights;
    features.py says why global)."""

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> CMVN:
        """frames: [..., dim] from the training corpus."""
        flat = frames.reshape(-1, frames.shape[-1]).double()
        self.mean.copy_(flat.mean(0).float())
        self.std.copy_(flat.std(0).clamp_min(1e-3).float())
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean) / self.std


@dataclass(frozen=True)
class MusiCoderConfig:
    layers: int = 4
    hidden: int = 768
    heads: int = 12
    ff: int = 3072
    dropout: float = 0.1
    input_dim: int = FEATURE_DIM
    max_frames: int = MAX_FRAMES

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS: dict[str, MusiCoderConfig] = {
    "base": MusiCoderConfig(4, 768, 12, 3072),  # paper: 29.3M parameters
    "large": MusiCoderConfig(8, 1024, 16, 4096),  # paper: 93.1M parameters
    "small": MusiCoderConfig(2, 128, 4, 256, dropout=0.1),  # shipped: trains on a shared 2-core CPU
    "debug": MusiCoderConfig(1, 32, 2, 64, dropout=0.0),
}
CONFIGS["shipped"] = CONFIGS["small"]


def get_config(name: str) -> MusiCoderConfig:
    if name not in CONFIGS:
        raise ConfigError(f"unknown MusiCoder config {name!r}", fix=f"use one of {', '.join(CONFIGS)}")
    return CONFIGS[name]


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """Eq. 1: PE(pos, 2i) = sin(pos / 10000^(2i/H)), PE(pos, 2i+1) = cos(...)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


class MusiCoder(nn.Module):
    """Encoder: frames [B, T, 324] (CMVN applied inside) -> hidden states [B, T, H]."""

    def __init__(self, config: MusiCoderConfig) -> None:
        super().__init__()
        self.config = config
        self.cmvn = CMVN(config.input_dim)
        self.proj = nn.Linear(config.input_dim, config.hidden)
        self.register_buffer("pe", sinusoidal_positions(config.max_frames, config.hidden), persistent=False)
        self.drop = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(config.hidden, config.heads, config.ff, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden)

    def forward(self, frames: torch.Tensor, *, normalized: bool = False,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`normalized=True` when `frames` already went through `self.cmvn` (pretraining masks after CMVN)."""
        if frames.shape[1] > self.config.max_frames:
            raise ConfigError(f"{frames.shape[1]} frames exceed MusiCoder's maximum of {self.config.max_frames}",
                              fix="analyse long audio in windows (the analysis API does this)")
        x = frames if normalized else self.cmvn(frames)
        h = self.proj(x) + self.pe[: x.shape[1]]
        h = self.encoder(self.drop(h), src_key_padding_mask=padding_mask)
        return self.norm(h)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Clip embedding [B, 2H]: mean and max of the last hidden states over time."""
        h = self.forward(frames)
        return torch.cat([h.mean(1), h.amax(1)], dim=-1)


class ReconstructionHead(nn.Module):
    """Two feed-forward layers with GeLU and LayerNorm (paper §3.3), predicting the 324-dim input frame."""

    def __init__(self, hidden: int, out_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class MusiCoderPretrainer(nn.Module):
    def __init__(self, config: MusiCoderConfig) -> None:
        super().__init__()
        self.encoder = MusiCoder(config)
        self.head = ReconstructionHead(config.hidden, config.input_dim)

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None, *, cfm: bool = True,
                ccm: bool = True) -> torch.Tensor:
        """Masked reconstruction loss for raw frames [B, T, 324]."""
        target = self.encoder.cmvn(frames)
        masked, loss_mask = mask_batch(target, generator, cfm=cfm, ccm=ccm)
        pred = self.head(self.encoder(masked, normalized=True))
        return huber_masked(pred, target, loss_mask)


def huber_masked(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 3 (Huber, δ = 1) averaged over the masked elements only."""
    per = F.huber_loss(pred, target, reduction="none", delta=1.0)
    m = mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp_min(1.0)


# --- masking ---------------------------------------------------------------------------------------------------

CFM_P = 0.2
CFM_MIN, CFM_MAX = 2, 7
CFM_BUDGET = 0.15
CFM_POLICY = (0.7, 0.2, 0.1)  # zero / random frame / keep


def span_length_probs(p: float = CFM_P, lo: int = CFM_MIN, hi: int = CFM_MAX) -> torch.Tensor:
    """P(ℓ) for ℓ = lo..hi: Geo(p) (support 1, 2, ...) truncated to [lo, hi]; mean 3.87 for the defaults."""
    k = torch.arange(lo, hi + 1, dtype=torch.float64)
    w = p * (1 - p) ** (k - 1)
    return (w / w.sum()).float()


@dataclass
class CFMSpans:
    starts: list[int]
    lengths: list[int]
    policies: list[int]  # 0 zero, 1 random frame, 2 keep


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator seeded from the torch one: per-span draws in numpy are ~50x cheaper than torch calls."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def sample_cfm_spans(n_frames: int, generator: torch.Generator | None = None, budget: float = CFM_BUDGET,
                     rng: np.random.Generator | None = None) -> CFMSpans:
    """Spans for one sequence: non-touching runs of 2..7 frames until ⌈budget·T⌉ frames are covered."""
    rng = rng or _numpy_rng(generator)
    probs = span_length_probs().double().numpy()
    probs = probs / probs.sum()
    target = math.ceil(budget * n_frames)
    taken = np.zeros(n_frames + 2, dtype=bool)  # padded by one on each side for the gap check
    spans = CFMSpans([], [], [])
    covered, attempts = 0, 0
    while covered < target and attempts < 50 * max(1, target):
        attempts += 1
        length = int(rng.choice(len(probs), p=probs)) + CFM_MIN
        if length > n_frames:
            continue
        start = int(rng.integers(0, n_frames - length + 1))
        if taken[start : start + length + 2].any():  # overlaps or touches an earlier span
            continue
        taken[start + 1 : start + 1 + length] = True
        u = rng.random()
        policy = 0 if u < CFM_POLICY[0] else (1 if u < CFM_POLICY[0] + CFM_POLICY[1] else 2)
        spans.starts.append(start)
        spans.lengths.append(length)
        spans.policies.append(policy)
        covered += length
    return spans


def sample_ccm_block(n_channels: int, generator: torch.Generator | None = None,
                     rng: np.random.Generator | None = None) -> tuple[int, int]:
    """(start, n): n ~ U{0..H}, start ~ U{0..H−n} (paper §3.3, CCM)."""
    rng = rng or _numpy_rng(generator)
    n = int(rng.integers(0, n_channels + 1))
    start = int(rng.integers(0, n_channels - n + 1))
    return start, n


def mask_batch(x: torch.Tensor, generator: torch.Generator | None = None, *, cfm: bool = True,
               ccm: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply CFM and/or CCM to CMVN-normalised frames [B, T, D]. Returns (masked input, loss mask [B, T, D])."""
    b, t, d = x.shape
    rng = _numpy_rng(generator)
    frame_mask = np.zeros((b, t), bool)
    zero = np.zeros((b, t), bool)
    source = np.full((b, t), -1, np.int64)  # flat index of the random frame copied here, or -1
    channel_mask = np.zeros((b, d), bool)
    for i in range(b):
        if cfm:
            spans = sample_cfm_spans(t, rng=rng)
            for s, n, pol in zip(spans.starts, spans.lengths, spans.policies):
                frame_mask[i, s : s + n] = True
                if pol == 0:
                    zero[i, s : s + n] = True
                elif pol == 1:
                    source[i, s : s + n] = int(rng.integers(0, b * t))
        if ccm:
            for name in ("logmel", "cqt"):
                lo, hi = FEATURE_SLICES[name]
                start, n = sample_ccm_block(hi - lo, rng=rng)
                channel_mask[i, lo + start : lo + start + n] = True
    out = x.clone()
    src = torch.from_numpy(source).to(x.device)
    use_src = src >= 0
    if use_src.any():
        out[use_src] = x.reshape(b * t, d)[src[use_src]]
    out[torch.from_numpy(zero).to(x.device)] = 0.0
    cm = torch.from_numpy(channel_mask).to(x.device)[:, None, :]
    out = out.masked_fill(cm, 0.0)
    loss_mask = torch.from_numpy(frame_mask).to(x.device)[:, :, None] | cm
    return out, loss_mask


def noam_lr(step: int, hidden: int, warmup: int) -> float:
    """Eq. 4: H^-0.5 · min(step^-0.5, step · warmup^-1.5)."""
    step = max(step, 1)
    return hidden**-0.5 * min(step**-0.5, step * warmup**-1.5)


def build_musicoder(config: dict | MusiCoderConfig | str) -> MusiCoder:
    if isinstance(config, str):
        config = get_config(config)
    if isinstance(config, dict):
        config = MusiCoderConfig(**config)
    return MusiCoder(config)
