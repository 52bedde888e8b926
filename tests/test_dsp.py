"""core.dsp's median filter and core.effects' streamed K-weighting against what they replace (scipy.ndimage's
median_filter, scipy.signal's lfilter with carried state, torchaudio's loudness): taken off scipy so a take does not
pay scipy's import at start-up (issue 23), they must give the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backline.engines.core import effects
from backline.engines.core.audio import Audio
from backline.engines.core.dsp import median_filter


def test_median_filter_equals_scipy_ndimage_reflect():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    mag = (rng.random((257, 120)) ** 3).astype(np.float32)
    for size in (3, 17, 31):
        assert np.array_equal(median_filter(mag, size, axis=1), ndimage.median_filter(mag, size=(1, size), mode="reflect"))
        assert np.array_equal(median_filter(mag, size, axis=0), ndimage.median_filter(mag, size=(size, 1), mode="reflect"))


def test_k_weighting_carries_its_state_across_chunks_like_lfilter():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(1)
    x = 0.3 * rng.standard_normal(10_007)
    for b, a in effects._k_weighting(44100):
        ref = signal.lfilter(b, a, x)
        state, out = np.zeros(4), []
        for lo in range(0, len(x), 1000):  # uneven last chunk, a one-sample one too
            y, state = effects._biquad(b, a, x[lo:lo + 1000], state)
            out.append(y)
        y, _ = effects._biquad(b, a, x[:1], np.zeros(4))
        np.testing.assert_allclose(np.concatenate(out), ref, rtol=0, atol=1e-9)  # the recursion is FFT-blocked
        assert y[0] == pytest.approx(ref[0], abs=1e-12)


def test_streamed_loudness_equals_torchaudio_across_chunk_boundaries():
    taf = pytest.importorskip("torchaudio.functional")
    rng = np.random.default_rng(2)
    sr = 48000
    t = np.arange(3 * sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 55 * t) * np.exp(-(t % 0.5) * 4) + 0.05 * rng.standard_normal(len(t)))
    x = np.stack([x, 0.5 * x]).astype(np.float32)
    ref = float(taf.loudness(torch.from_numpy(x.astype(np.float64)), sr))
    assert effects._streamed_loudness(x, sr, chunk=30_001) == pytest.approx(ref, abs=1e-6)
    assert effects.loudness_lufs(Audio(x, sr)) == pytest.approx(ref, abs=1e-6)
