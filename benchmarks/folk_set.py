"""Folk dance grooves for `tempo_fit.py`: a bass on every beat, an off-beat chord, a melody running in sixteenths.

The "oom-pah" of a dance band (syrtos, polka, hasapiko, a two-step): the bass (or the guitar's thumb) plays every
beat, the chord answers on the off-beat eighth, a fiddle, clarinet or plucked lead runs in sixteenths with turns,
and a frame drum (when there is one) strikes low on the beat and high between. The annotated beat of such a groove
is the dancers' step, which the bass marks — a musical fact of the style, not a notational choice — while every
other onset layer runs two or four times faster, so a listener that trusts note density or a prior near 120 BPM
hears the off-beat chords as beats (the double). Tempi 66-96 BPM (the double 132-192 is still in the listener's
50-220 range). `tempo_fit.py` fits them (the `folk` group) together with the swing grooves, which pull the
other way; fitted alone they cost the drum songs (README, issue 19).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from swing_set import render_grooves

FOLK_TEMPI = (74, 84, 68, 92, 78, 88, 70, 96, 80, 66, 86, 76)
#: harmonic minor over the tonic (the Balkan / Greek colour), and plain major: scale degrees in semitones
SCALES = ((0, 2, 3, 5, 7, 8, 11), (0, 2, 4, 5, 7, 9, 11))
#: two-bar progressions as scale-degree roots (0-based), one chord a bar
PROGRESSIONS = ((0, 4), (0, 3), (3, 4), (0, 0), (5, 4))
LEADS = (40, 71, 105, 21, 24, 73)  # violin, clarinet, banjo, accordion, nylon guitar, flute
CHORDS = (24, 21, 25, 0)  # nylon guitar, accordion, steel guitar, piano
BASSES = (33, 32, 43, 24)  # finger bass, acoustic bass, contrabass, nylon guitar (the thumb)
DRUM_LOW, DRUM_HIGH = 64, 63  # low conga (the frame drum's "dum"), open high conga ("tek")


def groove(bpm: float, bars: int, seed: int) -> tuple[list, list, list, list]:
    """(drums, bass, chords, lead) notes as (start s, end s, pitch, velocity); two beats a bar."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    key = int(rng.integers(0, 12))
    scale = SCALES[int(rng.integers(0, len(SCALES)))]
    prog = PROGRESSIONS[int(rng.integers(0, len(PROGRESSIONS)))]
    jit = lambda: rng.normal(0.0, 0.008)  # noqa: E731
    drums, bass, chords, lead = [], [], [], []
    with_drum = rng.random() < 0.5
    deg = 0  # the lead's scale degree, walking by step with leaps now and then
    for bar in range(bars):
        root_deg = prog[bar % len(prog)]
        root = 40 + (key + scale[root_deg]) % 12  # E2..D#3
        third = scale[(root_deg + 2) % 7] - scale[root_deg]
        fifth = scale[(root_deg + 4) % 7] - scale[root_deg]
        for b in range(2):
            t = (bar * 2 + b) * beat
            p = root if b == 0 else root + (fifth % 12) - (12 if root + fifth % 12 > 52 else 0)
            s = max(0.0, t + jit())
            bass.append((s, s + 0.45 * beat, p, int(rng.integers(90, 110))))
            s = t + 0.5 * beat + jit()  # the "pah": the chord on the off-beat eighth
            for q in (third % 12, fifth % 12, 12):
                chords.append((s, s + 0.3 * beat, 55 + (key + scale[root_deg]) % 12 + q, int(rng.integers(55, 75))))
            if with_drum:
                drums.append((max(0.0, t + jit()), t + 0.1, DRUM_LOW, int(rng.integers(85, 105))))
                drums.append((t + 0.5 * beat + jit(), t + 0.5 * beat + 0.1, DRUM_HIGH, int(rng.integers(50, 70))))
                if rng.random() < 0.5:
                    drums.append((t + 0.75 * beat + jit(), t + 0.75 * beat + 0.1, DRUM_HIGH, int(rng.integers(40, 60))))
            # the lead: sixteenths, now and then an eighth (a held note or a turn's end)
            k = 0.0
            while k < 1.0 - 1e-9:
                length = 0.5 if rng.random() < 0.2 and k in (0.0, 0.5) else 0.25
                deg += int(rng.choice([-1, 1, 1, -1, 2, -2, 0]))
                deg = int(np.clip(deg, -3, 10))
                p = 67 + key % 12 + 12 * (deg // 7) + scale[deg % 7]
                s = t + k * beat + jit()
                lead.append((max(0.0, s), s + 0.9 * length * beat, p, int(rng.integers(70, 95)) + 10 * (k == 0.0)))
                k += length
    return drums, bass, chords, lead


def build_folk_set(cache: Path, n: int, seconds: float = 24.0) -> list[dict]:
    """Render (once, cached) `n` folk grooves of about `seconds`; clip dicts with wav path and bpm."""
    def clip(i: int) -> tuple[float, float, list]:
        bpm = FOLK_TEMPI[i % len(FOLK_TEMPI)]
        bars = int(np.ceil(seconds / (2 * 60.0 / bpm)))
        drums, bass, chords, lead = groove(bpm, bars, seed=2000 + i)
        return bpm, bars * 2 * 60.0 / bpm, [(drums, 0, True), (bass, BASSES[i % len(BASSES)], False),
                                            (chords, CHORDS[i % len(CHORDS)], False), (lead, LEADS[i % len(LEADS)], False)]

    return render_grooves(cache, n, "folk", clip)
