"""The one sampling loop: DDIM (Song et al. 2021) over the v-objective cosine schedule.

Everything that varies between engines plugs in as a small function instead of a copy of this loop:

- the *model function* `fn(x, t) -> v̂` hides how conditioning is passed; `guidance.classifier_free` wraps a
  conditional model into one that does CFG (+ rescale) with cond and uncond batched into one forward pass;
- *step transforms* `transform(step: Step) -> Step` run in order after the model at every step and may
  replace the model output (`step.with_output`), the denoised estimate (`step.with_denoised`) or the noise
  estimate (`step.with_eps`). Style grounding is one (`grounding.style_grounding`); GMSDI's coupled
  updates, which mix the estimates of several sources stacked along an axis, are another;
- a *solver* (`DDIM`, `EulerChurn`, `ADPM2`) is the update rule: it picks the time grid and moves the state,
  calling back into the loop for every model evaluation (ADPM2 evaluates twice per step); paper 003's Karras
  samplers run in σ-space (σ = tan(π t / 2)) over the same v-model, so every engine shares one loop;
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
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from backline.engines.core.errors import ConfigError
from backline.engines.core.protocol import check_cancel
from backline.engines.diffusion.schedule import CosineSchedule, _expand

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


class Solver(ABC):
    """How one step moves the state: a plug-in of the one loop in `sample`. The loop owns cancel, callback,
    the model call and the transforms (through `evaluate(z, t) -> Step`); a solver only picks the time grid,
    the starting state and the update. States are always the VP state z_t of the cosine schedule."""

    name = "solver"

    def times(self, steps: int, schedule: CosineSchedule) -> list[float]:
        return ddim_timesteps(steps, schedule.t_max, schedule.t_min)

    def init(self, noise: torch.Tensor, t0: float) -> torch.Tensor:
        return noise

    @abstractmethod
    def step(self, i: int, x: torch.Tensor, t: float, s: float, evaluate: Callable[[torch.Tensor, float], Step],
             generator: torch.Generator | None) -> torch.Tensor:
        """x_t → x_s."""


@dataclass
class DDIM(Solver):
    """DDIM (the update in the module docstring); η = 0 is deterministic."""

    eta: float = 0.0
    name = "ddim"

    def step(self, i, x, t, s, evaluate, generator):
        a_s, b_s = math.cos(s * math.pi / 2), math.sin(s * math.pi / 2)
        step = evaluate(x, t)
        a_t, b_t = step.alpha, step.beta
        sigma = 0.0
        if self.eta > 0 and b_t > 0 and a_s > 0:
            ratio = (a_t * b_s) / max(a_s * b_t, 1e-12)
            sigma = self.eta * (b_s / b_t) * math.sqrt(max(0.0, 1.0 - ratio**2))
        out = a_s * step.denoised + math.sqrt(max(b_s**2 - sigma**2, 0.0)) * step.eps
        if sigma > 0:
            out = out + sigma * torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        return out


def sigma_of(t: float) -> float:
    """The VE noise level σ = β_t / α_t = tan(π t / 2) of the cosine schedule's time t."""
    return math.tan(t * math.pi / 2)


def t_of(sigma: float) -> float:
    return 2.0 / math.pi * math.atan(sigma)


@dataclass
class Karras(Solver):
    """Base of the σ-space (VE) solvers of Karras et al. 2022, run over the same VP model: x_ve = z_t / α_t,
    D(x_ve, σ) = x̂ of the model at t(σ). Time grid: Karras' ρ-spaced σ from σ_max to σ_min, then 0."""

    sigma_min: float = 1e-3
    sigma_max: float = 40.0
    rho: float = 7.0

    def times(self, steps, schedule):
        if not isinstance(steps, int) or steps <= 0:
            raise ConfigError(f"steps={steps} must be a positive whole number", fix="use e.g. --steps 64")
        hi = min(self.sigma_max, sigma_of(schedule.t_max * 0.9999))
        lo = max(self.sigma_min, sigma_of(schedule.t_min)) if steps > 1 else hi
        ramp = [k / max(1, steps - 1) for k in range(steps)]
        sig = [(hi ** (1 / self.rho) + r * (lo ** (1 / self.rho) - hi ** (1 / self.rho))) ** self.rho for r in ramp]
        return [t_of(x) for x in sig] + [0.0]

    def init(self, noise, t0):
        return math.sin(t0 * math.pi / 2) * noise  # z_t0 ≈ β_t0 ε: the data term α_t0 x is negligible at σ_max

    @staticmethod
    def denoise(evaluate, x_ve: torch.Tensor, sigma: float) -> torch.Tensor:
        t = t_of(sigma)
        return evaluate(math.cos(t * math.pi / 2) * x_ve, t).denoised


