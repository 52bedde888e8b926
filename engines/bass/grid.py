"""The bass planner's vocabulary and the grid it plays on: chord qualities, styles, sections, meters, the 16th-step
`Grid` a listening is laid on, and planned notes.

Torch-free on purpose: the follow engine's controls (its style list), the CLI's early checks (a meter the planner
cannot play) and `--help` read these without importing torch; the model itself is in `planner.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backline.engines.core.errors import ConfigError

#: Chord qualities the planner knows (the listener's vocabulary; corpus m7b5 counts as dim), N = no chord.
QUALITIES = ("maj", "min", "7", "maj7", "min7", "dim", "sus4", "N")
QUALITY_INTERVALS = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
                     "min7": (0, 3, 7, 10), "dim": (0, 3, 6), "sus4": (0, 5, 7), "N": ()}
STYLES = ("root_fifth", "walking", "syncopated", "octave", "sustained", "funk16", "reggae", "disco", "tumbao",
          "ballad", "unknown")
SECTIONS = ("intro", "verse", "chorus", "bridge", "outro", "unknown")
POSITIONS = 24  # 16th steps per bar up to 6/4 and 12/8
METERS = ((4, 4), (3, 4), (6, 8))
ATTRS = ("complexity", "intensity", "register", "lock")


def steps_per_bar(numerator: int, denominator: int) -> int:
    steps = numerator * 16 // denominator
    if steps * denominator != numerator * 16 or not 1 <= steps <= POSITIONS:
        raise ConfigError(f"the bass planner cannot play in {numerator}/{denominator}",
                          fix="use a meter of 1-6 quarters or 1-12 eighths per bar (4/4, 3/4, 6/8, 12/8 ...)")
    return steps


@dataclass
class Grid:
    """The song as the planner sees it, one entry per 16th step from the first bar line (step 0 = bar one).

    root: 0-11 or 12 = no chord; quality: index into QUALITIES; kick: 0/1; section: index into SECTIONS."""

    numerator: int
    denominator: int
    key_pc: int
    mode: str  # "major" | "minor"
    root: np.ndarray
    quality: np.ndarray
    kick: np.ndarray
    section: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.root)

    @property
    def bar_steps(self) -> int:
        return steps_per_bar(self.numerator, self.denominator)

    def transposed(self, k: int) -> Grid:
        root = np.where(self.root < 12, (self.root + k) % 12, 12)
        return Grid(self.numerator, self.denominator, (self.key_pc + k) % 12, self.mode, root, self.quality.copy(),
                    self.kick.copy(), self.section.copy())

    def crop(self, a: int, b: int) -> Grid:
        return Grid(self.numerator, self.denominator, self.key_pc, self.mode, self.root[a:b], self.quality[a:b],
                    self.kick[a:b], self.section[a:b])

    def chord_pcs(self, step: int) -> set[int]:
        r = int(self.root[step])
        if r >= 12:
            return set()
        return {(r + i) % 12 for i in QUALITY_INTERVALS[QUALITIES[int(self.quality[step])]]}


@dataclass(frozen=True)
class PlanNote:
    step: int  # onset, 16th steps from bar one
    length: int  # in steps
    pitch: int
    velocity: int


def quality_index(quality: str) -> int:
    q = {"m7b5": "dim", "sus": "sus4", "sus2": "sus4", "": "maj", "m": "min", "hdim7": "dim", "aug": "maj"}.get(
        quality, quality)
    return QUALITIES.index(q) if q in QUALITIES else QUALITIES.index("maj")
