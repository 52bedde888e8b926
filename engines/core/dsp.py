"""Small numpy helpers over envelopes and frame features: decibels, the onset envelope, peak picking,
autocorrelation, the tempo estimate, frame RMS and Viterbi decoding.

Why not librosa: these are librosa 0.11's algorithms (ISC licence) step for step — the listener's fitted constants
(TEMPO_WEIGHTS, the chord and bar-one thresholds) were set on its features — but importing librosa pulls scipy and
numba and loads numba's JIT caches, which cost more CPU before a take than the take itself (issue 23). The
spectrograms these work on come from `core.frontend`; tests/test_listen_features.py holds both to librosa's output.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def power_to_db(power: np.ndarray, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """10·log10 of a power spectrogram (re 1.0), floored at `amin` and at `top_db` under its peak."""
    db = 10.0 * np.log10(np.maximum(amin, power))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


def onset_strength(spec_db: np.ndarray, n_fft: int = 2048, hop: int = 512, lag: int = 1) -> np.ndarray:
    """Spectral flux of a (dB) spectrogram `[bands, frames]`: the mean over bands of each band's rise since `lag`
    frames before, half-wave rectified, shifted by `lag + n_fft // (2·hop)` frames so that it lines up with the
    centred frames (librosa's `onset.onset_strength`); `frames` values."""
    rise = np.maximum(0.0, spec_db[:, lag:] - spec_db[:, :-lag]).mean(axis=0)
    return np.pad(rise, (lag + n_fft // (2 * hop), 0))[:spec_db.shape[-1]]


def peak_pick(x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float,
              wait: int) -> np.ndarray:
    """Indices of the peaks of `x` (librosa's `util.peak_pick`): n is a peak where x[n] is the maximum of
    x[n-pre_max : n+post_max] and at least `delta` over the mean of x[n-pre_avg : n+post_avg]; after a peak the
    next `wait` samples are skipped."""
    x = np.asarray(x)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    padded = np.pad(x.astype(float), (pre_max, post_max - 1), constant_values=-np.inf)
    local_max = np.lib.stride_tricks.sliding_window_view(padded, pre_max + post_max).max(axis=1)
    candidates = np.flatnonzero(x == local_max)
    # each candidate's local mean; the full windows all at once (one reduction per row: the same sums as one at a time)
    means = [None] * len(candidates)
    full = (candidates >= pre_avg) & (candidates + post_avg <= n) if pre_avg + post_avg > 0 else np.zeros(0, bool)
    if full.any():
        rows = np.lib.stride_tricks.sliding_window_view(x, pre_avg + post_avg)[candidates[full] - pre_avg]
        for k, m in zip(np.flatnonzero(full), rows.mean(axis=-1)):
            means[k] = m
    out: list[int] = []
    allowed = 0
    for k, i in enumerate(candidates):
        if i < allowed:
            continue
        mean = np.mean(x[max(0, i - pre_avg):min(i + post_avg, n)]) if means[k] is None else means[k]
        if x[i] >= mean + delta:
            out.append(int(i))
            allowed = i + wait + 1
    return np.array(out, dtype=int)


def _fast_length(n: int) -> int:
    """The smallest 2^a·3^b·5^c ≥ n: an FFT length as fast as a power of two, up to ~40 % shorter."""
    best = 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def autocorrelate(x: np.ndarray, max_size: int | None = None, axis: int = -1) -> np.ndarray:
    """Autocorrelation along `axis` (lags 0 … max_size − 1), by FFT of the zero-padded signal."""
    n = x.shape[axis]
    max_size = n if max_size is None else int(min(max_size, n))
    n_pad = _fast_length(2 * n - 1)
    spec = np.fft.rfft(x, n=n_pad, axis=axis)
    ac = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=n_pad, axis=axis)
    return np.take(ac, np.arange(max_size), axis=axis)


#: Frames per chunk of `tempo_estimate`'s windowed autocorrelation: the kernel's first call on a whole file spent
#: 0.15 CPU-s of system time zeroing fresh pages (measured on a 30 s mix), chunks reuse theirs.
TEMPO_CHUNK = 64


def tempo_estimate(env: np.ndarray, sr: float, hop: int, start_bpm: float = 120.0, std_bpm: float = 1.0,
                   ac_size: float = 8.0, max_tempo: float = 320.0) -> float:
    """One tempo (BPM) for an onset envelope (librosa's `feature.tempo`): the mean over frames of the windowed
    (`ac_size` s, Hann, centred) and peak-normalised autocorrelation, weighted by a log-normal prior around
    `start_bpm`; its best lag under `max_tempo`."""
    win = int(np.floor(ac_size * sr / hop))
    n = len(env)
    half = win // 2
    padded = np.pad(env, (half, half), mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[:n]  # [n, win]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    tg = np.zeros(win)
    for a in range(0, n, TEMPO_CHUNK):  # in chunks: a whole song's frames at once are ~30 MB of fresh pages per call
        ac = autocorrelate(frames[a:a + TEMPO_CHUNK] * window, axis=-1)
        peak = np.abs(ac).max(axis=-1, keepdims=True)
        peak[peak < np.finfo(ac.dtype).tiny] = 1.0
        tg += (ac / peak).sum(axis=0)
    tg /= max(n, 1)
    with np.errstate(divide="ignore"):
        bpms = np.r_[np.inf, 60.0 * sr / (hop * np.arange(1.0, win))]
    logprior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    logprior[:int(np.argmax(bpms < max_tempo))] = -np.inf
    return float(bpms[int(np.argmax(np.log1p(1e6 * tg) + logprior))])


def frame_rms(y: np.ndarray, frame_length: int = 2048, hop: int = 512) -> np.ndarray:
    """RMS of centred (zero-padded) frames, `len(y) // hop + 1` values (librosa's `feature.rms`)."""
    padded = np.pad(y, (frame_length // 2, frame_length // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop]
    return np.sqrt(np.mean(np.abs(frames) ** 2, axis=-1, dtype=np.float32))


def viterbi(prob: np.ndarray, transition: np.ndarray, p_init: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Most likely state sequence of an HMM and its log-probability (librosa's `sequence.viterbi`):
    `prob [states, steps]` the observation likelihoods, `transition [from, to]` (rows sum to 1), `p_init [states]`
    (uniform if None). Ties go to the lowest state index."""
    n_states, n_steps = prob.shape
    eps = np.finfo(prob.dtype).tiny
    log_trans = np.log(transition + eps)
    log_prob = np.log(prob + eps).T
    log_init = np.log((np.full(n_states, 1.0 / n_states) if p_init is None else p_init) + eps)
    value = log_prob[0] + log_init
    ptr = np.zeros((n_steps, n_states), dtype=int)
    for t in range(1, n_steps):
        cand = value[:, None] + log_trans  # [from, to]
        ptr[t] = np.argmax(cand, axis=0)
        value = log_prob[t] + cand[ptr[t], np.arange(n_states)]
    states = np.zeros(n_steps, dtype=int)
    states[-1] = int(np.argmax(value))
    for t in range(n_steps - 2, -1, -1):
        states[t] = ptr[t + 1, states[t + 1]]
    return states, float(value[states[-1]])


def median_filter(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Running median of odd length `size` along one axis of a 2-D array, the edges mirrored with the edge sample
    repeated (scipy.ndimage's `median_filter(mode="reflect")` with a 1-D kernel, exactly: the median of an odd
    window is one of its samples)."""
    half = size // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="symmetric"), size, axis=axis)
    return np.partition(windows, half, axis=-1)[..., half]


def onset_detect(env: np.ndarray, sr: float, hop: int, *, backtrack: bool = False) -> np.ndarray:
    """Onset times (seconds) from an onset envelope (librosa's `onset.onset_detect` with its defaults): the envelope
    scaled to [0, 1], then peaks that are the maximum of the 30 ms before them, 0.07 over the mean of ±100 ms, and
    30 ms apart. `backtrack`: each onset moved back to the envelope's last local minimum before its peak (librosa's
    `onset_backtrack`), i.e. where the attack's rise begins rather than where the flux peaks."""
    env = np.asarray(env, dtype=float)
    if not env.size or not np.all(np.isfinite(env)):
        return np.zeros(0)
    env = env - env.min()
    env = env / (env.max() + np.finfo(env.dtype).tiny)
    if not env.any():
        return np.zeros(0)
    frames = int(np.ceil(0.03 * sr // hop)), int(np.ceil(0.10 * sr // hop))
    peaks = peak_pick(env, frames[0], 1, frames[1], frames[1] + 1, 0.07, frames[0])
    if backtrack and len(peaks):
        minima = np.r_[0, 1 + np.flatnonzero((env[1:-1] <= env[:-2]) & (env[1:-1] < env[2:]))]
        peaks = minima[np.searchsorted(minima, peaks, side="right") - 1]
    return peaks * hop / float(sr)


_ERF_STEP = 1.0 / 1024  # table spacing: cubic Hermite error ≤ h⁴/384·max|erf⁗| ≈ 2e-14


@functools.lru_cache(maxsize=1)
def _erf_table() -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(0.0, 6.0 + 2 * _ERF_STEP, _ERF_STEP)
    values = np.array([math.erf(v) for v in grid])
    slopes = 2.0 / math.sqrt(math.pi) * np.exp(-grid**2) * _ERF_STEP  # d erf / d index
    return values, slopes


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised (numpy has none, and scipy.special's import costs more than the models it
    would serve): cubic Hermite interpolation of `math.erf` and its exact derivative 2/√π·e^(−x²) on a 1/1024 grid
    up to 6 (erf(6) is 1 in double precision); within 1e-13 of `math.erf` everywhere."""
    x = np.asarray(x, np.float64)
    values, slopes = _erf_table()
    a = np.minimum(np.abs(x), 6.0) / _ERF_STEP
    i = np.minimum(a.astype(np.int64), len(values) - 2)
    t = a - i
    t2, t3 = t * t, t * t * t
    out = ((2 * t3 - 3 * t2 + 1) * values[i] + (t3 - 2 * t2 + t) * slopes[i]
           + (3 * t2 - 2 * t3) * values[i + 1] + (t3 - t2) * slopes[i + 1])
    return np.copysign(out, x)


def gelu(x: np.ndarray) -> np.ndarray:
    """torch's nn.GELU() (the exact form x·Φ(x) = x/2·(1 + erf(x/√2))) in float64: the numpy inference of the
    planners and the role check's tagger share it."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