@dataclass
class EulerChurn(Karras):
    """Karras et al.'s stochastic Euler (Algorithm 2): each step first raises σ by γ = min(s_churn/N, √2 − 1)
    with fresh noise, then takes an Euler step. Paper 003 separates with s_churn = 20."""

    s_churn: float = 20.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0
    steps: int = 1  # set by `sample` (γ depends on the step count)
    name = "euler"

    def step(self, i, x, t, s, evaluate, generator):
        sigma, sigma_next = sigma_of(t), sigma_of(s)
        x_ve = x / math.cos(t * math.pi / 2)
        gamma = min(self.s_churn / self.steps, math.sqrt(2) - 1) if self.s_tmin <= sigma <= self.s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_ve = x_ve + math.sqrt(sigma_hat**2 - sigma**2) * self.s_noise * noise
        d = (x_ve - self.denoise(evaluate, x_ve, sigma_hat)) / sigma_hat
        x_ve = x_ve + (sigma_next - sigma_hat) * d
        return math.cos(s * math.pi / 2) * x_ve


@dataclass
class ADPM2(Karras):
    """Ancestral DPM-Solver-2 as in audio-diffusion-pytorch (paper 003's generation sampler, ρ = 1): a
    midpoint step down to σ_down, then fresh noise σ_up, with σ_down² + σ_up² = σ_next²."""

    mid_rho: float = 1.0
    name = "adpm2"

    def step(self, i, x, t, s, evaluate, generator):
        sigma, sigma_next = sigma_of(t), sigma_of(s)
        x_ve = x / math.cos(t * math.pi / 2)
        sigma_up = math.sqrt(max(0.0, sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        sigma_down = math.sqrt(max(0.0, sigma_next**2 - sigma_up**2))
        r = self.mid_rho
        sigma_mid = ((sigma ** (1 / r) + sigma_down ** (1 / r)) / 2) ** r
        d = (x_ve - self.denoise(evaluate, x_ve, sigma)) / sigma
        x_mid = x_ve + d * (sigma_mid - sigma)
        d_mid = (x_mid - self.denoise(evaluate, x_mid, sigma_mid)) / sigma_mid
        x_ve = x_ve + d_mid * (sigma_down - sigma)
        if sigma_up > 0:
            x_ve = x_ve + sigma_up * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return math.cos(s * math.pi / 2) * x_ve


SOLVERS: dict[str, type[Solver]] = {"ddim": DDIM, "euler": EulerChurn, "adpm2": ADPM2}


@torch.no_grad()
def sample(
    fn: ModelFn,
    noise: torch.Tensor,
    *,
    steps: int = 64,
    solver: Solver | str = "ddim",
    schedule: CosineSchedule | None = None,
    transforms: Sequence[StepTransform] = (),
    callback: Callable[[dict[str, Any]], None] | None = None,
    cancel: threading.Event | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The one sampling loop: K steps of `solver` (DDIM, Euler with s_churn, ADPM2) from `noise` (a draw of
    N(0, I)); every model evaluation runs `fn` and then `transforms`; `callback` after every step; `cancel`
    before every model call. Returns the clean sample (t = 0)."""
    schedule = schedule or CosineSchedule()
    solver = SOLVERS[solver]() if isinstance(solver, str) else solver
    if isinstance(solver, EulerChurn):
        solver.steps = steps
    times = solver.times(steps, schedule)
    state: dict[str, Any] = {}

    def evaluate(z: torch.Tensor, t: float) -> Step:
        check_cancel(cancel)
        a_t, b_t = math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
        tb = torch.full((z.shape[0],), t, device=z.device, dtype=torch.float32)
        v = fn(z, tb).to(z.dtype)
        step = Step(state["i"], steps, t, state["s"], a_t, b_t, z, v, a_t * z - b_t * v, b_t * z + a_t * v)
        for transform in transforms:
            step = transform(step)
        state["denoised"] = step.denoised
        return step

    x = solver.init(noise, times[0])
    for i in range(steps):
        check_cancel(cancel)
        state.update(i=i, s=times[i + 1])
        x = solver.step(i, x, times[i], times[i + 1], evaluate, generator)
        if callback is not None:
            callback({"i": i, "x": x, "t": times[i + 1], "denoised": state["denoised"], "steps": steps})
    return x


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
    if eta < 0:
        raise ConfigError(f"eta={eta} must be >= 0")
    return sample(fn, noise, steps=steps, solver=DDIM(eta), schedule=schedule, transforms=transforms,
                  callback=callback, cancel=cancel, generator=generator)


def expand_like(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a [B] coefficient over the remaining axes of `like` (re-exported for transforms)."""
    return _expand(coef, like)
