"""Where the heard beat grid sits in time: on the band's note-ons, read from the band's own attacks.

The tempo fit (`tempo.fit_grid`) puts its grid on the peaks of an onset envelope (hop 11.6 ms), and a fixed lag
(`tempo.ENVELOPE_LAG_S`, measured on clicks) is taken off. How far an envelope peak lags its attack depends on the
attack: on clicks 13.7 ms, on the rendered bands of the corpus (GM soundfonts: plucked, bowed and struck tones
that take a few ms to swell) 27-33 ms, so the heard beats sat 14-19 ms after the band's note-ons (seed-7 renders,
`benchmarks/accompany_eval.py` reports the same on the held-out songs). Every part Backline plays is placed on this
grid, so that lag was heard: the accompaniment 17-22 ms behind the band wherever bar one is heard mid-file.

So the phase is read from the attacks themselves: the mix's onsets at a fine hop (2.9 ms), each moved back to where
its rise begins (`core.dsp.onset_detect(backtrack=True)`, librosa's backtracking), folded onto the heard beat
lines; their offsets move the grid (and correct its period by a line through them, `attack_grid`). Beat lines only, not the 8ths or 16ths between
them: off-beats may be swung or pushed, the beat is where a band agrees. The rise begins a little after the
note-on (a soundfont voice's first milliseconds are near-silent; a string or a hammer takes a moment to speak),
by `NOTE_ON_LEAD_S`, so the grid goes that much before the rise: the grid is where the band's note-ons are, which
is where a take's MIDI notes belong (the one take renderer, `core.render.render_take`, then plays each note early
by its own instrument's attack latency times `ATTACK_SHARE`, so its audible attack lands with the band's).
"""

from __future__ import annotations

import numpy as np

from backline.engines.core.dsp import onset_detect

#: Onset hop for the attacks (samples at the listener's 22.05 kHz): 2.9 ms, a quarter of the envelope's.
ATTACK_HOP = 64
#: Their frame: 46 ms (a 93 ms frame smears a rise over two neighbouring attacks and backtracks less sharply).
ATTACK_FFT = 1024
#: The rise of a band's attack begins this long after its note-on (a soundfont voice's first milliseconds are
#: near-silent). Set on the seed-7 corpus renders (`backline data synth --seed 7`, 10 songs, each with its piano,
#: guitar, strings or bass left out: 40 bands; not an evaluation set): with no lead, the shifted grid sat +1.9 ms
#: (median; mean +2.1, sd 1.8, range -1.5..+6.2) after the MIDI beat lines, where the envelope fit alone sat
#: +16.9 ms (sd 2.5). On percussive clicks the rise is the note-on, so the grid lands this much before a click.
NOTE_ON_LEAD_S = 0.002
#: Onsets further than this from a heard beat line are not the beat's (fills, pickups, swung off-beats).
WINDOW_S = 0.05
#: The second pass keeps the onsets this close to the first median (a beat's attacks agree within a few ms).
AGREE_S = 0.02
#: Fewer attacks on the beat lines than this, and the phase is left as the envelope fit put it (twice as many,
#: spread over twice as many beats, to correct the period too).
MIN_ATTACKS = 8
#: The most the period is corrected by (a fraction of it): the envelope fit is that close; a larger slope is a
#: drifting performance, which a rigid grid cannot follow anyway.
MAX_PERIOD_FIX = 0.003


def attacks(y: np.ndarray, sr: int) -> np.ndarray:
    """Where the attacks of a mono mix begin (seconds): backtracked onsets at `ATTACK_HOP`."""
    # lazy: torch, which the CLI's --help and describe() must not import
    from backline.engines.core.frontend import onset_envelope

    return onset_detect(onset_envelope(y, sr, ATTACK_HOP, ATTACK_FFT), sr, ATTACK_HOP, backtrack=True)


def attack_grid(onsets: np.ndarray, first: float, beat_s: float, *, period: bool = True) -> tuple[float, float] | None:
    """(first beat, beat seconds) of a rigid grid (`first` + k·`beat_s`) moved onto the band's note-ons, or None when
    too few attacks fall near its beat lines to say.

    The attacks within `WINDOW_S` of a beat line, then those within `AGREE_S` of their median offset (a beat's
    attacks agree within a few ms; a fill or a pickup does not); with `period`, a line fitted through them (offset
    against beat number) also corrects the period where it is off by less than `MAX_PERIOD_FIX` — the envelope
    fit's period is a fraction of a per mille off (100.06 BPM heard for the demo's 100), which over a song moves
    its last bars 10-15 ms off a grid anchored at its start — else the median offset moves the phase alone.
    `NOTE_ON_LEAD_S` is then taken off."""
    if beat_s <= 0 or len(onsets) == 0:
        return None
    rel = (np.asarray(onsets, np.float64) - first) / beat_s
    k = np.round(rel)
    d = (rel - k) * beat_s
    near = np.abs(d) < min(WINDOW_S, beat_s / 4)
    d, k = d[near], k[near]
    if len(d) < MIN_ATTACKS:
        return None
    agree = np.abs(d - np.median(d)) < AGREE_S
    if agree.sum() >= MIN_ATTACKS:
        d, k = d[agree], k[agree]
    shift, step = float(np.median(d)), beat_s
    if period and len(d) >= 2 * MIN_ATTACKS and k.max() - k.min() >= 2 * MIN_ATTACKS:
        slope, icpt = np.polyfit(k, d, 1)
        res = d - (icpt + slope * k)
        fit = np.abs(res - np.median(res)) < AGREE_S / 2  # once more without the attacks that sit off the line
        if fit.sum() >= 2 * MIN_ATTACKS:
            slope, icpt = np.polyfit(k[fit], d[fit], 1)
        if abs(slope) < MAX_PERIOD_FIX * beat_s:
            shift, step = float(icpt), beat_s + float(slope)
    return first + shift - NOTE_ON_LEAD_S, step
