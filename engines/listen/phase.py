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
by its own instrument's attack latency times `ATTACK_SHARE`, so its audible attack lands with the band's).

The period could be refitted the same way (a line through the attacks' offsets against beat number): the tempo fit
is a fraction of a per mille off (the demo band without its piano heard at 100.06 BPM for 100, so a grid anchored at
its start runs ~13 ms early by bar 8), and the refit cut the tempo error on the seed-4242 renders from 0.040 % to
0.010 % (seed 7: 0.007 % -> 0.003 %) and brought the demo piano take from 10.0 to 3.3 ms off the band. It is not
done: the bass renderer's `ATTACK_SHARE` was set on the demo with that early-running grid, and on the exact one the
demo bass take sits 1.5 ms later against the real bass (hop-32 onsets: +0.7 -> +2.2 ms; +0.0 -> +2.9 ms at the
takes benchmark's hop 128). The two have to be set again together, on songs outside the evaluation sets.
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


def attacks(y: np.ndarray, sr: int) -> np.ndarray:
    """Where the attacks of a mono mix begin (seconds): backtracked onsets at `ATTACK_HOP`."""
    # lazy: torch, which the CLI's --help and describe() must not import
    from backline.engines.core.frontend import onset_envelope

    return onset_detect(onset_envelope(y, sr, ATTACK_HOP, ATTACK_FFT), sr, ATTACK_HOP, backtrack=True)


def attack_shift(onsets: np.ndarray, first: float, beat_s: float) -> float | None:
    """Seconds to move a rigid beat grid (`first` + k·`beat_s`) so it sits on the band's note-ons, or None when too
    few attacks fall near its beat lines to say: the median offset of the attacks within `WINDOW_S` of a beat line,
    then of those within `AGREE_S` of it (a beat's attacks agree within a few ms; a fill or a pickup does not),
    less `NOTE_ON_LEAD_S`. The period is the tempo fit's (see the module docstring for why it is not refitted)."""
    if beat_s <= 0 or len(onsets) == 0:
        return None
    rel = (np.asarray(onsets, np.float64) - first) / beat_s
    d = (rel - np.round(rel)) * beat_s
    d = d[np.abs(d) < min(WINDOW_S, beat_s / 4)]
    if len(d) < MIN_ATTACKS:
        return None
    agree = d[np.abs(d - np.median(d)) < AGREE_S]
    return float(np.median(agree if len(agree) >= MIN_ATTACKS else d)) - NOTE_ON_LEAD_S
