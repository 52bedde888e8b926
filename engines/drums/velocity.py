"""Velocities for generated drums: a documented rule (the paper's models ignore dynamics).

    velocity = base[class] + metric accent + backbeat accent, then ghost notes, fill crescendo, humanising

- base per class: kick 100, snare 98, closed hat 70, open hat 80, toms 92, crash 108, ride 76;
- metric accent from the meter's beat hierarchy: bar downbeat +14; other main beats +6 (quarters in x/4,
  the dotted-quarter pulses in 6/8 and 12/8); eighth off-beats 0; anything finer −10 (so hats breathe);
- backbeat: a snare on the backbeat (beats 2 and 4 of 4/4; 2 of 2/4; 2 and 3 of 3/4; the second pulse of
  6/8) gets +12 — the loudest thing in a groove besides the downbeat kick;
- ghost notes: outside fills, a snare off the eighth-note grid (a 16th or a triplet between beats) is a ghost
  note at 34–44;
- fills crescendo: onsets in a fill bar scale linearly from ×0.78 at the fill's first onset to ×1.12 at its
  last, so tom runs build into the next downbeat (where the crash lands at its full 108 + 14);
- humanising: seeded Gaussian ±3 (σ), then clipped to 1–127.

Where the user's drum part supplies a velocity for a kept onset, that velocity is kept.
"""

from __future__ import annotations

import numpy as np

from backline.engines.drums.representation import (
    CLOSED_HAT,
    CRASH,
    HIGH_TOM,
    KICK,
    LOW_TOM,
    MID_TOM,
    N_CLASSES,
    OPEN_HAT,
    RIDE,
    SNARE,
    STEPS_PER_QUARTER,
)

BASE = np.zeros(N_CLASSES)
BASE[[KICK, SNARE, CLOSED_HAT, OPEN_HAT, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE]] = [100, 98, 70, 80, 92, 92, 92, 108, 76]


def _pulse_steps(numerator: int, denominator: int) -> int:
    """Steps between main beats: a quarter in x/4 and x/2... (in x/2 we still accent quarters), a dotted
    quarter in compound meters (6/8, 9/8, 12/8)."""
    if denominator == 8 and numerator % 3 == 0:
        return 3 * STEPS_PER_QUARTER // 2
    return STEPS_PER_QUARTER


def _backbeats(numerator: int, denominator: int, steps_per_bar: int) -> set[int]:
    pulse = _pulse_steps(numerator, denominator)
    n_pulses = steps_per_bar // pulse
    if n_pulses == 4:
        return {pulse, 3 * pulse}
    if n_pulses == 3:
        return {pulse, 2 * pulse}
    if n_pulses == 2:
        return {pulse}
    return {p * pulse for p in range(1, n_pulses, 2)}


def assign_velocities(drums: np.ndarray, numerator: int, denominator: int, steps_per_bar: int,
                      fill_bars: list[int] | tuple[int, ...] = (), *, seed: int = 0,
                      keep: np.ndarray | None = None) -> np.ndarray:
    """`[steps, 9]` bool onsets → `[steps, 9]` uint8 velocities (0 where no onset). See the module docstring."""
    rng = np.random.default_rng(seed)
    steps = drums.shape[0]
    pos = np.arange(steps) % steps_per_bar
    pulse = _pulse_steps(numerator, denominator)
    eighth = STEPS_PER_QUARTER // 2
    accent = np.where(pos == 0, 14.0, np.where(pos % pulse == 0, 6.0, np.where(pos % eighth == 0, 0.0, -10.0)))
    vel = BASE[None, :] + accent[:, None]
    back = np.isin(pos, list(_backbeats(numerator, denominator, steps_per_bar)))
    vel[back, SNARE] += 12
    in_fill = np.zeros(steps, bool)
    for b in fill_bars:
        in_fill[b * steps_per_bar:(b + 1) * steps_per_bar] = True
    ghost = (pos % eighth != 0) & ~in_fill
    vel[ghost, SNARE] = 34 + 10 * rng.random(int(ghost.sum()))
    for b in fill_bars:
        lo, hi = b * steps_per_bar, (b + 1) * steps_per_bar
        rows = np.nonzero(drums[lo:hi].any(axis=1))[0]
        if len(rows) == 0:
            continue
        first, last = rows[0], rows[-1]
        ramp = 0.78 + 0.34 * (np.arange(hi - lo) - first) / max(last - first, 1)
        vel[lo:hi] *= np.clip(ramp, 0.78, 1.12)[:, None]
    vel += rng.normal(0, 3, vel.shape)
    out = np.where(drums, np.clip(np.round(vel), 1, 127), 0).astype(np.uint8)
    if keep is not None:
        use = drums & (keep > 0)
        out[use] = keep[use]
    return out
