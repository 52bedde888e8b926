"""The cosine noise schedule and the v-objective (Salimans & Ho 2022), in continuous time t ∈ [0, 1].

    z_t = α_t x + β_t ε,   α_t = cos(π t / 2),   β_t = sin(π t / 2)   (so α² + β² = 1)
    v   = α_t ε − β_t x           (what the network predicts)
    x̂  = α_t z_t − β_t v̂        (the denoised estimate)
    ε̂  = β_t z_t + α_t v̂

Paper 000 calls β_t the *noise rate*; style grounding weighs by β_k². Training and sampling both take the
schedule from here so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CosineSchedule:
    """α_t = cos(π t/2), β_t = sin(π t/2). `t_min`/`t_max` keep training away from the singular ends."""

    t_min: float = 0.0
    t_max: float = 1.0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(t * (math.pi / 2))

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """The noise rate β_t (paper 000's β_k in the grounding formula)."""
        return torch.sin(t * (math.pi / 2))

    def sample_t(self, batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=device)
        return self.t_min + (self.t_max - self.t_min) * u

    def noise(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z_t = α_t x + β_t ε (t is [B], broadcast over the remaining axes)."""
        a, b = _expand(self.alpha(t), x), _expand(self.beta(t), x)
        return a * x + b * eps

    def denoised(self, z: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a, b = _expand(self.alpha(t), z), _expand(self.beta(t), z)
        return a * z - b * v

    def eps(self, z: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a, b = _expand(self.alpha(t), z), _expand(self.beta(t), z)
        return b * z + a * v


def _expand(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    coef = coef.to(like.dtype)
    return coef.reshape(coef.shape + (1,) * (like.dim() - coef.dim()))


def v_target(schedule: CosineSchedule, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    a, b = _expand(schedule.alpha(t), x), _expand(schedule.beta(t), x)
    return a * eps - b * x


def v_loss(schedule: CosineSchedule, v_pred: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
           eps: torch.Tensor) -> torch.Tensor:
    """Plain MSE on v. With α²+β²=1 this equals the x-loss weighted by w_t = 1/β_t² ("SNR+1"), the weighting
    paper 000's w_t stands for under the v-objective."""
    return torch.mean((v_pred.float() - v_target(schedule, x, t, eps).float()) ** 2)
