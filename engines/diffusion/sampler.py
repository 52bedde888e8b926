"""The one sampling loop: DDIM (Song et al. 2021) over the v-objective cosine schedule.

Everything that varies between engines plugs in as a small function instead of a copy of this loop:

- the *model function* `fn(x, t) -> v̂` hides how conditioning is passed; `guidance.classifier_free` wraps a
  conditional model into one that does CFG (+ rescale) with cond and uncond batched into one forward pass;
- *step transforms* `transform(step: Step) -> Step` run in order after the model at every step and may
  replace the model output (`step.with_output`), the denoised estimate (`step.with_denoised`) or the noise
  estimate (`step.with_eps`). Style grounding is one (`grounding.style_grounding`); GMSDI's coupled
  updates, which mix the estimates of several sources stacked along an axis, are another;
- a *callback* receives `{'i', 'x', 't', 'denoised'}` after every step (progress bar, audio preview) and may
  raise `Cancelled`; a `cancel` event is also checked before every model call, so a cancel lands within one
  step and the caller (which writes files only after sampling returns) writes nothing partial.

Update (η = 0 is the deterministic DDIM of the paper):
    x̂, ε̂ = transforms(α_t z − β_t v̂,  β_t z + α_t v̂)
    z_next = α_s x̂ + sqrt(β_s² − σ²) ε̂ + σ ξ,   σ = η β_s/β_t sqrt(1 − α_t²β_s²/(α_s²β_t²))  (s < t)
The noise estimate ε̂ is kept from the model even when a transform moved x̂: recomputing it from the moved
x̂ would cancel most of the move in the next state (this is how DDIM-with-edited-x̂ methods behave).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from backline.engines.diffusion.schedule import CosineSchedule, _expand
from backline.engines.errors import ConfigError
from backline.engines.protocol import check_cancel

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Step:
    """Everything a transform may need at one sampling step (tensors shaped like x: [B, C, T] or more)."""

    i: int
    steps: int
    t: float
    t_next: float
    alpha: float
    beta: float  # the noise rate β_t: grounding weighs by β²
    x: torch.Tensor  # z_t, the current noisy state
    output: torch.Tensor  # model output v̂ (after guidance)
    denoised: torch.Tensor  # x̂
    eps: torch.Tensor  # ε̂

    def with_output(self, v: torch.Tensor) -> Step:
        """Replace the model output and re-derive x̂ and ε̂ from it."""
        return replace(self, output=v, denoised=self.alpha * self.x - self.beta * v,
                       eps=self.beta * self.x + self.alpha * v)

    def with_denoised(self, denoised: torch.Tensor) -> Step:
        return replace(self, denoised=denoised)

    def with_eps(self, eps: torch.Tensor) -> Step:
        return replace(self, eps=eps)


StepTransform = Callable[[Step], Step]


def ddim_timesteps(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> list[float]:
    """K+1 evenly spaced times from t_max (pure noise) down to t_min (clean)."""
    if not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"steps={steps} must be a positive whole number", fix="use e.g. --steps 64")
    return [t_max + (t_min - t_max) * k / steps for k in range(steps + 1)]


@torch.no_grad()
def ddim_sample(
    fn: ModelFn,
    noise: torch.Tensor,
    *,
    steps: int = 64,
    schedule: CosineSchedule | None = None,
    transforms: Sequence[StepTransform] = (),
    callback: Callable[[dict[str, Any]], None] | None = None,
    cancel: threading.Event | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run K DDIM steps from `noise` (a draw of N(0, I), the state at t = 1) and return the clean sample.

    `fn(x, t)` returns v̂ for x and a [B] tensor of times. See the module docstring for transforms,
    callback and cancel.
    """
    schedule = schedule or CosineSchedule()
    times = ddim_timesteps(steps, schedule.t_max, schedule.t_min)
    if eta < 0:
        raise ConfigError(f"eta={eta} must be >= 0")
    x = noise
    for i in range(steps):
        check_cancel(cancel)
        t, s = times[i], times[i + 1]
        a_t, b_t = math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
        a_s, b_s = math.cos(s * math.pi / 2), math.sin(s * math.pi / 2)
        tb = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
        v = fn(x, tb).to(x.dtype)
        step = Step(i, steps, t, s, a_t, b_t, x, v, a_t * x - b_t * v, b_t * x + a_t * v)
        for transform in transforms:
            step = transform(step)
        sigma = 0.0
        if eta > 0 and b_t > 0 and a_s > 0:
            ratio = (a_t * b_s) / max(a_s * b_t, 1e-12)
            sigma = eta * (b_s / b_t) * math.sqrt(max(0.0, 1.0 - ratio**2))
        x = a_s * step.denoised + math.sqrt(max(b_s**2 - sigma**2, 0.0)) * step.eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback({"i": i, "x": x, "t": s, "denoised": step.denoised, "steps": steps})
    return x


def expand_like(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a [B] coefficient over the remaining axes of `like` (re-exported for transforms)."""
    return _expand(coef, like)
