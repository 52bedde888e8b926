"""Is a part playing? One calibrated yes/no per part Backline can generate (bass, drums, accompaniment).

Why not just threshold the tagger: the tagger answers "which GM families are audible" and was tuned for F1 over
five-second crops; on a band *without* its bass it still gave Bass 45 % (the guitar's and piano's low notes and
the kick look bass-like to it), so "missing parts" said none. A missing part is a different question: does
anything play the *role*? That shows in plain spectral facts that the models blur:

* bass: sustained (harmonic, after HPSS) energy below ~150 Hz, where in a band only the bass and the kick live,
  and the kick goes to the percussive half;
* drums: percussive energy and its onsets, low (kick) and high (hats, cymbals);
* accompaniment: harmonic energy in the mid range with several pitch classes at once (chords), which a
  one-voice lead does not give.

So `presence_features` computes band energies of the HPSS harmonic and percussive parts (dB relative to the
window's total), onset flux and chroma polyphony on 5 s windows at 16 kHz, the tagger's probabilities are
appended, and a small classifier on the standardised features (one logistic regression per part, or one hidden
layer shared by the parts: `hidden` in the config) gives P(part plays) per window; the clip
value is the top-quarter mean over windows (as the tagger's), compared with a per-part threshold. Weights and
thresholds are fitted by `backline train presence` on held-out rendered songs with every part removed in turn
(`weights/TRAINING.md`), stored as safetensors.
"""

from __future__ import annotations

import math

import numpy as np

from backline.engines.analysis.features import FEATURE_SR, chroma_filterbank
from backline.engines.core.dsp import median_filter
from backline.engines.core.frontend import stft

PARTS = ("bass", "drums", "accompaniment")
N_FFT, HOP = 2048, 512  # 7.8 Hz bins at 16 kHz: resolves the bass range
BAND_EDGES = (30, 60, 90, 130, 180, 250, 350, 500, 700, 1000, 1400, 2000, 2800, 4000, 5600, 8000)
N_TAGS = 23
HPSS_BINS = int(2000 / (FEATURE_SR / N_FFT)) + 1  # 17 fine + 6 coarse tagger probabilities


def _band_matrix() -> np.ndarray:
    freqs = np.linspace(0, FEATURE_SR / 2, N_FFT // 2 + 1, dtype=np.float32)
    m = np.zeros((len(BAND_EDGES) - 1, freqs.size), np.float32)
    for i, (lo, hi) in enumerate(zip(BAND_EDGES[:-1], BAND_EDGES[1:])):
        m[i, (freqs >= lo) & (freqs < hi)] = 1.0
    return m


_BANDS = _band_matrix()
_CHROMA = chroma_filterbank(N_FFT, FEATURE_SR, fmin=130.0, fmax=2000.0)
_FREQS = np.linspace(0, FEATURE_SR / 2, N_FFT // 2 + 1, dtype=np.float32)
N_FEATURES = 4 * (len(BAND_EDGES) - 1) + 7 + N_TAGS


def presence_features(wav16: np.ndarray) -> np.ndarray:
    """Hand features of one window of 16 kHz mono audio (see the module docstring), without the tagger part."""
    wav16 = np.asarray(wav16.detach().cpu() if hasattr(wav16, "detach") else wav16, dtype=np.float32)
    mag = np.abs(stft(wav16, N_FFT, HOP))  # [F, T]
    # HPSS only below 2 kHz (a quarter of the bins: the median filters are the cost); above it everything counts
    # as percussive, which is what hats and cymbals are and what matters up there.
    h_lo, p_lo = hpss(mag[:HPSS_BINS])
    harm = np.zeros(mag.shape, np.float32)
    harm[:HPSS_BINS] = h_lo**2
    perc = (mag**2).astype(np.float32)
    perc[:HPSS_BINS] = p_lo**2
    total = np.float32(harm.sum(dtype=np.float32) + perc.sum(dtype=np.float32) + 1e-10)
    feats = []
    for part in (harm, perc):
        bands = _BANDS @ part  # [B, T]
        rel = np.maximum(10 * np.log10(bands / total * bands.shape[1] + 1e-10), -100.0)  # per-frame dB vs mean total
        feats += [rel.mean(1), np.quantile(rel, 0.9, axis=1)]
    pflux = np.maximum(np.diff(np.log1p(1e3 * perc), axis=1), 0.0)
    low, high = pflux[_FREQS < 200].mean(0), pflux[_FREQS > 4000].mean(0)
    chroma = _CHROMA @ harm  # [12, T]
    peak = np.maximum(chroma.max(0), 1e-10)
    poly = (chroma > 0.3 * peak).astype(np.float32).sum(0)
    p = chroma / np.maximum(chroma.sum(0), 1e-10)
    entropy = -(p * np.log(np.maximum(p, 1e-10))).sum(0) / math.log(12)
    hshare = 10 * np.log10(harm.sum(dtype=np.float32) / total + 1e-10)
    extra = np.array([low.mean(), low.std(ddof=1), high.mean(), high.std(ddof=1), poly.mean(), entropy.mean(), hshare])
    return np.concatenate(feats + [extra]).astype(np.float32)


def hpss(mag: np.ndarray, kernel: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic/percussive split of a magnitude spectrogram [F, T]: librosa.decompose.hpss's algorithm
    (Fitzgerald's median filters, soft masks with power 2, reflect padding, 0.5/0.5 where both are silent),
    with numpy (`core.dsp.median_filter`): `librosa.decompose` pulls in scikit-learn and lazy numba modules, 2–8 s
    on the first call of every process, and scipy.ndimage's import alone was 0.3 CPU-s of a take's start-up, where
    the filtering itself takes 20 ms."""
    harm = median_filter(mag, kernel, axis=1)
    perc = median_filter(mag, kernel, axis=0)
    h2, p2 = harm.astype(np.float64) ** 2, perc.astype(np.float64) ** 2
    total = h2 + p2
    mask = np.where(total > 0, h2 / np.where(total > 0, total, 1.0), 0.5)
    return (mag * mask).astype(mag.dtype), (mag * (1.0 - mask)).astype(mag.dtype)


def with_tags(hand: np.ndarray, fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Append the tagger's probabilities (as logits, clipped) to the hand features."""
    p = np.clip(np.concatenate([fine, coarse]), 1e-3, 1 - 1e-3)
    return np.concatenate([hand, np.log(p / (1 - p))]).astype(np.float32)
