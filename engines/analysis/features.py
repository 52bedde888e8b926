"""Front ends of the listening models: MusiCoder's 324-dim frame features and SimCLR's 96-bin log-mel.

Everything runs at 16 kHz mono (`FEATURE_SR`): the mix is resampled once with the project's one resampler
(`backline.engines.core.audio.resample`) and both front ends read that signal, so one analysis costs one
resample. Torchaudio transforms do the STFT, mel scale, DCT (MFCC) and deltas; torchaudio has no chroma and
no constant-Q transform, so both are small documented filterbanks applied to the same power STFT:

* **Chroma (12)**: each STFT bin votes for its pitch class with a Gaussian of 1 semitone width around its
  fractional MIDI pitch, restricted to 30 Hz – 5 kHz; frames are normalised by their maximum (librosa's
  `chroma_stft` convention).
* **CQT (144)**: a *pseudo*-CQT (the idea of librosa's `pseudo_cqt`): 24 bins per octave over 6 octaves from
  C1 (32.7 Hz) to B6, each bin a Gaussian in linear frequency with the constant-Q bandwidth f_k / Q
  (Q = 1 / (2^(1/24) − 1)), widened to at least 1.5 STFT bins where the 2048-point STFT is coarser than the
  quarter-tone spacing (below ~250 Hz) so no bin is empty. Time resolution is the STFT's (20 ms), not the
  frequency-dependent one of a true CQT: the price of computing it in the same pass. Output in dB.
* MFCC (20) and ΔMFCC (20) come from the 128-bin log-mel (DCT-II, ortho), deltas over 5 frames.

Frame rate: hop 320 samples = 20 ms (50 frames/s), window/FFT 2048 (128 ms, enough resolution for the
low CQT bins); 30 s is 1501 frames, inside MusiCoder's 1600-frame maximum.

CMVN: the paper normalises every dimension to zero mean and unit variance. We use *global* statistics
fitted on the training corpus (stored with the model, `CMVN`), not per-clip statistics: per-clip
normalisation would blow silence or a lone quiet instrument up to full-scale noise and would make a 1 s clip
and a 30 s clip look alike; global CMVN keeps level information, which the tagger needs to say "nothing
plays here". `cmvn_utterance` is provided for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from backline.engines.core.audio import Audio, resample
from backline.engines.core.errors import AudioFormatError

if TYPE_CHECKING:  # pragma: no cover
    import torch

FEATURE_SR = 16000
HOP = 320
N_FFT = 2048
N_MELS = 128
N_MFCC = 20
CQT_BINS = 144
CQT_BINS_PER_OCTAVE = 24
CQT_FMIN = 32.703195662574764  # C1
FEATURE_DIM = 12 + N_MFCC + N_MFCC + N_MELS + CQT_BINS  # 324

#: name -> (start, stop) of each block in the 324-dim frame vector.
FEATURE_SLICES: dict[str, tuple[int, int]] = {
    "chroma": (0, 12),
    "mfcc": (12, 32),
    "delta_mfcc": (32, 52),
    "logmel": (52, 180),
    "cqt": (180, 324),
}
DB_FLOOR = 1e-10  # -100 dB: silence maps to a fixed floor, not to -inf or to a per-clip minimum

# SimCLR front end (paper 002a): 96 HTK mel bins 0-8 kHz, 25 ms window, 2048-point FFT, 10 ms hop.
SIMCLR_N_MELS = 96
SIMCLR_HOP = 160
SIMCLR_WIN = 400
SIMCLR_FRAMES_PER_S = FEATURE_SR // SIMCLR_HOP  # 100


def to_feature_rate(audio: Audio | np.ndarray | torch.Tensor, sample_rate: int | None = None) -> np.ndarray:
    """Mono float32 array [frames] at 16 kHz. Accepts `Audio`, or an array/tensor [frames] or [ch, frames]
    together with its `sample_rate`."""
    if isinstance(audio, Audio):
        samples, rate = audio.samples, audio.sample_rate
    else:
        if sample_rate is None:
            raise AudioFormatError("raw samples need their sample_rate", fix="pass sample_rate=... or an Audio")
        samples, rate = audio, int(sample_rate)
    x = np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(0)
    if x.ndim != 1:
        raise AudioFormatError(f"audio must be [frames] or [channels, frames], got shape {tuple(x.shape)}")
    if rate != FEATURE_SR:
        x = resample(x, rate, FEATURE_SR)
    return np.ascontiguousarray(x, dtype=np.float32)


@lru_cache(maxsize=8)
def chroma_filterbank(n_fft: int = N_FFT, sr: int = FEATURE_SR, fmin: float = 30.0, fmax: float = 5000.0) -> np.ndarray:
    """[12, n_freq] float32 weights: STFT bin -> pitch class (Gaussian, 1 semitone std, circular)."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((12, freqs.size))
    valid = (freqs >= fmin) & (freqs <= fmax)
    midi = 69 + 12 * np.log2(freqs[valid] / 440.0)
    for pc in range(12):
        d = np.remainder(midi - pc + 6, 12) - 6  # circular distance in semitones
        fb[pc, valid] = np.exp(-0.5 * d**2)
    fb = fb.astype(np.float32)
    fb.flags.writeable = False
    return fb


