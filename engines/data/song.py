"""Seeded song composition for the training corpus: form, harmony, and six parts with playing styles.

A `Song` is pure data (notes in integer MIDI ticks at `PPQ` per quarter note), so the same seed always gives
the same notes and hence byte-identical MIDI. Randomness comes from one `numpy.random.Generator` per song,
drawn in a fixed order.

What makes it musical enough to learn from (and why):
- Form: intro / verse / chorus / (bridge) / outro in 4- or 8-bar phrases; the same section name keeps
  its chord progression, as songs do.
- Harmony: diatonic progressions (roman numerals) in a major or minor key, one chord per bar (sometimes
  two bars), with dominant 7ths and, for walking-bass songs, 7th chords throughout.
- Drums: one groove per song (rock, funk, half-time, shuffle, disco, bossa, ballad; waltz for 3/4; a 6/8 groove), an
  A/B variant per section (hats vs ride/open hats), and **fills where drummers put them**: the last bar or
  half-bar of every section before the next one (crash on the next downbeat), plus occasional fills at
  the end of a 4-bar phrase inside 8-bar sections. Fills are tom runs, snare rolls, snare/tom pairs or
  triplet tom runs; the groove's hats stop during a fill, so fills differ clearly from the groove.
- Humanisation: velocities get seeded Gaussian spread; onsets get a few ticks of jitter (integer ticks,
  so every onset is exactly representable in the MIDI file and exactly recoverable by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PPQ = 480
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ROLES = ("bass", "drums", "piano", "guitar", "strings", "lead")
#: MIDI channel (0-based, mido) per role; drums on GM channel 10 = mido channel 9.
CHANNELS = {"bass": 0, "drums": 9, "piano": 1, "guitar": 2, "strings": 3, "lead": 4}

QUALITY_INTERVALS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "7": (0, 4, 7, 10),
                     "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "m7b5": (0, 3, 6, 10)}
QUALITY_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "7": "7", "maj7": "maj7", "min7": "m7", "m7b5": "m7b5"}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
DIATONIC = {"major": ("maj", "min", "min", "maj", "maj", "min", "dim"),
            "minor": ("min", "dim", "maj", "min", "min", "maj", "maj")}
SEVENTHS = {"maj": "maj7", "min": "min7", "dim": "m7b5", "7": "7"}
# Progressions as scale degrees (0 = I); "V" marks the harmonic-minor dominant (major V in a minor key).
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (1, 4, 0, 0), (0, 2, 3, 4),
              (3, 0, 4, 5), (0, 3, 0, 4), (0, 4, 3, 3), (5, 1, 4, 0)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, "V"), (5, 6, 0, 0),
              (0, 3, 0, "V"), (3, 0, 6, 2)),
}

# GM percussion keys (channel 10).
KICK, SNARE, RIM, CLAP, HH_CLOSED, HH_PEDAL, HH_OPEN, CRASH, RIDE = 36, 38, 37, 39, 42, 44, 46, 49, 51
TOM_FLOOR, TOM_LOW, TOM_MID, TOM_HIGH = 41, 45, 47, 50

BASS_STYLES = ("root_fifth", "walking", "syncopated", "octave", "sustained",
               "funk16", "reggae", "disco", "tumbao", "ballad")
DRUM_GROOVES = {(4, 4): ("rock", "funk", "half_time", "shuffle", "disco", "bossa", "ballad"),
                (3, 4): ("waltz",), (6, 8): ("six_eight",)}
PIANO_STYLES = ("block", "comp", "arpeggio", "ballad")
GUITAR_STYLES = ("strum", "arpeggio", "power", "funk")
STRINGS_STYLES = ("pad", "half", "pulse")
LEAD_STYLES = ("melody", "long", "riff")
FILL_PATTERNS = ("tom_run", "snare_roll", "snare_toms", "triplet_toms")

# Program choices per role, mido 0-based (see gm.py). Only programs that start within 10 ms of their
# note-on, played back to back, in at least one of the three GM soundfonts (measured by calibrate_fonts.py
# into font_onsets.json): slow-attack or late-starting patches (bowed string ensembles, choirs, warm pads,
# saxes, flutes, oboe, clarinet, trumpet, violin, overdrive, acoustic, pick and synth-2 bass) would smear onsets and
# fail the corpus's 15 ms onset check. Brass Section passed the probe but was 35 ms late on F5 after a
# neighbouring note inside songs (TimGM6mb), so it is out too. So the
# "strings" role is pizzicato/harp/fast synth pads rather than bowed ensembles and choirs.
PROGRAMS = {
    "bass": (33, 35, 36, 37, 39),
    "piano": (0, 1, 2, 3, 4, 5, 7, 11, 16, 17, 18),
    "guitar": (24, 25, 26, 27),
    "guitar_power": (30,),
    "guitar_funk": (26, 27, 28),
    "strings": (45, 46, 88, 90),
    "lead": (62, 80, 81, 84, 85, 87),
}


@dataclass(frozen=True)
class Note:
    start: int  # ticks
    duration: int  # ticks
    pitch: int
    velocity: int


@dataclass
class Part:
    role: str
    style: str
    program: int  # mido, 0-based; 0 for drums (Slakh convention)
    is_drum: bool
    channel: int
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    name: str
    start_bar: int  # 1-based
    bars: int


@dataclass(frozen=True)
class Chord:
    bar: int  # 1-based
    root_pc: int
    quality: str

    @property
    def pitch_classes(self) -> list[int]:
        return [(self.root_pc + i) % 12 for i in QUALITY_INTERVALS[self.quality]]

    @property
    def symbol(self) -> str:
        return NOTE_NAMES[self.root_pc] + QUALITY_SUFFIX[self.quality]


@dataclass(frozen=True)
class Fill:
    bar: int  # 1-based
    kind: str  # "bar" | "half"
    reason: str  # "section_end" | "random"
    pattern: str


@dataclass
class Song:
    key_pc: int
    mode: str
    bpm: float
    numerator: int
    denominator: int
    sections: list[Section]
    chords: list[Chord]
    fills: list[Fill]
    parts: list[Part]
    tail_seconds: float = 2.0

    @property
    def bars(self) -> int:
        return sum(s.bars for s in self.sections)

    @property
    def bar_ticks(self) -> int:
        return self.numerator * 4 * PPQ // self.denominator

    @property
    def end_tick(self) -> int:
        """Last tick of the file: the music plus a silent tail that lets the last notes ring out."""
        return self.bars * self.bar_ticks + int(round(self.tail_seconds * self.bpm / 60.0 * PPQ))

    def seconds(self, tick: float) -> float:
        return tick / PPQ * 60.0 / self.bpm

    @property
    def key_name(self) -> str:
        return NOTE_NAMES[self.key_pc]

    def extras(self, stem_ids: list[str] | None = None) -> dict:
        """The extras.json labels (see HELPERS_COMMON.md for the format other code relies on)."""
        ids = stem_ids or [f"S{i:02d}" for i in range(len(self.parts))]
        return {
            "key": self.key_name,
            "mode": self.mode,
            "tempo_bpm": float(self.bpm),
            "time_signature": [self.numerator, self.denominator],
            "bars": self.bars,
            "ppq": PPQ,
            "tail_seconds": self.tail_seconds,
            "sections": [{"name": s.name, "start_bar": s.start_bar, "bars": s.bars} for s in self.sections],
            "chords": [{"bar": c.bar, "symbol": c.symbol, "root_pc": c.root_pc, "quality": c.quality,
                        "pitch_classes": c.pitch_classes} for c in self.chords],
            "fills": [{"bar": f.bar, "kind": f.kind, "reason": f.reason, "pattern": f.pattern} for f in self.fills],
            "styles": {sid: p.style for sid, p in zip(ids, self.parts)},
            "roles": {sid: p.role for sid, p in zip(ids, self.parts)},
        }


# ------------------------------------------------------------------------------------------------ helpers
def _vel(rng: np.random.Generator, base: float, spread: float = 7.0) -> int:
    return int(np.clip(round(base + rng.normal(0.0, spread)), 1, 127))


def _jitter(rng: np.random.Generator, max_ticks: int = 4) -> int:
    return int(np.clip(round(rng.normal(0.0, 1.5)), -max_ticks, max_ticks))


def _q(quarters: float) -> int:
    return int(round(quarters * PPQ))


def voice(pcs: list[int], low: int, high: int, center: float | None = None) -> list[int]:
    """One pitch per pitch class inside [low, high), each nearest to `center` (smooth voice leading)."""
    center = (low + high) / 2 if center is None else center
    out = []
    for pc in pcs:
        cands = [p for p in range(low, high) if p % 12 == pc]
        if cands:
            out.append(min(cands, key=lambda p: (abs(p - center), p)))
    return sorted(set(out))


def bass_root(pc: int) -> int:
    """Root in the low register E1 (28) .. D#2 (39)."""
    return 28 + (pc - 4) % 12


