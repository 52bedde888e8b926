"""Classifier-free guidance with the std rescale of Lin et al. (arXiv 2305.08891), as small functions.

Sign convention: paper 000 prints ĉ = G(z,k,c) + λ (G(z,k) − G(z,k,c)), which with its reported weights
(> 2.5 "high") only makes sense as the usual form, so we use
    x_cfg = x_uncond + λ (x_cond − x_uncond)      (λ = 1: conditional only, λ = 0: unconditional)
(the printed form with weight λ' equals this one with λ = 1 − λ'). Rescale, with φ ∈ [0, 1]:
    x_resc = x_cfg · std(x_cond) / std(x_cfg);   x = φ x_resc + (1 − φ) x_cfg
std over every axis but the batch. As in Lin et al.'s Algorithm 2 it acts on the network output (v̂ here);
since v̂ and x̂ are affine in each other at a fixed step, plain CFG is the same in either space.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from backline.engines.core.errors import ConfigError


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float, rescale: float = 0.0,
                eps: float = 1e-8) -> torch.Tensor:
    """CFG then Lin et al.'s rescale. φ = 0 → plain CFG; φ = 1 → std equals the conditional output's."""
    if scale < 0:
        raise ConfigError(f"CFG weight {scale} must be >= 0", fix="use e.g. --cfg 2.0 (1.0 = no guidance)")
    if not 0.0 <= rescale <= 1.0:
        raise ConfigError(f"rescale φ={rescale} must be within 0–1", fix="use e.g. --rescale 0.7")
    guided = uncond + scale * (cond - uncond)
    if rescale == 0.0:
        return guided
    dims = tuple(range(1, cond.dim()))
    std_cond = cond.float().std(dim=dims, keepdim=True)
    std_cfg = guided.float().std(dim=dims, keepdim=True)
    rescaled = guided * (std_cond / (std_cfg + eps)).to(guided.dtype)
    return rescale * rescaled + (1.0 - rescale) * guided


def classifier_free(model: Callable[..., torch.Tensor], cond: torch.Tensor, *, scale: float, rescale: float = 0.0,
                    null_cond: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Wrap `model(x, t, cond)` into `fn(x, t)` doing CFG with cond and uncond in ONE batched forward pass.

    The unconditional branch gets `null_cond` (zeros by default: the models are trained with 15 % of the
    conditioning zeroed). With λ = 1 the unconditional pass is skipped altogether.
    """
    null = torch.zeros_like(cond) if null_cond is None else null_cond
    if scale < 0:
        raise ConfigError(f"CFG weight {scale} must be >= 0", fix="use e.g. --cfg 2.0 (1.0 = no guidance)")

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return model(x, t, cond)
        b = x.shape[0]
        out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
        return cfg_combine(out[:b], out[b:], scale, rescale)

    return fn
