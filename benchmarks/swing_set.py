"""Swing grooves for `tempo_fit.py`: a jazz rhythm section rendered with the project's fluidsynth renderer.

The ride plays the timekeeper's pattern (quarter on every beat, the swung skip note two-thirds into beats 2 and 4),
the hi-hat foot closes on 2 and 4, the bass walks quarter notes through ii-V-I changes, the piano comps in the
Charleston rhythm with its "and of 2" pushed; bass and piano attack a little ahead of the ride (20-60 ms, as a
band sits against a ride it hears). The annotated beat of such a groove is the ride's and the walking bass's
quarter note — a musical fact of the style, not a notational choice — and the swung eighth (2:1) exists only at
that tempo: at half of it the skip falls a third into the beat, at double it falls on every other beat.
Tempi 120-212 BPM (the listener tries 50-220). `tempo_fit.py` fits them together with the folk grooves of
`folk_set.py`, which pull the other way (fitted alone, they cost the held-out four-part set; README, issue 19).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

SWING_TEMPI = (132, 150, 168, 186, 204, 212, 138, 120, 144, 176, 196, 160)
RIDE, HH_FOOT, KICK = 51, 44, 36
#: ii-V-I in major (degree of the root, chord tones in semitones over it)
CHANGES = [(2, (0, 3, 7, 10)), (7, (0, 4, 7, 10)), (0, (0, 4, 7, 11)), (0, (0, 4, 7, 11))]


def groove(bpm: float, bars: int, seed: int, pushed: bool = False) -> tuple[list, list, list]:
    """(drums, bass, piano) notes as (start s, end s, pitch, velocity). `pushed`: the piano comps on the swung "and"s
    before the beats (two to four anticipations a bar, accented, the kick "dropping bombs" with a third of them) and the drummer
    accents the ride's skip notes: the loudest attacks of the groove fall a third of a beat before its beats, where a
    beat fit that follows strength alone puts its grid (`listen.tempo.swing_beat_shift`)."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    ratio = rng.uniform(0.6, 0.7)  # the skip's place in the beat: 0.67 is the triplet swing
    key = int(rng.integers(0, 12))
    lead = rng.uniform(0.02, 0.06)  # bass and piano ahead of the ride
    jit = lambda: rng.normal(0.0, 0.008)  # noqa: E731
    drums, bass, piano = [], [], []
    for bar in range(bars):
        deg, tones = CHANGES[bar % len(CHANGES)]
        root = 36 + (key + deg) % 12
        for b in range(4):
            t = (bar * 4 + b) * beat
            drums.append((t + jit(), t + 0.2, RIDE, int(rng.integers(80, 100))))
            if b in (1, 3):
                skip = (100, 120) if pushed else (60, 80)
                drums.append((t + ratio * beat + jit(), t + ratio * beat + 0.1, RIDE, int(rng.integers(*skip))))
                drums.append((t + jit(), t + 0.1, HH_FOOT, int(rng.integers(55, 75))))
            if rng.random() < 0.15:
                drums.append((t + jit(), t + 0.1, KICK, int(rng.integers(40, 60))))  # feathered kick
            if b == 0:
                p = root
            elif b == 3:  # approach the next root by a half step
                nxt = 36 + (key + CHANGES[(bar + 1) % len(CHANGES)][0]) % 12
                p = nxt + int(rng.choice([-1, 1]))
            else:
                p = root + tones[int(rng.integers(1, len(tones)))]
            s = max(0.0, t - lead + jit())
            bass.append((s, s + 0.9 * beat, p + 12 * int(p < 40), int(rng.integers(85, 105))))
        chord = [60 + (key + deg + tn) % 12 for tn in tones[1:]] + [48 + (key + deg) % 12 + 12]
        # Charleston: 1 and the swung "and" of 2; pushed: the swung "and"s of the beats (each anticipates the next)
        comp = [(0.0, 0.8), (1.0 + ratio, 1.2)]
        if pushed:  # two to four of the bar's four anticipations, a kick with a third of them
            comp = [(b + ratio, 0.5) for b in sorted(rng.choice(4, int(rng.integers(2, 5)), replace=False))]
            drums += [((bar * 4 + at) * beat + jit(), (bar * 4 + at) * beat + 0.1, KICK, int(rng.integers(85, 105)))
                      for at, _ in comp if rng.random() < 0.33]
        for at, length in comp:
            t = (bar * 4 + at) * beat
            s = max(0.0, t - lead + jit())
            for p in chord:
                piano.append((s, s + length * beat, p, int(rng.integers(*((85, 105) if pushed else (65, 85))))))
    return drums, bass, piano


def build_swing_set(cache: Path, n: int, seconds: float = 24.0, pushed: bool = False,
                    first_seed: int | None = None) -> list[dict]:
    """Render (once, cached) `n` swing grooves of about `seconds` (`pushed`: comping on the anticipations, another
    seed range; `first_seed`: another set again, e.g. one held out from what was set on these); clip dicts with
    wav path and bpm."""
    def clip(i: int) -> tuple[float, float, list]:
        bpm = SWING_TEMPI[i % len(SWING_TEMPI)]
        bars = int(np.ceil(seconds / (4 * 60.0 / bpm)))
        seed0 = first_seed if first_seed is not None else 2000 if pushed else 1000
        drums, bass, piano = groove(bpm, bars, seed=seed0 + i, pushed=pushed)
        return bpm, bars * 4 * 60.0 / bpm, [(drums, 0, True), (bass, 32, False), (piano, 0 if i % 2 else 4, False)]

    return render_grooves(cache, n, "pushed" if pushed else "swing", clip)


def render_grooves(cache: Path, n: int, prefix: str, clip: Callable[[int], tuple[float, float, list]]) -> list[dict]:
    """Render (once, cached in `cache/index.json`) the grooves `clip(i)` = (bpm, seconds of music, [(notes
    (start, end, pitch, velocity), GM program, is_drum), ...]) for i < n with FluidR3 GM, one second of tail; clip
    dicts with wav path and bpm. Shared by the swing and folk sets."""
    import pretty_midi

    from backline.engines.core.audio import write_audio
    from backline.engines.core.render import render_midi

    cache.mkdir(parents=True, exist_ok=True)
    index = cache / "index.json"
    clips = json.loads(index.read_text()) if index.is_file() else []
    for i in range(len(clips), n):
        bpm, end, parts = clip(i)
        pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
        for notes, prog, is_drum in parts:
            inst = pretty_midi.Instrument(prog, is_drum=is_drum)
            inst.notes = [pretty_midi.Note(v, p, s, e) for s, e, p, v in notes if e > s]
            pm.instruments.append(inst)
        mid = cache / f"{prefix}{i:02d}.mid"
        pm.write(str(mid))
        wav = cache / f"{prefix}{i:02d}.wav"
        write_audio(wav, render_midi(mid, "FluidR3_GM", frames=int((end + 1.0) * 44100)), overwrite=True, bit_depth=16)
        clips.append({"rel": f"{prefix}{i:02d}", "bpm": float(bpm), "wav": str(wav)})
        index.write_text(json.dumps(clips))
    return clips[:n]
