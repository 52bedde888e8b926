"""The shipped codec weights load and reconstruct a corpus song clearly better than the untrained model."""

import numpy as np
import pytest
import torch

from backline.engines.codec import load_codec
from backline.engines.core.frontend import mel_l1, mr_stft_distance
from backline.engines.data.slakh import list_tracks


@pytest.fixture(scope="module")
def song(tiny_corpus):
    track = list_tracks(tiny_corpus)[0]
    n = 5 * 44100
    mix = track.mix_audio(sample_rate=44100, channels=2, start=2 * 44100, frames=n)
    bass = track.find("bass")[0]
    stem = track.stem_audio(bass.id, channels=1, start=2 * 44100, frames=n)
    assert mix.rms() > 1e-3 and stem.rms() > 1e-4
    return mix, stem


@pytest.mark.parametrize("role", ["mix", "stem"])
def test_shipped_beats_untrained(song, role):
    audio = song[0] if role == "mix" else song[1]
    shipped = load_codec(role, "shipped")
    assert shipped.config.size == "small" and shipped.meta["training"]["steps"] > 0
    mean, std = shipped.latent_stats
    assert mean.shape == (shipped.dim,) and (std > 0).all()
    untrained = load_codec(role, "small")
    y_shipped, y_untrained = shipped.roundtrip(audio), untrained.roundtrip(audio)
    assert y_shipped.frames == audio.frames
    d_shipped, d_untrained = mr_stft_distance(audio, y_shipped), mr_stft_distance(audio, y_untrained)
    assert np.isfinite(d_shipped) and d_shipped < 0.85 * d_untrained, (d_shipped, d_untrained)
    m_shipped, m_untrained = mel_l1(audio, y_shipped), mel_l1(audio, y_untrained)
    assert m_shipped < 0.7 * m_untrained, (m_shipped, m_untrained)


def test_shipped_chunked_equals_whole(song):
    codec = load_codec("mix", "shipped")
    mix = song[0]
    whole = codec.encode(mix, chunk_frames=None)
    chunked = codec.encode(mix, chunk_frames=4)
    assert torch.allclose(whole, chunked, atol=1e-4 * max(1.0, float(whole.abs().max())))
    a = codec.decode(whole, mix.frames, chunk_frames=None).samples
    b = codec.decode(whole, mix.frames, chunk_frames=4).samples
    # the reconstructed phase is a float32 running sum carried across chunks: ~1e-4 of rounding (−70 dB)
    assert np.abs(a - b).max() <= 5e-4 * max(1.0, float(np.abs(a).max()))
