"""The one spectral front end (STFT, iSTFT, log-magnitude, mel) and the spectral metrics every benchmark uses.

Everything that looks at a spectrogram in Backline goes through these functions, so a codec trained on
`log_magnitude` sees exactly what a critic, a tagger or a benchmark sees. All functions take tensors shaped
`[..., time]` (any leading batch/channel axes) and work on CPU and CUDA; windows and mel filterbanks are cached
per (size, device, dtype).

Conventions (chosen once, here):
- `stft` is one convention with two backends: a numpy array is transformed with numpy (`np.fft.rfft` of the
  framed signal), so the listener, the role check and the planners' inputs never import torch (its import alone
  cost 1.6 CPU-s, more than a follow take's work); a tensor goes through `torch.stft` (the one torch STFT: the
  codec, separation and their training losses need it on the GPU and differentiable). Both agree to float32
  rounding (tests/test_frontend_numpy.py). The convention: a periodic Hann window, `center=True`, reflect padding where the input is long
  enough (zero padding otherwise, so 1-sample inputs still work) and *no* normalisation, as in paper 000.
  Frames = `T // hop + 1`.
- `log_magnitude` is paper 000's "log-magnitude spectrogram" s = log(|STFT|² + ε), ε = 1e-5 (log power; it is
  2·log|X| up to ε, the paper's definition).
- `log_mel` defaults to 128 HTK mel bins (paper 000's mel critic) but every parameter is open so the tagger
  (64 bins, 16 kHz) and the SimCLR encoder (96 HTK bins, 25 ms window, FFT 2048) use the same code.

Metrics (lower is better, all averaged over leading axes):
- `mr_stft_distance`: multi-resolution STFT distance (spectral convergence + L1 of log-magnitudes, power floored
  at 1e-8) averaged over FFT sizes 512/1024/2048 (hop = FFT/4, Hann), the auraloss/Parallel-WaveGAN definition.
- `log_spectral_distance`: LSD in dB, sqrt(mean_f (10·log10 P − 10·log10 P̂)²) averaged over frames.
- `mel_l1`: mean |log-mel − log-mel̂| with natural log, 128 bins, FFT 2048, hop 512.
- `multiscale_spectral_distance`: paper 000's training loss L_mssd = Σ_h mean|STFT_h(w)² − STFT_h(ŵ)²| with
  hops {2^5..2^9, 2^11, 2^12} and window 4·hop (unnormalised power, mean over bins per scale, summed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from backline.engines.core.dsp import onset_strength, power_to_db

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from backline.engines.core.audio import Audio

LOG_EPS = 1e-5
MSSD_HOPS: tuple[int, ...] = (2**5, 2**6, 2**7, 2**8, 2**9, 2**11, 2**12)
MR_STFT_FFTS: tuple[int, ...] = (512, 1024, 2048)


@lru_cache(maxsize=64)
def _hann(win_length: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    import torch  # lazy: tensors only (see the module docstring)

    # built outside inference mode: a cached "inference tensor" could not be saved for backward later
    with torch.inference_mode(False):
        return torch.hann_window(win_length, periodic=True, dtype=dtype, device=torch.device(device))


def hann_window(win_length: int, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
    """Cached periodic Hann window (the only analysis window in Backline); float32 unless `dtype` says."""
    import torch  # lazy: tensors only

    return _hann(int(win_length), str(device), dtype or torch.float32)


@lru_cache(maxsize=64)
def hann_array(win_length: int, dtype: str = "float32") -> np.ndarray:
    """`hann_window` as a numpy array (periodic: 0.5 − 0.5·cos(2πn/N)), for the numpy STFT."""
    n = np.arange(win_length, dtype=np.float64)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)).astype(dtype)
    w.flags.writeable = False
    return w


def as_tensor(x: torch.Tensor | np.ndarray | Audio) -> torch.Tensor:
    """Accept a tensor, a numpy array or an `Audio` and return a float tensor `[..., time]`."""
    import torch  # lazy: tensors only

    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    samples = getattr(x, "samples", x)
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))


def stft(x: torch.Tensor, n_fft: int = 1024, hop: int = 256, win_length: int | None = None, *,
         pad_mode: str = "reflect", window: str = "hann", contiguous: bool = True) -> torch.Tensor:
    """Complex STFT `[..., n_fft//2+1, T//hop+1]` of `x [..., T]` (centred, Hann, unnormalised).

    `pad_mode="constant"` pads the centring with zeros (librosa's default since 0.10: the listener's features were
    fitted on it); `window="ones"` is the rectangular frame the CQT's frequency-domain filters need. A numpy `x`
    gives a numpy array (computed with numpy), a tensor a tensor (`torch.stft`). `contiguous=False` (numpy only)
    returns the numpy result as a transposed view of the FFT's `[..., frames, F]` output instead of a copy: the
    copy was a quarter of the listener's STFT time, and the mel, CQT and tuning products read either layout to the
    same bits (a reduction along frames may not: summation order follows memory, so the default keeps the copy)."""
    win_length = win_length or n_fft
    if isinstance(x, np.ndarray):
        return _stft_numpy(x, n_fft, hop, win_length, pad_mode, window, contiguous)
    import torch  # lazy: the tensor backend (training, GPU, the codec)

    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # torch.stft has no bf16/fp16 kernels on CPU
    if pad_mode == "reflect" and shape[-1] <= n_fft // 2:
        pad_mode = "constant"
    win = (hann_window(win_length, flat.device, flat.dtype) if window == "hann"
           else torch.ones(win_length, dtype=flat.dtype, device=flat.device))
    spec = torch.stft(flat, n_fft, hop_length=hop, win_length=win_length, window=win, center=True, pad_mode=pad_mode,
                      normalized=False, onesided=True, return_complex=True)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def _stft_numpy(x: np.ndarray, n_fft: int, hop: int, win_length: int, pad_mode: str, window: str,
                contiguous: bool = True) -> np.ndarray:
    """`stft` of a numpy array: the same frames as `torch.stft(center=True)` (the window centred in the FFT frame
    when it is shorter), complex64 for float32 input (complex128 for float64)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if pad_mode == "reflect" and shape[-1] <= n_fft // 2:
        pad_mode = "constant"
    padded = np.pad(flat, ((0, 0), (n_fft // 2, n_fft // 2)), mode=pad_mode)
    win = hann_array(win_length, flat.dtype.name) if window == "hann" else np.ones(win_length, flat.dtype)
    if win_length < n_fft:
        left = (n_fft - win_length) // 2
        win = np.pad(win, (left, n_fft - win_length - left))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]  # [B, T, n_fft], a view
    spec = np.fft.rfft(frames * win, axis=-1)  # [B, T, F]
    spec = spec.transpose(0, 2, 1)
    return (np.ascontiguousarray(spec) if contiguous else spec).reshape(*shape[:-1], n_fft // 2 + 1, -1)


def istft(spec: torch.Tensor, n_fft: int = 1024, hop: int = 256, length: int | None = None,
          win_length: int | None = None) -> torch.Tensor:
    """Inverse of `stft` (overlap-add with the same window); `length` trims/pads to an exact sample count."""
    import torch  # lazy: the tensor backend

    win_length = win_length or n_fft
    shape = spec.shape
    flat = spec.reshape(-1, *shape[-2:])
    real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
    if flat.dtype not in (torch.complex64, torch.complex128):
        flat = flat.to(torch.complex64)
    wav = torch.istft(flat, n_fft, hop_length=hop, win_length=win_length,
                      window=hann_window(win_length, flat.device, real_dtype), center=True,
                      normalized=False, onesided=True, length=length)
    return wav.reshape(*shape[:-2], wav.shape[-1])


def log_magnitude(x: torch.Tensor, n_fft: int = 1024, hop: int = 256, eps: float = LOG_EPS) -> torch.Tensor:
    """Paper 000's log-magnitude spectrogram log(|STFT|² + ε) `[..., F, frames]` of a waveform `[..., T]`."""
    return log_power(stft(x, n_fft, hop), eps)


def log_power(spec: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """log(|X|² + ε) of an already computed complex spectrogram."""
    import torch  # lazy: the tensor backend

    return torch.log(spec.real.square() + spec.imag.square() + eps)


def _hz_to_mel(f: float, mel_scale: str) -> float:
    if mel_scale == "htk":
        return 2595.0 * math.log10(1.0 + f / 700.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    return f / f_sp if f < min_log_hz else min_log_hz / f_sp + math.log(f / min_log_hz) / logstep


def _mel_to_hz(mels: np.ndarray, mel_scale: str) -> np.ndarray:
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@lru_cache(maxsize=32)
def _mel_fb(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int, mel_scale: str,
            norm: str | None) -> np.ndarray:
    """torchaudio's `melscale_fbanks` (triangles between mel-spaced points, the FFT bins on 0 … sr // 2, slaney
    area normalisation) in numpy. 128 bins over a 1024-point FFT leave a few lowest bands empty: they read a
    constant log(ε), harmless."""
    if mel_scale not in ("htk", "slaney") or norm not in (None, "slaney"):
        raise ValueError(f"mel_scale {mel_scale!r} / norm {norm!r}: use htk or slaney, None or slaney")
    # float64 (torchaudio's float32 points differ from these by float32 rounding, ~2e-6 of a weight)
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs, dtype=np.float32).astype(np.float64)
    m_pts = np.linspace(_hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale), n_mels + 2)
    f_pts = _mel_to_hz(m_pts, mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    fb = np.maximum(0.0, np.minimum(-slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]))
    if norm == "slaney":
        fb *= 2.0 / (f_pts[2:n_mels + 2] - f_pts[:n_mels])
    fb = fb.astype(np.float32)
    fb.flags.writeable = False
    return fb  # [n_freqs, n_mels]


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 128, f_min: float = 0.0, f_max: float | None = None,
                   mel_scale: str = "htk", norm: str | None = None, device: torch.device | str | None = None):
    """Cached mel filterbank `[n_fft//2+1, n_mels]` (torchaudio's definition): a numpy array, or a tensor on
    `device` when one is given."""
    f_max = float(sample_rate) / 2 if f_max is None else float(f_max)
    key = (n_fft // 2 + 1, float(f_min), f_max, int(n_mels), int(sample_rate), mel_scale, norm)
    return _mel_fb(*key) if device is None else _mel_fb_tensor(key, str(device))


@lru_cache(maxsize=32)
def _mel_fb_tensor(key: tuple, device: str) -> torch.Tensor:
    import torch  # lazy: the tensor backend

    with torch.inference_mode(False):  # cached: must not be an inference tensor (see _hann)
        return torch.from_numpy(np.array(_mel_fb(*key))).to(torch.device(device))


def mel_spectrogram(x, sample_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 128,
                    win_length: int | None = None, f_min: float = 0.0, f_max: float | None = None,
                    mel_scale: str = "htk", norm: str | None = None, power: float = 2.0,
                    pad_mode: str = "reflect"):
    """Mel power (or magnitude, power=1) spectrogram `[..., n_mels, frames]` (numpy in, numpy out; a tensor in, a
    tensor out). With `mel_scale="slaney"`, `norm="slaney"` and `pad_mode="constant"` it is librosa's
    `feature.melspectrogram` (the listener's)."""
    if isinstance(x, np.ndarray):
        spec = np.abs(stft(x, n_fft, hop, win_length, pad_mode=pad_mode, contiguous=False))
        if power != 1.0:
            spec = spec**power
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm).astype(spec.dtype)
        return np.swapaxes(np.swapaxes(spec, -1, -2) @ fb, -1, -2)
    import torch  # lazy: the tensor backend

    spec = stft(x, n_fft, hop, win_length, pad_mode=pad_mode).abs()
    if power != 1.0:
        spec = spec.pow(power)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm, spec.device).to(spec.dtype)
    return torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)


