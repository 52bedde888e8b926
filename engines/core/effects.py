"""The one place for pedalboard effect chains: presets describe a chain as data, this module builds and runs it,
and sets the loudness of the result.

A chain is a list of tables, each naming a pedalboard plugin and its parameters, e.g. in a preset TOML:

    [[chain]]
    type = "HighpassFilter"
    cutoff_frequency_hz = 35.0
    [[chain]]
    type = "Compressor"
    threshold_db = -20.0
    ratio = 4.0

Only the plugins in `PLUGINS` are allowed (no external VST3 from a data file), and every parameter is checked
against the plugin's constructor so a typo in a preset fails with a one-line message naming the plugin.
Loudness is ITU-R BS.1770-4 integrated loudness (torchaudio's definition, in numpy, gated), then a gain, then a
peak ceiling so normalising a quiet stem never clips.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError

PLUGINS: tuple[str, ...] = (
    "Bitcrush", "Chorus", "Clipping", "Compressor", "Delay", "Distortion", "Gain", "HighShelfFilter",
    "HighpassFilter", "LadderFilter", "Limiter", "LowShelfFilter", "LowpassFilter", "NoiseGate", "PeakFilter",
    "Phaser", "Reverb",
)
#: Level below which a signal counts as silence and is left alone by loudness normalisation.
SILENCE_LUFS = -70.0


def build_chain(spec: Sequence[Mapping[str, Any]], *, where: str = "chain"):
    """A `pedalboard.Pedalboard` from a list of {'type': PluginName, **params}."""
    import pedalboard

    plugins = []
    for i, entry in enumerate(spec or ()):
        if not isinstance(entry, Mapping) or "type" not in entry:
            raise ConfigError(f"{where}[{i}] needs a 'type'", fix=f"one of {', '.join(PLUGINS)}")
        kind = str(entry["type"])
        if kind not in PLUGINS:
            raise ConfigError(f"{where}[{i}]: unknown effect {kind!r}", fix=f"use one of {', '.join(PLUGINS)}")
        cls = getattr(pedalboard, kind)
        params = {k: v for k, v in entry.items() if k != "type"}
        plugin = cls()  # pybind classes have no inspectable signature: set the parameters as properties
        allowed = sorted(n for n in dir(plugin) if not n.startswith("_") and isinstance(
            getattr(type(plugin), n, None), property) and getattr(type(plugin), n).fset is not None)
        bad = sorted(set(params) - set(allowed))
        if bad:
            raise ConfigError(f"{where}[{i}] {kind}: unknown parameter(s) {', '.join(bad)}",
                              fix=f"{kind} takes {', '.join(allowed) or 'no parameters'}")
        for name, value in params.items():
            try:
                setattr(plugin, name, value)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ConfigError(f"{where}[{i}] {kind}: {name}={value!r} is not a valid value",
                                  fix="give a number in the plugin's range") from err
        plugins.append(plugin)
    return pedalboard.Pedalboard(plugins)


def apply_chain(audio: Audio, spec: Sequence[Mapping[str, Any]], *, where: str = "chain") -> Audio:
    """Run the chain over the whole signal (same length out; pedalboard compensates plugin latency)."""
    if not spec:
        return audio
    board = build_chain(spec, where=where)
    out = board(np.ascontiguousarray(audio.samples, dtype=np.float32), audio.sample_rate, reset=True)
    out = out[:, : audio.frames]
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # in place: a long stem is hundreds of MB
    if out.shape[1] < audio.frames:
        out = np.pad(out, ((0, 0), (0, audio.frames - out.shape[1])))
    return Audio(out, audio.sample_rate)


def loudness_lufs(audio: Audio) -> float:
    """Integrated loudness (BS.1770-4, LUFS). Signals shorter than one 400 ms gate block are padded with silence;
    silence returns -inf.

    The same computation as `torchaudio.functional.loudness` (its K-weighting biquads, clamping, 400 ms blocks
    with 75 % overlap, absolute and relative gates; equal within float rounding, tested), but streamed: the
    filters run over 2^20-sample chunks with their state carried (`_biquad`) and block energies come from
    a running sum of squares, so memory stays flat — torchaudio's whole-signal version needed ~140 bytes per
    sample (1.1 GB for a 3-minute stereo stem)."""
    if audio.frames == 0 or audio.peak() == 0.0:
        return -math.inf
    samples = audio.samples
    block = int(0.4 * audio.sample_rate)
    if samples.shape[1] < block:
        samples = np.pad(samples, ((0, 0), (0, block - samples.shape[1])))
    value = _streamed_loudness(samples, audio.sample_rate)
    return value if math.isfinite(value) else -math.inf


def _k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """torchaudio's K-weighting: treble_biquad(gain 4 dB, 1500 Hz, Q 1/√2), then highpass_biquad(38 Hz, Q 0.5)."""
    w0 = 2 * math.pi * 1500.0 / sample_rate
    alpha = math.sin(w0) / 2 / (1 / math.sqrt(2))
    a = math.exp(4.0 / 40 * math.log(10))
    t1, t2, t3 = 2 * math.sqrt(a) * alpha, (a - 1) * math.cos(w0), (a + 1) * math.cos(w0)
    shelf = (np.array([a * ((a + 1) + t2 + t1), -2 * a * ((a - 1) + t3), a * ((a + 1) + t2 - t1)]),
             np.array([(a + 1) - t2 + t1, 2 * ((a - 1) - t3), (a + 1) - t2 - t1]))
    w0 = 2 * math.pi * 38.0 / sample_rate
    alpha = math.sin(w0) / 2.0 / 0.5
    b0 = (1 + math.cos(w0)) / 2
    high = (np.array([b0, -1 - math.cos(w0), b0]), np.array([1 + alpha, -2 * math.cos(w0), 1 - alpha]))
    return [(b / a_[0], a_ / a_[0]) for b, a_ in (shelf, high)]


