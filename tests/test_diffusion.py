"""The one sampler loop, CFG + rescale and style grounding, checked against closed-form answers."""

import math
import threading

import pytest
import torch

from backline.engines.core.errors import Cancelled, ConfigError
from backline.engines.diffusion import (
    CosineSchedule,
    cfg_combine,
    classifier_free,
    ddim_sample,
    ground_denoised,
    style_grounding,
    v_loss,
    v_target,
)


def test_grounding_formula_matches_paper_numerically():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 5, 17, generator=g) * 2 + 1
    mu_style = torch.randn(5, generator=g)
    beta = 0.6
    out = ground_denoised(c, mu_style, beta, strength=1.0)
    mu = c.mean(-1, keepdim=True)
    paper = c - mu + beta**2 * mu_style[None, :, None] + (1 - beta**2) * mu  # ĉ − μ(ĉ) + β²μ_s + (1−β²)μ(ĉ)
    torch.testing.assert_close(out, paper)
    # the time mean moves exactly to the β²-weighted blend; everything else is untouched
    torch.testing.assert_close(out.mean(-1), beta**2 * mu_style[None] + (1 - beta**2) * mu[..., 0])
    torch.testing.assert_close(out - out.mean(-1, keepdim=True), c - mu)
    # β = 1 (pure noise): mean replaced by the style; β = 0 (clean): unchanged; s = 0: off
    torch.testing.assert_close(ground_denoised(c, mu_style, 1.0).mean(-1), mu_style.expand(3, 5))
    torch.testing.assert_close(ground_denoised(c, mu_style, 0.0), c)
    torch.testing.assert_close(ground_denoised(c, mu_style, 0.7, strength=0.0), c)
    # strength s scales β² and is clamped at full replacement
    half = ground_denoised(c, mu_style, 0.6, strength=0.5).mean(-1)
    torch.testing.assert_close(half, 0.18 * mu_style[None] + 0.82 * mu[..., 0])
    torch.testing.assert_close(ground_denoised(c, mu_style, 0.9, strength=5.0).mean(-1), mu_style.expand(3, 5))
    # a per-batch style [B, C]
    styles = torch.randn(3, 5, generator=g)
    torch.testing.assert_close(ground_denoised(c, styles, 1.0).mean(-1), styles)
    with pytest.raises(ConfigError):
        ground_denoised(c, mu_style, 0.5, strength=-1)


def test_cfg_rescale_phi0_is_plain_cfg_and_phi1_matches_cond_std():
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(4, 8, 32, generator=g) * torch.tensor([0.5, 1, 2, 3])[:, None, None]
    uncond = torch.randn(4, 8, 32, generator=g)
    lam = 4.0
    plain = uncond + lam * (cond - uncond)
    torch.testing.assert_close(cfg_combine(cond, uncond, lam, 0.0), plain)
    full = cfg_combine(cond, uncond, lam, 1.0)
    torch.testing.assert_close(full.std(dim=(1, 2)), cond.std(dim=(1, 2)), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain.std(dim=(1, 2)), cond.std(dim=(1, 2)), rtol=0.05)
    # φ interpolates linearly between the two
    torch.testing.assert_close(cfg_combine(cond, uncond, lam, 0.3), 0.3 * full + 0.7 * plain)
    # λ = 1 is the conditional output, λ = 0 the unconditional one
    torch.testing.assert_close(cfg_combine(cond, uncond, 1.0, 0.0), cond)
    torch.testing.assert_close(cfg_combine(cond, uncond, 0.0, 0.0), uncond)
    with pytest.raises(ConfigError, match="CFG"):
        cfg_combine(cond, uncond, -0.5)
    with pytest.raises(ConfigError, match="rescale"):
        cfg_combine(cond, uncond, 2.0, 1.5)


def test_classifier_free_batches_cond_and_uncond_in_one_forward():
    conv = torch.nn.Conv1d(3 + 2, 3, 3, padding=1)
    calls = []

    def model(x, t, c):
        calls.append(x.shape[0])
        return conv(torch.cat([x, c], 1)) * (1 + t[:, None, None])

    x, t = torch.randn(2, 3, 11), torch.full((2,), 0.5)
    c = torch.randn(2, 2, 11)
    with torch.no_grad():
        out = classifier_free(model, c, scale=3.0, rescale=0.0)(x, t)
        assert calls == [4]  # one forward pass holding both branches
        expected = cfg_combine(model(x, t, c), model(x, t, torch.zeros_like(c)), 3.0)
        torch.testing.assert_close(out, expected)
        calls.clear()
        classifier_free(model, c, scale=1.0)(x, t)
        assert calls == [2]  # λ = 1 needs no unconditional pass


def _point_oracle(target):
    """The exact v-predictor for a data distribution that is the single point `target`."""
    sched = CosineSchedule()

    def fn(z, t):
        a = sched.alpha(t)[:, None, None]
        b = sched.beta(t)[:, None, None]
        eps = (z - a * target) / b.clamp_min(1e-12)
        return a * eps - b * target

    return fn


@pytest.mark.parametrize("steps", [1, 8, 64])
def test_ddim_recovers_the_data_point_with_an_exact_model(steps):
    target = torch.linspace(-2, 2, 24).reshape(1, 2, 12)
    out = ddim_sample(_point_oracle(target), torch.randn(3, 2, 12, generator=torch.Generator().manual_seed(2)),
                      steps=steps)
    torch.testing.assert_close(out, target.expand(3, -1, -1), rtol=1e-4, atol=1e-4)


