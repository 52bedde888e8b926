"""The shipped (mix, stem) fit model: a frame-aligned contrastive matcher over MusiCoder's 324-dim frames.

Why not the SimCLR-backbone `MatchingModel` (simclr.py)? Fine-tuned from our CPU-sized SimCLR encoder it
collapsed (every embedding equal, loss stuck at log N) within a few hundred steps; a clip-level GAP embedding
throws away *when* things happen, while "does this stem fit this mix" is mostly about the same chords (chroma,
CQT) and the same rhythm at the same time. This model keeps time: two small 1-D conv encoders map the mix's
and the stem's frames (50/s, CMVN-normalised) to per-frame unit vectors u_t, v_t; the similarity of a
(mix, stem) pair is the mean over frames of u_t·v_t, and training is the same symmetric NT-Xent (τ = 0.1)
with the other stems of the batch as negatives. The 25×25 soft-assignment matrix and the calibrated fit
score sigmoid(a·s + b) are computed from that similarity. Pairs are compared over their common length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.analysis.features import FEATURE_DIM
from backline.engines.analysis.musicoder import CMVN

TAU = 0.1


@dataclass(frozen=True)
class AlignedConfig:
    hidden: int = 64
    out: int = 32
    kernel: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS = {"small": AlignedConfig(), "debug": AlignedConfig(8, 8, 3)}


class FrameEncoder(nn.Module):
    def __init__(self, cfg: AlignedConfig) -> None:
        super().__init__()
        k = cfg.kernel
        self.net = nn.Sequential(
            nn.Conv1d(FEATURE_DIM, cfg.hidden, k, padding=k // 2), nn.GELU(),
            nn.Conv1d(cfg.hidden, cfg.hidden, k, padding=2 * (k // 2), dilation=2), nn.GELU(),
            nn.Conv1d(cfg.hidden, cfg.out, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 324] normalised frames -> [B, T, out] unit vectors."""
        return F.normalize(self.net(frames.transpose(1, 2)).transpose(1, 2), dim=-1)


class AlignedMatcher(nn.Module):
    def __init__(self, cfg: AlignedConfig) -> None:
        super().__init__()
        self.config = cfg
        self.cmvn = CMVN()
        self.mix = FrameEncoder(cfg)
        self.stem = FrameEncoder(cfg)
        self.register_buffer("calib", torch.tensor([10.0, -5.0]))

    def encode(self, mix: torch.Tensor, stem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(self.cmvn(mix)), self.stem(self.cmvn(stem))

    @staticmethod
    def similarity(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """[M, T, D] × [S, T, D] -> [M, S]: mean over frames of the per-frame cosine."""
        t = min(u.shape[1], v.shape[1])
        return torch.einsum("mtd,std->ms", u[:, :t], v[:, :t]) / t

    def forward(self, mix: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        """Training loss: symmetric NT-Xent over the batch (row i of mix matches row i of stem)."""
        u, v = self.encode(mix, stem)
        logits = self.similarity(u, v) / TAU
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    def fit_from_similarity(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.calib[0] * s + self.calib[1])


def build_aligned(config: dict | AlignedConfig) -> AlignedMatcher:
    return AlignedMatcher(AlignedConfig(**config) if isinstance(config, dict) else config)