@lru_cache(maxsize=8)
def cqt_filterbank(n_fft: int = N_FFT, sr: int = FEATURE_SR, n_bins: int = CQT_BINS,
                   bins_per_octave: int = CQT_BINS_PER_OCTAVE, fmin: float = CQT_FMIN) -> np.ndarray:
    """[n_bins, n_freq] float32 pseudo-CQT weights (Gaussian bands of constant Q, rows sum to 1)."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    df = sr / n_fft
    q = 1.0 / (2 ** (1.0 / bins_per_octave) - 1)
    centres = fmin * 2.0 ** (np.arange(n_bins, dtype=np.float64) / bins_per_octave)
    if float(centres[-1]) >= sr / 2:
        raise ValueError("CQT range exceeds Nyquist")
    width = np.maximum(centres / q, 1.5 * df)  # bandwidth, at least 1.5 STFT bins
    fb = np.exp(-0.5 * ((freqs[None, :] - centres[:, None]) / (0.5 * width[:, None])) ** 2)
    fb = (fb / fb.sum(1, keepdims=True)).astype(np.float32)
    fb.flags.writeable = False
    return fb


@lru_cache(maxsize=4)
def dct_matrix(n_mfcc: int = N_MFCC, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, n_mfcc] DCT-II, orthonormal (torchaudio's `create_dct(norm="ortho")`)."""
    n = np.arange(n_mels, dtype=np.float64)
    k = np.arange(n_mfcc, dtype=np.float64)[:, None]
    dct = np.cos(math.pi / n_mels * (n + 0.5) * k)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / n_mels)
    out = dct.T.astype(np.float32)
    out.flags.writeable = False
    return out


def deltas(x: np.ndarray, win_length: int = 5) -> np.ndarray:
    """Delta coefficients along the last axis (torchaudio's `compute_deltas`: Σ k·x[t+k] / Σ k², edges repeated)."""
    n = (win_length - 1) // 2
    denom = n * (n + 1) * (2 * n + 1) / 3
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n, n)], mode="edge")
    t = x.shape[-1]
    out = sum(k * padded[..., n + k: n + k + t] for k in range(-n, n + 1))
    return (out / denom).astype(x.dtype)


def musicoder_features(wav: np.ndarray) -> np.ndarray:
    """Waveform at 16 kHz [N] or [B, N] (float32) -> frames [T, 324] or [B, T, 324] (un-normalised; apply the
    encoder's CMVN after): chroma, MFCC, ΔMFCC, log-mel, pseudo-CQT of one power STFT (see the module docstring)."""
    from backline.engines.core.frontend import mel_filterbank, stft  # lazy: keeps `--help` light

    x = np.asarray(wav, dtype=np.float32)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[None]
    spec = stft(x, N_FFT, HOP)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)  # [B, F, T]
    fb = mel_filterbank(FEATURE_SR, N_FFT, N_MELS, 30.0, FEATURE_SR / 2, "slaney", "slaney")
    logmel = 10.0 * np.log10(np.maximum(np.swapaxes(np.swapaxes(power, 1, 2) @ fb, 1, 2), DB_FLOOR))  # [B, 128, T]
    mfcc = np.einsum("bmt,mc->bct", logmel, dct_matrix())
    dmfcc = deltas(mfcc)
    chroma = np.einsum("cf,bft->bct", chroma_filterbank(), power)
    chroma = chroma / np.maximum(chroma.max(1, keepdims=True), 1e-8)
    cqt = 10.0 * np.log10(np.maximum(np.einsum("kf,bft->bkt", cqt_filterbank(), power), DB_FLOOR))
    feats = np.concatenate([chroma, mfcc, dmfcc, logmel, cqt], axis=1).transpose(0, 2, 1).astype(np.float32)
    return feats[0] if squeeze else feats


