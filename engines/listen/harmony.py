"""Chroma and chords from audio: the CQT chroma (whole band and upper structure), the band's lowest voice, the
pitch-change envelope, chord templates and the Viterbi chord sequence."""

from __future__ import annotations

import numpy as np

from backline.engines.core.dsp import viterbi
from backline.engines.listen.chart import NO_CHORD, QUALITIES, Chord
from backline.engines.listen.tempo import HOP, SR


def _frame_chroma(y: np.ndarray) -> tuple[np.ndarray, float | None, np.ndarray, np.ndarray]:
    """([12, frames] CQT chroma at hop 512 (C2 upwards: the band's chords, not the kick), the band's low voice,
    the pitch-change envelope at the onset hop, the upper structure's chroma (E3 upwards, `UPPER_FROM`)).

    One CQT serves all four: the chroma, `band_low` (`_low_voice`), `_pitch_flux`, and the chroma above the bass for
    the chords: a walking or anticipating bass is the loudest voice in a beat, so from C2 a chord on C read as the
    bass's passing D.

    The tuning is estimated in semitones (12 bins per octave) and given to the 36-bin CQT as three times that: an
    estimate at 36 bins is only known modulo a third of a semitone, so a band 40 cents flat (filosax01) read as
    +11 cents and every tone split between two pitch classes (C# heard as C and C#, G# as G and G#)."""
    # lazy: torch, which the CLI's --help and describe() must not import
    from backline.engines.core.frontend import chroma_from_cqt, cqt_magnitude, estimate_tuning, midi_to_hz

    fmin = midi_to_hz(36)  # C2
    tuning = 3.0 * estimate_tuning(y, SR, bins_per_octave=12)
    cqt = cqt_magnitude(y, SR, 512, fmin, 36 * 6, 36, tuning)
    chroma = chroma_from_cqt(cqt, 36, fmin)
    k = 3 * (UPPER_FROM - 36)
    upper = chroma_from_cqt(cqt[k:k + 36 * 4], 36, midi_to_hz(UPPER_FROM), normalise=False)  # level kept: a beat's median
    return chroma, _low_voice(cqt), _pitch_flux(cqt), upper


#: Lowest MIDI pitch of the upper-structure chroma (E3): above a bass line's fundamentals and most of its octave.
UPPER_FROM = 52


#: How much of the chord evidence is the upper structure's chroma (the rest the whole band's from C2), and how much
#: likelier a major/minor triad is than a sus4 chord that shares two of its tones (the composer's corpus has none;
#: a triad's root under a sus4 template read Fmaj7 as Csus4, G7 as Dsus4). Set on composed songs (seed 5151, 30
#: band-minus-one cases; the held-out seed 917 and realdev only measured): share of the voiced tones (four voices)
#: in the true chord per beat 0.954 → 0.995 with the settings below together (seed 917: 0.922 → 0.970).
UPPER_SHARE = 0.5


SUS_PRIOR = 0.2


#: A seventh is added (`_add_sevenths`) on the blended chroma where it sounds 0.9 of the triad's tones: seed 5151,
#: 88 beats of sevenths heard right and none false (0.8: 144 right, 16 false — a maj7 over a dominant is a clash, a
#: missed seventh only plainer; the demo's G with a melody's F# read Gmaj7 at 0.87).
SEVENTH_RATIO_UPPER = 0.9


#: Log-likelihood (nats) by which another phase of the chord changes must beat the heard bar positions' (seed 5151:
#: no case moved at 0, 3 or 10; seed 917: two songs whose bar one is heard a beat early move at all three).
CHANGE_PHASE_MARGIN = 3.0


