"""The one audio type, the one file reader/writer and the one resampler.

Every part of Backline passes audio as `Audio`: float32 samples shaped `[channels, frames]` plus a sample
rate. Files are read with `pedalboard.io.AudioFile` (wav/flac/ogg/mp3/aiff) and written as wav or flac,
atomically (a temp file in the same folder, then `os.replace`), and never over an existing file unless the
caller says `overwrite=True`. Resampling is torchaudio's windowed-sinc resampler, computed in numpy, so the
bridge, the host and a follow take use this module without loading torch.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backline.engines.core.errors import (
    AudioFileError,
    AudioFormatError,
    BacklineError,
    ConfigError,
    FileExistsRefusal,
    warn,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
WRITE_EXTENSIONS = (".wav", ".flac")
#: Refuse to load more than this into memory at once; longer files must be streamed with `iter_audio_chunks`.
MAX_IN_MEMORY_SECONDS = 60 * 60
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass(frozen=True)
class Audio:
    """Float32 samples `[channels, frames]` at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        if samples.ndim == 1:
            samples = samples[None, :]
        if samples.ndim != 2:
            raise AudioFormatError(f"audio must be [channels, frames], got shape {samples.shape}")
        if samples.dtype != np.float32:
            samples = samples.astype(np.float32)
        if int(self.sample_rate) <= 0:
            raise AudioFormatError(f"sample rate must be positive, got {self.sample_rate}")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    @classmethod
    def silence(cls, frames: int, sample_rate: int, channels: int = 2) -> Audio:
        return cls(np.zeros((channels, frames), np.float32), sample_rate)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor, sample_rate: int) -> Audio:
        return cls(tensor.detach().float().cpu().numpy(), sample_rate)

    def to_tensor(self) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.samples))

    def slice(self, start: int, stop: int) -> Audio:
        """Frames `[start, stop)`, zero-padded where the range runs past either end (keeps alignment)."""
        if stop < start:
            raise AudioFormatError(f"slice end {stop} is before its start {start}")
        out = np.zeros((self.channels, stop - start), np.float32)
        lo, hi = max(start, 0), min(stop, self.frames)
        if hi > lo:
            out[:, lo - start : hi - start] = self.samples[:, lo:hi]
        return Audio(out, self.sample_rate)

    def with_channels(self, channels: int) -> Audio:
        """Mono↔stereo by duplication or averaging; any count → mono by averaging.

        Other up/down-mixes (e.g. 5.1 → stereo) have no single right answer, so they are refused with a
        message rather than guessed.
        """
        if channels == self.channels:
            return self
        if channels == 1:
            return Audio(self.samples.mean(axis=0, keepdims=True), self.sample_rate)
        if self.channels == 1:
            return Audio(np.repeat(self.samples, channels, axis=0), self.sample_rate)
        raise AudioFormatError(
            f"cannot turn {self.channels}-channel audio into {channels} channels",
            fix="export a mono or stereo mix from your DAW",
        )

    def resampled(self, sample_rate: int) -> Audio:
        if sample_rate == self.sample_rate:
            return self
        return Audio(resample(self.samples, self.sample_rate, sample_rate), sample_rate)

    def peak(self) -> float:
        return float(np.abs(self.samples).max()) if self.frames else 0.0

    def rms(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.samples, dtype=np.float64)))) if self.frames else 0.0


#: A mix whose peak is under this is silent: nothing to play along to (every engine's one threshold).
SILENT_MIX_DB = -70.0


def playable_mix(mix: Audio | None, *, min_frames: int, need: str, short: str) -> Audio:
    """The mix an engine works on, checked the one way every engine checks it: present (else "`need`"), at least
    `min_frames` long (else "`short`"), finite (NaN becomes silence, ±inf full scale: a glitching plug-in's bad
    samples must not poison a whole take), and not silent."""
    if mix is None:
        raise ConfigError(need, fix="give --mix MIX.wav")
    if mix.frames < min_frames:
        raise AudioFormatError(f"the mix is {mix.frames} samples long, {short}", fix="give at least a bar of music")
    if not np.all(np.isfinite(mix.samples)):
        mix = Audio(np.nan_to_num(mix.samples, nan=0.0, posinf=1.0, neginf=-1.0), mix.sample_rate)
    if mix.peak() <= 10 ** (SILENT_MIX_DB / 20):
        raise AudioFormatError("the mix is silent, there is nothing to play along to",
                               fix="check the region/bars, or that the DAW export is not muted")
    return mix