class MusiCoderFeatures:
    """`musicoder_features` for tensors too (training batches): a tensor in, a tensor out on the same device,
    computed by the one numpy implementation."""

    def __call__(self, wav):
        if isinstance(wav, np.ndarray):
            return musicoder_features(wav)
        import torch  # lazy: a tensor came in

        return torch.from_numpy(musicoder_features(wav.detach().cpu().numpy())).to(wav.device)

    def to(self, _device) -> MusiCoderFeatures:  # kept for callers that moved the old torch module
        return self


def cmvn_utterance(frames: torch.Tensor) -> torch.Tensor:
    """Per-clip CMVN over time ([..., T, dim]); the paper's wording, kept for comparison (see module doc)."""
    return (frames - frames.mean(-2, keepdim=True)) / frames.std(-2, keepdim=True).clamp_min(1e-3)


class SimCLRLogMel:
    """Waveform at 16 kHz [B, N] -> log-mel [B, 96, T] (HTK, 0-8 kHz, 25 ms / 10 ms, FFT 2048; paper 002a), through
    the project's front end (`core.frontend.mel_spectrogram`): numpy in, numpy out; a tensor in, a tensor out."""

    def __call__(self, wav):
        from backline.engines.core.frontend import mel_spectrogram  # lazy: keeps `--help` light

        mel = mel_spectrogram(wav, FEATURE_SR, 2048, SIMCLR_HOP, SIMCLR_N_MELS, win_length=SIMCLR_WIN, f_min=0.0,
                              f_max=FEATURE_SR / 2, mel_scale="htk", norm=None)
        return np.log(mel + 1e-6) if isinstance(mel, np.ndarray) else (mel + 1e-6).log()

    def to(self, _device) -> SimCLRLogMel:
        return self


@dataclass(frozen=True)
class Loudness:
    rms_db: float
    active_fraction: float


def loudness(wav16: np.ndarray, frame: int = 1600, threshold_db: float = -60.0) -> Loudness:
    """Overall RMS in dBFS and the fraction of 100 ms frames above `threshold_db` (the silence gate)."""
    wav16 = np.asarray(wav16.detach().cpu() if hasattr(wav16, "detach") else wav16, dtype=np.float32).reshape(-1)
    if wav16.size == 0:
        return Loudness(-math.inf, 0.0)
    rms = float(np.sqrt(np.square(wav16).mean()))
    n = max(1, wav16.size // frame)
    frames = wav16[: n * frame].reshape(n, -1) if wav16.size >= frame else wav16[None]
    frame_db = 20 * np.log10(np.maximum(np.sqrt(np.square(frames).mean(1)), 1e-10))
    return Loudness(20 * math.log10(max(rms, 1e-10)), float((frame_db > threshold_db).mean()))


def timbre_vector(audio: Audio, active_db: float = 40.0) -> np.ndarray:
    """A level-free timbre descriptor: mean and std over the sounding frames of MFCC 1–19 [38].

    Used where a distance between *timbres of the same instrument family* is needed (the bass engine's
    grounding table). Why not a learned embedding: on the eight bass presets' references, split in halves,
    MFCC 1–19 statistics put every half nearest its own preset (8/8; between/within cosine-distance ratio 8.1),
    the shipped SimCLR encoder 3/8 (ratio 5.8) — the SimCLR embedding is trained to tell songs apart, and all
    basses look alike to it. c0 (overall level) is dropped so a louder take is not a different timbre, and
    frames more than `active_db` below the loudest frame are left out so rests do not count as timbre.
    """
    wav = to_feature_rate(audio)
    if loudness(wav).rms_db < -70.0:
        raise AudioFormatError("the audio is silent: it has no timbre to describe")
    feats = musicoder_features(wav)  # [T, 324]
    logmel = feats[:, slice(*FEATURE_SLICES["logmel"])]
    energy = 10.0 * np.log10(np.maximum(np.power(10.0, logmel / 10.0).sum(1), DB_FLOOR))
    active = energy >= energy.max() - active_db
    if int(active.sum()) < 2:
        raise AudioFormatError("the audio is too short to describe its timbre", fix="use at least 0.1 s")
    mfcc = feats[active][:, FEATURE_SLICES["mfcc"][0] + 1: FEATURE_SLICES["mfcc"][1]]
    return np.concatenate([mfcc.mean(0), mfcc.std(0, ddof=1)])
