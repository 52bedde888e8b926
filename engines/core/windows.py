"""The one windowing helper: run a function over overlapping windows of a long signal and cross-fade the
results back together, so memory is bounded by the window, not by the song.

    y = overlap_add(fn, x, window=30 * sr, hop=28 * sr)

`fn` maps a window [..., n] to outputs [..., K..., n] of the same length (e.g. the separated stems of that window);
consecutive windows overlap by `window - hop` samples and are blended with complementary raised-cosine fades,
so where `fn` is the identity (or any per-window linear map that agrees between windows) the output equals it
exactly (tested). The first window's start and the last window's end are not faded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


def windows(length: int, window: int, hop: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each window; the last one ends at `length` (shorter windows only when the signal is)."""
    if window <= 0 or hop <= 0 or hop > window:
        raise ValueError(f"need 0 < hop <= window, got window {window}, hop {hop}")
    if length <= window:
        yield 0, length
        return
    start = 0
    while True:
        stop = start + window
        if stop >= length:
            yield max(0, length - window), length
            return
        yield start, stop
        start += hop


def overlap_add(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, window: int, hop: int, *,
                out: np.ndarray | None = None, on_window: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Apply `fn` to overlapping windows of `x [..., T]` along the last axis and blend the results.

    `fn(x[..., a:b])` must return an array whose last axis has length `b - a`; the leading shape of the result
    may differ from `x`'s (one output per source, say). `out` (shape `fn`'s leading shape + (T,)) may be given to
    write into preallocated or memory-mapped storage. `on_window(i, n)` is called after window i of n (progress,
    cancellation: raise from it to stop)."""
    if x.shape[-1] == 0:  # empty input
        return np.asarray(fn(x)) if out is None else out
    return overlap_add_spans(lambda a, b: fn(x[..., a:b]), x.shape[-1], window, hop, out=out, on_window=on_window)


def overlap_add_spans(fn: Callable[[int, int], np.ndarray], length: int, window: int, hop: int, *,
                      out: np.ndarray | None = None,
                      on_window: Callable[[int, int], None] | None = None) -> np.ndarray:
    """`overlap_add` for callers whose input is not one array (a prepared spectrogram with its level, latents
    with their conditioning): `fn(a, b)` makes the output of samples/frames [a, b) itself."""
    spans = list(windows(length, window, hop))
    prev_stop = 0
    for i, (a, b) in enumerate(spans):
        y = np.asarray(fn(a, b))
        if y.shape[-1] != b - a:
            raise ValueError(f"window function returned {y.shape[-1]} samples for a window of {b - a}")
        if out is None:
            out = np.zeros(y.shape[:-1] + (length,), dtype=y.dtype)
        overlap = max(0, prev_stop - a) if i > 0 else 0
        if overlap:
            fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)).astype(y.dtype)
            out[..., a:a + overlap] = out[..., a:a + overlap] * (1 - fade) + y[..., :overlap] * fade
        out[..., a + overlap:b] = y[..., overlap:]
        prev_stop = b
        if on_window is not None:
            on_window(i, len(spans))
    return out
