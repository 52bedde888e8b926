"""Long mixes: the bass sampler works in overlapping windows past ONE_PASS_FRAMES, and its progress counts the
steps of all windows as one rising count."""

from __future__ import annotations

import numpy as np
import torch

from backline.engines.bass import engine as bass_engine
from backline.engines.bass.engine import Sampling, build


def test_long_latents_are_sampled_in_windows_with_one_step_count(monkeypatch):
    eng = build("debug")
    monkeypatch.setattr(bass_engine, "ONE_PASS_FRAMES", 8)
    monkeypatch.setattr(bass_engine, "LONG_CHUNK", 8)
    monkeypatch.setattr(bass_engine, "LONG_OVERLAP", 2)
    cond = torch.randn(eng.model.cfg.cond_dim, 20)
    seen = []
    res = eng.sample_latents(cond, [0], Sampling(steps=3), None, callback=lambda s: seen.append((s["i"], s["steps"])))
    assert res.latents.shape[-1] == 20 and torch.isfinite(res.latents).all()
    assert any("windows" in f for f in res.fallbacks)
    windows = len(range(0, 20 - 2, 6))  # starts 0, 6, 12
    assert [i for i, _ in seen] == list(range(3 * windows)) and {n for _, n in seen} == {3 * windows}
    # one pass below the threshold: same shape, no windows
    short = eng.sample_latents(cond[:, :6], [0], Sampling(steps=2), None)
    assert short.fallbacks == [] and short.latents.shape[-1] == 6
    assert np.isfinite(short.latents.numpy()).all()
