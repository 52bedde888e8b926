"""Where the heard beat grid sits in time: on the band's note-ons, read from the band's own attacks.

The tempo fit (`tempo.fit_grid`) puts its grid on the peaks of an onset envelope (hop 11.6 ms), and a fixed lag
(`tempo.ENVELOPE_LAG_S`, measured on clicks) is taken off. How far an envelope peak lags its attack depends on the
attack: on clicks 13.7 ms, on the rendered bands of the corpus (GM soundfonts: plucked, bowed and struck tones
that take a few ms to swell) 27-33 ms, so the heard beats sat 14-19 ms after the band's note-ons (seed-7 renders,
`benchmarks/accompany_eval.py` reports the same on the held-out songs). Every part Backline plays is placed on this
grid, so that lag was heard: the accompaniment 17-22 ms behind the band wherever bar one is heard mid-file.

So the phase is read from the attacks themselves: the mix's onsets at a fine hop (2.9 ms), each moved back to where
its rise begins (`core.dsp.onset_detect(backtrack=True)`, librosa's backtracking), folded onto the heard beat
lines; their median offset moves the grid (`attack_shift`). Beat lines only, not the 8ths or 16ths between
them: off-beats may be swung or pushed, the beat is where a band agrees. The rise begins a little after the
note-on (a soundfont voice's first milliseconds are near-silent; a string or a hammer takes a moment to speak),
by `NOTE_ON_LEAD_S`, so the grid goes that much before the rise: the grid is where the band's note-ons are, which
is where a take's MIDI notes belong (the one take renderer, `core.render.render_take`, then plays each note early
by a share of its own instrument's attack latency, `core.render.attack_share`, so its audible attack lands with the
band's).

The period is refitted the same way (`attack_grid`): a line through the attacks' offsets against beat number. The
tempo fit is a fraction of a per mille off (the demo band without its piano heard at 100.06 BPM for 100, so a grid
anchored at its start ran ~13 ms early by bar 8); the line cut the tempo error on the seed-4242 renders from
0.040 % to 0.010 % (seed 7: 0.007 % -> 0.003 %). It is kept only where it is safe: `MIN_REFIT` agreeing attacks
over `REFIT_SPAN` beats, a correction of at most `MAX_REFIT` (0.2 %; more is a drifting band, `tempo.track_beats`'
job, or attacks matched to the wrong beat), and never when the tempo was given (`--bpm`) or the beats came from a
DAW or MIDI file (those are the user's grid). The take renderer's attack compensation had been set on the demo
with the early-running grid; on the exact grid the bass take sat 1.5 ms later against the real bass, so both were
set again together, on renders outside the evaluation sets (`core.render.ATTACK_SHARE`: the bass plays 0.65 of its
attack latency early, other parts 0.5, each take's attacks then land with the real part's of the same role).
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
#: Fewer attacks on the beat lines than this, and the phase is left as the envelope fit put it.
MIN_ATTACKS = 8
#: The period is refitted only from this many agreeing attacks ...
MIN_REFIT = 16
#: ... spread over this many beats or more (a line through two bars' worth is a guess) ...
REFIT_SPAN = 8
#: ... and by at most this fraction of the tempo fit's period (its error is a fraction of a per mille; more is a
#: drifting band, which `tempo.track_beats` is for, or attacks matched to the wrong beat).
MAX_REFIT = 0.002


def attacks(y: np.ndarray, sr: int) -> np.ndarray:
    """Where the attacks of a mono mix begin (seconds): backtracked onsets at `ATTACK_HOP`."""
    # lazy: torch, which the CLI's --help and describe() must not import
    from backline.engines.core.frontend import onset_envelope

    return onset_detect(onset_envelope(y, sr, ATTACK_HOP, ATTACK_FFT), sr, ATTACK_HOP, backtrack=True)


def attack_shift(onsets: np.ndarray, first: float, beat_s: float) -> float | None:
    """Seconds to move a rigid beat grid (`first` + k·`beat_s`) so it sits on the band's note-ons, or None when too
    few attacks fall near its beat lines to say (`attack_grid` with its period kept)."""
    grid = attack_grid(onsets, first, beat_s, refit=False)
    return None if grid is None else grid[0]


def attack_grid(onsets: np.ndarray, first: float, beat_s: float, *, refit: bool = True
                ) -> tuple[float, float] | None:
    """(shift, period): the rigid grid `first` + shift + k·period that sits on the band's note-ons, or None when too
    few attacks fall near the beat lines of `first` + k·`beat_s` to say.

    The shift: the median offset of the attacks within `WINDOW_S` of a beat line, then of those within `AGREE_S`
    of it (a beat's attacks agree within a few ms; a fill or a pickup does not), less `NOTE_ON_LEAD_S`. With
    `refit`, the period too: a line through those offsets against beat number (then through the ones within
    `AGREE_S`/2 of that line), kept only with `MIN_REFIT` attacks over `REFIT_SPAN` beats or more and a slope
    within `MAX_REFIT` of the period (a larger one is not the fit's rounding but a drifting band or a wrong
    match); the shift is then the line's value at beat 0."""
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
    shift, period = float(np.median(d)), beat_s
    if refit and len(d) >= MIN_REFIT and k.max() - k.min() >= REFIT_SPAN:
        slope, icpt = np.polyfit(k, d, 1)
        res = d - (icpt + slope * k)
        ok = np.abs(res - np.median(res)) < AGREE_S / 2
        if ok.sum() >= MIN_REFIT and k[ok].max() - k[ok].min() >= REFIT_SPAN:
            slope, icpt = np.polyfit(k[ok], d[ok], 1)
        if abs(slope) <= MAX_REFIT * beat_s:
            shift, period = float(icpt), beat_s + float(slope)
    return shift - NOTE_ON_LEAD_S, period
