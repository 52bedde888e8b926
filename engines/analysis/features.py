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

import numpy as np
import torch
import torchaudio.functional as taf
import torchaudio.transforms as T

from backline.engines.core.audio import Audio, resample
from backline.engines.core.errors import AudioFormatError

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


def to_feature_rate(audio: Audio | np.ndarray | torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
    """Mono float32 tensor [frames] at 16 kHz. Accepts `Audio`, or an array/tensor [frames] or [ch, frames]
    together with its `sample_rate`."""
    if isinstance(audio, Audio):
        samples, rate = audio.samples, audio.sample_rate
    else:
        if sample_rate is None:
            raise AudioFormatError("raw samples need their sample_rate", fix="pass sample_rate=... or an Audio")
        samples, rate = audio, int(sample_rate)
    x = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples,
                        dtype=torch.float32)
    if x.ndim == 2:
        x = x.mean(0)
    if x.ndim != 1:
        raise AudioFormatError(f"audio must be [frames] or [channels, frames], got shape {tuple(x.shape)}")
    if rate != FEATURE_SR:
        x = resample(x, rate, FEATURE_SR)
    return x.contiguous()


def chroma_filterbank(n_fft: int = N_FFT, sr: int = FEATURE_SR, fmin: float = 30.0, fmax: float = 5000.0) -> torch.Tensor:
    """[12, n_freq] weights: STFT bin -> pitch class (Gaussian, 1 semitone std, circular)."""
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    fb = torch.zeros(12, freqs.numel(), dtype=torch.float64)
    valid = (freqs >= fmin) & (freqs <= fmax)
    midi = 69 + 12 * torch.log2(freqs[valid] / 440.0)
    for pc in range(12):
        d = torch.remainder(midi - pc + 6, 12) - 6  # circular distance in semitones
        fb[pc, valid] = torch.exp(-0.5 * d**2)
    return fb.float()


def cqt_filterbank(n_fft: int = N_FFT, sr: int = FEATURE_SR, n_bins: int = CQT_BINS,
                   bins_per_octave: int = CQT_BINS_PER_OCTAVE, fmin: float = CQT_FMIN) -> torch.Tensor:
    """[n_bins, n_freq] pseudo-CQT weights (Gaussian bands of constant Q, rows sum to 1)."""
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    df = sr / n_fft
    q = 1.0 / (2 ** (1.0 / bins_per_octave) - 1)
    centres = fmin * 2.0 ** (torch.arange(n_bins, dtype=torch.float64) / bins_per_octave)
    if float(centres[-1]) >= sr / 2:
        raise ValueError("CQT range exceeds Nyquist")
    width = torch.clamp(centres / q, min=1.5 * df)  # bandwidth, at least 1.5 STFT bins
    fb = torch.exp(-0.5 * ((freqs[None, :] - centres[:, None]) / (0.5 * width[:, None])) ** 2)
    fb = fb / fb.sum(1, keepdim=True)
    return fb.float()


class MusiCoderFeatures(torch.nn.Module):
    """Waveform at 16 kHz [B, N] or [N] -> frames [B, T, 324] (un-normalised; apply `CMVN` after)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = T.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=2.0, center=True)
        self.mel = T.MelScale(n_mels=N_MELS, sample_rate=FEATURE_SR, f_min=30.0, f_max=FEATURE_SR / 2,
                              n_stft=N_FFT // 2 + 1, norm="slaney", mel_scale="slaney")
        self.register_buffer("dct", taf.create_dct(N_MFCC, N_MELS, norm="ortho"), persistent=False)
        self.register_buffer("chroma_fb", chroma_filterbank(), persistent=False)
        self.register_buffer("cqt_fb", cqt_filterbank(), persistent=False)
        self.deltas = T.ComputeDeltas(win_length=5)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        squeeze = wav.ndim == 1
        if squeeze:
            wav = wav[None]
        power = self.spec(wav)  # [B, F, T]
        logmel = 10.0 * torch.log10(self.mel(power).clamp_min(DB_FLOOR))  # [B, 128, T]
        mfcc = torch.einsum("bmt,mc->bct", logmel, self.dct)  # [B, 20, T]
        dmfcc = self.deltas(mfcc)
        chroma = torch.einsum("cf,bft->bct", self.chroma_fb, power)
        chroma = chroma / chroma.amax(1, keepdim=True).clamp_min(1e-8)
        cqt = 10.0 * torch.log10(torch.einsum("kf,bft->bkt", self.cqt_fb, power).clamp_min(DB_FLOOR))
        feats = torch.cat([chroma, mfcc, dmfcc, logmel, cqt], dim=1).transpose(1, 2)  # [B, T, 324]
        return feats[0] if squeeze else feats


class CMVN(torch.nn.Module):
    """Global cepstral mean and variance normalisation with statistics stored as buffers (saved with weights)."""

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> CMVN:
        """frames: [..., dim] from the training corpus."""
        flat = frames.reshape(-1, frames.shape[-1]).double()
        self.mean.copy_(flat.mean(0).float())
        self.std.copy_(flat.std(0).clamp_min(1e-3).float())
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean) / self.std


def cmvn_utterance(frames: torch.Tensor) -> torch.Tensor:
    """Per-clip CMVN over time ([..., T, dim]); the paper's wording, kept for comparison (see module doc)."""
    return (frames - frames.mean(-2, keepdim=True)) / frames.std(-2, keepdim=True).clamp_min(1e-3)