def log_mel(x: torch.Tensor, sample_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 128,
            win_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, mel_scale: str = "htk",
            norm: str | None = None, eps: float = LOG_EPS) -> torch.Tensor:
    """log(mel power + ε) `[..., n_mels, frames]` — the critic's, the tagger's and the metrics' mel."""
    import torch  # lazy: the tensor backend

    return torch.log(mel_spectrogram(x, sample_rate, n_fft, hop, n_mels, win_length, f_min, f_max, mel_scale, norm) + eps)


# --- losses and metrics ----------------------------------------------------------------------------------------

def multiscale_spectral_distance(ref: torch.Tensor, est: torch.Tensor, hops: Sequence[int] = MSSD_HOPS) -> torch.Tensor:
    """Paper 000's L_mssd: Σ_h mean |STFT_h(w)² − STFT_h(ŵ)²| with window 4·hop (differentiable)."""

    total = ref.new_zeros(())
    for hop in hops:
        n_fft = 4 * hop
        a = stft(ref, n_fft, hop).abs().square()
        b = stft(est, n_fft, hop).abs().square()
        total = total + (a - b).abs().mean()
    return total


def _pair(ref, est) -> tuple[torch.Tensor, torch.Tensor]:
    ref, est = as_tensor(ref).float(), as_tensor(est).float()
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate differ in shape: {tuple(ref.shape)} vs {tuple(est.shape)}")
    return ref, est.to(ref.device)


