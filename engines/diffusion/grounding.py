"""Style grounding (paper 000 §3.3) as a per-step transform of the denoised estimate.

Paper:  ĉ_ground = ĉ − μ_t(ĉ) + β_k² μ_t(c_style) + (1 − β_k²) μ_t(ĉ)
which is the same as  ĉ + β_k² (μ_t(c_style) − μ_t(ĉ)):  the time-mean of ĉ is pulled toward the style
mean, fully at pure noise (β = 1), not at all at the end (β = 0), while everything but the mean is left alone.

User strength s: the pull becomes  w_k = min(s · β_k², 1),  ĉ_ground = ĉ + w_k (μ_style − μ_t(ĉ)).
s = 1 is exactly the paper (β² ≤ 1 so the clamp never acts); s = 0 turns grounding off; s > 1 holds the mean
on the style for longer into the sampling; the clamp at 1 stops it from overshooting past the style mean.
"""

from __future__ import annotations

import torch

from backline.engines.core.errors import ConfigError
from backline.engines.diffusion.sampler import Step, StepTransform


def ground_denoised(denoised: torch.Tensor, mu_style: torch.Tensor, beta: float, strength: float = 1.0) -> torch.Tensor:
    """Apply the grounding formula to x̂ [B, C, T] with μ_style [C] or [B, C]; μ_t is the mean over time."""
    if strength < 0:
        raise ConfigError(f"grounding strength {strength} must be >= 0", fix="use 0 (off) to 2; 1 = paper")
    mu = denoised.mean(dim=-1, keepdim=True)
    style = mu_style.to(denoised.dtype).to(denoised.device)
    style = style.reshape(-1, denoised.shape[1], 1) if style.dim() == 2 else style.reshape(1, -1, 1)
    w = min(strength * beta * beta, 1.0)
    return denoised - mu + w * style + (1.0 - w) * mu


def style_grounding(mu_style: torch.Tensor, strength: float = 1.0) -> StepTransform:
    """A sampler transform that grounds x̂ at every step, weighted by that step's β_k²."""
    if strength < 0:
        raise ConfigError(f"grounding strength {strength} must be >= 0", fix="use 0 (off) to 2; 1 = paper")

    def transform(step: Step) -> Step:
        if strength == 0:
            return step
        return step.with_denoised(ground_denoised(step.denoised, mu_style, step.beta, strength))

    return transform