class SimCLRLogMel(torch.nn.Module):
    """Waveform at 16 kHz [B, N] -> log-mel [B, 96, T] (HTK, 0-8 kHz, 25 ms / 10 ms, FFT 2048; paper 002a)."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = T.MelSpectrogram(sample_rate=FEATURE_SR, n_fft=2048, win_length=SIMCLR_WIN, hop_length=SIMCLR_HOP,
                                    f_min=0.0, f_max=FEATURE_SR / 2, n_mels=SIMCLR_N_MELS, power=2.0,
                                    mel_scale="htk", norm=None, center=True)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav) + 1e-6)


@dataclass(frozen=True)
class Loudness:
    rms_db: float
    active_fraction: float


def loudness(wav16: torch.Tensor, frame: int = 1600, threshold_db: float = -60.0) -> Loudness:
    """Overall RMS in dBFS and the fraction of 100 ms frames above `threshold_db` (the silence gate)."""
    if wav16.numel() == 0:
        return Loudness(-math.inf, 0.0)
    rms = float(wav16.pow(2).mean().sqrt())
    n = max(1, wav16.numel() // frame)
    frames = wav16[: n * frame].reshape(n, -1) if wav16.numel() >= frame else wav16[None]
    frame_db = 20 * torch.log10(frames.pow(2).mean(1).sqrt().clamp_min(1e-10))
    return Loudness(20 * math.log10(max(rms, 1e-10)), float((frame_db > threshold_db).float().mean()))


_TIMBRE_FEATURES: MusiCoderFeatures | None = None


def timbre_vector(audio: Audio, active_db: float = 40.0) -> np.ndarray:
    """A level-free timbre descriptor: mean and std over the sounding frames of MFCC 1–19 [38].

    Used where a distance between *timbres of the same instrument family* is needed (the bass engine's
    grounding table). Why not a learned embedding: on the eight bass presets' references, split in halves,
    MFCC 1–19 statistics put every half nearest its own preset (8/8; between/within cosine-distance ratio 8.1),
    the shipped SimCLR encoder 3/8 (ratio 5.8) — the SimCLR embedding is trained to tell songs apart, and all
    basses look alike to it. c0 (overall level) is dropped so a louder take is not a different timbre, and
    frames more than `active_db` below the loudest frame are left out so rests do not count as timbre.
    """
    global _TIMBRE_FEATURES
    if _TIMBRE_FEATURES is None:
        _TIMBRE_FEATURES = MusiCoderFeatures()
    wav = to_feature_rate(audio)
    if loudness(wav).rms_db < -70.0:
        raise AudioFormatError("the audio is silent: it has no timbre to describe")
    feats = _TIMBRE_FEATURES(wav)  # [T, 324]
    logmel = feats[:, slice(*FEATURE_SLICES["logmel"])]
    energy = 10.0 * torch.log10(torch.pow(10.0, logmel / 10.0).sum(1).clamp_min(DB_FLOOR))
    active = energy >= energy.max() - active_db
    if int(active.sum()) < 2:
        raise AudioFormatError("the audio is too short to describe its timbre", fix="use at least 0.1 s")
    mfcc = feats[active][:, FEATURE_SLICES["mfcc"][0] + 1: FEATURE_SLICES["mfcc"][1]]
    return torch.cat([mfcc.mean(0), mfcc.std(0)]).numpy()
