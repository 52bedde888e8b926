"""The `Codec` API: audio of any length, rate and (supported) channel count ⇄ latents [dim, frames].

Alignment: latent frame i covers samples [4096·i, 4096·(i+1)) at 44.1 kHz; `encode` zero-pads the end to a whole
number of frames (frames = ceil(T / 4096)) and `decode(z, length=T)` trims back, so decode(encode(x)) has exactly
x's length and no offset.

Long inputs are processed in chunks of `chunk_frames` latent frames, each with `context` frames of real
neighbouring signal on both sides that are computed and thrown away ("overlap-save"). The context is at least
the network's receptive field (`receptive_context`), so each kept frame/sample sees exactly the inputs it would
see in a whole-file pass: no seams, chunked == whole within float rounding. Chunks are clipped at the file's
true edges, so edge handling is identical too. Files of any length (2 h and more) stream through
`encode_file` / `decode_to_file` in bounded memory.

Channels: the mix codec is stereo (mono input is duplicated; more than 2 channels is refused with a message,
because 5.1 → stereo has no single right downmix). The stem codec is mono: any input is averaged to mono, and
`decode` returns stereo (the mono stem duplicated, i.e. centred) for the DAW unless `channels=1` is asked.
Non-finite samples (NaN/Inf) are replaced (NaN → 0, ±Inf → ±1) with a warning rather than poisoning the latents.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Event
from typing import Any

import numpy as np
import torch

from backline.engines.codec.model import (
    HOP,
    SAMPLE_RATE,
    STFT_HOP,
    CodecConfig,
    SpectralAutoencoder,
    make_config,
    receptive_context,
)
from backline.engines.core.audio import (
    MAX_IN_MEMORY_SECONDS,
    Audio,
    atomic_output,
    audio_info,
    iter_audio_chunks,
    read_audio,
)
from backline.engines.core.errors import (
    AudioFileError,
    AudioFormatError,
    Cancelled,
    ConfigError,
    WeightsError,
)
from backline.engines.core.weights import load_weights

WEIGHTS_DIR = Path(__file__).parent / "weights"
KIND = "codec"
FORMAT_VERSION = 1
STFT_FRAMES_PER_LATENT = HOP // STFT_HOP
DEFAULT_CHUNK_FRAMES = 256  # ≈ 24 s of audio per chunk: bounded memory (~100 MB for small), little recompute

Progress = Callable[[float, str], None]


def build_model(config: dict[str, Any] | CodecConfig) -> SpectralAutoencoder:
    """Build a model from a config with a seeded initialisation that leaves the global RNG untouched."""
    cfg = config if isinstance(config, CodecConfig) else CodecConfig.from_dict(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return SpectralAutoencoder(cfg)


def convert_phase(model: SpectralAutoencoder, cfg: CodecConfig) -> SpectralAutoencoder:
    """A phase-head model as a magnitude-only one (`cfg.phase == "spsi"`): the same encoder and decoder with the
    phase half of the last 1×1 conv dropped, so a fine-tune starts from what was already learnt."""
    if model.cfg.phase == cfg.phase:
        return model
    if not (model.cfg.phase == "head" and cfg.phase == "spsi"):
        raise ConfigError(f"cannot turn a {model.cfg.phase!r} decoder into a {cfg.phase!r} one")
    state = model.state_dict()
    new = build_model(cfg)
    last = [k for k in new.state_dict() if k.startswith("decoder.")][-2:]  # the final conv's weight and bias
    keep = cfg.channels * 513
    for key in last:
        state[key] = state[key][:keep]
    new.load_state_dict(state)
    return new


ENCODER_CONFIG_KEYS = ("role", "size", "channels", "dim", "widths", "blocks", "input_offset", "input_scale")


def latent_space_id(codec: Codec) -> str:
    """A stable id of the codec's *latent space*: sha256 over the encoder's parameters and the config keys that
    shape it. Models trained on latents (the bass diffusion model), latent caches and cached style means depend on
    the encoder only, so a decoder-only fine-tune (`--freeze-encoder`) keeps them all valid."""
    cached = getattr(codec, "_latent_space_id", None)
    if cached:
        return cached
    config = codec.config.to_dict()
    h = hashlib.sha256(json.dumps({k: config[k] for k in ENCODER_CONFIG_KEYS}, sort_keys=True).encode())
    for name, tensor in sorted(codec.model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    codec._latent_space_id = f"{codec.role}-{h.hexdigest()[:16]}"
    return codec._latent_space_id


class Codec:
    """A loaded spectral codec (mix or stem) on one device, in inference mode."""

    sample_rate = SAMPLE_RATE
    hop = HOP

    def __init__(self, model: SpectralAutoencoder, device: str | torch.device = "cpu",
                 meta: dict[str, Any] | None = None) -> None:
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.meta = meta or {}
        self.context = receptive_context(model.cfg)

    # -- properties ----------------------------------------------------------------------------------------------
    @property
    def config(self) -> CodecConfig:
        return self.model.cfg

    @property
    def role(self) -> str:
        return self.config.role

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def channels(self) -> int:
        """Channels the model itself codes (2 for mix, 1 for stem)."""
        return self.config.channels

    @property
    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-dimension (mean, std) of latents over the training data, when the weights carry them."""
        stats = self.meta.get("training", {}).get("latent_stats")
        if not stats:
            return None
        return torch.tensor(stats["mean"]), torch.tensor(stats["std"])

    def frames_for(self, length: int) -> int:
        return max(1, math.ceil(length / HOP))

    # -- batched, differentiable-free trainer API ------------------------------------------------------------------
    @torch.inference_mode()
    def encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        """[B, channels, T] (T a multiple of 4096, 44.1 kHz) → [B, dim, T // 4096] on the codec's device."""
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] % HOP or x.shape[-1] == 0:
            raise AudioFormatError(f"encode_batch needs [B, {self.channels}, 4096·N] audio, got {tuple(x.shape)}")
        return self.model.encode(x.to(self.device, torch.float32))

    @torch.inference_mode()
    def decode_batch(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """[B, dim, N] → [B, channels, length or 4096·N]."""
        if z.dim() != 3 or z.shape[1] != self.dim:
            raise AudioFormatError(f"decode_batch needs [B, {self.dim}, N] latents, got {tuple(z.shape)}")
        n = z.shape[-1] * HOP
        length = n if length is None else int(length)
        wav = self.model.decode(z.to(self.device, torch.float32), min(length, n))
        if length > n:
            wav = torch.nn.functional.pad(wav, (0, length - n))
        return wav

    # -- single-signal API -----------------------------------------------------------------------------------------
    def prepare(self, audio: Audio) -> np.ndarray:
        """Resample to 44.1 kHz, fix channels, sanitise; returns float32 [channels, T]."""
        if not isinstance(audio, Audio):
            raise AudioFormatError(f"Codec.encode needs an Audio, got {type(audio).__name__}")
        if audio.frames == 0:
            raise AudioFormatError("cannot encode empty (0-frame) audio", fix="pass at least one sample")
        samples = audio.samples
        if not np.all(np.isfinite(samples)):
            warnings.warn("audio holds NaN/Inf samples; they were replaced (NaN → 0, ±Inf → ±1)", stacklevel=3)
            audio = Audio(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), audio.sample_rate)
        if self.channels == 1:
            audio = audio.with_channels(1)
        elif audio.channels == 1:
            audio = audio.with_channels(2)
        elif audio.channels != 2:
            raise AudioFormatError(f"the mix codec takes mono or stereo audio, got {audio.channels} channels",
                                   fix="export a stereo mix from your DAW")
        audio = audio.resampled(SAMPLE_RATE)
        return audio.samples

    def encode(self, audio: Audio, *, chunk_frames: int | None = DEFAULT_CHUNK_FRAMES,
               progress: Progress | None = None, cancel: Event | None = None) -> torch.Tensor:
        """Audio (any length/rate, mono or stereo) → latents [dim, ceil(T / 4096)] (float32, CPU).

        `chunk_frames=None` processes the whole signal in one pass (same result within float rounding)."""
        x = self.prepare(audio)
        return self._encode_array(x, chunk_frames, progress, cancel)

    def _encode_array(self, x: np.ndarray, chunk_frames: int | None, progress: Progress | None,
                      cancel: Event | None) -> torch.Tensor:
        n = self.frames_for(x.shape[-1])
        padded = np.zeros((x.shape[0], n * HOP), np.float32)
        padded[:, : x.shape[-1]] = x
        if chunk_frames is None or n <= chunk_frames + 2 * self.context:
            return self.encode_batch(torch.from_numpy(padded)[None])[0].float().cpu()
        out = torch.empty(self.dim, n)
        for a, b, lo, hi in self._chunks(n, chunk_frames):
            _check(cancel)
            z = self.encode_batch(torch.from_numpy(padded[:, lo * HOP: hi * HOP])[None])[0]
            out[:, a:b] = z[:, a - lo: b - lo].float().cpu()
            if progress:
                progress(b / n, "encoding")
        return out

    def _chunks(self, n: int, chunk_frames: int) -> Iterator[tuple[int, int, int, int]]:
        """(keep_start, keep_stop, compute_start, compute_stop) in latent frames, clipped at the edges."""
        if chunk_frames <= 0:
            raise ConfigError(f"chunk_frames must be positive, got {chunk_frames}")
        for a in range(0, n, chunk_frames):
            b = min(n, a + chunk_frames)
            yield a, b, max(0, a - self.context), min(n, b + self.context)

    def decode(self, latents: torch.Tensor, length: int | None = None, *, channels: int | None = None,
               chunk_frames: int | None = DEFAULT_CHUNK_FRAMES, progress: Progress | None = None,
               cancel: Event | None = None) -> Audio:
        """Latents [dim, frames] → 44.1 kHz Audio of exactly `length` samples (default frames·4096).

        Output channels: 2 by default for both codecs (the stem codec's mono output is duplicated/centred);
        `channels=1` returns the stem codec's mono signal."""
        z = self._check_latents(latents)
        n = z.shape[-1]
        length = n * HOP if length is None else int(length)
        if length <= 0 or length > n * HOP:
            raise AudioFormatError(f"length {length} does not fit {n} latent frames (1 … {n * HOP} samples)")
        channels = 2 if channels is None else channels
        if channels not in (1, 2) or (self.channels == 2 and channels == 1):
            raise AudioFormatError(f"the {self.role} codec outputs {'stereo' if self.channels == 2 else 'mono or stereo'}, "
                                   f"not {channels} channels")
        wav = self._decode_array(z, length, chunk_frames, progress, cancel)
        if channels == 2 and wav.shape[0] == 1:
            wav = np.repeat(wav, 2, axis=0)
        return Audio(wav, SAMPLE_RATE)

    def _check_latents(self, latents: torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(latents)
        if z.dim() != 2 or z.shape[0] != self.dim or z.shape[1] == 0:
            raise AudioFormatError(f"the {self.role} codec decodes latents [{self.dim}, frames], got {tuple(z.shape)}",
                                   fix=f"pass latents from the {self.role} codec")
        if not torch.isfinite(z).all():
            raise AudioFormatError("latents hold NaN/Inf values", fix="check the model that produced them")
        return z.float()

    def _decode_array(self, z: torch.Tensor, length: int, chunk_frames: int | None, progress: Progress | None,
                      cancel: Event | None) -> np.ndarray:
        n = z.shape[-1]
        if chunk_frames is None or n <= chunk_frames + 2 * self.context:
            return self.decode_batch(z[None], length)[0].float().cpu().numpy()
        out = np.empty((self.channels, length), np.float32)
        for start, piece, done in self._decode_chunks(z, length, chunk_frames, cancel):
            out[:, start: start + piece.shape[1]] = piece
            if progress:
                progress(done, "decoding")
        return out

    @torch.inference_mode()
    def _decode_chunks(self, z: torch.Tensor, length: int, chunk_frames: int,
                       cancel: Event | None) -> Iterator[tuple[int, np.ndarray, float]]:
        """Overlap-save decoding: yields (first sample, samples [channels, k], fraction done) for each kept span.

        A reconstructed phase (SPSI) is an integral over all earlier frames, so each chunk continues the phase
        accumulated up to the frame before its first kept frame: chunked output equals the whole-signal output."""
        n = z.shape[-1]
        carry = None
        for a, b, lo, hi in self._chunks(n, chunk_frames):
            _check(cancel)
            if a * HOP >= length:
                break
            log_mag, phase = self.model.decode_spec(z[None, :, lo:hi].to(self.device, torch.float32))
            keep = (a - lo) * STFT_FRAMES_PER_LATENT
            wav, accumulated = self.model.synthesise(log_mag, phase, None, carry, keep)
            if accumulated is not None:
                carry = accumulated[..., (b - lo) * STFT_FRAMES_PER_LATENT - 1]
            stop = min(b * HOP, length)
            yield a * HOP, wav[0, :, (a - lo) * HOP: stop - lo * HOP].float().cpu().numpy(), b / n

    def roundtrip(self, audio: Audio, **kwargs: Any) -> Audio:
        """decode(encode(audio)) at 44.1 kHz with the input's length (resampled) — for checks and benchmarks."""
        z = self.encode(audio, **kwargs)
        length = round(audio.frames * SAMPLE_RATE / audio.sample_rate)
        return self.decode(z, max(1, length), channels=2 if self.channels == 2 else 1, **kwargs)

    # -- files of any length -------------------------------------------------------------------------------------
    def encode_file(self, path: str | Path, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
                    progress: Progress | None = None, cancel: Event | None = None) -> torch.Tensor:
        """Stream a file of any length into latents [dim, ceil(T·44100/sr / 4096)] in bounded memory.

        Reads `chunk_frames` latent frames of audio at a time and keeps `context` frames of look-back/ahead, so
        the result equals `encode(read_audio(path))` within float rounding."""
        rate, _, total = audio_info(path)
        if total == 0:
            raise AudioFileError("holds no samples", path=path, fix="re-export it from your DAW")
        if rate != SAMPLE_RATE:
            # A streaming resampler would need its own overlap logic; one resampler exists (audio.resample), and
            # it works on whole signals, so other rates are refused for streaming rather than seamed.
            if total / rate > MAX_IN_MEMORY_SECONDS:
                raise AudioFormatError(f"streaming needs 44.1 kHz audio, this file is {rate} Hz", path=path,
                                       fix="export it at 44.1 kHz")
            return self.encode(read_audio(path), chunk_frames=chunk_frames, progress=progress, cancel=cancel)
        n = self.frames_for(total)
        out = torch.empty(self.dim, n)
        buf = np.zeros((self.channels, 0), np.float32)
        buf_start = 0  # latent frame index of buf[:, 0]
        read_frames = chunk_frames * HOP
        next_keep = 0
        stream = iter_audio_chunks(path, read_frames)
        exhausted = False
        while next_keep < n:
            _check(cancel)
            need_hi = min(n, next_keep + chunk_frames + self.context)
            while not exhausted and buf_start * HOP + buf.shape[1] < need_hi * HOP:
                try:
                    piece = next(stream)
                except StopIteration:
                    exhausted = True
                    break
                buf = np.concatenate([buf, self._prepare_piece(piece)], axis=1)
            a, b = next_keep, min(n, next_keep + chunk_frames)
            lo, hi = max(0, a - self.context), min(n, b + self.context)
            seg = np.zeros((self.channels, (hi - lo) * HOP), np.float32)
            avail = buf[:, (lo - buf_start) * HOP: (hi - buf_start) * HOP]
            seg[:, : avail.shape[1]] = avail
            z = self.encode_batch(torch.from_numpy(seg)[None])[0]
            out[:, a:b] = z[:, a - lo: b - lo].float().cpu()
            next_keep = b
            drop = max(0, (b - self.context) - buf_start)  # keep only the look-back the next chunk needs
            buf = buf[:, drop * HOP:]
            buf_start += drop
            if progress:
                progress(b / n, "encoding")
        return out

    def _prepare_piece(self, piece: Audio) -> np.ndarray:
        samples = piece.samples
        if not np.all(np.isfinite(samples)):
            samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
        piece = Audio(samples, piece.sample_rate)
        if self.channels == 1:
            return piece.with_channels(1).samples
        if piece.channels == 1:
            return piece.with_channels(2).samples
        if piece.channels != 2:
            raise AudioFormatError(f"the mix codec takes mono or stereo audio, got {piece.channels} channels",
                                   fix="export a stereo mix from your DAW")
        return piece.samples

    def decode_to_file(self, latents: torch.Tensor, path: str | Path, length: int | None = None, *,
                       channels: int | None = None, overwrite: bool = False, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
                       progress: Progress | None = None, cancel: Event | None = None) -> Path:
        """Decode straight into a wav/flac file chunk by chunk (bounded memory, atomic, never overwrites)."""
        from pedalboard.io import AudioFile

        z = self._check_latents(latents)
        n = z.shape[-1]
        length = n * HOP if length is None else int(length)
        if length <= 0 or length > n * HOP:
            raise AudioFormatError(f"length {length} does not fit {n} latent frames")
        out_ch = 2 if channels is None else channels
        path = Path(path)
        if path.suffix.lower() not in (".wav", ".flac"):
            raise AudioFileError(f"cannot write '{path.suffix}'", path=path, fix="write .wav or .flac")
        final, tmp = atomic_output(path, overwrite=overwrite)
        try:
            kwargs = {"bit_depth": 24} if path.suffix.lower() == ".flac" else {"bit_depth": 32}
            with AudioFile(str(tmp), "w", samplerate=SAMPLE_RATE, num_channels=out_ch, **kwargs) as f:
                for _start, piece, done in self._decode_chunks(z, length, chunk_frames, cancel):
                    if out_ch == 2 and piece.shape[0] == 1:
                        piece = np.repeat(piece, 2, axis=0)
                    if path.suffix.lower() == ".flac":
                        piece = np.clip(piece, -1.0, 1.0)
                    f.write(np.ascontiguousarray(piece))
                    if progress:
                        progress(done, "decoding")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final


def _check(cancel: Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def shipped_weights_path(role: str) -> Path:
    return WEIGHTS_DIR / role


def load_codec(role: str = "mix", config: str = "shipped", device: str | torch.device = "cpu",
               weights: str | Path | None = None) -> Codec:
    """Load a codec.

    role: "mix" (stereo, dim 64) or "stem" (mono, dim 32).
    config: "shipped" (the trained weights in engines/codec/weights), or "debug" / "small" / "paper" for a
    seeded random initialisation of that size (tests, benchmarks, training starts).
    weights: path to a `*.safetensors` (+ `.json`) written by `backline train codec`; overrides `config`.
    """
    if role not in ("mix", "stem"):
        raise ConfigError(f"unknown codec {role!r}", fix="use 'mix' or 'stem'")
    if weights is not None or config == "shipped":
        path = Path(weights) if weights is not None else shipped_weights_path(role)
        model, meta = load_weights(path, kind=KIND, build=build_model, format_version=FORMAT_VERSION,
                                   map_location=str(device) if str(device).startswith("cuda") else "cpu")
        if model.cfg.role != role:
            raise WeightsError(f"holds the {model.cfg.role} codec, not the {role} codec", path=path,
                               fix=f"load it with role '{model.cfg.role}'")
        return Codec(model, device, meta)
    try:
        cfg = make_config(role, config)
    except ValueError as err:
        raise ConfigError(str(err), fix="use shipped, debug, small or paper") from err
    return Codec(build_model(cfg), device, {"config": cfg.to_dict()})