def test_ddim_maps_noise_to_a_gaussian_of_the_right_width():
    """Data N(0, s²): the exact denoiser is x̂ = α s² z / (α² s² + β²); DDIM (the probability-flow ODE) must map
    N(0, 1) noise onto N(0, s²)."""
    s = 0.3
    sched = CosineSchedule()

    def fn(z, t):
        a, b = sched.alpha(t)[:, None, None], sched.beta(t)[:, None, None]
        x0 = a * s * s * z / (a * a * s * s + b * b)
        eps = (z - a * x0) / b.clamp_min(1e-12)
        return a * eps - b * x0

    noise = torch.randn(64, 4, 256, generator=torch.Generator().manual_seed(3))
    errors = [abs(float(ddim_sample(fn, noise, steps=k).std()) - s) for k in (8, 64, 256)]
    assert errors[0] > errors[1] > errors[2]  # discretisation error shrinks with K
    assert errors[1] < 0.02 and errors[2] < 0.006


def test_callback_sees_every_step_and_cancel_stops_within_one_step():
    target = torch.zeros(1, 2, 8)
    seen, calls = [], []
    oracle = _point_oracle(target)

    def counting(z, t):
        calls.append(float(t[0]))
        return oracle(z, t)

    ddim_sample(counting, torch.randn(1, 2, 8), steps=5, callback=lambda s: seen.append(s))
    assert [s["i"] for s in seen] == list(range(5))
    assert set(seen[0]) >= {"i", "x", "t", "denoised"}
    assert math.isclose(seen[-1]["t"], 0.0)
    cancel = threading.Event()
    calls.clear()

    def stop_at_two(state):
        if state["i"] == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        ddim_sample(counting, torch.randn(1, 2, 8), steps=50, callback=stop_at_two, cancel=cancel)
    assert len(calls) == 3  # steps 0, 1, 2 ran; nothing after the cancel


def test_bad_steps_are_refused():
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="steps"):
            ddim_sample(lambda z, t: z, torch.randn(1, 1, 4), steps=bad)


def test_grounding_transform_pulls_the_sample_mean_toward_the_style():
    """With data N(0, I) (exact denoiser x̂ = α z) the free sample's time mean is ~0; grounding moves it to the
    style mean, and strength 0 leaves the sample exactly as it was."""
    torch.manual_seed(4)
    sched = CosineSchedule()

    def fn(z, t):
        a, b = sched.alpha(t)[:, None, None], sched.beta(t)[:, None, None]
        x0 = a * z
        return a * (z - a * x0) / b.clamp_min(1e-12) - b * x0

    style = torch.tensor([3.0, -3.0, 2.0, -2.0])
    noise = torch.randn(2, 4, 64)
    free = ddim_sample(fn, noise, steps=16)
    grounded = ddim_sample(fn, noise, steps=16, transforms=[style_grounding(style, 1.0)])
    d_free = float((free.mean(-1) - style).norm(dim=-1).mean())
    d_ground = float((grounded.mean(-1) - style).norm(dim=-1).mean())
    assert d_ground < 0.3 * d_free
    # the time-varying part is not flattened: grounding moves the mean, not the detail
    assert float((grounded - grounded.mean(-1, keepdim=True)).std()) > 0.5
    off = ddim_sample(fn, noise, steps=16, transforms=[style_grounding(style, 0.0)])
    torch.testing.assert_close(off, free)


def test_v_objective_identities():
    sched = CosineSchedule()
    x, eps = torch.randn(5, 3, 7), torch.randn(5, 3, 7)
    t = torch.rand(5) * 0.98 + 0.01
    z = sched.noise(x, t, eps)
    v = v_target(sched, x, t, eps)
    torch.testing.assert_close(sched.denoised(z, t, v), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sched.eps(z, t, v), eps, rtol=1e-5, atol=1e-5)
    assert float(v_loss(sched, v, x, t, eps)) < 1e-10


@pytest.mark.parametrize("solver", ["euler", "adpm2"])
def test_karras_solvers_recover_the_data_point_and_gaussian_width(solver):
    """Paper 003's samplers (Euler with s_churn, ADPM2) run through the same loop and v-model: an exact
    point model must land on the point, the exact N(0, s²) model must give width s."""
    from backline.engines.diffusion import ADPM2, EulerChurn, sample

    target = torch.linspace(-2, 2, 24).reshape(1, 2, 12)
    make = {"euler": lambda: EulerChurn(s_churn=20.0), "adpm2": ADPM2}[solver]
    g = torch.Generator().manual_seed(5)
    out = sample(_point_oracle(target), torch.randn(3, 2, 12, generator=g), steps=24, solver=make(), generator=g)
    torch.testing.assert_close(out, target.expand(3, -1, -1), rtol=1e-3, atol=1e-3)
    s = 0.3
    sched = CosineSchedule()

    def fn(z, t):
        a, b = sched.alpha(t)[:, None, None], sched.beta(t)[:, None, None]
        x0 = a * s * s * z / (a * a * s * s + b * b)
        return a * (z - a * x0) / b.clamp_min(1e-12) - b * x0

    def error(k):
        return abs(float(sample(fn, torch.randn(32, 4, 256, generator=g), steps=k, solver=make(), generator=g).std()) - s)

    if solver == "adpm2":  # second order: measured 0.0073 at 16 steps, 0.0002 at 32
        assert error(32) < 0.005
    else:  # first order with churn: measured 0.049 at 32 steps, 0.019 at 128
        assert error(128) < 0.5 * error(32) and error(128) < 0.03
    seen = []
    sample(fn, torch.randn(1, 2, 8), steps=5, solver=make(), callback=lambda st: seen.append(st["i"]))
    assert seen == [0, 1, 2, 3, 4]
