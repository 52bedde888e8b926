"""The chord vocabulary and what a musician types: chord symbols, a chart per bar, a meter, a key.

No signal processing here: these are the names every other part of listening (and the host's chord lane)
speaks in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from backline.engines.core.errors import ConfigError, TimelineError
from backline.engines.core.timeline import Timeline

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


#: Chord vocabulary: quality → intervals; suffixes as musicians write them.
QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
             "min7": (0, 3, 7, 10), "dim": (0, 3, 6), "sus4": (0, 5, 7)}


SUFFIX = {"maj": "", "min": "m", "7": "7", "maj7": "maj7", "min7": "m7", "dim": "dim", "sus4": "sus4"}


_SUFFIX_IN = {"": "maj", "maj": "maj", "M": "maj", "m": "min", "min": "min", "-": "min", "7": "7", "dom7": "7",
              "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "m7": "min7", "min7": "min7", "-7": "min7",
              "dim": "dim", "°": "dim", "o": "dim", "m7b5": "dim", "ø": "dim", "ø7": "dim", "dim7": "dim",
              "sus": "sus4", "sus4": "sus4", "sus2": "sus4", "7sus4": "sus4", "5": "maj"}


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class, -1 = no chord (N)
    quality: str = "maj"

    @property
    def pcs(self) -> set[int]:
        return set() if self.root < 0 else {(self.root + i) % 12 for i in QUALITIES[self.quality]}

    @property
    def symbol(self) -> str:
        return "N" if self.root < 0 else NOTE_NAMES[self.root] + SUFFIX[self.quality]

    @property
    def label(self) -> str:
        """mir_eval's spelling (root:quality)."""
        return "N" if self.root < 0 else f"{NOTE_NAMES[self.root]}:{self.quality}"


NO_CHORD = Chord(-1)


_CHORD_RE = re.compile(r"^([A-Ga-g])([#♯b♭]?)(.*?)(?:/([A-Ga-g][#♯b♭]?))?$")


def parse_chord(text: str) -> Chord:
    """'Bm', 'A7', 'Gmaj7', 'F#m7', 'Bdim', 'Dsus4', 'C/E' (slash bass ignored), 'N' / 'NC' → a Chord."""
    t = text.strip()
    if t.upper() in ("N", "NC", "N.C.", "-"):
        return NO_CHORD
    m = _CHORD_RE.match(t)
    if not m or m.group(3) not in _SUFFIX_IN:
        raise ConfigError(f"chord {text!r} is not a chord symbol",
                          fix="write chords like D, Bm, A7, Gmaj7, F#m7, Bdim, Dsus4 or N (no chord)")
    root = _PC[m.group(1).upper()] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(m.group(2), 0)
    return Chord(root % 12, _SUFFIX_IN[m.group(3)])


def parse_chart(text: str, numerator: int = 4) -> list[list[Chord]]:
    """'D | G A | Bm | G A7' → one row of `numerator` chords (one per beat) per bar. Two chords in a 4/4 bar take
    two beats each; '%' repeats the previous bar."""
    if not text or not text.strip():
        raise ConfigError("--chords is empty", fix='give bars separated by |, e.g. --chords "D | G A | Bm | G A7"')
    bars: list[list[Chord]] = []
    for i, cell in enumerate(text.split("|")):
        names = cell.split()
        if not names:
            if i == 0 or i == len(text.split("|")) - 1:
                continue  # a leading/trailing bar line
            raise ConfigError(f"bar {len(bars) + 1} of --chords is empty", fix="put a chord (or N, or %) in every bar")
        if names == ["%"]:
            if not bars:
                raise ConfigError("'%' in the first bar of --chords has no bar to repeat")
            bars.append(list(bars[-1]))
            continue
        chords = [parse_chord(n) for n in names]
        if len(chords) > numerator:
            raise ConfigError(f"bar {len(bars) + 1} of --chords has {len(chords)} chords but only {numerator} beats",
                              fix="split the bar with |, or give fewer chords")
        row = [chords[min(len(chords) - 1, b * len(chords) // numerator)] for b in range(numerator)]
        bars.append(row)
    if not bars:
        raise ConfigError("--chords has no chords", fix='e.g. --chords "D | G A | Bm | G A7"')
    return bars


def parse_meter(text: str) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in str(text).split("/"))
        Timeline.constant(120.0, 44100, num, den)
    except (ValueError, TimelineError) as err:
        raise ConfigError(f"meter {text!r} is not a time signature", fix="write it like 4/4, 3/4 or 6/8") from err
    return num, den


def parse_key(text: str) -> tuple[int, str]:
    """'D', 'D major', 'Bm', 'B minor' → (pc, mode)."""
    t = text.strip().replace("maj", " major").replace("min", " minor")
    parts = t.split()
    try:
        ch = parse_chord(parts[0])
    except ConfigError as err:
        raise ConfigError(f"key {text!r} is not a key", fix="write it like D, D major, Bm or B minor") from err
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].startswith(("major", "minor"))):  # "C major minor"
        raise ConfigError(f"key {text!r} is not a key", fix="write it like D, D major, Bm or B minor")
    minor = ch.quality in ("min", "min7") or (len(parts) > 1 and parts[1].startswith("minor"))
    return ch.root, "minor" if minor else "major"


def _chart_on_beats(chart: list[list[Chord]], n_beats: int, first_downbeat: int, num: int) -> list[Chord]:
    """A per-bar chart laid on the beats from bar one (beats before it take the last bar's chord; the chart repeats
    when the mix is longer)."""
    flat = [c for row in chart for c in row]
    out = []
    for i in range(n_beats):
        j = i - first_downbeat
        out.append(flat[j % len(flat)])
    return out
