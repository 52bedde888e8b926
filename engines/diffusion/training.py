"""One optimiser step of the latent-diffusion trainers (bass, accompaniment, the GPU lease): the v-objective
lives with the schedule it trains, so the shared training loop (`core.training`) knows nothing of diffusion."""

from __future__ import annotations

from typing import Any

import torch

from backline.engines.core.training import Distributed, apply_update, ema_update
from backline.engines.diffusion.schedule import v_loss


def v_objective_step(net: torch.nn.Module, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer,
                     schedule: Any, x: torch.Tensor, cond: torch.Tensor, ctx: Distributed, ema_decay: float,
                     clip: float = 1.0) -> float:
    """One optimiser step of a latent-diffusion trainer (paper 000 §4): t ~ U, noise x, predict v from
    (z_t, t, cond) through `net` (the DDP-wrapped `model`), MSE on v, clip, step, EMA. Returns the loss."""
    t = schedule.sample_t(x.shape[0], device=x.device)
    eps = torch.randn_like(x)
    with ctx.autocast():
        v = net(schedule.noise(x, t, eps), t, cond)
    value = apply_update(opt, v_loss(schedule, v, x, t, eps), model.parameters(), clip)
    ema_update(ema, model, ema_decay)
    return value
