"""The candidate issue 22 measured against the sampler: a harmonic-plus-noise (DDSP-style) bass fitted to the same
slices. Per recorded pitch: 24 harmonic amplitudes (from the first 200 ms of body), an exponential decay rate (log-RMS
slope) and an attack-noise level (energy above 3 kHz in the first 20 ms); a note is the nearest pitch's harmonics
at the new f0 under that envelope, plus a 5 ms noise burst. Kept in benchmarks/ (not shipped): it lost the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backline.engines.core.audio import Audio

SR = 44100
HARMONICS = 24


@dataclass
class Voice:
    pitch: int
    amps: np.ndarray
    decay: float
    noise: float


class HarmonicNoise:
    def __init__(self, voices: list[Voice]) -> None:
        self.voices = voices

    def render(self, notes, frames: int, sample_rate: int) -> Audio:
        from backline.engines.core.effects import render

        out = np.zeros(int(frames * SR / sample_rate) + SR, np.float64)
        rng = np.random.default_rng(0)
        for n in notes:
            v = min(self.voices, key=lambda v: abs(v.pitch - n.pitch))
            f0 = 440.0 * 2 ** ((n.pitch - 69) / 12)
            length = int((n.end - n.start + 0.04) * SR)
            t = np.arange(length) / SR
            ks = np.arange(1, HARMONICS + 1)
            ok = ks * f0 < SR / 2 - 1000
            tone = (v.amps[ok, None] * np.sin(2 * np.pi * f0 * ks[ok, None] * t[None])).sum(0)
            env = np.minimum(1.0, t / 0.003) * np.exp(-v.decay * t) * np.clip((t[-1] - t) / 0.04, 0, 1)
            burst = np.diff(rng.normal(0, 1, length + 1)) * np.exp(-t / 0.005) * v.noise
            a = int(n.start * SR)
            seg = (tone * env + burst) * (n.velocity / 100.0) ** 1.5
            out[a:a + length] += seg[: len(out) - a]
        dry = Audio(out[None, : int(frames * SR / sample_rate)].astype(np.float32), SR).resampled(sample_rate)
        return render(dry.with_channels(2), (), target_lufs=-18.0, where="harmonic-plus-noise")[0]


def fit_hn(inst) -> HarmonicNoise:
    """Fit one voice per recorded pitch from the sampler's own slices (the same material, a fair comparison)."""
    voices = []
    for pitch in sorted({s.pitch for s in inst.slices}):
        s = max((s for s in inst.slices if s.pitch == pitch), key=lambda s: s.length)
        x = inst.samples[s.offset:s.offset + s.length].astype(np.float64)
        body = x[s.attack + int(0.01 * SR): s.attack + int(0.21 * SR)]
        if len(body) < 1024:
            continue
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        spec = np.abs(np.fft.rfft(body * np.hanning(len(body))))
        freqs = np.fft.rfftfreq(len(body), 1 / SR)
        amps = np.array([spec[(freqs > k * f0 * 0.97) & (freqs < k * f0 * 1.03)].max(initial=0.0)
                         for k in range(1, HARMONICS + 1)])
        amps = amps / max(amps.max(), 1e-9)
        frames = x[s.attack:][: (len(x) - s.attack) // 441 * 441].reshape(-1, 441)
        rms = np.log(np.sqrt((frames ** 2).mean(1)) + 1e-9)
        decay = float(max(0.0, -np.polyfit(np.arange(len(rms)) * 0.01, rms, 1)[0])) if len(rms) > 3 else 2.0
        head = x[s.attack:s.attack + int(0.02 * SR)]
        hf = np.abs(np.fft.rfft(head))
        hff = np.fft.rfftfreq(len(head), 1 / SR)
        noise = float(np.sqrt((hf[hff > 3000] ** 2).sum() / max((hf ** 2).sum(), 1e-12)))
        voices.append(Voice(pitch, amps, decay, noise))
    return HarmonicNoise(voices)