def _pitch_flux(cqt: np.ndarray) -> np.ndarray:
    """Where new pitches start (hop `HOP`): the rise of the log CQT over two frames, each bin against the loudest
    of its neighbours a third of a semitone away before (vibrato is no onset: SuperFlux, Böck & Widmer 2013). A
    choir or bowed strings change notes without an attack the spectral-energy envelope sees; the pitch moves."""
    lg = np.log1p(100.0 * cqt / (cqt.max() + 1e-12))
    before = np.maximum(lg, np.maximum(np.roll(lg, 1, 0), np.roll(lg, -1, 0)))
    flux = np.maximum(lg[:, 2:] - before[:, :-2], 0.0).sum(0)
    flux = np.r_[0.0, 0.0, flux]
    return np.repeat(flux, 512 // HOP)


#: how far under a low peak its octave may be for the peak to count as a voice (`_low_voice`): set on the 27
#: music21 clips of the four-part sets (piano within 3 semitones 1/9 → 6/9; strings 7/9 → 6/9; choir 8/9 kept)
LOW_VOICE_OCTAVE_DB = 12.0


def _low_voice(cqt: np.ndarray) -> float | None:
    """MIDI pitch of the band's lowest voice, low in its range (10th percentile over the frames where it sounds):
    per frame the lowest semitone peak within 20 dB of the frame's loudest that stands 6 dB over its neighbours two
    semitones away (a piano's attack smears broadband energy over the low bins: no peak) and has its octave (the
    second harmonic) within `LOW_VOICE_OCTAVE_DB` of it: a piano's body thump (E2–B2 whichever key is struck) is a
    peak with no harmonic above it, and read alone it put the band's low voice an octave and more under a piano
    (median −12 semitones on the four-part set's piano clips; with the octave asked for −1.9). Overtones sit above
    a fundamental, so the lowest strong peak is the lowest voice. Whatever sounds at C2 or below reads as 36 (a bass
    is in the band)."""
    db = 20.0 * np.log10(cqt + 1e-9)
    pad = np.pad(db, ((1, 1), (0, 0)), constant_values=-180.0)
    semi = np.maximum(pad[1:-1:3], np.maximum(pad[0:-2:3], pad[2::3]))  # [72, frames], each semitone ±1/3, C2 = 0
    top = semi.max(0)
    active = top > db.max() - 35.0
    if active.sum() < 8:
        return None
    cols = semi[:, active]  # [72, active frames], all frames at once
    strong = cols > top[active] - 20.0
    flank = np.maximum(np.concatenate([cols[:1], cols[:1], cols[:-2]]),
                       np.concatenate([cols[2:], cols[-1:], cols[-1:]]))  # ±2 semitones
    edge = np.full_like(cols[:1], -np.inf)
    peak = (strong & (cols >= np.concatenate([edge, cols[:-1]])) & (cols >= np.concatenate([cols[1:], edge]))
            & (cols - flank >= 6.0))
    peak[:-12] &= cols[12:] >= cols[:-12] - LOW_VOICE_OCTAVE_DB  # its octave above not far under it
    lows = np.argmax(peak, axis=0)[peak.any(axis=0)]  # the lowest such peak per frame
    if len(lows) < 8:
        return None
    return float(36 + np.percentile(lows, 10))


def _beat_chroma(chroma: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """[rows, beats] median of a frame feature (hop 512) over each beat [beat_i, beat_i+1)."""
    edges = np.clip(np.rint(np.r_[beats, beats[-1] + np.median(np.diff(beats)) if len(beats) > 1 else beats[-1] + 0.5]
                            * SR / 512).astype(int), 0, chroma.shape[1])
    out = np.zeros((chroma.shape[0], len(beats)))
    for i in range(len(beats)):
        a, b = edges[i], max(edges[i + 1], edges[i] + 1)
        if a < chroma.shape[1]:
            out[:, i] = np.median(chroma[:, a:min(b, chroma.shape[1])], axis=1)
    return out


def _templates() -> tuple[list[Chord], np.ndarray]:
    chords, rows = [], []
    for q, ivs in QUALITIES.items():
        if len(ivs) > 3:  # sevenths are decided afterwards (`_add_sevenths`): as templates they steal triads
            continue
        for r in range(12):
            v = np.zeros(12)
            for j, iv in enumerate(ivs):
                v[(r + iv) % 12] = 1.2 if j == 0 else 1.0 if j < 3 else 0.7  # root, 3rd/5th, a lighter 7th
            chords.append(Chord(r, q))
            rows.append(v / np.linalg.norm(v))
    return chords, np.array(rows)


#: A sounding beat's chord evidence is as sharp as its upper structure (`upper`, the chroma above the bass, level
#: kept) is loud against this fraction of the song's median beat, capped at 1. Where the comping leaves a beat
#: empty — the Charleston's 1 and "and" of 2 leave 4 to the ride — what the templates matched there was the next
#: chord's attack smeared back by the CQT's long low windows, and the change moved onto that beat (bands of
#: `benchmarks/swing_set.py` grooves without their bass, seeds 6000+, 5 heard at their tempo: changes on beat 4 in
#: 3). Weak evidence lets the bar-line prior of the Viterbi decide. Set there and on the tests' hymn: none, 169 of
#: 200 beats with the bar's chord; 0.5, 173 (changes on the bar lines in 3 of 5); 1.0, 181 (4 of 5) but the
#: hymn's F and G before its cadence, softer than the median, were lost. Held out (README, issue 19): the demo's
#: chords and `listen_eval` majmin on 12 held-out songs (0.961 full mix, 0.924 without bass) the same.
CHORD_EVIDENCE_LEVEL = 0.5


def chords_from_chroma(chroma: np.ndarray, bar_pos: np.ndarray, numerator: int, key: tuple[int, str],
                       energy: np.ndarray | None = None, upper: np.ndarray | None = None) -> list[Chord]:
    """Beat chroma [12, T] + each beat's position in its bar → one chord per beat (template match + Viterbi).

    `upper` is the beat chroma above the bass (`_frame_chroma`): blended in (`UPPER_SHARE`), each beat's peak 1, for
    the templates and the sevenths."""
    chords, tpl = _templates()
    n_c = len(chords) + 1  # + N
    if upper is not None:
        peak = lambda c: c / (c.max(0, keepdims=True) + 1e-9)  # noqa: E731
        chroma = (1 - UPPER_SHARE) * peak(chroma) + UPPER_SHARE * peak(upper[:, :chroma.shape[1]])
    norm = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    sim = tpl @ norm  # [C, T]
    scale = (0, 2, 4, 5, 7, 9, 11) if key[1] == "major" else (0, 2, 3, 5, 7, 8, 10)
    key_pcs = {(key[0] + i) % 12 for i in scale}
    prior = np.array([1.0 if c.pcs <= key_pcs else 0.9 for c in chords])
    # sevenths and sus only where they clearly fit better than the triad (they contain it)
    prior *= np.array([1.0 if c.quality in ("maj", "min") else SUS_PRIOR if c.quality == "sus4" else 0.85
                       for c in chords])
    # a beat 26 dB under the song's typical level is a rest or a release tail: no chord
    silent = np.zeros(chroma.shape[1], bool) if energy is None else (energy < 0.05 * max(np.median(energy), 1e-12))
    if upper is not None:  # each sounding beat's evidence as sharp as its harmony is loud (`CHORD_EVIDENCE_LEVEL`)
        level = upper[:, :chroma.shape[1]].sum(0)
        sharp = np.clip(level / (CHORD_EVIDENCE_LEVEL * np.median(level) + 1e-12), 0.0, 1.0)
        sim = sim * np.where(silent, 1.0, sharp)[None]
    like = np.exp(20.0 * sim) * prior[:, None]
    n_like = np.where(silent, like.max(0) * 4, like.max(0) * 0.002)
    like = np.vstack([like, n_like[None]])
    like /= like.sum(0, keepdims=True)
    m = numerator
    # states (chord, position in bar); the position advances by one each beat
    # probability of *leaving* the chord on arriving at each bar position: near-uniform on the bar line (the next
    # chord is free), rare mid-bar, rarer on the other beats
    p_change = np.full(m, 0.03)
    p_change[0] = 0.8
    if m % 2 == 0:
        p_change[m // 2] = 0.25
    trans = np.zeros((n_c * m, n_c * m))
    for pos in range(m):
        nxt = (pos + 1) % m
        for c in range(n_c):
            row = c * m + pos
            trans[row, np.arange(n_c) * m + nxt] = p_change[nxt] / (n_c - 1)
            trans[row, c * m + nxt] = 1 - p_change[nxt]
    # Where the changes fall is decided here too: the bar positions as heard first, each other phase only where it
    # explains the chroma clearly better (CHANGE_PHASE_MARGIN). A bar one heard a beat early (a tumbao bass that
    # anticipates the next chord on beat four) otherwise pulls every change a beat early; the reported downbeats
    # stay as heard.
    best = None
    for shift in range(m):
        pos = (np.asarray(bar_pos, int) + shift) % m
        prob = np.zeros((n_c * m, like.shape[1]))
        for t in range(like.shape[1]):
            prob[np.arange(n_c) * m + pos[t], t] = like[:, t]
        p_init = np.zeros(n_c * m)
        p_init[np.arange(n_c) * m + pos[0]] = 1.0 / n_c
        states, logp = viterbi(prob, trans, p_init)
        if best is None or logp > best[0] + CHANGE_PHASE_MARGIN:
            best = (logp, states)
    states = best[1]
    return _add_sevenths([chords[s // m] if s // m < len(chords) else NO_CHORD for s in states], chroma,
                         SEVENTH_RATIO_UPPER if upper is not None else 0.8)


def hold_through(chords: list[Chord], energy: np.ndarray, silence: float = 0.01) -> list[Chord]:
    """A "no chord" heard between chords (a held cadence fading, a passing unison, a rest of the melody) continues
    the chord before it (the first chord, before that); only beats near silence (40 dB under the song's typical
    level) stay N. A player keeps the harmony through what a template cannot name; the user asks for a rest
    with N in --chords."""
    quiet = energy < silence * max(float(np.median(energy)), 1e-12)
    out = list(chords)
    last: Chord | None = next((c for c in out if c.root >= 0), None)  # before it the music is in its first chord
    for i, ch in enumerate(out):
        if ch.root >= 0:
            last = ch
        elif last is not None and not quiet[i]:
            out[i] = last
    return out


def _add_sevenths(chords: list[Chord], chroma: np.ndarray, ratio: float = 0.8) -> list[Chord]:
    """A major or minor triad becomes a 7th chord where, over its whole run of beats, the seventh sounds about as
    much as the triad's own tones (b7 over major → 7, major 7th → maj7, b7 over minor → min7)."""
    out = list(chords)
    i = 0
    while i < len(out):
        j = i
        while j + 1 < len(out) and out[j + 1] == out[i]:
            j += 1
        ch = out[i]
        if ch.root >= 0 and ch.quality in ("maj", "min"):
            mean = chroma[:, i:j + 1].mean(1)
            triad = np.mean([mean[p] for p in ch.pcs])
            b7, maj7 = mean[(ch.root + 10) % 12], mean[(ch.root + 11) % 12]
            new = ch
            if ch.quality == "maj" and max(b7, maj7) >= ratio * triad:
                new = Chord(ch.root, "7" if b7 >= maj7 else "maj7")
            elif ch.quality == "min" and b7 >= ratio * triad:
                new = Chord(ch.root, "min7")
            out[i:j + 1] = [new] * (j + 1 - i)
        i = j + 1
    return out