# ------------------------------------------------------------------------------------------------- form
def _form(rng: np.random.Generator, min_bars: int, max_bars: int) -> list[Section]:
    target = int(rng.integers(min_bars, max_bars + 1))
    with_outro = target >= 12
    budget = target - 4 - (4 if with_outro else 0)
    cycle = ["verse", "chorus", "verse", "chorus", "bridge", "chorus", "chorus"]
    names: list[tuple[str, int]] = [("intro", 4)]
    i = 0
    while budget >= 4:
        name = cycle[i % len(cycle)]
        length = 8 if (budget >= 8 and rng.random() < 0.65) else 4
        if name == "bridge" and rng.random() < 0.5:
            length = 4
        names.append((name, length))
        budget -= length
        i += 1
    if with_outro:
        names.append(("outro", 4))
    sections, bar = [], 1
    for name, length in names:
        sections.append(Section(name, bar, length))
        bar += length
    return sections


def _chords(rng: np.random.Generator, sections: list[Section], key_pc: int, mode: str,
            sevenths: bool) -> list[Chord]:
    scale = SCALES[mode]
    progs: dict[str, tuple] = {}
    slow: dict[str, bool] = {}
    chords = []
    for sec in sections:
        if sec.name not in progs:
            options = PROGRESSIONS[mode]
            progs[sec.name] = options[int(rng.integers(len(options)))]
            slow[sec.name] = sec.bars == 8 and rng.random() < 0.2
        prog = progs[sec.name]
        for k in range(sec.bars):
            idx = (k // 2 if slow[sec.name] else k) % len(prog)
            degree = prog[idx]
            if degree == "V":
                root, quality = (key_pc + 7) % 12, "maj"
            else:
                root, quality = (key_pc + scale[degree]) % 12, DIATONIC[mode][degree]
            if quality == "maj" and (root - key_pc) % 12 == 7 and rng.random() < 0.4:
                quality = "7"
            if sevenths:  # jazz colours: the dominant (major chord on the 5th) gets a b7, others their 7th
                dominant = quality == "maj" and (root - key_pc) % 12 == 7
                quality = "7" if dominant else SEVENTHS.get(quality, quality)
            chords.append(Chord(sec.start_bar + k, root, quality))
    return chords


# ------------------------------------------------------------------------------------------------- bass
def _bass(rng, song_ctx, style) -> list[Note]:
    chords, bar_ticks, meter = song_ctx["chords"], song_ctx["bar_ticks"], song_ctx["meter"]
    scale_pcs = song_ctx["scale_pcs"]
    beats = meter[0] if meter != (6, 8) else 2
    beat_ticks = bar_ticks // beats
    # every note stops a 1/24 note (80 ticks) before the next: a bass player's damping; without it the
    # previous note's release masks the next attack of synth and slap basses by 15–20 ms
    GAP = PPQ // 6  # noqa: N806
    notes: list[Note] = []
    sync_patterns = {(4, 4): ((0, 3, 6, 8, 11, 14), (0, 3, 8, 10, 12), (0, 2, 6, 8, 10, 13, 14)),
                     (3, 4): ((0, 3, 6, 8), (0, 4, 7, 10)), (6, 8): ((0, 3, 6, 9, 10), (0, 5, 6, 8))}
    sync = sync_patterns[meter][int(rng.integers(len(sync_patterns[meter])))]
    for i, ch in enumerate(chords):
        t0 = i * bar_ticks
        root = bass_root(ch.root_pc)
        fifth = root + 7
        nxt = bass_root(chords[i + 1].root_pc) if i + 1 < len(chords) else root
        events: list[tuple[int, int, int]] = []  # (offset, duration, pitch)
        if style == "sustained":
            events = [(0, bar_ticks - GAP, root)]
        elif style == "root_fifth":
            if meter == (6, 8):
                events = [(0, beat_ticks - GAP, root), (beat_ticks, beat_ticks - GAP, fifth)]
            else:
                pitches = [root, fifth, root + 12 if rng.random() < 0.3 else root, fifth][:beats]
                if beats == 3:
                    pitches = [root, fifth, fifth]
                events = [(b * beat_ticks, beat_ticks - GAP, p) for b, p in enumerate(pitches)]
        elif style == "octave":
            step = PPQ // 2
            events = [(k * step, step - GAP, root if k % 2 == 0 else root + 12) for k in range(bar_ticks // step)]
        elif style == "syncopated":
            step = PPQ // 4
            pool = [root, root, root + 12, fifth, root + 10 if ch.quality in ("7", "min7") else fifth]
            for j, s in enumerate(sync):
                end = sync[j + 1] if j + 1 < len(sync) else bar_ticks // step
                pitch = root if j == 0 else pool[int(rng.integers(len(pool)))]
                events.append((s * step, max((end - s) * step - GAP, 60), pitch))
        elif style == "walking":
            tones = [root + iv for iv in QUALITY_INTERVALS[ch.quality]]
            line = [root]
            cur = root
            for _ in range(beats - 2):
                opts = [t for t in tones + [root + 12] if t != cur] + [cur + d for d in (-2, 2)
                                                                       if (cur + d) % 12 in scale_pcs]
                cur = opts[int(rng.integers(len(opts)))]
                line.append(cur)
            approach = nxt + (1 if rng.random() < 0.5 else -1) if rng.random() < 0.7 else nxt + 7
            while approach - cur > 7:
                approach -= 12
            while cur - approach > 7:
                approach += 12
            line.append(int(np.clip(approach, 26, 55)))
            events = [(b * beat_ticks, beat_ticks - GAP, p) for b, p in enumerate(line[:beats])]
        elif style in _PATTERN_STYLES:
            if style not in song_ctx["patterns"]:  # one pattern per song, drawn once
                table = _PATTERN_STYLES[style]
                song_ctx["patterns"][style] = table[int(rng.integers(len(table)))]
            events = _bass_pattern(style, ch, chords[i + 1] if i + 1 < len(chords) else ch, bar_ticks,
                                   song_ctx["patterns"][style])
        for off, dur, pitch, *vel in events:
            start = t0 + off + (_jitter(rng) if off else 0)
            notes.append(Note(max(start, 0), max(dur, 30), int(np.clip(pitch, 24, 60)),
                              _vel(rng, vel[0] if vel else (100 if off == 0 else 88))))
    return notes


# The newer bass styles are written as one 16th-step pattern per song: (step, length in steps, tone, velocity),
# tone naming a chord degree: "R" root, "O" octave, "5" fifth, "3" third, "7" seventh (b7 unless maj7),
# "5-" fifth below, "N" the next chord's root (an anticipation), "g" a muted ghost of the root.
_FUNK16 = (((0, 2, "R", 104), (3, 1, "g", 60), (4, 1, "O", 92), (6, 2, "7", 90), (9, 1, "g", 58),
            (10, 2, "5", 92), (12, 1, "R", 96), (14, 1, "O", 90), (15, 1, "3", 84)),
           ((0, 3, "R", 104), (3, 1, "R", 84), (6, 1, "O", 92), (7, 1, "g", 58), (8, 2, "5", 92),
            (11, 1, "7", 86), (12, 2, "R", 94), (14, 1, "g", 58), (15, 1, "O", 86)))
_REGGAE = (((2, 2, "R", 96), (4, 2, "R", 90), (6, 2, "5", 88), (10, 2, "3", 90), (12, 3, "R", 94)),
           ((2, 1, "R", 96), (3, 1, "R", 84), (4, 4, "5-", 92), (10, 2, "3", 88), (12, 2, "5", 90),
            (14, 2, "R", 86)))
_DISCO = (((0, 2, "R", 104), (2, 2, "O", 92), (4, 1, "R", 96), (5, 1, "R", 84), (6, 2, "O", 92), (8, 2, "R", 100),
           (10, 2, "O", 92), (12, 1, "R", 96), (13, 1, "R", 84), (14, 2, "O", 92)),)
_TUMBAO = (((6, 6, "5", 96), (12, 8, "N", 100)), ((3, 3, "R", 92), (6, 6, "5", 96), (12, 8, "N", 100)))
_BALLAD = (((0, 8, "R", 84), (8, 6, "5", 76), (14, 2, "3", 70)), ((0, 12, "R", 84), (12, 4, "5", 74)),
           ((0, 16, "R", 84),))
_PATTERN_STYLES = {"funk16": _FUNK16, "reggae": _REGGAE, "disco": _DISCO, "tumbao": _TUMBAO, "ballad": _BALLAD}


def _bass_pattern(style: str, ch: Chord, nxt: Chord, bar_ticks: int, pattern) -> list[tuple[int, int, int, int]]:
    """One bar of a pattern style on chord `ch` (16th steps; steps past a shorter bar are dropped)."""
    step = PPQ // 4
    root = bass_root(ch.root_pc)
    ivs = QUALITY_INTERVALS[ch.quality]
    third, fifth = root + ivs[1], root + ivs[2]
    # the chord's own 7th; over a triad the b7 only where it cannot clash (minor), else the octave
    seventh = root + (ivs[3] if len(ivs) > 3 else 10 if ch.quality == "min" else 12)
    tone = {"R": root, "O": root + 12, "5": fifth, "3": third, "7": seventh, "5-": fifth - 12,
            "N": bass_root(nxt.root_pc), "g": root}
    steps = bar_ticks // step
    out = []
    for s, length, name, vel in pattern:
        if s >= steps:
            continue
        length = min(length, steps - s) if name != "N" else length  # an anticipation rings over the bar line
        short = 50 if name == "g" else PPQ // 6
        dur = max(length * step - short, 40) if name != "g" else 50
        out.append((s * step, dur, int(tone[name]), int(vel)))
    return out


# ------------------------------------------------------------------------------------------------ drums
def _groove(name: str, variant: str) -> list[tuple[int, int, int]]:
    """(step, pitch, velocity) for one bar; 16th steps, except `shuffle` (12 triplet-8th steps)."""
    ride = variant == "B"
    cym = RIDE if ride else HH_CLOSED
    g: list[tuple[int, int, int]] = []
    if name == "rock":
        g += [(s, cym, 92 if s % 4 == 0 else 72) for s in range(0, 16, 2)]
        g += [(0, KICK, 112), (8, KICK, 105), (10, KICK, 88)] + [(4, SNARE, 112), (12, SNARE, 115)]
        if ride:
            g += [(6, KICK, 80)]
    elif name == "funk":
        g += [(s, HH_CLOSED, 90 if s % 4 == 0 else (75 if s % 2 == 0 else 55)) for s in range(16) if s != 14]
        g += [(14, HH_OPEN, 85)]
        g += [(0, KICK, 112), (3, KICK, 90), (6, KICK, 95), (10, KICK, 100)]
        g += [(4, SNARE, 115), (12, SNARE, 115), (7, SNARE, 38), (9, SNARE, 35), (15, SNARE, 40)]
    elif name == "half_time":
        g += [(s, cym, 88 if s % 4 == 0 else 68) for s in range(0, 16, 2)]
        g += [(0, KICK, 112), (3, KICK, 85), (11, KICK, 95), (8, SNARE, 118)]
    elif name == "shuffle":  # 12 triplet-eighth steps per 4/4 bar
        g += [(s, cym, 90 if s % 3 == 0 else 65) for s in range(12) if s % 3 != 1]
        g += [(0, KICK, 110), (6, KICK, 100), (8, KICK, 80), (3, SNARE, 112), (9, SNARE, 114)]
    elif name == "disco":
        g += [(s, KICK, 112) for s in (0, 4, 8, 12)] + [(4, CLAP if ride else SNARE, 110), (12, CLAP if ride else SNARE, 110)]
        g += [(s, HH_OPEN, 85) for s in (2, 6, 10, 14)] + [(s, HH_CLOSED, 62) for s in (0, 4, 8, 12)]
    elif name == "bossa":  # surdo-like kick (1, a-of-2, 3, a-of-4), cross-stick clave (3-side), soft eighths
        g += [(s, cym, 70 if s % 4 == 0 else 52) for s in range(0, 16, 2)]
        g += [(0, KICK, 100), (6, KICK, 78), (8, KICK, 96), (14, KICK, 78)]
        g += [(0, RIM, 88), (6, RIM, 84), (12, RIM, 88)] if not ride else [(4, RIM, 86), (10, RIM, 86)]
    elif name == "ballad":  # soft eighths, sparse kick, backbeat snare
        g += [(s, cym, 72 if s % 4 == 0 else 54) for s in range(0, 16, 2)]
        g += [(0, KICK, 100), (10, KICK, 76), (4, SNARE, 96), (12, SNARE, 100)]
        if ride:
            g += [(8, KICK, 84)]
    elif name == "waltz":  # 3/4, 12 sixteenth steps
        g += [(s, cym, 85 if s % 4 == 0 else 65) for s in range(0, 12, 2)]
        g += [(0, KICK, 110), (4, SNARE, 80), (8, SNARE, 85)]
        if ride:
            g += [(10, KICK, 75)]
    elif name == "six_eight":  # 6/8, 12 sixteenth steps = six eighths
        g += [(s, cym, 90 if s in (0, 6) else 68) for s in range(0, 12, 2)]
        g += [(0, KICK, 112), (10, KICK, 80), (6, SNARE, 112)]
    else:  # pragma: no cover
        raise ValueError(name)
    return g


def _fill_notes(rng, pattern: str, length: int, bpm: float) -> list[tuple[int, int, int]]:
    """(offset ticks, pitch, velocity) for a fill lasting `length` ticks."""
    out: list[tuple[int, int, int]] = []
    if pattern == "triplet_toms":
        sub = PPQ // 3
    else:
        sub = PPQ // 4 if bpm <= 150 else PPQ // 2
    n = max(length // sub, 2)
    ramp = np.linspace(82, 118, n)
    if pattern == "tom_run":
        voices = [SNARE, TOM_HIGH, TOM_MID, TOM_FLOOR]
        for k in range(n):
            out.append((k * sub, voices[min(k * len(voices) // n, 3)], int(ramp[k])))
            if k % 4 == 0:
                out.append((k * sub, KICK, 95))
    elif pattern == "snare_roll":
        ramp = np.linspace(50, 122, n)
        for k in range(n):
            out.append((k * sub, SNARE, int(ramp[k])))
        if bpm <= 110 and sub == PPQ // 4:  # 32nds on the last beat at slow tempos: a real roll
            for k in range(n - 4, n):
                out.append((k * sub + sub // 2, SNARE, int(ramp[k]) - 10))
        out.append((0, KICK, 100))
    elif pattern == "snare_toms":
        seq = [SNARE, SNARE, TOM_HIGH, TOM_HIGH, TOM_MID, TOM_MID, TOM_FLOOR, TOM_FLOOR]
        for k in range(n):
            out.append((k * sub, seq[(k * len(seq) // n) if n >= 8 else (2 * k) % 8], int(ramp[k])))
            if k % 2 == 0:
                out.append((k * sub, KICK, 90))
    elif pattern == "triplet_toms":
        voices = [SNARE, TOM_HIGH, TOM_MID, TOM_FLOOR]
        for k in range(n):
            out.append((k * sub, voices[(k // 3) % 4] if n > 6 else voices[min(k * 4 // n, 3)], int(ramp[k])))
            if k % 3 == 0:
                out.append((k * sub, KICK, 92))
    return [(o, p, int(np.clip(v + rng.normal(0, 4), 1, 127))) for o, p, v in out if o < length]


def _drums(rng, ctx, groove: str, sections: list[Section]) -> tuple[list[Note], list[Fill]]:
    bar_ticks, bpm = ctx["bar_ticks"], ctx["bpm"]
    steps = 12 if groove in ("shuffle", "waltz", "six_eight") else 16
    step_ticks = bar_ticks // steps
    fills: list[Fill] = []
    fill_at: dict[int, tuple[str, str]] = {}  # 0-based bar -> (kind, reason)
    for si, sec in enumerate(sections):
        last = sec.start_bar - 1 + sec.bars - 1
        if si + 1 < len(sections):
            fill_at[last] = ("bar" if rng.random() < 0.6 else "half", "section_end")
        if sec.bars == 8 and rng.random() < 0.3:
            fill_at[sec.start_bar - 1 + 3] = ("half" if rng.random() < 0.7 else "bar", "random")
    crash_bars = {0}
    for b, (_kind, reason) in fill_at.items():
        if reason == "section_end" or rng.random() < 0.5:
            crash_bars.add(b + 1)
    variant_of = {}
    for sec in sections:
        v = "B" if sec.name in ("chorus", "bridge") else "A"
        for k in range(sec.bars):
            variant_of[sec.start_bar - 1 + k] = v
    n_bars = sum(s.bars for s in sections)
    notes: list[Note] = []
    for b in range(n_bars):
        t0 = b * bar_ticks
        fill_start = bar_ticks
        if b in fill_at:
            kind, reason = fill_at[b]
            fill_start = 0 if kind == "bar" else bar_ticks // 2
            pattern = FILL_PATTERNS[int(rng.integers(len(FILL_PATTERNS)))]
            if groove in ("shuffle", "six_eight") and rng.random() < 0.6:
                pattern = "triplet_toms"
            fills.append(Fill(b + 1, kind, reason, pattern))
            for off, pitch, vel in _fill_notes(rng, pattern, bar_ticks - fill_start, bpm):
                notes.append(Note(t0 + fill_start + off, 60, pitch, vel))
        for step, pitch, vel in _groove(groove, variant_of[b]):
            off = step * step_ticks
            if off >= fill_start:
                continue
            if b in crash_bars and step == 0 and pitch in (HH_CLOSED, RIDE, HH_OPEN):
                pitch, vel = CRASH, 112
            jit = _jitter(rng, 3) if off else 0
            notes.append(Note(t0 + off + jit, 60, pitch, _vel(rng, vel, 6)))
    return _let_ring(notes), fills


def _let_ring(notes: list[Note]) -> list[Note]:
    """Hold each drum hit until the next hit of the same key (at most two beats).

    fluidsynth honours note-offs on the drum channel, and some kits (TimGM6mb's hi-hats) end their release
    with an audible click ~150 ms after the note-off: a phantom onset between the real ones. One-shot samples
    held to their natural end decay to silence instead.
    """
    out: list[Note] = []
    by_pitch: dict[int, list[Note]] = {}
    for n in sorted(notes, key=lambda n: (n.pitch, n.start)):
        by_pitch.setdefault(n.pitch, []).append(n)
    for hits in by_pitch.values():
        for a, b in zip(hits, hits[1:] + [None]):
            gap = (b.start - a.start - 1) if b is not None else 2 * PPQ
            out.append(Note(a.start, max(min(gap, 2 * PPQ), 1), a.pitch, a.velocity))
    return out


# ----------------------------------------------------------------------------------------- harmony parts
def _rhythm(meter: tuple[int, int], style: str, rng) -> list[tuple[float, float]]:
    """(onset, duration) in quarter notes for one bar."""
    table = {
        (4, 4): {"whole": [(0, 4)], "half": [(0, 2), (2, 2)], "quarters": [(0, 1), (1, 1), (2, 1), (3, 1)],
                 "comp": [(0, 1), (1.5, 0.5), (2.5, 1), (3.5, 0.5)], "push": [(0, 1.5), (1.5, 2.5)],
                 "strum": [(0, 1), (1, 0.5), (1.5, 1), (2.5, 0.5), (3, 0.5), (3.5, 0.5)],
                 "eighths": [(k / 2, 0.5) for k in range(8)]},
        (3, 4): {"whole": [(0, 3)], "half": [(0, 1), (1, 2)], "quarters": [(0, 1), (1, 1), (2, 1)],
                 "comp": [(0, 1.5), (1.5, 1.5)], "push": [(0, 1), (1.5, 1.5)],
                 "strum": [(0, 1), (1, 0.5), (1.5, 0.5), (2, 1)], "eighths": [(k / 2, 0.5) for k in range(6)]},
        (6, 8): {"whole": [(0, 3)], "half": [(0, 1.5), (1.5, 1.5)], "quarters": [(0, 1), (1, 0.5), (1.5, 1), (2.5, 0.5)],
                 "comp": [(0, 1), (1.5, 1)], "push": [(0, 1.5), (2, 1)],
                 "strum": [(0, 1), (1, 0.5), (1.5, 1), (2.5, 0.5)], "eighths": [(k / 2, 0.5) for k in range(6)]},
    }[meter]
    return table[style]


def _chord_part(rng, ctx, role: str, style: str) -> list[Note]:
    chords, bar_ticks, meter = ctx["chords"], ctx["bar_ticks"], ctx["meter"]
    bar_q = bar_ticks / PPQ
    notes: list[Note] = []
    low, high = {"piano": (55, 77), "guitar": (52, 72), "strings": (58, 82)}[role]
    center = (low + high) / 2
    strum = max(1, int(round(0.006 * ctx["bpm"] / 60 * PPQ)))  # ~6 ms per string in ticks at this tempo
    if role == "piano":
        rhythm_name = {"block": ("half", "quarters", "whole")[int(rng.integers(3))], "comp": "comp",
                       "ballad": "half", "arpeggio": "eighths"}[style]
    elif role == "guitar":
        rhythm_name = {"strum": "strum", "arpeggio": "eighths", "power": "eighths", "funk": "eighths"}[style]
    else:
        rhythm_name = {"pad": "whole", "half": "half", "pulse": "quarters"}[style]
    rhythm = _rhythm(meter, rhythm_name, rng)
    funk_steps = sorted(set(int(s) for s in rng.choice(int(bar_q * 4), size=int(bar_q * 2), replace=False)) | {0})
    for i, ch in enumerate(chords):
        t0 = i * bar_ticks
        vox = voice(ch.pitch_classes, low, high, center)
        center = 0.7 * center + 0.3 * float(np.mean(vox))
        if style in ("arpeggio",):
            seq = vox + vox[-2:0:-1] if len(vox) > 2 else vox
            for k, (on, dur) in enumerate(rhythm):
                notes.append(Note(t0 + _q(on) + (_jitter(rng) if on else 0), _q(dur) - 20, seq[k % len(seq)],
                                  _vel(rng, 84 if k % 2 == 0 else 72)))
            continue
        if style == "power":
            r = 40 + (ch.root_pc - 4) % 12
            vox = [r, r + 7, r + 12]
            for on, dur in rhythm:
                notes += [Note(t0 + _q(on), _q(dur) * 2 // 3, p, _vel(rng, 96 if on % 1 == 0 else 84)) for p in vox]
            continue
        if style == "funk":
            top = [p for p in voice(ch.pitch_classes[1:], 62, 78)][:2]
            for s in funk_steps:
                on = t0 + s * PPQ // 4
                notes += [Note(on, PPQ // 8, p, _vel(rng, 92 if s % 4 == 0 else 76)) for p in top]
            continue
        for on, dur in rhythm:
            start = t0 + _q(on) + (_jitter(rng) if on else 0)
            # pads breathe before the next chord (an 8th for whole-bar pads, else a 16th) so that each
            # chord has a clean attack: tied or overlapping pad chords have no audible onset
            gap = 30 if role != "strings" else (PPQ // 2 if style == "pad" else PPQ // 4)
            length = max(_q(dur) - gap, 40)
            base = 90 if on == 0 else 78
            if role == "guitar":  # strum: ~6 ms between strings, downstrokes low→high, upstrokes high→low
                order = vox if (on % 1 == 0) else vox[::-1]
                for j, p in enumerate(order):
                    notes.append(Note(start + strum * j, length - strum * j, p, _vel(rng, base - 3 * j)))
            else:
                notes += [Note(start, length, p, _vel(rng, base if role == "piano" else 80)) for p in vox]
        if role == "piano" and style in ("ballad", "block"):
            lh = voice([ch.root_pc], 40, 52)[0]
            notes.append(Note(t0, bar_ticks - 40, lh, _vel(rng, 85)))
    return notes


def _lead(rng, ctx, style: str, sections: list[Section]) -> list[Note]:
    chords, bar_ticks, meter, scale_pcs = ctx["chords"], ctx["bar_ticks"], ctx["meter"], ctx["scale_pcs"]
    bar_q = bar_ticks / PPQ
    scale = sorted(p for p in range(60, 86) if p % 12 in scale_pcs)
    if meter == (4, 4):
        rhythms = [[0, 1, 2, 3], [0, 0.5, 1, 2, 3], [0, 1.5, 2, 3], [0, 0.5, 1, 1.5, 2, 3], [0, 1, 2.5, 3]]
        long_r = [[0, 2], [0], [0, 3]]
    else:
        rhythms = [[0, 1, 2], [0, 0.5, 1, 2], [0, 1.5, 2], [0, 1, 1.5, 2, 2.5]]
        long_r = [[0], [0, 1.5]]
    riff = rhythms[int(rng.integers(len(rhythms)))]
    riff_steps = [int(rng.integers(-2, 3)) for _ in riff]
    cur = scale[len(scale) // 2]
    notes: list[Note] = []
    plays = set()
    for sec in sections:
        if sec.name in ("intro", "outro") and len(sections) > 2:
            continue
        for k in range(sec.bars):
            if sec.name == "verse" and k % 4 >= 2 and rng.random() < 0.7:
                continue  # call and response: the lead leaves room in verses
            plays.add(sec.start_bar - 1 + k)
    if not plays:  # very short songs: play everywhere
        plays = set(range(len(chords)))
    for b in sorted(plays):
        ch = chords[b]
        t0 = b * bar_ticks
        onsets = {"melody": None, "long": long_r[int(rng.integers(len(long_r)))], "riff": riff}[style]
        if onsets is None:
            onsets = rhythms[int(rng.integers(len(rhythms)))]
        for j, on in enumerate(onsets):
            end = onsets[j + 1] if j + 1 < len(onsets) else bar_q
            strong = on % 1 == 0 and int(on) % 2 == 0
            if style == "riff":
                idx = int(np.clip(scale.index(min(scale, key=lambda p: abs(p - cur))) + riff_steps[j], 0, len(scale) - 1))
                pitch = scale[idx]
                if j == 0:
                    pitch = min((p for p in scale if p % 12 in ch.pitch_classes), key=lambda p: abs(p - 72))
            elif strong:
                tones = [p for p in scale if p % 12 in ch.pitch_classes]
                near = sorted(tones, key=lambda p: abs(p - cur))[:3]
                pitch = near[int(rng.integers(len(near)))]
            else:
                idx = scale.index(min(scale, key=lambda p: abs(p - cur)))
                idx = int(np.clip(idx + int(rng.choice([-2, -1, 1, 2])), 0, len(scale) - 1))
                pitch = scale[idx]
            cur = pitch if 62 <= pitch <= 84 else scale[len(scale) // 2]
            # detached phrasing: each note gets its own attack, as a wind player tongues it. The rest is 20 % of
            # the slot and at least ~90 ms: shorter, and the release of a brass patch masks the next attack
            rest = max(_q(end - on) // 5, int(0.09 * ctx["bpm"] / 60 * PPQ))
            notes.append(Note(t0 + _q(on) + (_jitter(rng) if on else 0), max(_q(end - on) - rest, 60), pitch,
                              _vel(rng, 96 if strong else 84)))
    return notes


# ------------------------------------------------------------------------------------------------- song
def make_song(
    rng: np.random.Generator,
    *,
    min_bars: int = 24,
    max_bars: int = 48,
    with_lead: bool | None = None,
    meter: tuple[int, int] | None = None,
    bpm: float | None = None,
) -> Song:
    """Compose one song. All choices come from `rng`, in a fixed order (determinism)."""
    if min_bars < 8 or max_bars < min_bars:
        raise ValueError(f"need 8 <= min_bars <= max_bars, got {min_bars}..{max_bars}")
    r = rng.random()
    meter = meter or ((4, 4) if r < 0.86 else (3, 4) if r < 0.93 else (6, 8))
    tempo_range = {(4, 4): (70, 170), (3, 4): (80, 160), (6, 8): (72, 110)}[meter]
    drawn_bpm = float(rng.integers(tempo_range[0], tempo_range[1] + 1))
    bpm = float(bpm) if bpm is not None else drawn_bpm
    key_pc = int(rng.integers(12))
    mode = "major" if rng.random() < 0.6 else "minor"
    sections = _form(rng, min_bars, max_bars)
    bass_styles = [s for s in BASS_STYLES if not (s == "walking" and meter == (6, 8))]
    bass_style = bass_styles[int(rng.integers(len(bass_styles)))]
    chords = _chords(rng, sections, key_pc, mode, sevenths=bass_style == "walking")
    bar_ticks = meter[0] * 4 * PPQ // meter[1]
    ctx = {"chords": chords, "bar_ticks": bar_ticks, "meter": meter, "bpm": bpm,
           "scale_pcs": {(key_pc + i) % 12 for i in SCALES[mode]}, "patterns": {}}
    grooves = DRUM_GROOVES[meter]
    groove = grooves[int(rng.integers(len(grooves)))]
    if bass_style == "walking" and meter == (4, 4) and rng.random() < 0.6:
        groove = "shuffle"
    piano_style = PIANO_STYLES[int(rng.integers(len(PIANO_STYLES)))]
    guitar_style = GUITAR_STYLES[int(rng.integers(len(GUITAR_STYLES)))]
    strings_style = STRINGS_STYLES[int(rng.integers(len(STRINGS_STYLES)))]
    lead_style = LEAD_STYLES[int(rng.integers(len(LEAD_STYLES)))]
    lead_on = rng.random() < 0.8 if with_lead is None else with_lead

    def pick(key: str) -> int:
        options = PROGRAMS[key]
        return int(options[int(rng.integers(len(options)))])

    bass_prog = pick("bass")
    if bass_style in ("walking",) and rng.random() < 0.5:
        bass_prog = 35  # fretless for walking lines, half the time (the GM upright starts 11–34 ms late)
    guitar_prog = pick({"power": "guitar_power", "funk": "guitar_funk"}.get(guitar_style, "guitar"))
    piano_prog, strings_prog, lead_prog = pick("piano"), pick("strings"), pick("lead")

    drum_notes, fills = _drums(rng, ctx, groove, sections)
    parts = [
        Part("bass", bass_style, bass_prog, False, CHANNELS["bass"], _bass(rng, ctx, bass_style)),
        Part("drums", groove, 0, True, CHANNELS["drums"], drum_notes),
        Part("piano", piano_style, piano_prog, False, CHANNELS["piano"], _chord_part(rng, ctx, "piano", piano_style)),
        Part("guitar", guitar_style, guitar_prog, False, CHANNELS["guitar"],
             _chord_part(rng, ctx, "guitar", guitar_style)),
        Part("strings", strings_style, strings_prog, False, CHANNELS["strings"],
             _chord_part(rng, ctx, "strings", strings_style)),
    ]
    if lead_on:
        parts.append(Part("lead", lead_style, lead_prog, False, CHANNELS["lead"], _lead(rng, ctx, lead_style, sections)))
    for p in parts:
        p.notes = _clean(p.notes)
    return Song(key_pc, mode, bpm, meter[0], meter[1], sections, chords, fills, parts)


def _clean(notes: list[Note]) -> list[Note]:
    """Sort, drop duplicate (start, pitch) hits (keep the loudest) and cut overlaps of the same pitch."""
    best: dict[tuple[int, int], Note] = {}
    for n in notes:
        k = (max(n.start, 0), n.pitch)
        if k not in best or n.velocity > best[k].velocity:
            best[k] = Note(max(n.start, 0), max(n.duration, 1), n.pitch, n.velocity)
    ordered = sorted(best.values(), key=lambda n: (n.start, n.pitch))
    last_by_pitch: dict[int, int] = {}
    out: list[Note] = []
    for n in ordered:
        j = last_by_pitch.get(n.pitch)
        if j is not None and out[j].start + out[j].duration > n.start:
            prev = out[j]
            out[j] = Note(prev.start, max(n.start - prev.start - 1, 1), prev.pitch, prev.velocity)
        last_by_pitch[n.pitch] = len(out)
        out.append(n)
    return out
