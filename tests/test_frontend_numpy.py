"""The numpy backends of the one front end (STFT, mel filterbank) and of the one resampler give what their torch
versions gave, so the listener and the takes are unchanged while a follow take runs without torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.functional as taf

from backline.engines.core.audio import resample
from backline.engines.core.frontend import mel_filterbank, mel_spectrogram, stft


@pytest.mark.parametrize("n_fft,hop,win,pad,window,length", [
    (2048, 512, None, "reflect", "hann", 22050), (1024, 256, 400, "constant", "hann", 9000),
    (4096, 1024, None, "constant", "ones", 5000), (512, 128, None, "reflect", "hann", 100)])
def test_numpy_stft_matches_torch(n_fft, hop, win, pad, window, length):
    x = np.random.default_rng(0).normal(size=(2, length)).astype(np.float32)
    ours = stft(x, n_fft, hop, win, pad_mode=pad, window=window)
    theirs = stft(torch.from_numpy(x), n_fft, hop, win, pad_mode=pad, window=window).numpy()
    assert isinstance(ours, np.ndarray) and ours.shape == theirs.shape and ours.dtype == np.complex64
    np.testing.assert_allclose(ours, theirs, atol=2e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("scale,norm", [("htk", None), ("slaney", "slaney"), ("htk", "slaney")])
def test_mel_filterbank_is_torchaudios(scale, norm):
    ours = mel_filterbank(16000, 2048, 128, 30.0, 8000.0, scale, norm)
    theirs = taf.melscale_fbanks(1025, 30.0, 8000.0, 128, 16000, norm=norm, mel_scale=scale).numpy()
    np.testing.assert_allclose(ours, theirs, atol=3e-5 * theirs.max())  # torchaudio builds it in float32
    x = np.random.default_rng(1).normal(size=16000).astype(np.float32)
    a = mel_spectrogram(x, 16000, mel_scale=scale, norm=norm)
    b = mel_spectrogram(torch.from_numpy(x), 16000, mel_scale=scale, norm=norm).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * b.max())


@pytest.mark.parametrize("rates,n", [((44100, 16000), 100_000), ((48000, 44100), 30_001), ((16000, 44100), 777)])
def test_resample_is_torchaudios_kaiser_sinc(rates, n):
    x = np.random.default_rng(2).normal(size=(2, n)).astype(np.float32) * 0.3
    ref = taf.resample(torch.from_numpy(x), *rates, lowpass_filter_width=16, rolloff=0.95,
                       resampling_method="sinc_interp_kaiser", beta=8.555).numpy()
    out = resample(x, *rates)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=5e-6)
    back = resample(torch.from_numpy(x), *rates)  # a tensor in, a tensor out
    assert isinstance(back, torch.Tensor) and np.array_equal(back.numpy(), out)