def mr_stft_distance(ref, est, ffts: Sequence[int] = MR_STFT_FFTS, eps: float = 1e-8) -> float:
    """Multi-resolution STFT distance: mean over FFT sizes of spectral convergence + mean |log|X| − log|X̂||.

    Magnitudes are sqrt(max(|X|², ε)) with ε = 1e-8 as in auraloss' STFTLoss, so bins below −80 dB (re. an
    unnormalised-STFT magnitude of 1) count as equal instead of letting digital silence dominate the log term."""
    import torch  # lazy: the tensor backend (metrics, losses, the codec's phase)

    ref, est = _pair(ref, est)
    total = 0.0
    with torch.no_grad():
        for n_fft in ffts:
            a = stft(ref, n_fft, n_fft // 4).abs().square().clamp_min(eps).sqrt()
            b = stft(est, n_fft, n_fft // 4).abs().square().clamp_min(eps).sqrt()
            sc = torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a).clamp_min(eps)
            mag = (torch.log(a) - torch.log(b)).abs().mean()
            total += float(sc) + float(mag)
    return total / len(ffts)


def log_spectral_distance(ref, est, n_fft: int = 2048, hop: int = 512, eps: float = 1e-10) -> float:
    """LSD in dB: per frame sqrt(mean over bins of (10·log10 P − 10·log10 P̂)²), averaged over frames/channels."""
    import torch  # lazy: the tensor backend (metrics, losses, the codec's phase)

    ref, est = _pair(ref, est)
    with torch.no_grad():
        p = stft(ref, n_fft, hop).abs().square()
        q = stft(est, n_fft, hop).abs().square()
        diff = 10 * torch.log10(p + eps) - 10 * torch.log10(q + eps)
        return float(diff.square().mean(dim=-2).sqrt().mean())


def mel_l1(ref, est, sample_rate: int = 44100, n_mels: int = 128, n_fft: int = 2048, hop: int = 512) -> float:
    """Mean absolute difference of natural-log mel power spectrograms (ε = 1e-5)."""
    import torch  # lazy: the tensor backend (metrics, losses, the codec's phase)

    ref, est = _pair(ref, est)
    with torch.no_grad():
        return float((log_mel(ref, sample_rate, n_fft, hop, n_mels) - log_mel(est, sample_rate, n_fft, hop, n_mels))
                     .abs().mean())


def spectral_metrics(ref, est, sample_rate: int = 44100) -> dict[str, float]:
    """All three benchmark figures at once: {'mr_stft', 'lsd_db', 'mel_l1'}."""
    return {"mr_stft": mr_stft_distance(ref, est), "lsd_db": log_spectral_distance(ref, est),
            "mel_l1": mel_l1(ref, est, sample_rate)}


# --- phase from magnitude ----------------------------------------------------------------------------------------

def spsi_phase(log_mag: torch.Tensor, n_fft: int = 1024, hop: int = 256, carry: torch.Tensor | None = None,
               carry_frame: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-pass spectrogram inversion (Beauregard, Harish & Wyse 2015): a phase for `log_mag [..., F, frames]`.

    `log_mag` is a log-magnitude in any log unit (log power, as the codec decodes, works the same: the peak
    search and the parabolic interpolation are invariant to scaling), so no exp/log round trip is spent.

    Why: a magnitude-only decoder needs a phase that advances with each partial's true frequency; a constant or
    random phase overlap-adds one grain per hop (the 172 Hz buzz) or smears. Per frame, every local maximum of the
    log-magnitude is a partial whose frequency comes from parabolic interpolation; each bin integrates (cumsum over
    frames) the frequency of the partial nearest to it, and is then locked to that partial's phase with the
    −π-per-bin offset of a Hann window referenced to the frame start (identity phase locking, Laroche & Dolson).
    Fully vectorised: a few tensor passes, no iteration. Deterministic and not differentiable (use it detached).

    Blocks of a long signal continue each other's phase: pass the previous block's accumulated phase at the frame
    before this block's first kept frame as `carry [..., F]` and that kept frame's index as `carry_frame`.
    Returns (phase, accumulated) with `accumulated [..., F, frames]` (wrapped to [0, 2π)) for the next block's
    carry. Costs a few element-wise passes (no iteration); float32 keeps the running sum within ~2 mrad over one
    codec chunk (4,096 frames), and the carry is wrapped.
    """
    import torch  # lazy: the tensor backend (the codec's phase)
    from torch.nn import functional as F

    m = log_mag.float().transpose(-1, -2).clamp_min(-1e4)  # [..., frames, F] (contiguous bins); log 0 = -inf is floored
    n_bins = m.shape[-1]
    left, centre, right = m[..., :-2], m[..., 1:-1], m[..., 2:]
    is_peak = (centre > left) & (centre >= right)
    offset = (0.5 * (left - right) / (left - 2 * centre + right).clamp(max=-1e-6)).clamp_(-0.5, 0.5)
    inner = torch.arange(1, n_bins - 1, dtype=m.dtype, device=m.device)
    far = 1e9
    below = torch.cummax(F.pad(torch.where(is_peak, inner, -far), (1, 1), value=-far), dim=-1).values
    above = torch.cummax(F.pad(torch.where(is_peak, -inner, -far), (1, 1), value=-far).flip(-1), dim=-1).values.flip(-1).neg_()
    bins = torch.arange(n_bins, dtype=m.dtype, device=m.device)
    nearest = torch.where((bins - below) <= (above - bins), below, above)
    nearest = torch.where(nearest.abs() > 1e8, bins, nearest)  # a frame without peaks: every bin is its own
    owner = nearest.long()
    # radians per frame of each bin's partial, wrapped so a float32 running sum stays precise over a chunk
    advance = torch.gather(F.pad(offset, (1, 1)) + bins, -1, owner).mul_(2 * np.pi * hop / n_fft).remainder_(2 * np.pi)
    accumulated = torch.cumsum(advance, dim=-2)
    if carry is not None:
        before = accumulated[..., carry_frame - 1, :] if carry_frame > 0 else torch.zeros_like(accumulated[..., 0, :])
        accumulated = accumulated + (carry.to(accumulated.dtype) - before).unsqueeze(-2)
    accumulated = accumulated.remainder_(2 * np.pi)
    phase = torch.gather(accumulated, -1, owner) - np.pi * (bins - nearest)
    return phase.transpose(-1, -2), accumulated.transpose(-1, -2)


def griffin_lim(mag: torch.Tensor, phase: torch.Tensor, n_iter: int, n_fft: int = 1024, hop: int = 256,
                length: int | None = None, momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) from an initial `phase`; returns the waveform `[..., T]`.

    Why here and not torchaudio's `griffinlim`: that one starts from a random or zero phase only; starting from
    SPSI's phase is what makes a handful of iterations enough. Uses this module's STFT pair, so frames line up
    with `stft` (the codec keeps `T // hop` frames: the centred STFT's extra last frame is dropped)."""
    import torch  # lazy: the tensor backend (metrics, losses, the codec's phase)

    frames = mag.shape[-1]
    length = length or frames * hop
    spec = torch.polar(mag, phase)
    previous = spec
    for _ in range(n_iter):  # iterate on the full frames·hop signal: a trimmed one has fewer frames
        projected = stft(istft(spec, n_fft, hop, length=frames * hop), n_fft, hop)[..., :frames]
        accelerated = projected + momentum * (projected - previous)
        previous = projected
        spec = torch.polar(mag, torch.angle(accelerated))
    return istft(spec, n_fft, hop, length=length)


# --- constant-Q and pitch features (the listener's) ------------------------------------------------------------
#
# Ports of librosa 0.11's `cqt`, `chroma_cqt`, `estimate_tuning` and `mel_frequencies` (ISC licence) onto the STFT
# above (the CQT's octave halving is librosa's soxr filter, `_halve_rate`): the listener's constants (TEMPO_WEIGHTS,
# the chord thresholds) were fitted on librosa's features, so these follow its algorithms step for step; importing
# librosa (scipy, numba and its JIT caches) cost more CPU at start-up than the whole take
# (tests/test_listen_features.py compares the two).

def mel_frequencies(n_mels: int = 128, f_min: float = 0.0, f_max: float = 11025.0) -> np.ndarray:
    """Centre frequencies (Hz) of `n_mels` Slaney-scale mel bands (librosa's `mel_frequencies`, htk=False)."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + np.log(f / min_log_hz) / logstep

    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels)
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def onset_envelope(y: np.ndarray, sr: int, hop: int, n_fft: int = 2048, n_mels: int = 128) -> np.ndarray:
    """Spectral-flux onset envelope of a mono signal (librosa's `onset.onset_strength(y=...)`): the mean rise of a
    Slaney-mel power spectrogram in dB (`core.dsp.onset_strength`), one value per `hop`."""
    mel = mel_spectrogram(np.asarray(y, np.float32), sr, n_fft, hop, n_mels, mel_scale="slaney", norm="slaney",
                          pad_mode="constant")
    return onset_strength(power_to_db(mel), n_fft, hop)


def midi_to_hz(pitch: float) -> float:
    """Frequency of a (fractional) MIDI pitch, A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def estimate_tuning(y: np.ndarray, sr: int, bins_per_octave: int = 12, n_fft: int = 2048,
                    resolution: float = 0.01) -> float:
    """Deviation of the music's tuning from A440 in fractions of a bin (librosa's `estimate_tuning`): the
    parabolically interpolated STFT peaks between 150 Hz and 4 kHz above a tenth of their frame's maximum, those
    at least as strong as the median peak, folded into one bin; the histogram's mode."""
    mag = np.abs(stft(np.asarray(y, np.float32), n_fft, n_fft // 4, pad_mode="constant", contiguous=False))  # [F, frames]
    freqs = np.arange(mag.shape[0]) * float(sr) / n_fft
    avg = np.gradient(mag, axis=0)
    a = mag[2:] + mag[:-2] - 2 * mag[1:-1]
    b = (mag[2:] - mag[:-2]) / 2
    shift = np.zeros_like(mag)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift[1:-1] = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    gated = mag * (mag > 0.1 * mag.max(axis=0, keepdims=True))
    peak = np.zeros_like(mag, dtype=bool)
    peak[1:-1] = (gated[1:-1] > gated[:-2]) & (gated[1:-1] >= gated[2:])
    peak[-1] = gated[-1] > gated[-2]
    peak &= ((freqs >= 150.0) & (freqs < min(4000.0, sr / 2)))[:, None]
    k, t = np.nonzero(peak)
    pitch = (k + shift[k, t]) * float(sr) / n_fft
    strength = mag[k, t] + 0.5 * avg[k, t] * shift[k, t]
    keep = pitch > 0
    if not keep.any():
        return 0.0
    pitch = pitch[keep & (strength >= np.median(strength[keep]))]
    pitch = pitch[pitch > 0]
    if not len(pitch):
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(pitch / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    counts, edges = np.histogram(residual, np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1))
    return float(edges[np.argmax(counts)])


_HANN_BANDWIDTH = 1.50018310546875  # librosa's WINDOW_BANDWIDTHS["hann"]: a Hann window's bandwidth in bins


def _relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    logf = np.log2(freqs)
    bpo = np.empty_like(freqs)
    bpo[0], bpo[-1] = 1 / (logf[1] - logf[0]), 1 / (logf[-1] - logf[-2])
    bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    return (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)


@lru_cache(maxsize=16)
def _cqt_octave_basis(sr: float, freqs: tuple[float, ...], alpha: tuple[float, ...],
                      sparsity: float = 0.01) -> tuple[np.ndarray, int]:
    """One octave's filters in the frequency domain `[bins, n_fft//2+1]` (complex64) and their FFT size: Hann-
    windowed complex sinusoids, each `Q·sr/f` samples, L1-normalised and scaled by length/n_fft, with each row's
    smallest coefficients (1 % of its mass) zeroed as librosa's sparse basis does."""
    f, al = np.asarray(freqs), np.asarray(alpha)
    lengths = (1.0 / al) * sr / f
    n_fft = int(2.0 ** np.ceil(np.log2(lengths.max())))
    basis = np.zeros((len(f), n_fft), dtype=np.complex64)
    for i, (ilen, freq) in enumerate(zip(lengths, f)):
        t = np.arange(-ilen // 2, ilen // 2, dtype=float)
        sig = np.exp(1j * 2 * np.pi * freq / sr * t)
        n = len(sig)
        sig = sig * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n))  # periodic Hann
        sig = sig / np.abs(sig).sum()
        lpad = (n_fft - n) // 2
        basis[i, lpad:lpad + n] = sig * (ilen / n_fft)
    fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, :n_fft // 2 + 1].astype(np.complex64)
    mags = np.abs(fft_basis)
    mag_sort = np.sort(mags, axis=1)
    cumulative = np.cumsum(mag_sort / mags.sum(axis=1, keepdims=True), axis=1)
    cut = mag_sort[np.arange(len(f)), np.argmin(cumulative < sparsity, axis=1)]
    fft_basis[mags < cut[:, None]] = 0
    fft_basis.flags.writeable = False
    return fft_basis, n_fft


def _halve_rate(x: np.ndarray, factor: int) -> np.ndarray:
    """`x` at 1/`factor` of its rate, scaled by √factor (energy per sample kept), with soxr's HQ filter: librosa's
    octave decimation exactly. Not `core.audio.resample` (the project's resampler everywhere else): the chords and
    the meter read the CQT's lowest octaves down to their window tails, and with the Kaiser-sinc filter one clip of
    27 (the four-part set's haydn op. 1 no. 3/iii) changed its heard meter from 4/4 to 3/4 and two more a few
    chords; with soxr all 27 listen exactly as before."""
    import soxr  # lazy: only the listener's CQT needs it (a small C library, librosa's own resampler)

    n = int(np.ceil(len(x) / factor))
    y = soxr.resample(x, factor, 1, quality="soxr_hq")
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return (y / np.sqrt(1.0 / factor)).astype(np.float32)


def cqt_magnitude(y: np.ndarray, sr: int, hop: int, fmin: float, n_bins: int, bins_per_octave: int,
                  tuning: float = 0.0) -> np.ndarray:
    """|CQT| `[n_bins, frames]` (float32; frames = len(y)//hop + 1) — librosa's `cqt` (Hann filters, filter
    scale 1, L1 norm, `scale=True`): each octave from the top is the frequency-domain filter bank applied to a
    rectangular-window STFT, then the signal is halved in rate (`_halve_rate`) and the hop with it."""
    n_octaves = int(np.ceil(n_bins / bins_per_octave))
    fmin = fmin * 2.0 ** (tuning / bins_per_octave)
    ratios = 2.0 ** (np.arange(bins_per_octave, dtype=float) / bins_per_octave)
    freqs = np.sort(np.multiply.outer(2.0 ** np.arange(n_octaves), ratios).ravel()[:n_bins]) * fmin
    alpha = _relative_bandwidth(freqs)
    lengths = (1.0 / alpha) * sr / freqs
    cutoff = float(np.max(freqs * (1 + 0.5 * _HANN_BANDWIDTH * alpha)))
    if cutoff > sr / 2:
        raise ValueError(f"a CQT up to {freqs[-1]:.0f} Hz does not fit under the Nyquist frequency {sr / 2:.0f} Hz")
    # librosa first decimates by whole octaves that the filters and the hop allow (none for the listener's CQT)
    twos = (hop & -hop).bit_length() - 1
    early = min(max(0, int(np.ceil(np.log2(sr / 2 / cutoff)) - 1) - 1), max(0, twos - n_octaves + 1))
    x = np.ascontiguousarray(y, dtype=np.float32)
    my_sr, my_hop = float(sr), hop
    if early:
        x = _halve_rate(x, 2 ** early)
        my_sr, my_hop = my_sr / 2 ** early, hop // 2 ** early
    base_sr = my_sr
    octaves = []
    for i in range(n_octaves):
        sl = slice(n_bins - bins_per_octave * (i + 1), n_bins - bins_per_octave * i)
        sl = slice(max(0, sl.start), sl.stop)
        basis, n_fft = _cqt_octave_basis(my_sr, tuple(freqs[sl]), tuple(alpha[sl]))
        spec = stft(x, n_fft, my_hop, pad_mode="constant", window="ones", contiguous=False)
        octaves.append((basis * np.float32(np.sqrt(base_sr / my_sr))) @ spec)
        if my_hop % 2 == 0:
            my_hop //= 2
            my_sr /= 2.0
            x = _halve_rate(x, 2)
    frames = min(o.shape[-1] for o in octaves)
    out = np.abs(np.concatenate([o[:, :frames] for o in reversed(octaves)], axis=0))
    return out / np.sqrt(lengths).astype(np.float32)[:, None]


def chroma_from_cqt(cqt: np.ndarray, bins_per_octave: int, fmin: float, normalise: bool = True) -> np.ndarray:
    """[12, frames] chroma of a |CQT| starting at `fmin` (librosa's `chroma_cqt` on a given CQT): each pitch class
    sums its bins (a semitone's `bins_per_octave/12` bins centred on it); `normalise` scales each frame's peak to 1
    (frames that are all zero stay zero)."""
    merge = bins_per_octave // 12
    n_input = cqt.shape[0]
    fold = np.roll(np.repeat(np.eye(12), merge, axis=1), -(merge // 2), axis=1)
    fold = np.tile(fold, int(np.ceil(n_input / bins_per_octave)))[:, :n_input]
    midi0 = np.mod(12 * np.log2(fmin / 440.0) + 69, 12)
    fold = np.roll(fold, int(np.round(midi0)), axis=0).astype(np.float32)
    chroma = np.maximum(fold @ cqt, 0.0)
    if not normalise:
        return chroma
    peak = chroma.max(axis=0, keepdims=True).astype(float)
    peak[peak < np.finfo(chroma.dtype).tiny] = 1.0
    return (chroma / peak).astype(chroma.dtype)
