"""Hierarchical multi-label instrument tagger (paper 001): a base network, five heads, masked BCE.

Tags come from the stems' General MIDI programs (Slakh `metadata.yaml`: `program_num`, `is_drum`):
* fine (17) = Slakh's instrument classes, i.e. the 16 GM families ("Strings (continued)" renamed "Ensemble")
  plus "Drums" for drum-channel stems;
* coarse (6) = a tone-based grouping in the spirit of the paper's Fig. 1 (how the sound is excited):
  - percussion: Drums, Percussive, Sound Effects (unpitched / noise-like hits)
  - struck: Piano, Chromatic Percussion (hammered strings, mallets, bells)
  - plucked: Guitar, Bass, Ethnic (sitar, banjo, shamisen, koto, kalimba ... are plucked)
  - bowed: Strings, Ensemble (bowed strings and string/choir ensembles: sustained, with vibrato)
  - blown: Brass, Reed, Pipe, Organ (air-driven sustained tones; the organ is a blown pipe, and its
    electric versions keep that steady harmonic tone)
  - electronic: Synth Lead, Synth Pad, Synth Effects
  Every fine tag has exactly one parent, so labels satisfy the grouped-max rule the paper relies on.

Heads on the base representation z (all share the same fine classifier shape, so sizes stay comparable):
* `flat`: fine = σ(Wz); trained on fine BCE only; coarse = grouped max-pooling (GMP) at inference.
* `levelwise` (Fig. 2a): two parallel linear heads. (The extra loss items of Krause & Müller are not used.)
* `topdown` (Fig. 2b): simplified soft decision tree: coarse = σ(W_c z), leaf = σ(W_l z),
  fine = coarse[parent] · leaf (sigmoids instead of softmax: multi-label).
* `gmp` (Fig. 2c, proposed): fine = σ(Wz); coarse = max over each coarse group, trained jointly.
* `resatt` (Fig. 2d, proposed): attention map W ∈ R^{N_fine × N_coarse} from a linear layer on z (reshaped),
  softmax over the fine axis, P_coarse = Wᵀ P_fine. The attention layer is fed the same representation as
  the fine classifier ("residual": it re-weights the fine predictions rather than predicting anew); it has
  no access to the hierarchy and must learn it from the labels.
Loss: λ·BCE_fine + (1 − λ)·BCE_coarse, λ searched over {0.70, 0.75, 0.80, 0.85, 0.90} (paper), with masked
BCE: a label whose stem is too quiet in the clip to call present or absent is excluded from loss and metrics.

Base network: `MusiCoderTaggerBase` (MusiCoder encoder + mean/max pooling) or `SimCLRTaggerBase`
(NF-Lite encoder over 3 s snippets, averaged); which one is shipped is chosen by the linear-probe numbers
in `benchmarks/analysis_eval.py` and recorded in weights/TRAINING.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.analysis.musicoder import build_musicoder
from backline.engines.analysis.simclr import NFLiteEncoder, SimCLRConfig
from backline.engines.core.errors import ConfigError
from backline.engines.data.gm import GM_FAMILIES

FINE_TAGS: tuple[str, ...] = tuple("Ensemble" if f == "Strings (continued)" else f for f in GM_FAMILIES) + ("Drums",)
COARSE_TAGS: tuple[str, ...] = ("percussion", "struck", "plucked", "bowed", "blown", "electronic")
PARENT: dict[str, str] = {
    "Drums": "percussion", "Percussive": "percussion", "Sound Effects": "percussion",
    "Piano": "struck", "Chromatic Percussion": "struck",
    "Guitar": "plucked", "Bass": "plucked", "Ethnic": "plucked",
    "Strings": "bowed", "Ensemble": "bowed",
    "Brass": "blown", "Reed": "blown", "Pipe": "blown", "Organ": "blown",
    "Synth Lead": "electronic", "Synth Pad": "electronic", "Synth Effects": "electronic",
}
HEADS: tuple[str, ...] = ("flat", "levelwise", "topdown", "gmp", "resatt")
LAMBDA_GRID: tuple[float, ...] = (0.70, 0.75, 0.80, 0.85, 0.90)


def fine_index(program: int, is_drum: bool) -> int:
    """GM program (0-based) / drum flag -> fine tag index."""
    if is_drum:
        return FINE_TAGS.index("Drums")
    if not 0 <= int(program) <= 127:
        raise ConfigError(f"GM program {program} is outside 0..127")
    return int(program) // 8


def hierarchy_matrix() -> torch.Tensor:
    """[N_fine, N_coarse] 0/1 membership."""
    m = torch.zeros(len(FINE_TAGS), len(COARSE_TAGS))
    for i, f in enumerate(FINE_TAGS):
        m[i, COARSE_TAGS.index(PARENT[f])] = 1.0
    return m


def coarse_from_fine(fine: torch.Tensor) -> torch.Tensor:
    """Grouped max over each coarse group: works for 0/1 labels and for probabilities ([..., N_fine])."""
    h = hierarchy_matrix().to(fine.device, fine.dtype)
    return (fine[..., :, None] * h).amax(-2)


def coarse_mask_from_fine(fine_labels: torch.Tensor, fine_mask: torch.Tensor) -> torch.Tensor:
    """A coarse label is known when one child is known-present, or when all its children are known."""
    h = hierarchy_matrix().to(fine_labels.device, fine_labels.dtype)
    any_present = ((fine_labels * fine_mask)[..., :, None] * h).amax(-2) > 0
    all_known = ((fine_mask[..., :, None] * h) + (1 - h)).amin(-2) > 0
    return (any_present | all_known).to(fine_mask.dtype)


@dataclass
class HeadOutput:
    fine: torch.Tensor  # [B, N_fine] probabilities
    coarse: torch.Tensor  # [B, N_coarse] probabilities
    attention: torch.Tensor | None = None  # [B, N_fine, N_coarse] (ResAtt) or the 0/1 GMP map


class TaggerHead(nn.Module):
    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ConfigError(f"unknown tagger head {kind!r}", fix=f"use one of {', '.join(HEADS)}")
        self.kind = kind
        nf, nc = len(FINE_TAGS), len(COARSE_TAGS)
        self.register_buffer("hier", hierarchy_matrix(), persistent=False)
        self.register_buffer("parent", hierarchy_matrix().argmax(1), persistent=False)
        self.fine = nn.Linear(dim, nf)
        if kind in ("levelwise", "topdown"):
            self.coarse = nn.Linear(dim, nc)
        if kind == "resatt":
            self.attention = nn.Linear(dim, nf * nc)

    def forward(self, z: torch.Tensor) -> HeadOutput:
        nf, nc = len(FINE_TAGS), len(COARSE_TAGS)
        if self.kind == "topdown":
            coarse = torch.sigmoid(self.coarse(z))
            fine = coarse[:, self.parent] * torch.sigmoid(self.fine(z))
            return HeadOutput(fine, coarse)
        fine = torch.sigmoid(self.fine(z))
        if self.kind == "levelwise":
            return HeadOutput(fine, torch.sigmoid(self.coarse(z)))
        if self.kind == "resatt":
            w = torch.softmax(self.attention(z).view(-1, nf, nc), dim=1)  # softmax over the fine axis
            coarse = torch.einsum("bfc,bf->bc", w, fine)
            return HeadOutput(fine, coarse.clamp(0.0, 1.0), w)
        # flat and gmp: grouped max-pooling (flat only uses it at inference; its loss ignores coarse)
        coarse = (fine[:, :, None] * self.hier).amax(1)
        return HeadOutput(fine, coarse, self.hier.expand(fine.shape[0], nf, nc))


def masked_bce(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE over known labels only (OpenMIC-style mask): `Loss = BCE(pred[mask], label[mask])`."""
    p = prob.clamp(1e-6, 1 - 1e-6)
    per = F.binary_cross_entropy(p, target, reduction="none")
    m = mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp_min(1.0)


