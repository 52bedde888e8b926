import numpy as np
import pytest

from backline.engines.core.audio import (
    Audio,
    audio_info,
    iter_audio_chunks,
    read_audio,
    resample,
    write_audio,
)
from backline.engines.core.errors import AudioFileError, AudioFormatError, FileExistsRefusal


def _tone(seconds=0.5, rate=44100, channels=2, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return Audio(np.stack([mono] * channels), rate)


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_round_trip_keeps_samples_and_length(tmp_path, ext):
    audio = _tone()
    path = write_audio(tmp_path / f"a{ext}", audio)
    back = read_audio(path)
    assert back.sample_rate == 44100 and back.samples.shape == audio.samples.shape
    assert np.abs(back.samples - audio.samples).max() < (1e-6 if ext == ".wav" else 1e-4)
    assert audio_info(path) == (44100, 2, audio.frames)


def test_write_never_overwrites_and_leaves_no_partial(tmp_path):
    path = write_audio(tmp_path / "take.wav", _tone())
    before = path.read_bytes()
    with pytest.raises(FileExistsRefusal):
        write_audio(path, _tone(freq=220))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["take.wav"]
    write_audio(path, _tone(freq=220), overwrite=True)
    assert path.read_bytes() != before


@pytest.mark.parametrize("name,content,message", [
    ("empty.wav", b"", "empty"),
    ("corrupt.flac", b"not a flac file at all" * 10, "cannot be decoded"),
    ("notes.txt", b"hello", "unsupported extension"),
])
def test_bad_files_name_the_file_and_the_fix(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as err:
        read_audio(path)
    assert message in str(err.value) and name in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        read_audio(tmp_path / "nope.wav")


def test_channels_and_rate_conversion():
    stereo = _tone(channels=2)
    assert stereo.with_channels(1).channels == 1
    assert _tone(channels=1).with_channels(2).channels == 2
    with pytest.raises(AudioFormatError):
        _tone(channels=6).with_channels(2)
    down = stereo.resampled(16000)
    assert down.sample_rate == 16000 and abs(down.frames - stereo.frames * 16000 / 44100) <= 1
    # a 440 Hz tone keeps its pitch after resampling
    spectrum = np.abs(np.fft.rfft(down.samples[0]))
    assert abs(np.argmax(spectrum) * 16000 / down.frames - 440) < 5


def test_resample_accepts_tensors():
    import torch

    x = torch.randn(2, 4410)
    y = resample(x, 44100, 22050)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 2205)


def test_slice_pads_outside_the_file_to_keep_alignment():
    audio = Audio(np.arange(10, dtype=np.float32)[None], 10)
    part = audio.slice(-2, 3)
    assert part.samples.tolist() == [[0, 0, 0, 1, 2]]
    assert audio.slice(8, 12).samples.tolist() == [[8, 9, 0, 0]]


def test_streaming_reader_covers_the_file(tmp_path):
    audio = _tone(seconds=1.0)
    path = write_audio(tmp_path / "long.flac", audio)
    chunks = list(iter_audio_chunks(path, 10000))
    assert sum(c.frames for c in chunks) == audio.frames
    assert np.allclose(np.concatenate([c.samples for c in chunks], axis=1), read_audio(path).samples)


def test_write_refuses_empty_and_bad_extension(tmp_path):
    with pytest.raises(AudioFileError):
        write_audio(tmp_path / "x.wav", Audio(np.zeros((2, 0), np.float32), 44100))
    with pytest.raises(AudioFileError, match="cannot write"):
        write_audio(tmp_path / "x.mp3", _tone())


def test_outputs_get_the_users_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    path = write_audio(tmp_path / "perm.wav", _tone())
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
