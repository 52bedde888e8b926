"""Codec round trip on the debug config: shapes, exact length, alignment, chunked == whole, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch

from backline.engines.codec import HOP, load_codec
from backline.engines.codec.model import receptive_context
from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import AudioFormatError, ConfigError, WeightsError


@pytest.fixture(scope="module")
def mix():
    return load_codec("mix", "debug")


@pytest.fixture(scope="module")
def stem():
    return load_codec("stem", "debug")


def _music(seconds=3.0, sr=44100, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    sig = sum(0.2 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) for f in (110, 220, 330.5))
    sig = sig + 0.01 * rng.standard_normal(t.shape)
    return Audio(np.stack([sig, 0.8 * sig][:channels]).astype(np.float32), sr)


@pytest.mark.parametrize("n", [1, 100, 4095, 4096, 4097, 44100])
def test_round_trip_shapes_and_exact_length(mix, stem, n):
    x = Audio(np.random.default_rng(n).standard_normal((2, n)).astype(np.float32) * 0.1, 44100)
    z = mix.encode(x)
    assert z.shape == (64, math.ceil(n / HOP)) and z.dtype == torch.float32
    y = mix.decode(z, n)
    assert y.samples.shape == (2, n) and y.sample_rate == 44100
    zs = stem.encode(x)
    assert zs.shape == (32, math.ceil(n / HOP))
    assert stem.decode(zs, n).samples.shape == (2, n)  # stems come out stereo for the DAW
    assert stem.decode(zs, n, channels=1).samples.shape == (1, n)
    assert mix.decode(z).frames == z.shape[1] * HOP


def test_contract_attributes(mix, stem):
    assert (mix.sample_rate, mix.hop, mix.dim, mix.channels) == (44100, 4096, 64, 2)
    assert (stem.sample_rate, stem.hop, stem.dim, stem.channels) == (44100, 4096, 32, 1)


def test_latent_frames_are_sample_aligned(mix):
    """A click in frame k changes latent k (and neighbours within the receptive field), never far-away frames."""
    n = 40 * HOP
    base = np.zeros((2, n), np.float32)
    click = base.copy()
    click[:, 20 * HOP + 2000] = 0.9
    d = (mix.encode(Audio(click, 44100)) - mix.encode(Audio(base, 44100))).abs().sum(0)
    assert int(d.argmax()) in (19, 20, 21)
    ctx = receptive_context(mix.config)
    assert d[: 20 - ctx - 1].max() == 0 and d[20 + ctx + 1:].max() == 0


def test_chunked_equals_whole_file(mix, stem):
    x = _music(seconds=6.0)
    for codec in (mix, stem):
        whole = codec.encode(x, chunk_frames=None)
        chunked = codec.encode(x, chunk_frames=7)
        assert torch.allclose(whole, chunked, atol=1e-5), (whole - chunked).abs().max()
        a = codec.decode(whole, x.frames, chunk_frames=None).samples
        b = codec.decode(whole, x.frames, chunk_frames=7).samples
        assert np.abs(a - b).max() < 1e-5 * max(1.0, np.abs(a).max())


def test_batch_api_matches_single(mix):
    x = _music(seconds=2 * HOP * 3 / 44100)
    t = torch.from_numpy(x.samples[:, : 6 * HOP])
    zb = mix.encode_batch(torch.stack([t, 0.5 * t]))
    assert zb.shape == (2, 64, 6)
    assert torch.allclose(zb[0], mix.encode(Audio(t.numpy(), 44100), chunk_frames=None), atol=1e-5)
    wb = mix.decode_batch(zb, 5 * HOP + 7)
    assert wb.shape == (2, 2, 5 * HOP + 7)
    with pytest.raises(AudioFormatError):
        mix.encode_batch(t[None, :, :1000])


def test_file_streaming_matches_in_memory(mix, stem, tmp_path):
    x = _music(seconds=8.0)
    path = write_audio(tmp_path / "song.flac", x)
    for codec in (mix, stem):
        z_mem = codec.encode(read_audio(path), chunk_frames=None)
        z_file = codec.encode_file(path, chunk_frames=9)
        assert torch.allclose(z_mem, z_file, atol=1e-5)
        out = codec.decode_to_file(z_file, tmp_path / f"{codec.role}.wav", x.frames, chunk_frames=9)
        back = read_audio(out)
        ref = codec.decode(z_mem, x.frames, chunk_frames=None)
        assert back.frames == x.frames and back.channels == 2
        assert np.abs(back.samples - ref.samples).max() < 1e-4


def test_bad_inputs(mix, stem):
    sr = 44100
    n = 3 * HOP
    t = np.arange(n) / sr
    cases = {
        "silence": np.zeros((2, n)),
        "square": np.sign(np.sin(2 * np.pi * 100 * t))[None].repeat(2, 0),
        "dc": np.ones((2, n)) * 0.7,
        "one_sample": np.full((2, 1), 0.5),
    }
    for name, data in cases.items():
        for codec in (mix, stem):
            y = codec.roundtrip(Audio(data.astype(np.float32), sr))
            assert y.frames == data.shape[1] and np.isfinite(y.samples).all(), name
    bad = np.zeros((2, n), np.float32)
    bad[0, 10], bad[1, 20], bad[0, 30] = np.nan, np.inf, -np.inf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = mix.encode(Audio(bad, sr))
    assert torch.isfinite(z).all() and any("NaN/Inf" in str(w.message) for w in caught)
    mono = Audio(np.zeros((1, n), np.float32), sr)
    assert mix.encode(mono).shape == (64, 3)  # mono mixes are duplicated to stereo
    six = Audio(np.zeros((6, n), np.float32), sr)
    with pytest.raises(AudioFormatError, match="6 channels"):
        mix.encode(six)
    assert stem.encode(six).shape == (32, 3)  # a stem is averaged to mono whatever its channel count
    with pytest.raises(AudioFormatError, match="empty"):
        mix.encode(Audio(np.zeros((2, 0), np.float32), sr))
    with pytest.raises(AudioFormatError, match="latents"):
        mix.decode(torch.zeros(32, 4))
    with pytest.raises(AudioFormatError, match="length"):
        mix.decode(torch.zeros(64, 2), 3 * HOP)
    with pytest.raises(AudioFormatError, match="NaN"):
        mix.decode(torch.full((64, 2), float("nan")))


def test_other_sample_rates_are_resampled(mix):
    x = _music(seconds=1.0, sr=22050)
    z = mix.encode(x)
    assert z.shape == (64, math.ceil(44100 / HOP))
    assert mix.roundtrip(x).frames == 44100


def test_unknown_config_and_mismatched_weights(tmp_path):
    with pytest.raises(ConfigError):
        load_codec("bass", "debug")
    with pytest.raises(ConfigError):
        load_codec("mix", "huge")
    from backline.engines.codec.codec import FORMAT_VERSION, KIND
    from backline.engines.core.weights import save_weights

    codec = load_codec("stem", "debug")
    path = save_weights(codec.model, tmp_path / "stem", kind=KIND, config=codec.config.to_dict(),
                        format_version=FORMAT_VERSION)
    assert load_codec("stem", weights=path).dim == 32
    with pytest.raises(WeightsError, match="stem codec, not the mix"):
        load_codec("mix", weights=path)
    # weights whose config no longer matches the code: a clear message, not a torch traceback
    import json

    meta = json.loads((tmp_path / "stem.json").read_text())
    meta["config"]["widths"] = [8, 8, 8, 8, 8]
    (tmp_path / "stem.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="do not match the model config"):
        load_codec("stem", weights=path)
    meta["config"]["colour"] = "blue"
    (tmp_path / "stem.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="config does not fit"):
        load_codec("stem", weights=path)


def test_debug_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = load_codec("mix", "debug")
    after = torch.rand(1)
    b = load_codec("mix", "debug")
    assert torch.equal(before, after)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_long_file_streams_in_bounded_memory(stem, tmp_path):
    """encode_file/decode_to_file hold a few chunks, never the whole file: numpy peak stays far below its size."""
    import tracemalloc

    from pedalboard.io import AudioFile

    seconds, sr = 40, 44100
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with AudioFile(str(path), "w", samplerate=sr, num_channels=2) as f:  # written in pieces, like a DAW bounce
        for _ in range(seconds // 10):
            f.write((0.1 * rng.standard_normal((2, 10 * sr))).astype(np.float32))
    whole_bytes = seconds * sr * 2 * 4
    tracemalloc.start()
    z = stem.encode_file(path, chunk_frames=4)
    _, peak_enc = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    out = stem.decode_to_file(z, tmp_path / "back.wav", seconds * sr, chunk_frames=4)
    _, peak_dec = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert z.shape == (32, math.ceil(seconds * sr / HOP))
    assert peak_enc < whole_bytes / 8 and peak_dec < whole_bytes / 8, (peak_enc, peak_dec, whole_bytes)
    assert read_audio(out, frames=10).channels == 2