def resample(samples: np.ndarray | torch.Tensor, orig_rate: int, new_rate: int):
    """Resample along the last axis: torchaudio's `resample` (Kaiser-windowed sinc, 16 zero crossings, roll-off
    0.95, β 8.555), computed in numpy so a take never imports torch for it. Returns the input's type (a tensor
    is resampled on the CPU and returned on its device)."""
    if orig_rate <= 0 or new_rate <= 0:
        raise AudioFormatError(f"cannot resample from {orig_rate} Hz to {new_rate} Hz")
    if orig_rate == new_rate:
        return samples
    if isinstance(samples, np.ndarray):
        return _resample_numpy(np.ascontiguousarray(samples, dtype=np.float32), int(orig_rate), int(new_rate))
    import torch  # lazy: a tensor came in, so torch is loaded already

    out = _resample_numpy(samples.detach().cpu().float().numpy(), int(orig_rate), int(new_rate))
    return torch.from_numpy(out).to(samples.device, samples.dtype)


@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """torchaudio's `_get_sinc_resample_kernel` (sinc_interp_kaiser) for rates already divided by their gcd, in
    float32 as torchaudio computes it for float32 audio: [new, 2·width + orig] taps and the width."""
    base = min(orig, new) * 0.95
    width = math.ceil(RESAMPLE_WIDTH * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float32)[None] / np.float32(orig)
    t = (np.arange(0, -new, -1, dtype=np.float32)[:, None] / np.float32(new) + idx) * np.float32(base)
    t = np.clip(t, -RESAMPLE_WIDTH, RESAMPLE_WIDTH).astype(np.float32)
    beta = np.float32(8.555)
    window = (np.i0(beta * np.sqrt(1 - (t / np.float32(RESAMPLE_WIDTH)) ** 2)) / np.i0(beta)).astype(np.float32)
    t = (t * np.float32(math.pi)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernels = np.where(t == 0, np.float32(1.0), np.sin(t) / t).astype(np.float32)
    kernels = (kernels * (window * np.float32(base / orig))).astype(np.float32)
    kernels.flags.writeable = False
    return kernels, width


def _resample_numpy(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """The polyphase FIR of torchaudio's resampler (its strided conv1d as framed dot products), in blocks of
    output frames so memory stays flat; the length is torchaudio's rule (a float32 ceil)."""
    g = math.gcd(orig_rate, new_rate)
    o, nn = orig_rate // g, new_rate // g
    kernel, width = _sinc_kernel(o, nn)
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    n = flat.shape[-1]
    total = int(np.ceil(np.float32(nn * n / o)))
    padded = np.pad(flat, ((0, 0), (width, width + o)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1], axis=-1)[:, ::o]  # [B, F, K]
    step = max(1, RESAMPLE_CHUNK // max(o, 1))
    out = np.empty((flat.shape[0], frames.shape[1] * nn), np.float32)
    for lo in range(0, frames.shape[1], step):
        block = frames[:, lo:lo + step]
        out[:, lo * nn:(lo + block.shape[1]) * nn] = (block @ kernel.T).reshape(flat.shape[0], -1)
    return out[:, :total].reshape(*shape[:-1], total)


#: Kaiser-sinc zero crossings each side (torchaudio's lowpass_filter_width).
RESAMPLE_WIDTH = 16
#: Longer signals are resampled in blocks of about this many input samples (the framed product's working set).
RESAMPLE_CHUNK = 1 << 20


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioFileError("file not found", path=path, fix="check the path")
    if path.is_dir():
        raise AudioFileError("is a folder, not an audio file", path=path)
    if path.suffix.lower() not in READ_EXTENSIONS:
        raise AudioFileError(
            f"unsupported extension '{path.suffix}'", path=path, fix=f"use one of {', '.join(READ_EXTENSIONS)}"
        )
    if path.stat().st_size == 0:
        raise AudioFileError("file is empty (0 bytes)", path=path, fix="re-export it from your DAW")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(sample_rate, channels, frames) without reading the samples."""
    from pedalboard.io import AudioFile

    path = Path(path)
    _check_readable(path)
    try:
        with AudioFile(str(path)) as f:
            info = int(f.samplerate), int(f.num_channels), int(f.frames)
    except (OSError, RuntimeError, ValueError) as err:
        raise AudioFileError(f"cannot be decoded ({err})", path=path, fix="re-export it as WAV or FLAC") from err
    if info[2] == 0:
        raise AudioFileError("has no audio in it (0 samples)", path=path, fix="export the audio again from your DAW")
    _check_complete(path, info[0], info[2])
    return info


def require_audio_file(path: str | Path, what: str = "the audio file") -> tuple[int, int, int]:
    """(sample_rate, channels, frames) of `path`, or one AudioFileError saying that `what` (e.g. "--reference")
    is not audio — a text file or /etc/passwd is refused here, from its header, before any work."""
    path = Path(path)
    try:
        return audio_info(path)
    except AudioFileError as err:
        detail = str(err).removeprefix(f"{path}: ").split(" — ")[0]
        raise AudioFileError(f"{what} is not an audio file ({detail})", path=path,
                             fix="give a WAV, FLAC, OGG, MP3 or AIFF recording") from err


def _check_complete(path: Path, rate: int, total: int) -> None:
    """A truncated FLAC decodes as silence up to its announced length without a word (pedalboard): try to
    decode its last frame (libsndfile fails to seek there when the stream ends early)."""
    if path.suffix.lower() != ".flac":
        return
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile ships with librosa
        return
    try:
        with soundfile.SoundFile(str(path)) as f:
            f.seek(max(0, total - 1))
            f.read(1)
    except (RuntimeError, OSError, ValueError, soundfile.LibsndfileError) as err:
        raise AudioFileError(f"is truncated or corrupt: its FLAC stream ends before the {total / rate:.1f} s its "
                             f"header announces ({err})", path=path,
                             fix="export or copy the file again") from err


def read_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    start: int = 0,
    frames: int | None = None,
) -> Audio:
    """Read `frames` frames from `start` (in the file's own rate), then convert rate/channels if asked."""
    from pedalboard.io import AudioFile

    path = Path(path)
    _check_readable(path)
    try:
        with AudioFile(str(path)) as f:
            file_rate, total = int(f.samplerate), int(f.frames)
            if total == 0:
                raise AudioFileError("has no audio in it (0 samples)", path=path,
                                     fix="export the audio again from your DAW")
            count = total - start if frames is None else frames
            if count / max(file_rate, 1) > MAX_IN_MEMORY_SECONDS:
                raise AudioFileError(
                    f"is {count / file_rate / 3600:.1f} h long, too long to load at once",
                    path=path, fix="process it in chunks with iter_audio_chunks or pick a region",
                )
            if start:
                f.seek(min(start, total))
            data = f.read(max(0, min(count, total - start)))
    except AudioFileError:
        raise
    except (OSError, RuntimeError, ValueError) as err:
        raise AudioFileError(f"cannot be decoded ({err})", path=path, fix="re-export it as WAV or FLAC") from err
    _check_complete(path, file_rate, total)
    held = _wav_frames_held(path)
    if held is not None and held < total and start + data.shape[1] > held:
        warn(f"is truncated: it holds {held / file_rate:.2f} s of the {total / file_rate:.2f} s its header "
             "announces; the rest is read as silence", path=path)
    if frames is not None and data.shape[1] < frames:  # keep the requested length (alignment)
        data = np.pad(data, ((0, 0), (0, frames - data.shape[1])))
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)
    audio = Audio(data, file_rate)
    if channels is not None:
        audio = audio.with_channels(channels)
    if sample_rate is not None:
        audio = audio.resampled(sample_rate)
    return audio


def _wav_frames_held(path: Path) -> int | None:
    """For a RIFF/WAVE file: how many whole frames its data chunk really holds (decoders pad a truncated file
    with silence up to the header's length without a word). None for other formats or odd headers."""
    import struct

    if path.suffix.lower() != ".wav":
        return None
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(csize, 40))
                    if len(fmt) < 16:
                        return None
                    block = struct.unpack("<H", fmt[12:14])[0]
                    f.seek(csize - len(fmt) + (csize & 1), 1)
                elif cid == b"data":
                    if not block:
                        return None
                    return max(0, min(csize, size - f.tell())) // block
                else:
                    f.seek(csize + (csize & 1), 1)
    except (OSError, struct.error):
        return None


def iter_audio_chunks(path: str | Path, chunk_frames: int) -> Iterator[Audio]:
    """Stream a file of any length in chunks of `chunk_frames` (last may be shorter); bounded memory."""
    from pedalboard.io import AudioFile

    path = Path(path)
    _check_readable(path)
    try:
        with AudioFile(str(path)) as f:
            rate = int(f.samplerate)
            while f.tell() < f.frames:
                yield Audio(f.read(chunk_frames), rate)
    except (OSError, RuntimeError, ValueError) as err:
        raise AudioFileError(f"cannot be decoded ({err})", path=path) from err


def atomic_output(path: str | Path, *, overwrite: bool = False, need_bytes: int = 0) -> tuple[Path, Path]:
    """Check `path` may be written (and its disk has `need_bytes` free) and return (final path, temp path in
    the same folder).

    Callers write the temp file, then `os.replace(temp, final)`: a crash never leaves half a file under
    the final name, and an existing file is only replaced when `overwrite=True`. Called before the work, it
    refuses a read-only, full or under-a-file path in one line.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsRefusal("already exists; Backline never overwrites your files", path=path,
                                fix="choose another name or folder, or pass overwrite")
    if path.is_dir():
        raise BacklineError("is a folder", path=path, fix="name a file to write")
    above = path.parent
    while not above.exists() and above.parent != above:
        above = above.parent
    if above.exists() and not above.is_dir():
        raise BacklineError(f"cannot be written: {above} is a file, not a folder", path=path,
                            fix="choose a path inside a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    except OSError as err:  # under a file, read-only, full: one line now, before any work
        raise BacklineError(f"cannot be written ({err.strerror or err})", path=path,
                            fix="check that its folder exists, is writable and has free space") from err
    os.close(fd)
    if need_bytes:
        import shutil

        free = shutil.disk_usage(path.parent).free
        if free < need_bytes:
            os.unlink(tmp)
            raise BacklineError(f"cannot be written: its disk has {free / 2**20:.1f} MB free, about "
                                f"{need_bytes / 2**20:.1f} MB are needed", path=path,
                                fix="free some disk space or write it elsewhere")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should have the user's usual permissions
    return path, Path(tmp)


def write_audio(path: str | Path, audio: Audio, *, overwrite: bool = False, bit_depth: int = 24) -> Path:
    """Write wav (float32) or flac (16/24-bit) atomically. Returns the final path."""
    from pedalboard.io import AudioFile

    path = Path(path)
    if path.suffix.lower() not in WRITE_EXTENSIONS:
        raise AudioFileError(f"cannot write '{path.suffix}'", path=path, fix="write .wav or .flac")
    if audio.frames == 0:
        raise AudioFileError("refusing to write an empty (0-frame) file", path=path)
    final, tmp = atomic_output(path, overwrite=overwrite)
    try:
        kwargs = {"bit_depth": bit_depth} if path.suffix.lower() == ".flac" else {"bit_depth": 32}
        samples = audio.samples if path.suffix.lower() == ".wav" else np.clip(audio.samples, -1.0, 1.0)
        with AudioFile(str(tmp), "w", samplerate=audio.sample_rate, num_channels=audio.channels, **kwargs) as f:
            f.write(np.ascontiguousarray(samples))
        os.replace(tmp, final)
    except (OSError, RuntimeError) as err:  # pedalboard says RuntimeError when the disk fills
        tmp.unlink(missing_ok=True)
        raise AudioFileError(f"could not be written ({getattr(err, 'strerror', None) or err})", path=path,
                             fix="check free disk space and permissions") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write_bytes_atomic(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Atomic write for non-audio outputs (MIDI, JSON reports), same never-overwrite rule."""
    final, tmp = atomic_output(path, overwrite=overwrite)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, final)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise BacklineError(f"could not be written ({err.strerror or err})", path=path,
                            fix="check free disk space and permissions") from err
    return final
