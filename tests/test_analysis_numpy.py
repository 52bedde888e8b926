"""The role check's models and features run in numpy (`analysis.inference`, `analysis.features`): the same outputs
as the torch modules that train them and as the torchaudio front end they replaced."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as taf
import torchaudio.transforms as T

from backline.engines.analysis.api import WEIGHTS_DIR
from backline.engines.analysis.features import (
    FEATURE_SR,
    N_FFT,
    N_MELS,
    N_MFCC,
    chroma_filterbank,
    cqt_filterbank,
    musicoder_features,
)
from backline.engines.analysis.inference import PresenceRunner, TaggerRunner, presence_shapes, tagger_shapes
from backline.engines.analysis.presence_model import build_presence
from backline.engines.analysis.tagger import build_tagger
from backline.engines.core.weights import load_arrays, load_weights


def _torchaudio_features(wav: torch.Tensor) -> torch.Tensor:
    """The torch front end the tagger was trained with (before numpy), as a reference."""
    power = T.Spectrogram(n_fft=N_FFT, hop_length=320, power=2.0, center=True)(wav)
    mel = T.MelScale(n_mels=N_MELS, sample_rate=FEATURE_SR, f_min=30.0, f_max=FEATURE_SR / 2, n_stft=N_FFT // 2 + 1,
                     norm="slaney", mel_scale="slaney")(power)
    logmel = 10.0 * torch.log10(mel.clamp_min(1e-10))
    mfcc = torch.einsum("mt,mc->ct", logmel, taf.create_dct(N_MFCC, N_MELS, norm="ortho"))
    dmfcc = T.ComputeDeltas(win_length=5)(mfcc)
    chroma = torch.from_numpy(np.array(chroma_filterbank())) @ power
    chroma = chroma / chroma.amax(0, keepdim=True).clamp_min(1e-8)
    cqt = 10.0 * torch.log10((torch.from_numpy(np.array(cqt_filterbank())) @ power).clamp_min(1e-10))
    return torch.cat([chroma, mfcc, dmfcc, logmel, cqt], 0).T


def test_features_match_the_torchaudio_front_end():
    rng = np.random.default_rng(0)
    t = np.arange(3 * FEATURE_SR) / FEATURE_SR
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    ours = musicoder_features(wav)
    ref = _torchaudio_features(torch.from_numpy(wav)).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3)  # dB-scale features: float32 rounding of the STFT and mel


def test_tagger_runner_matches_the_torch_tagger_on_the_shipped_weights():
    model, meta = load_weights(WEIGHTS_DIR / "tagger", kind="tagger", build=build_tagger)
    runner = TaggerRunner(*load_arrays(WEIGHTS_DIR / "tagger", kind="tagger", shapes=tagger_shapes)[:1],
                          meta["config"])
    frames = np.random.default_rng(1).normal(size=(3, 251, 324)).astype(np.float32) * 10 - 20
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(frames))
    got = runner(frames)
    np.testing.assert_allclose(got.fine, want.fine.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.coarse, want.coarse.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.attention, want.attention.numpy(), atol=1e-5)
    np.testing.assert_array_equal(runner.fine_thresholds, model.fine_thresholds.numpy())


def test_presence_runner_matches_the_torch_model():
    model, meta = load_weights(WEIGHTS_DIR / "presence", kind="presence", build=build_presence)
    arrays, _ = load_arrays(WEIGHTS_DIR / "presence", kind="presence", shapes=presence_shapes)
    x = np.random.default_rng(2).normal(size=(7, meta["config"]["n_features"])).astype(np.float32) * 5
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(PresenceRunner(arrays, meta["config"])(x), want, atol=1e-6)
