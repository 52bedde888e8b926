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

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.analysis.musicoder import build_musicoder
from backline.engines.analysis.simclr import NFLiteEncoder, SimCLRConfig
from backline.engines.analysis.tags import (  # noqa: F401 - re-exported: the tagger's vocabulary and metrics
    COARSE_TAGS,
    FINE_TAGS,
    HEADS,
    LAMBDA_GRID,
    PARENT,
    _colormap,
    _f1,
    attention_png,
    average_precision,
    encode_png,
    fine_index,
    hierarchy_array,
    macro_metrics,
    roc_auc,
    tune_thresholds,
)
from backline.engines.core.errors import ConfigError


def hierarchy_matrix() -> torch.Tensor:
    """[N_fine, N_coarse] 0/1 membership."""
    return torch.from_numpy(hierarchy_array())


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