def _biquad(b: np.ndarray, a: np.ndarray, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One biquad (a[0] = 1) over a float64 chunk, continuing from `state` = (x[-2], x[-1], y[-2], y[-1]) of the
    chunk before; returns (output, state for the next chunk). The numerator is a 3-tap convolution over the chunk
    with its two previous inputs; the previous outputs enter the recursion as the equivalent input on the first two
    samples; the recursion itself is `_all_pole` (numpy, float64). scipy's `lfilter` and torchaudio's did the same,
    but importing `scipy.signal` cost 0.9 CPU-s of every take's start-up and torch 1.6 (issue 23)."""
    fir = np.convolve(np.concatenate([state[:2], x]), b, mode="valid")
    fir[0] -= a[1] * state[3] + a[2] * state[2]
    if len(fir) > 1:
        fir[1] -= a[2] * state[3]
    y = _all_pole(fir, float(a[1]), float(a[2]))
    tail_x = np.concatenate([state[:2], x])[-2:]
    tail_y = np.concatenate([state[2:], y])[-2:]
    return y, np.concatenate([tail_x, tail_y])


_POLE_BLOCK = 128  # ≥ 2; 11 ms per pass over 30 s at 44.1 kHz (the FFT convolution per block before: 24-30 ms)


@functools.lru_cache(maxsize=8)
def _all_pole_responses(a1: float, a2: float, n: int = _POLE_BLOCK) -> tuple[np.ndarray, float, float, float, float]:
    """1/(1 + a1 z⁻¹ + a2 z⁻²) over `n` samples: the weights [n, 2] that give a block's last two outputs from rest
    (its impulse response g reversed), and (p1, q1, p2, q2): how much of a previous output y[−1] (p) and y[−2] (q)
    is in its last (1) and second-to-last (2) output."""
    g = np.zeros(n)
    g[0] = 1.0
    g[1] = -a1
    for i in range(2, n):
        g[i] = -a1 * g[i - 1] - a2 * g[i - 2]
    g_prev = np.concatenate([[0.0], g[:-1]])
    p, q = -a1 * g - a2 * g_prev, -a2 * g
    weights = np.stack([g[::-1], np.concatenate([g[-2::-1], [0.0]])], axis=1)
    weights.flags.writeable = False
    return weights, float(p[-1]), float(q[-1]), float(p[-2]), float(q[-2])


def _all_pole(x: np.ndarray, a1: float, a2: float) -> np.ndarray:
    """y[n] = x[n] − a1·y[n−1] − a2·y[n−2] from rest (lfilter with b = [1]), exact to float64 rounding: the signal is
    cut into blocks of `_POLE_BLOCK` samples; each block's last two outputs from rest are a dot product with the
    impulse response, which carries the two outputs each block starts from, block to block; then the recursion
    runs down all blocks at once from those (the blocks laid side by side: one vector step per sample of a block).
    A Python loop per sample would take seconds for a song; the FFT convolution per block before cost twice this."""
    n, size = len(x), _POLE_BLOCK
    if n == 0:
        return x.astype(np.float64)
    weights, p1, q1, p2, q2 = _all_pole_responses(a1, a2, size)
    blocks = -(-n // size)
    flat = np.zeros(blocks * size)
    flat[:n] = x
    frames = flat.reshape(blocks, size)
    tails = frames @ weights  # [blocks, 2]: each block's y[-1], y[-2] from rest
    starts_1, starts_2 = [0.0], [0.0]  # y[−1] and y[−2] seen by each block
    last, before = 0.0, 0.0
    for end, second in zip(tails[:, 0].tolist(), tails[:, 1].tolist()):
        last, before = end + last * p1 + before * q1, second + last * p2 + before * q2
        starts_1.append(last)
        starts_2.append(before)
    y = np.ascontiguousarray(frames.T)  # [size, blocks]: one row per step
    step = np.empty(blocks)
    prev_1, prev_2 = np.array(starts_1[:-1]), np.array(starts_2[:-1])
    for i in range(size):
        row = y[i]
        np.multiply(prev_1, -a1, out=step)
        row += step
        np.multiply(prev_2, -a2, out=step)
        row += step
        prev_2, prev_1 = prev_1, row
    return y.T.reshape(-1)[:n]


def _streamed_loudness(samples: np.ndarray, sample_rate: int, chunk: int = 1 << 20) -> float:
    n = samples.shape[1]
    gate = int(round(0.4 * sample_rate))
    step = int(round(gate * 0.25))
    blocks = (n - gate) // step + 1
    if blocks <= 0:
        return -math.inf
    starts = np.arange(blocks, dtype=np.int64) * step
    marks = np.unique(np.concatenate([starts, starts + gate]))  # where the running sum is needed
    filters = _k_weighting(sample_rate)
    energy = np.zeros((samples.shape[0], blocks))
    for ch in range(samples.shape[0]):
        twin = next((k for k in range(ch) if np.array_equal(samples[k], samples[ch])), None)
        if twin is not None:  # a mono part rendered to stereo: the same samples give the same energies
            energy[ch] = energy[twin]
            continue
        states = [np.zeros(4) for _ in filters]
        at_mark = np.zeros(len(marks))
        total, m = 0.0, 0
        if marks[0] == 0:
            m = 1
        for lo in range(0, n, chunk):
            x = samples[ch, lo:lo + chunk].astype(np.float64)
            for k, (b, a) in enumerate(filters):
                x, states[k] = _biquad(b, a, x, states[k])
                np.clip(x, -1.0, 1.0, out=x)
            running = np.cumsum(np.square(x)) + total
            hi = lo + len(x)
            upto = np.searchsorted(marks, hi, side="right")
            if upto > m:
                at_mark[m:upto] = running[marks[m:upto] - lo - 1]
                m = upto
            total = running[-1]
        index = {int(p): i for i, p in enumerate(marks)}
        c_start = np.array([at_mark[index[int(p)]] for p in starts])
        c_end = np.array([at_mark[index[int(p)]] for p in starts + gate])
        energy[ch] = (c_end - c_start) / gate
    g = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: samples.shape[0], None]
    with np.errstate(divide="ignore", invalid="ignore"):
        block_loudness = -0.691 + 10 * np.log10(np.sum(g * energy, axis=0))
        gated = block_loudness > -70.0
        if not gated.any():
            return -math.inf
        mean = energy[:, gated].mean(axis=1)
        relative = -0.691 + 10 * np.log10(np.sum(g[:, 0] * mean)) - 10
        gated &= block_loudness > relative
        if not gated.any():
            return -math.inf
        mean = energy[:, gated].mean(axis=1)
        return float(-0.691 + 10 * np.log10(np.sum(g[:, 0] * mean)))


def normalise_loudness(audio: Audio, target_lufs: float = -16.0, *, ceiling_db: float = -1.0,
                       in_place: bool = False) -> tuple[Audio, float]:
    """Gain to `target_lufs`, then scale down if the peak would pass `ceiling_db` dBFS. Returns (audio, gain dB).

    Near-silent audio (below SILENCE_LUFS) is returned unchanged: amplifying noise to −16 LUFS helps nobody.
    `in_place` scales the caller's samples instead of a copy (for long stems the caller owns).
    """
    level = loudness_lufs(audio)
    if not math.isfinite(level) or level < SILENCE_LUFS:
        return audio, 0.0
    gain_db = target_lufs - level
    gain = 10 ** (gain_db / 20)
    peak = audio.peak() * gain
    ceiling = 10 ** (ceiling_db / 20)
    if peak > ceiling:
        gain *= ceiling / peak
        gain_db = 20 * math.log10(gain)
    if in_place and audio.samples.flags.writeable:
        samples = audio.samples
        samples *= np.float32(gain)
        return audio, gain_db
    return Audio(audio.samples * gain, audio.sample_rate), gain_db


def render(audio: Audio, chain: Sequence[Mapping[str, Any]] = (), *, target_lufs: float | None = -16.0,
           where: str = "chain") -> tuple[Audio, dict[str, float]]:
    """Chain then loudness: what every engine calls on a generated stem. Returns (audio, report)."""
    before = loudness_lufs(audio)
    out = apply_chain(audio, chain, where=where)
    gain_db = 0.0
    if target_lufs is not None:  # the chain's output is ours to scale; without a chain it is the caller's
        out, gain_db = normalise_loudness(out, target_lufs, in_place=out is not audio)
    return out, {"lufs_in": _finite(before), "lufs_out": _finite(loudness_lufs(out)), "gain_db": round(gain_db, 2)}


def _finite(x: float) -> float | None:
    return round(x, 2) if math.isfinite(x) else None
