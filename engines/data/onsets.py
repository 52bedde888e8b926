"""Where notes start in rendered audio, compared with where the MIDI says they start.

Used by the corpus tests (onsets within 15 ms of the MIDI note-ons) and by the soundfont calibration that
decides which (soundfont, program) pairs the corpus may use.

The detector is a log-compressed spectral flux on a torchaudio spectrogram (512-point window, 64-sample
hop = 1.45 ms at 44.1 kHz). For each MIDI event it takes the largest local maximum of the flux near the event and walks back to
where the rise began (back down the rise, within the window, while the flux stays above 25 % of that peak;
the 1.2 slack lets the walk pass small wiggles of a noisy attack but not climb into a neighbour's tail): the *start* of the
attack, not its loudest point, because slow-attack sounds peak tens of ms after they begin. The search
window is ±(half the gap to the neighbouring events), capped at 60 ms, so each event is judged on its own
sound; an event whose audio is late by more than the window simply shows the window edge, which fails a
15 ms check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOP = 64
N_FFT = 512
MERGE_S = 0.03  # note-ons closer than this are one event (chords, strums, flams)
SEARCH_S = 0.06
RISE_FRACTION = 0.25

_SPEC: dict[int, object] = {}


def onset_strength(samples: np.ndarray) -> np.ndarray:
    """Positive log-spectral flux per hop of a [channels, frames] (or mono) signal."""
    import torch
    import torchaudio

    if N_FFT not in _SPEC:
        _SPEC[N_FFT] = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=1.0)
    x = np.asarray(samples, np.float32)
    mono = torch.from_numpy(np.ascontiguousarray(x.mean(axis=0) if x.ndim == 2 else x))
    spec = _SPEC[N_FFT](mono)
    logmag = torch.log1p(100.0 * spec / (spec.max() + 1e-9))
    flux = torch.clamp(logmag[:, 1:] - logmag[:, :-1], min=0).sum(dim=0)
    return torch.cat([torch.zeros(1), flux]).numpy()


def merge_events(times: list[float] | np.ndarray, merge_s: float = MERGE_S) -> np.ndarray:
    events: list[float] = []
    for t in sorted(times):
        if not events or t - events[-1] > merge_s:
            events.append(float(t))
    return np.asarray(events)


@dataclass(frozen=True)
class OnsetMatch:
    events: np.ndarray  # MIDI event times (s)
    errors: np.ndarray  # detected onset − MIDI time (s), one per event
    strengths: np.ndarray  # flux peak height per event
    flux: np.ndarray
    frame_rate: float

    def fraction_within(self, tol_s: float) -> float:
        return float(np.mean(np.abs(self.errors) <= tol_s)) if len(self.errors) else 0.0


def match_onsets(samples: np.ndarray, sample_rate: int, midi_times: list[float] | np.ndarray,
                 *, shift_s: float = 0.0) -> OnsetMatch:
    """Measure, for each MIDI event (optionally shifted by `shift_s`), where the audio's onset begins."""
    flux = onset_strength(samples)
    fr = sample_rate / HOP
    ev = merge_events(midi_times) + shift_s
    errors, strengths = [], []
    for k, t in enumerate(ev):
        lo, hi = t - SEARCH_S, t + SEARCH_S
        if k > 0:
            lo = max(lo, (ev[k - 1] + t) / 2)
        if k + 1 < len(ev):
            hi = min(hi, (ev[k + 1] + t) / 2)
        a = max(int(np.floor(lo * fr)), 0)
        b = min(int(np.ceil(hi * fr)) + 1, len(flux))
        if b <= a:
            errors.append(np.inf)
            strengths.append(0.0)
            continue
        # the biggest local maximum inside the window (not a boundary value: that is a neighbour's tail)
        idx = np.arange(a, b)
        left = flux[np.maximum(idx - 1, 0)]
        right = flux[np.minimum(idx + 1, len(flux) - 1)]
        peaks = idx[(flux[idx] >= left) & (flux[idx] > right)]
        j = int(peaks[np.argmax(flux[peaks])]) if len(peaks) else a + int(np.argmax(flux[a:b]))
        start = j  # walk back down the rise (inside the window) while it stays above RISE_FRACTION of the peak
        while start > a and RISE_FRACTION * flux[j] <= flux[start - 1] <= 1.2 * flux[start]:
            start -= 1
        strengths.append(float(flux[j]))
        errors.append(start / fr - t)
    return OnsetMatch(ev, np.asarray(errors), np.asarray(strengths), flux, fr)