def hierarchical_loss(out: HeadOutput, kind: str, fine_y: torch.Tensor, fine_m: torch.Tensor,
                      coarse_y: torch.Tensor, coarse_m: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 2: λ·BCE_fine + (1 − λ)·BCE_coarse (the flat baseline trains on the fine level alone)."""
    fine_loss = masked_bce(out.fine, fine_y, fine_m)
    if kind == "flat":
        return fine_loss
    return lam * fine_loss + (1 - lam) * masked_bce(out.coarse, coarse_y, coarse_m)


class MusiCoderTaggerBase(nn.Module):
    """MusiCoder frames -> z = [mean; max] of the last hidden states (dim 2H)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim = 2 * encoder.config.hidden

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed(frames)


class SimCLRTaggerBase(nn.Module):
    """NF-Lite log-mel [B, 96, T] -> z = mean of the 3 s snippet embeddings (hop 2 s) over the clip."""

    def __init__(self, encoder: nn.Module, snippet: int = 300, hop: int = 200) -> None:
        super().__init__()
        self.encoder = encoder
        self.snippet, self.hop = snippet, hop
        self.dim = encoder.config.embed_dim

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        t = mels.shape[-1]
        if t <= self.snippet:
            return self.encoder(mels)
        starts = list(range(0, t - self.snippet + 1, self.hop))
        if starts[-1] != t - self.snippet:
            starts.append(t - self.snippet)
        chunks = torch.stack([mels[..., s : s + self.snippet] for s in starts], 1)  # [B, K, 96, S]
        b, k = chunks.shape[:2]
        return self.encoder(chunks.flatten(0, 1)).view(b, k, -1).mean(1)


@dataclass(frozen=True)
class TaggerConfig:
    head: str = "resatt"
    lam: float = 0.8
    base: str = "musicoder"  # or "simclr"
    encoder: dict | None = None  # the base encoder's own config

    def to_dict(self) -> dict:
        return asdict(self)


class Tagger(nn.Module):
    """Base network + one hierarchical head; thresholds (per tag, tuned on validation) are buffers."""

    def __init__(self, base: nn.Module, head: str, dim: int, config: TaggerConfig | None = None) -> None:
        super().__init__()
        self.base = base
        self.config = config
        self.head = TaggerHead(head, dim)
        self.register_buffer("fine_thresholds", torch.full((len(FINE_TAGS),), 0.5))
        self.register_buffer("coarse_thresholds", torch.full((len(COARSE_TAGS),), 0.5))

    def forward(self, x: torch.Tensor) -> HeadOutput:
        return self.head(self.base(x))


def tune_thresholds(prob: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-tag threshold maximising F1 on validation; 0.5 where a tag has no positive/negative example.

    The search is limited to 0.2–0.8: with a few validation songs per tag, F1-optimal thresholds near 0 or 1
    fit a handful of examples and turn into false detections (or misses) on new music. When several thresholds
    tie (well-separated classes), the middle of the tie is taken rather than the lowest."""
    out = np.full(prob.shape[1], 0.5, np.float32)
    grid = np.linspace(0.2, 0.8, 25)
    for j in range(prob.shape[1]):
        m = mask[:, j] > 0
        y, p = target[m, j] > 0.5, prob[m, j]
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        f1 = np.array([_f1(y, p >= t) for t in grid])
        best = np.flatnonzero(f1 >= f1.max() - 1e-9)
        out[j] = grid[best[len(best) // 2]]  # middle of the best plateau: the widest margin on both sides
    return out


def _f1(y: np.ndarray, yhat: np.ndarray) -> float:
    tp = float((y & yhat).sum())
    fp = float((~y & yhat).sum())
    fn = float((y & ~yhat).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1e-9)


# --- metrics (scikit-learn's definitions, in numpy so the project needs no sklearn) ----------------------

def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks)."""
    y = y.astype(bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), np.float64)
    sp = p[order]
    i = 0
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as scikit-learn's average_precision_score: Σ (R_n − R_{n−1}) P_n over distinct thresholds."""
    y = y.astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tps = np.cumsum(ys)
    fps = np.cumsum(~ys)
    last = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # last index of each distinct score
    tp, fp = tps[last], fps[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def macro_metrics(prob: np.ndarray, target: np.ndarray, mask: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Macro ROC-AUC, PR-AUC, F1 over tags that have both classes among the known labels."""
    rocs, aps, f1s = [], [], []
    for j in range(prob.shape[1]):
        m = mask[:, j] > 0
        y, p = target[m, j] > 0.5, prob[m, j]
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        rocs.append(roc_auc(y, p))
        aps.append(average_precision(y, p))
        f1s.append(_f1(y, p >= thresholds[j]))
    return {"roc_auc": float(np.mean(rocs)) if rocs else float("nan"),
            "pr_auc": float(np.mean(aps)) if aps else float("nan"),
            "f1": float(np.mean(f1s)) if f1s else float("nan"), "tags": len(rocs)}


# --- attention-map image for the host ---------------------------------------------------------------------

def attention_png(attention: torch.Tensor | np.ndarray, fine_prob: np.ndarray | None = None, cell: int = 14) -> bytes:
    """Render an [N_fine, N_coarse] attention map (0..1) as a PNG heat map (rows fine, columns coarse).

    Written with a tiny pure-numpy PNG encoder (zlib + CRC) so neither matplotlib nor pillow is needed; the
    host draws the tag names beside it. When `fine_prob` is given, a left strip shows each fine tag's
    probability, so one can see which *likely* fine tags drive each coarse decision.
    """
    a = np.asarray(attention, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"attention map must be 2-D, got {a.shape}")
    a = np.clip(a, 0.0, 1.0)
    if fine_prob is not None:
        a = np.concatenate([np.clip(np.asarray(fine_prob, np.float32)[:, None], 0, 1), np.full((a.shape[0], 1), np.nan), a], 1)
    img = np.repeat(np.repeat(a, cell, 0), cell, 1)
    rgb = _colormap(img)
    rgb[np.isnan(img)] = 255
    return encode_png(rgb)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Dark blue -> yellow (a viridis-like ramp) as uint8 RGB."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
    x = np.nan_to_num(v, nan=0.0) * (len(stops) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(stops) - 2)
    f = (x - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes (8-bit truecolour, filter 0 per row)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def build_tagger(config: dict | TaggerConfig) -> Tagger:
    """Tagger from its stored config (the base encoder is built empty; weights are loaded after)."""
    if isinstance(config, dict):
        config = TaggerConfig(**config)
    if config.base == "musicoder":
        base: nn.Module = MusiCoderTaggerBase(build_musicoder(config.encoder))
    elif config.base == "simclr":
        base = SimCLRTaggerBase(NFLiteEncoder(SimCLRConfig.from_dict(config.encoder)))
    else:
        raise ConfigError(f"unknown tagger base {config.base!r}", fix="use musicoder or simclr")
    return Tagger(base, config.head, base.dim, config)
