"""The shared spectral front end: exact STFT round trip, shapes, and metrics that rank better/worse correctly."""

import numpy as np
import pytest
import torch

from backline.engines.core import frontend as fe
from backline.engines.core.audio import Audio


def _tone(n=22050, f=440.0, sr=44100):
    t = torch.arange(n) / sr
    return torch.stack([torch.sin(2 * torch.pi * f * t), 0.5 * torch.sin(2 * torch.pi * 2 * f * t)]) * 0.5


def test_stft_istft_round_trip_any_length():
    torch.manual_seed(0)
    for n in (1, 300, 4096, 10001):
        x = torch.randn(2, n) * 0.3
        spec = fe.stft(x, 1024, 256)
        assert spec.shape == (2, 513, n // 256 + 1)
        if n > 1:  # a 1-sample signal cannot be inverted through a 1024 window, but must not crash
            y = fe.istft(spec, 1024, 256, length=n)
            assert y.shape == x.shape
            assert torch.allclose(x, y, atol=1e-5)


def test_log_magnitude_and_mel_shapes():
    x = _tone()
    s = fe.log_magnitude(x)
    assert s.shape == (2, 513, 22050 // 256 + 1)
    assert s.min() >= np.log(fe.LOG_EPS) - 1e-4
    m = fe.log_mel(x, 44100, n_mels=128)
    assert m.shape == (2, 128, 22050 // 512 + 1)
    # the tagger's configuration works through the same code
    m16 = fe.log_mel(x[:, :16000], 16000, n_fft=512, hop=160, win_length=512, n_mels=64, f_min=50, f_max=8000)
    assert m16.shape == (2, 64, 16000 // 160 + 1)
    # the 440 Hz tone's energy lands in the mel bin around 440 Hz, not at the top of the range
    peak_bin = int(fe.mel_spectrogram(x[0], 44100).mean(-1).argmax())
    assert peak_bin < 40


def test_metrics_zero_on_identity_and_rank_distortions():
    x = _tone()
    a = Audio(x.numpy(), 44100)
    assert fe.mr_stft_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fe.log_spectral_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert fe.mel_l1(x, x) == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(1)
    small = x + 0.001 * torch.randn_like(x)
    big = x + 0.1 * torch.randn_like(x)
    for name in ("mr_stft", "lsd_db", "mel_l1"):
        s, b = fe.spectral_metrics(x, small)[name], fe.spectral_metrics(x, big)[name]
        assert 0 < s < b, name
    with pytest.raises(ValueError, match="differ in shape"):
        fe.mr_stft_distance(x, x[:, :100])


def test_mssd_is_paper_loss_and_differentiable():
    x = _tone(8192)
    y = (x * 0.9).requires_grad_(True)
    loss = fe.multiscale_spectral_distance(x, y)
    loss.backward()
    assert loss > 0 and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert fe.multiscale_spectral_distance(x, x).item() == 0.0
    assert fe.MSSD_HOPS == (32, 64, 128, 256, 512, 2048, 4096)


def test_cached_windows_survive_inference_mode():
    """A window first built under inference_mode (codec inference) must still work for training backward."""
    fe._hann.cache_clear()
    fe._mel_fb.cache_clear()
    x = _tone(4096)
    with torch.inference_mode():
        fe.log_magnitude(x, 512, 128)
        fe.log_mel(x, 44100, n_fft=512, hop=128, n_mels=32)
    y = x.clone().requires_grad_(True)
    (fe.log_magnitude(y, 512, 128).mean() + fe.log_mel(y, 44100, n_fft=512, hop=128, n_mels=32).mean()).backward()
    assert torch.isfinite(y.grad).all()
