"""How the drum engine sees music: pianoroll grids, drum classes and the per-quarter tokens its models read.

Grid (the paper's, generalised): **24 steps per quarter note**, whatever the meter, so a 4/4 bar is 96 steps
(the paper's LPD-5 bar), 3/4 is 72 and 6/8 is 72 as well (six eighth-note beats of 12 steps each). We keep
the quarter as the unit rather than the meter's beat because tempo is in quarters per minute everywhere in
Backline (see engines.timeline) and because 24 per quarter holds 16ths (6 steps), 8th triplets (8 steps),
16th triplets (4 steps) and 32nds (3 steps) exactly. Supported meters are those whose bar is a whole number
of quarters, 1–8 of them: 2/4, 3/4, 4/4, 5/4, 6/4, 7/4, 8/4, 2/2, 3/2, 4/2, 6/8, 12/8 ... Bars of 7/8 or 5/8
(half a quarter left over) are refused with a message. Tempo changes are fine: the grid is in quarters, and
the output MIDI carries the input's tempo map. Meter changes are refused (one meter per region).

Melodic accompaniment (MA): the four roles piano, guitar, bass, strings (LPD-5's tracks, the paper's input),
each a pianoroll of onsets and sustained notes at 24 steps per quarter.

Drums: nine GM classes (the set every GM kit has, and the one fills are played on). Input notes are folded
into a class by `GM_TO_CLASS`; output uses `CLASS_PITCH`:

    kick 36 (also 35) | snare 38 (also 37 rim, 39 clap, 40) | closed hat 42 (also 44 pedal) | open hat 46
    low tom 45 (also 41, 43) | mid tom 47 (also 48) | high tom 50 | crash 49 (also 52, 55, 57) | ride 51 (53, 59)

Other percussion keys (cowbell, shakers, congas ...) are dropped on input; the models never play them.

Tokens: one token per **quarter note** (4 per 4/4 bar, 3 per 3/4 or 6/8 bar). A drum token is the quarter's
24-step × 9-class onset bitmask (216 bits, predicted as 216 independent Bernoullis given the context); an MA
token is the quarter's reduced MA: per role, onsets per step (4 × 24) + pitch-class activity (4 × 12) +
activity (4) = 148 values. This keeps an 11-bar segment at 33–44 tokens, which is what lets tiny transformers
train on one CPU thread and generate 64 bars in well under half a second, while keeping the full 24-step
onset resolution the paper stresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backline.engines.core.errors import ConfigError, TimelineError

STEPS_PER_QUARTER = 24
CONTEXT_BARS = 11
MAX_QUARTERS_PER_BAR = 8

DRUM_CLASSES = ("kick", "snare", "closed_hat", "open_hat", "low_tom", "mid_tom", "high_tom", "crash", "ride")
CLASS_PITCH = (36, 38, 42, 46, 45, 47, 50, 49, 51)
N_CLASSES = len(DRUM_CLASSES)
GM_TO_CLASS = {35: 0, 36: 0, 37: 1, 38: 1, 39: 1, 40: 1, 42: 2, 44: 2, 46: 3, 41: 4, 43: 4, 45: 4,
               47: 5, 48: 5, 50: 6, 49: 7, 52: 7, 55: 7, 57: 7, 51: 8, 53: 8, 59: 8}
KICK, SNARE, CLOSED_HAT, OPEN_HAT, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = range(N_CLASSES)

MA_ROLES = ("piano", "guitar", "bass", "strings")
N_ROLES = len(MA_ROLES)
DRUM_TOKEN_DIM = STEPS_PER_QUARTER * N_CLASSES  # 216
MA_TOKEN_DIM = N_ROLES * STEPS_PER_QUARTER + N_ROLES * 12 + N_ROLES  # 148

#: meter -> embedding id (the models learn a vector per meter family; others share id 0)
METER_IDS = {(4, 4): 1, (3, 4): 2, (6, 8): 3, (2, 4): 4, (2, 2): 1, (12, 8): 5, (5, 4): 6}


def quarters_per_bar(numerator: int, denominator: int) -> int:
    """Whole quarters per bar, or a TimelineError naming the meter and what is supported."""
    q = numerator * 4 / denominator
    if abs(q - round(q)) > 1e-9 or not 1 <= round(q) <= MAX_QUARTERS_PER_BAR:
        raise TimelineError(f"meter {numerator}/{denominator} is not supported by the drum engine",
                            fix="use a meter whose bar is 1–8 whole quarter notes (4/4, 3/4, 6/8, 2/4, 5/4, 12/8 ...)")
    return int(round(q))


def meter_id(numerator: int, denominator: int) -> int:
    return METER_IDS.get((numerator, denominator), 0)


@dataclass
class SongGrid:
    """One song (or region) on the 24-per-quarter grid.

    `ma_onset`/`ma_active`: bool `[4 roles, steps, 128 pitches]`; `drums`: bool `[steps, 9]` (None when the song
    has no drum part); `drum_vel`: uint8 `[steps, 9]` (the input's velocities, kept when a user's drum part is
    edited rather than replaced). `first_bar` is the 1-based song bar of grid bar 0.
    """

    numerator: int
    denominator: int
    n_bars: int
    ma_onset: np.ndarray
    ma_active: np.ndarray
    drums: np.ndarray | None = None
    drum_vel: np.ndarray | None = None
    first_bar: int = 1
    roles_present: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def qpb(self) -> int:
        return quarters_per_bar(self.numerator, self.denominator)

    @property
    def steps_per_bar(self) -> int:
        return self.qpb * STEPS_PER_QUARTER

    @property
    def steps(self) -> int:
        return self.n_bars * self.steps_per_bar

    def bars(self, first: int, last: int) -> SongGrid:
        """Grid bars `first..last` (0-based, inclusive) as a new SongGrid."""
        if not 0 <= first <= last < self.n_bars:
            raise TimelineError(f"bars {first + self.first_bar}-{last + self.first_bar} are outside the song",
                                fix=f"it has bars {self.first_bar}-{self.first_bar + self.n_bars - 1}")
        s0, s1 = first * self.steps_per_bar, (last + 1) * self.steps_per_bar
        return SongGrid(self.numerator, self.denominator, last - first + 1, self.ma_onset[:, s0:s1],
                        self.ma_active[:, s0:s1], None if self.drums is None else self.drums[s0:s1],
                        None if self.drum_vel is None else self.drum_vel[s0:s1], self.first_bar + first,
                        self.roles_present, dict(self.info))

    def has_ma(self) -> bool:
        return bool(self.ma_onset.any())


def empty_grid(numerator: int, denominator: int, n_bars: int) -> SongGrid:
    steps = n_bars * quarters_per_bar(numerator, denominator) * STEPS_PER_QUARTER
    return SongGrid(numerator, denominator, n_bars, np.zeros((N_ROLES, steps, 128), bool),
                    np.zeros((N_ROLES, steps, 128), bool))


# --- tokens ----------------------------------------------------------------------------------------------

def ma_tokens(grid: SongGrid) -> np.ndarray:
    """`[quarters, 148]` float32 MA features (see the module docstring)."""
    q = grid.steps // STEPS_PER_QUARTER
    onset = grid.ma_onset.any(axis=2).reshape(N_ROLES, q, STEPS_PER_QUARTER)  # [R, Q, 24]
    active = grid.ma_active.reshape(N_ROLES, q, STEPS_PER_QUARTER, 128)
    pitch_frac = active.mean(axis=2)  # [R, Q, 128]
    chroma = np.zeros((N_ROLES, q, 12), np.float32)
    for pc in range(12):
        chroma[..., pc] = pitch_frac[..., pc::12].sum(axis=-1)
    chroma = np.minimum(chroma, 1.0)
    activity = active.any(axis=3).mean(axis=2)  # [R, Q]
    feats = np.concatenate([onset.transpose(1, 0, 2).reshape(q, -1),
                            chroma.transpose(1, 0, 2).reshape(q, -1),
                            activity.T], axis=1)
    return feats.astype(np.float32)


def drum_tokens(drums: np.ndarray) -> np.ndarray:
    """`[steps, 9]` bool → `[quarters, 216]` float32 (step-major: index = step * 9 + class)."""
    q = drums.shape[0] // STEPS_PER_QUARTER
    return drums[: q * STEPS_PER_QUARTER].reshape(q, DRUM_TOKEN_DIM).astype(np.float32)


def tokens_to_drums(tokens: np.ndarray) -> np.ndarray:
    """Inverse of `drum_tokens`: `[quarters, 216]` → `[steps, 9]` bool."""
    return (np.asarray(tokens) > 0.5).reshape(-1, N_CLASSES)


def token_positions(n_bars: int, qpb: int, first_bar: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token: beat-in-bar (0..qpb-1), bar-in-segment (0..n_bars-1), phrase position ((song bar - 1) mod 8).

    The phrase position lets the models learn that fills cluster at the ends of 4- and 8-bar phrases when bar
    numbers are the song's own (a DAW region passes its real bar numbers).
    """
    beat = np.tile(np.arange(qpb), n_bars)
    bar = np.repeat(np.arange(n_bars), qpb)
    phrase = (bar + first_bar - 1) % 8
    return beat, bar, phrase


def check_bar_list(bars: list[int], grid: SongGrid, what: str = "fill bar") -> list[int]:
    """1-based song bars → 0-based grid bars, refusing bars outside the grid."""
    out = []
    last = grid.first_bar + grid.n_bars - 1
    for b in bars:
        if not grid.first_bar <= b <= last:
            raise ConfigError(f"{what} {b} does not exist in this region",
                              fix=f"choose bars {grid.first_bar}-{last}")
        out.append(b - grid.first_bar)
    return sorted(set(out))
