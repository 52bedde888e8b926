"""Beats, tempo, meter and bar one from audio: onset envelopes, rigid-grid fits, tempo candidates and their
metrical relatives, and the fitted choice between them (see the package docstring for why)."""

from __future__ import annotations

import numpy as np

from backline.engines.core.dsp import autocorrelate, onset_strength, peak_pick, power_to_db, tempo_estimate

SR = 22050


HOP = 256  # onset envelope hop: 11.6 ms


# An onset envelope (spectral flux of a centred 2048-point mel frame) peaks after the attack that causes it: on
# synthetic percussive clicks at known times the fitted beat grid sits 13.7 ms late (tests/test_listen.py measures
# it again). Beats heard from audio are moved back by that much, so bar one is the attack a player hears, not the
# envelope's peak; a DAW's, a MIDI file's or the user's grid is taken as given.
ENVELOPE_LAG_S = 0.0137


MIN_BEATS = 4  # a grid needs this many beats in the clip (two bars of 5 s at 48 BPM and up)


def _onsets(y: np.ndarray):
    """(all-band onset envelope, low-band (< 200 Hz) envelope, kick-band (< 150 Hz) envelope, high-band (> 4 kHz)
    envelope) from one mel spectrogram: the kick band finds kick hits, the low band weighs bar one, the high
    band is the timekeeper's (ride, hi-hat), whose swing says which tempo a swung groove is in (`_swing_pairs`).
    Whether a drum kit plays is the role check's (`listen.audio.drum_kit`), not read here."""
    # lazy: the CLI's --help and describe() need no spectra
    from backline.engines.core.frontend import mel_frequencies, mel_spectrogram

    power = mel_spectrogram(np.asarray(y, np.float32), SR, 2048, HOP, 128, mel_scale="slaney", norm="slaney",
                            pad_mode="constant")
    mel = power_to_db(power)
    freqs = mel_frequencies(128, 0.0, SR / 2)
    full = onset_strength(mel, hop=HOP)
    low = onset_strength(mel[freqs < 200.0], hop=HOP)
    kick = onset_strength(mel[freqs < 150.0], hop=HOP)
    high = onset_strength(mel[freqs >= 4000.0], hop=HOP)
    return full, low, kick, high


def _kicks(kick_env: np.ndarray) -> np.ndarray:
    """Kick-drum hits (seconds): peaks of the kick-band onset envelope well above its median."""
    peaks = peak_pick(kick_env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                      delta=max(float(np.median(kick_env)) * 2.0, 0.25 * float(kick_env.max())), wait=8)
    return peaks * HOP / SR


def _comb(env: np.ndarray, period: float, phases: np.ndarray, peak: np.ndarray | None = None) -> np.ndarray:
    """Mean envelope (max within ±1 frame) on grids of `period` frames at each phase; `peak` is `_peaks(env)` when
    the caller has it (`fit_grid` combs 161 periods over one envelope)."""
    n = len(env)
    peak = _peaks(env) if peak is None else peak
    k = np.arange(int((n - 1 - phases.max()) / period) + 1)
    idx = np.rint(phases[:, None] + k[None] * period).astype(int)
    idx = np.clip(idx, 0, n - 1)
    return peak[idx].mean(1)


def _peaks(env: np.ndarray) -> np.ndarray:
    """The envelope's maximum within ±1 frame (circular at the ends)."""
    return np.maximum(env, np.maximum(np.roll(env, 1), np.roll(env, -1)))


def fit_grid(env: np.ndarray, period0: float, span: float = 0.04, steps: int = 161) -> tuple[float, float, float]:
    """Best (period, phase, score) in frames of a rigid beat grid near `period0` (±span, `steps` periods)."""
    best = (period0, 0.0, -1.0)
    peak = _peaks(env)
    for period in period0 * (1 + np.linspace(-span, span, steps)):
        phases = np.arange(0, period, 0.5)
        score = _comb(env, period, phases, peak)
        i = int(np.argmax(score))
        if score[i] > best[2]:
            best = (float(period), float(phases[i]), float(score[i]))
    # refine the period by regression on the local onset peaks near each grid line
    period, phase, score = best
    n = len(env)
    times, ks = [], []
    floor = np.median(env) * 1.5
    for k in range(int((n - 1 - phase) / period) + 1):
        c = phase + k * period
        a, b = int(max(0, c - 3)), int(min(n, c + 4))
        if b > a and env[a:b].max() > floor:
            times.append(a + int(np.argmax(env[a:b])))
            ks.append(k)
    if len(ks) >= 8:
        slope, icpt = np.polyfit(ks, times, 1)
        if abs(slope / period - 1) < 0.01:
            period, phase = float(slope), float(icpt)
    return period, phase, score


#: a tracked beat may be this much longer or shorter than the candidate's (`track_beats`), and a beat that much off
#: costs `TRACK_TIGHTNESS` × log(1.1)² ≈ 0.27 onset-envelope standard deviations. Set on the drifting renders of
#: benchmarks/tempo_fit.py (22 clips, ±6 % sway): tracked mean tempo off by 0.90 % on average at 30 (10: 0.85 %,
#: 100 — Ellis's librosa default: 1.23 %; a reach of 0.15: 1.02 %), 91 % of clips within 2 %.
TRACK_REACH = 0.1
TRACK_TIGHTNESS = 30.0


#: a candidate whose tracked mean tempo differs from its rigid grid's by more than this is a drifting performance:
#: its tempo is the tracked mean. On music played to a click (the training set's straight renders and drum songs)
#: the two agree within 0.6 % at the true tempo; on the drifting renders the rigid grid sits up to 4 % off the mean
#: tempo (it locks onto one phrase), the tracked mean within 1.2 % on average.
DRIFT_TOL = 0.015


#: drift is a matter of phrases: over a shorter clip a tracked mean that differs from the grid is noise (on the
#: training set's 5 s clips it moved the right candidate off the true tempo in 2 of 22), and the tracked beats of
#: a shorter clip are its grid
DRIFT_MIN_S = 8.0


def track_beats(env: np.ndarray, period: float) -> np.ndarray:
    """Beats (frames) that follow a drifting tempo around `period` frames: the path through the onset envelope
    that maximises its (standardised) strength on the beats minus `TRACK_TIGHTNESS` × log(beat length / period)²
    per beat, each beat within ±`TRACK_REACH` of the period (Ellis 2007's dynamic programme, counted in beats so that
    it is vectorised over frames). The first beat falls within a period of the first clear onset, the last within a
    period before the last (not into the silence after the final chord). A live player without a click drifts by
    several percent over a phrase; a rigid grid locks onto one phrase and puts the rest of his notes off its eighths."""
    n = len(env)
    peak = np.maximum(env, np.maximum(np.roll(env, 1), np.roll(env, -1)))
    o = (peak - peak.mean()) / (float(peak.std()) + 1e-9)
    lengths = np.arange(max(1, int(np.floor(period * (1 - TRACK_REACH)))), int(np.ceil(period * (1 + TRACK_REACH))) + 1)
    cost = TRACK_TIGHTNESS * np.log(lengths / period) ** 2
    frames = np.arange(n)
    heard = np.flatnonzero(o > 1.0)  # clear onsets: the first beat comes by the first, the last after the last
    first, last = (int(heard[0]), int(heard[-1])) if len(heard) else (0, n - 1)
    score = np.where(frames < first + 1.1 * period, o, -np.inf)
    end = frames >= last - 1.1 * period
    best = (float(score[end].max()) if end.any() else -np.inf, 0, int(np.argmax(np.where(end, score, -np.inf))))
    backs = []
    longest = int(lengths[-1])
    for k in range(1, int((n - 1) / lengths[0]) + 1):
        # row t: the score a beat length before t, for the lengths shortest ... longest (ties: the shortest)
        windows = np.lib.stride_tricks.sliding_window_view(np.r_[np.full(longest, -np.inf), score],
                                                           len(lengths))[:n, ::-1] - cost
        j = np.argmax(windows, 1)
        back = lengths[j].astype(np.int32)
        score = windows[frames, j] + o
        backs.append(back)
        if end.any() and score[end].max() > best[0]:
            best = (float(score[end].max()), k, int(np.flatnonzero(end)[np.argmax(score[end])]))
        if not np.isfinite(score).any():
            break
    path = [best[2]]
    for k in range(best[1], 0, -1):
        path.append(path[-1] - int(backs[k - 1][path[-1]]))
    return np.array(path[::-1], float)


def _beat_position(times: np.ndarray, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each time's position in tracked beats (fractional beat index) and the beat's length there; before the first
    and after the last tracked beat the beats go on at their mean length."""
    step_b = float(np.mean(np.diff(beats)))
    lo = int(np.ceil(max(0.0, beats[0] - times.min()) / step_b)) + 1
    hi = int(np.ceil(max(0.0, times.max() - beats[-1]) / step_b)) + 1
    ext = np.r_[beats[0] - step_b * np.arange(lo, 0, -1), beats, beats[-1] + step_b * np.arange(1, hi + 1)]
    pos = np.interp(times, ext, np.arange(len(ext), dtype=float))
    return pos, np.diff(ext)[np.clip(np.floor(pos).astype(int), 0, len(ext) - 2)]


def _on_track(times: np.ndarray, beats: np.ndarray, sub: int) -> float:
    """`_on_grid` against tracked beats (seconds): each beat divided into `sub` equal steps; before the first and
    after the last tracked beat the grid goes on at the mean beat length."""
    if len(times) < 8 or len(beats) < 2:
        return 0.0
    pos, local = _beat_position(times, beats)
    pos, local = pos * sub, local / sub  # in steps, and the step length there
    tol = np.minimum(0.035, 0.25 * local)
    off = np.abs(pos - np.rint(pos)) * local
    chance = float(np.mean(2.0 * tol / local))
    return float((np.mean(off < tol) - chance) / (1.0 - chance))


SWING_BINS = 24


def _beat_fold(env: np.ndarray, beats: np.ndarray, step: float, bins: int) -> np.ndarray:
    """The envelope's peak (±1 frame) at `bins` equal fractions of a beat of `step` frames after each of `beats`
    (frames), averaged over the beats: where in the beat the onsets fall."""
    peak = _peaks(env)
    return np.array([peak[np.clip(np.rint(beats + k * step / bins).astype(int), 0, len(env) - 1)].mean()
                     for k in range(bins)])


def _swing(env: np.ndarray, beats_s: np.ndarray) -> float:
    """How swung the onsets are at this beat: min(a, -b) of the beat-folded onset strength's circular
    autocorrelation a third of a beat on (a: a beat and its 2:1 swung skip, two-thirds in) and half a beat on (b:
    straight eighths) — a skip note and no straight eighth. Phase-free, since a band's attacks sit ahead of or behind
    its ride. On the swing renders (`benchmarks/swing_set.py`) the high band's is near 0 at the groove's tempo and
    -0.6 to -1.1 at half of it; but the metrical relatives (2/3, 3/4 of the tempo) score high too, and straight
    music's double scores above its own tempo: fitted, it did not help (README, issue 19)."""
    fps = SR / HOP
    step = float(np.median(np.diff(beats_s))) if len(beats_s) > 1 else 0.0
    if step <= 0:
        return 0.0
    prof = _beat_fold(env, np.asarray(beats_s) * fps, step * fps, SWING_BINS)
    prof = prof - prof.mean()
    norm = float(prof @ prof) + 1e-12
    third, half = (float(prof @ np.roll(prof, lag)) / norm for lag in (SWING_BINS // 3, SWING_BINS // 2))
    return min(third, -half)


#: where a beat's eighths sit, straight or swung: the beat, its half, and two-thirds (the 2:1 swung skip note)
SWUNG_EIGHTHS = (0.0, 0.5, 2.0 / 3.0)


def _on_swung(times: np.ndarray, beats: np.ndarray, slots: tuple[float, ...] = SWUNG_EIGHTHS) -> float:
    """`_on_track` for eighths that may be swung: the share of `times` near any of `slots` (beat fractions) of the
    beats, over chance. The straight eighths count (n8, tn8) punish a swung groove at its own tempo — its skip notes
    fall between them, while at half of it the real beats sit on the eighths — so they chose the half."""
    if len(times) < 8 or len(beats) < 2:
        return 0.0
    pos, local = _beat_position(times, beats)
    frac = pos - np.floor(pos)
    marks = np.array(slots + (1.0,))
    off = np.min(np.abs(frac[:, None] - marks[None, :]), axis=1) * local
    tol = np.minimum(0.035, 0.5 * local * min(np.diff(np.sort(marks))))  # windows meet, never overlap
    chance = float(np.mean(np.minimum(1.0, 2.0 * tol * len(slots) / local)))
    return float((np.mean(off < tol) - chance) / (1.0 - chance))


def _low_level(bass: np.ndarray, beats: np.ndarray) -> dict:
    """Which metrical level the low register marks: the heard beat is usually where the bass and kick fall (a
    walking bass plays every beat; a folk bass or a kick on 1 and 3 every other one of the double's beats).
    kb: low-register onsets on the beats (`_on_track`, one step a beat: at half the tempo half of a walking bass
    falls between); kcov: the share of beats (between the first and last low onset) that carry one (at double the
    tempo every other beat is empty); krate: -(log2 of low onsets per beat)², one a beat best."""
    if len(bass) < 4 or len(beats) < 2:
        return {"kb": 0.0, "kcov": 0.0, "krate": -1.0}
    step = float(np.mean(np.diff(beats)))
    inside = beats[(beats >= bass.min() - 0.05) & (beats <= bass.max() + 0.05)]
    tol = min(0.05, 0.25 * step)
    near = np.abs(inside[:, None] - bass[None, :]).min(1) < tol if len(inside) else np.zeros(0, bool)
    per_beat = len(bass) / max(1.0, (bass.max() - bass.min()) / step + 1.0)
    return {"kb": _on_track(bass, beats, 1), "kcov": float(near.mean()) if len(near) else 0.0,
            "krate": -float(np.log2(per_beat)) ** 2}


#: a swung pair: the long note over the short one (the 2:1 triplet swing is 2; a player swings 1.5 to 2.5)
SWING_RATIO = (1.4, 2.6)


def _swing_pairs(times: np.ndarray, fill_tol: float = 0.15) -> float:
    """Whether the timekeeper swings, at whatever level (clip-level, phase- and tempo-free): the share of
    consecutive inter-onset intervals of `times` (high-band onsets: ride, hi-hat) that make a long–short pair
    (`SWING_RATIO`) filling the interval just before it (within `fill_tol`): the ride's "ding ding-a ding" is 1,
    2/3, 1/3 of a beat, a swung beat after a plain one. A straight quarter and two eighths (1, 1/2, 1/2) make a
    2:1 pair too, but it spans a beat and a half; straight eighths and dotted rhythms (3:1) make none. At most
    a third of the pairs (a skip on every beat) — the ride's skip on 2 and 4 alone make a sixth."""
    d = np.diff(np.asarray(times, float))
    if len(d) < 6:
        return 0.0
    before, long_, short = d[:-2], d[1:-1], d[2:]
    r = long_ / np.maximum(short, 1e-9)
    swung = (r >= SWING_RATIO[0]) & (r <= SWING_RATIO[1]) & (np.abs(long_ + short - before) < fill_tol * before)
    return float(np.mean(swung))


def _swung_offbeat(high: np.ndarray, beats_s: np.ndarray) -> float:
    """At this beat, the timekeeper's strength two-thirds into the beat (the swung skip) against half-way (the
    straight off-beat): (skip − half) / (skip + half). At a swing groove's own tempo the ride's skip notes sit at
    two-thirds and nothing at the half; at half of it the half is the real next beat and two-thirds is empty."""
    if len(beats_s) < 2:
        return 0.0
    fps = SR / HOP
    inner = beats_s[:-1]
    step = float(np.median(np.diff(beats_s)))
    peak = _peaks(high)
    at = lambda t: float(peak[np.clip(np.rint(t * fps).astype(int), 0, len(high) - 1)].mean())  # noqa: E731
    skip, half = at(inner + 2.0 * step / 3.0), at(inner + step / 2.0)
    return (skip - half) / (skip + half + 1e-9)


#: The swing timekeeper's template (`swing_beat_shift`), in beats: the ride's quarter on the beat (weight 1), its
#: skip note two-thirds in (`SWING_SKIP_WEIGHT`), nothing a third in (weight -1): long-short, never short-long.
SWING_SKIP_WEIGHT = 0.5
#: how much better (in the template's units, the beat-folded high band scaled to its peak) the best shifted phase
#: must fit than the grid's own (±1/8 beat) before the grid moves. Set on renders (`benchmarks/swing_set.py`): on
#: the 11 swing grooves heard at their tempo the grid is on the ride and fits 1.08-1.12, the best shift at most as
#: well (two ties); on the pushed grooves heard at their tempo the grid is on the anticipations and fits -0.07..0.35,
#: the ride's quarter 1.35-1.44 (README, issue 19). filosax01 (measured after): 0.62 against 1.30.
SWING_SHIFT_MARGIN = 0.3


def swing_beat_shift(high: np.ndarray, period: float, phase: float) -> float:
    """Frames to move the grid `phase` + k·`period` (frames) so that its beats sit on a swing timekeeper's quarter
    notes: 0 unless the beat-folded high band (ride, hi-hat) fits the swing template (`SWING_SKIP_WEIGHT`) clearly
    better (`SWING_SHIFT_MARGIN`) at a phase a sixth to five-twelfths of a beat from the grid's, either way.

    Why: in swing the loudest attacks are often the anticipations — the piano comping on the swung "and" before the
    beat, the kick's "bombs" with it, the ride's accented skip notes — and a beat fit that follows strength alone
    sits a third of a beat early, on them (filosax01, a real jazz trio: the heard bar lines 90-130 ms before the
    annotated ones, which are on the ride's quarter notes; the pushed grooves of `benchmarks/swing_set.py`: every
    one). The swung eighth is long-short: on the beat the ride's quarter comes and its skip note two-thirds later,
    never a third later; on the anticipation the next quarter follows a third of a beat later, which the template
    penalises. Moves closer than a sixth of a beat are the band's feel against the ride (a bass a few tens of ms
    ahead), the attack fit's (`listen.phase`), not this; the half-beat is straight music's confusion, not tried."""
    n = len(high)
    if period <= 0 or n < 2:
        return 0.0
    bins = SWING_BINS
    beats = phase + np.arange(int((n - 1 - phase) / period)) * period
    if len(beats) < MIN_BEATS:
        return 0.0
    prof = _beat_fold(high, beats, period, bins)
    prof = prof / (prof.max() + 1e-12)
    near = np.array([max(prof[(i - 1) % bins], prof[i % bins], prof[(i + 1) % bins]) for i in range(bins)])
    fit = near + SWING_SKIP_WEIGHT * np.roll(near, -2 * bins // 3) - np.roll(near, -bins // 3)
    own = fit[np.r_[-3:4] % bins].max()
    tried = np.r_[bins // 6:5 * bins // 12 + 1, 7 * bins // 12:5 * bins // 6 + 1]
    best = int(tried[np.argmax(fit[tried])])
    if fit[best] - own <= SWING_SHIFT_MARGIN:
        return 0.0
    return (best if best < bins // 2 else best - bins) * period / bins


#: log2 events per second that the content-dependent prior terms (`ltn`, `ltp`, `lth`, `ltk`) are centred on.
#: Listed, not weighed (README, issue 19): fitted, `ltk` weighed -1.46 against `lp`'s 4.19 — the prior's centre 0.17
#: octave lower per doubling of the low-register onset rate (a busy low register is mostly subdivision) — and won
#: cross-validation (123 → 127 of 141) and the held-out 5 s clips (19 → 22 of 24), but doubled two 76 BPM drum songs
#: of listen_eval's seed 9001 (beat F 0.992 → 0.826).
RATE_CENTRE = {"n": 2.0, "p": 1.0, "h": 2.0, "k": 1.0}


def _tempo_prior(bpm: float) -> float:
    return float(np.exp(-0.5 * (np.log2(bpm / 120.0) / 1.0) ** 2))


def _novelty(chroma: np.ndarray) -> np.ndarray:
    """Harmonic change into each beat: the two beats from it against the two before it (Foote's checkerboard,
    two beats wide). Comparing each beat with the one before instead put the change a beat late wherever the new
    chord settles over its first beat (strings swelling in, a chord pushed early, comping spread over the bar):
    bar one then came a beat late. NaN where the window runs off the clip (no change is known there)."""
    norm = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    t = norm.shape[1]
    out = np.full(t, np.nan)
    for i in range(1, t):
        before = norm[:, max(0, i - 2):i].sum(1)
        after = norm[:, i:i + 2].sum(1)
        out[i] = 1.0 - float(before @ after) / (np.linalg.norm(before) * np.linalg.norm(after) + 1e-9)
    return out


#: weight of the low band (kick, bass) against harmonic change when placing bar one (`_meter_and_phase`): set on
#: the drum songs and the four-part set (bar-line F; 0.5 → 1.5: four-part 0.59 → 0.65, drum songs kept, 2.0 lost
#: drum songs). The tempo choice's `contrast` keeps 0.5 (`TEMPO_CONTRAST_LOW`): it asks whether the chords change
#: on the bar lines, which is the harmonic-rhythm cue.
#: Measured, not changed (session 8): a band *without drums* (what `generate drums MIX.wav` hears) gets bar one on
#: the wrong beat on 4 of 20 held-out renders (downbeat F 0.75; 0.95 for the same bands with drums and without
#: bass) — there the low band's strongest hits are a bass's pushes and the comping's 2 and 4. On a tuning set of
#: its own (56 renders of seeds 3131/3232 as bands without drums and without bass, 10 four-part training pieces
#: of `tempo_fit.py`) 0.1 placed bar one right on 102 of 107 (1.5: 93) and lifted the held-out bands without drums
#: to F 0.83, but the held-out four-part set fell 0.60 → 0.43 and filosax01 (a jazz trio over a static chord) moved
#: bar one a beat late: where the harmony does not move, the bass and kick are the only bar cue. Kept at 1.5.
BAR_ONE_LOW = 1.5
#: Where the timekeeper swings (the style context `gsw`, `style_context`), bar one is placed with the low band at
#: `SWING_BAR_ONE_LOW` and the new pitches at a beat (the pitch-change envelope: a chord struck, a bass note
#: moving) at `SWING_BAR_ONE_PITCH` — blended by gsw, elsewhere as before. Why: a walking bass's approach note on 4
#: sits a half step from the next root, in the same mel band (little low-band flux on 1, the most on 4), and the
#: Charleston's comping leaves beats 2 and 4 empty, so harmonic change two beats against two is as high on 4 as
#: on 1: every swing groove of `benchmarks/swing_set.py` heard at its tempo had bar one on beat 4 (0 of 11; held-out
#: seeds 5000+: 0 of 12). Set on a tuning set of bar-one cues (the swing grooves, 91 bands without drums or
#: without bass of seeds 3131/3232, 10 four-part training pieces): 0.5 / 1.0 placed bar one right on 101 of 115
#: (the weights before: 86). Not everywhere: for every song they cost a held-out drum song whose chords are
#: pushed onto 4 (downbeat F 0.892 → 0.811 over 12; README, issue 19), so only with the swing context.
SWING_BAR_ONE_LOW = 0.5
SWING_BAR_ONE_PITCH = 1.0


TEMPO_CONTRAST_LOW = 0.5


def _meter_and_phase(novelty: np.ndarray, low: np.ndarray, meters: list[tuple[int, int]],
                     low_weight: float | None = None, pitch: np.ndarray | None = None, swing: float = 0.0
                     ) -> tuple[tuple[int, int], int, float]:
    """(meter, phase of beat one, contrast): the most harmonic change + kick strength on the downbeat (z-scored);
    with `swing` (the context gsw, 0-1) and the new pitches per beat (`pitch`), weighed as `SWING_BAR_ONE_LOW` and
    `SWING_BAR_ONE_PITCH` say."""
    def z(x: np.ndarray) -> np.ndarray:  # a beat whose value is not known (NaN) counts as average
        return np.nan_to_num((x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)) if np.isfinite(x).any() else 0.0 * x

    low_w = BAR_ONE_LOW if low_weight is None else low_weight
    if pitch is not None and swing > 0.0:
        low_w += swing * (SWING_BAR_ONE_LOW - low_w)
    cue = z(novelty) + low_w * z(low)
    if pitch is not None and swing > 0.0:
        cue = cue + swing * SWING_BAR_ONE_PITCH * z(pitch)
    best = (-np.inf, meters[0], 0)
    for meter in meters:
        m = meter[0] if meter[1] == 4 else meter[0] // 3 if meter[0] % 3 == 0 else meter[0]
        for p in range(m):
            on = cue[p::m]
            off = np.delete(cue, np.arange(p, len(cue), m))
            if len(on) < 2 or len(off) < 2:
                continue
            # 4/4 unless three beats to the bar is clearly heard (a groove without chord changes says nothing)
            score = on.mean() - off.mean() - (0.25 if m == 3 else 0.0)
            if score > best[0]:
                best = (score, meter, p)
    return best[1], best[2], float(best[0])


def _tempo_guesses(env: np.ndarray, n_peaks: int = 4) -> list[float]:
    """Tempi worth fitting a grid to: librosa's estimate and the strongest peaks of the onset autocorrelation
    (soft attacks — strings, a choir — leave librosa's single estimate off the beat often), each with its double
    and half and librosa's with 2/3 and 3/2; 50-220 BPM, no two within 3 %."""
    fps = SR / HOP
    t0 = tempo_estimate(env, SR, HOP)
    out = [t0 * f for f in (1.0, 0.5, 2.0, 2.0 / 3.0, 1.5)]
    ac = autocorrelate(env - env.mean(), max_size=min(len(env), int(fps * 60.0 / 48.0)))
    lags = np.arange(2, len(ac) - 1)
    lags = lags[(ac[lags] >= ac[lags - 1]) & (ac[lags] >= ac[lags + 1])]
    lags = lags[(60.0 * fps / lags >= 50.0) & (60.0 * fps / lags <= 220.0)]
    for lag in sorted(lags, key=lambda x: -ac[x])[:n_peaks]:
        b = 60.0 * fps / lag
        out += [b, b * 2.0, b / 2.0]
    keep: list[float] = []
    for b in out:
        if 50.0 <= b <= 220.0 and all(abs(b / k - 1.0) > 0.03 for k in keep):
            keep.append(b)
    return keep


#: metrical relatives of a fitted grid also fitted (`tempo_candidates`): a beat heard in threes or fours where the
#: music moves in twos or threes (2/3, 3/2, 4/3, 3/4 of the tempo) is the common miss without drums
RELATIVES = (2.0, 0.5, 1.5, 2.0 / 3.0, 4.0 / 3.0, 0.75)


def tempo_candidates(env: np.ndarray) -> list[tuple[float, float, float]]:
    """(score, period, phase) of rigid grids worth weighing: each guess (`_tempo_guesses`) fitted within ±4 %, then
    each fitted grid's metrical relatives (`RELATIVES`) fitted narrowly (±1.5 %) around the exact ratio of its
    period — so a 3/4 piece whose autocorrelation peaks at its bar or at two beats still gets its beat tried."""
    fps = SR / HOP
    cands = [fit_grid(env, fps * 60.0 / b) for b in _tempo_guesses(env)]
    cands = [(sc, p, ph) for p, ph, sc in cands]
    tried = [p for _, p, _ in cands]
    for _, p0, _ in sorted(cands, reverse=True)[:4]:
        for r in RELATIVES:
            p = p0 / r
            if 50.0 <= 60.0 * fps / p <= 220.0 and all(abs(p / q - 1.0) > 0.015 for q in tried):
                tried.append(p)
                p, ph, sc = fit_grid(env, p, span=0.015, steps=25)
                cands.append((sc, p, ph))
    return cands


#: weights of the tempo choice (`tempo_value`): a conditional logit over each clip's candidates, fitted by
#: `benchmarks/tempo_fit.py` on music21 four-part pieces outside the nodrums_eval set (never Bach) — as written, with
#: their bass played too, and with a drifting tempo — rendered corpus songs with drums (band without its bass and
#: full mix), and rendered swing and folk grooves (which pull the octave opposite ways); never on realdev. Five-fold
#: cross-validation over the training pieces (`tempo_fit.py --cv`, L2 0.003): on 98 clips the rigid-grid features
#: alone 78/98 right without the drift re-gridding (`DRIFT_TOL`), 81/98 with it, 85/98 with the tracked-beat features
#: too (drifting takes 11/22 → 15/22 → 19/22); on today's 189 clips the weights fitted without the swing and folk
#: grooves 144/189, with them 149/189 (the held-out sets unchanged; README, issue 19). The pitch density (`pdens`)
#: chose the half tempo of a 3/4 song at 160 BPM (tests/test_listen.py): it learnt the four-part writing's two new
#: pitches a beat, not music's; not weighed.
#: The style contexts (`style_context`) are weighed through `STYLE_WEIGHTS`, fitted on top of these.
BASE_WEIGHTS = {"fit": 2.85, "contrast": 0.34, "lp": 2.42, "thin": -0.5, "n8": 1.08, "n16": -0.0, "k16": 0.47,
                "pfit": 0.93, "p8": 0.87, "p16": 0.08, "tfit": 2.87, "tn8": 1.5, "tn16": 1.0, "tk16": -0.0, "tp8": 0.83,
                "tp16": 0.75}

#: Style-context weights fitted on top of `BASE_WEIGHTS`, which stay fixed (issue 19; `benchmarks/tempo_fit.py
#: --fix-base --features <the 16>,gsw*sk,gsw*lt,gnokit*kcov`): with a swung timekeeper and a kit, the swung skip's
#: place in the beat (gsw*sk) and a prior moved toward the faster level (gsw*lt: the swing quarter); without a drum
#: kit, the share of beats that carry a bass note (gnokit*kcov: the dance step, the "pah" between). Five-fold
#: cross-validation by piece on the renders, 189 clips: 151 → 162 (swing 13 → 21 of 24, folk 10 → 12 of 24, every
#: other group the same). The second design checked against realdev (README): the first gated the kit on a
#: flatness above 4 kHz that read 0.00 on filosax01 (a bright top end's cue, not a kit's) and left realdev at 3/6;
#: with the role check's drums margin as the kit (`listen.audio.drum_kit`, `KIT_GATE`) realdev is 4/6 (filosax01
#: 72.5 → 146.8, its swing quarter) and every held-out row holds.
STYLE_WEIGHTS = {"gsw*sk": 1.65, "gsw*lt": 2.4, "gnokit*kcov": 2.75}
TEMPO_WEIGHTS = {**BASE_WEIGHTS, **STYLE_WEIGHTS}


def feature(f: dict, key: str) -> float:
    """A candidate's feature `key`; "a*b" is the product of two (a style context times a candidate's cue: the
    weight of b then depends on the clip's style, `style_context`)."""
    if "*" in key:
        a, b = key.split("*", 1)
        return float(f[a]) * float(f[b])
    return float(f[key])


def tempo_value(f: dict, w: dict | None = None) -> float:
    """How good a tempo candidate is (see `tempo_features`): a weighted sum of its features."""
    w = w or TEMPO_WEIGHTS
    return float(sum(wk * feature(f, k) for k, wk in w.items()))


#: the style contexts as gates, 0 below the first value and 1 above the second (linear between): the raw cues
#: leak (a string passage's few high-band onsets pair by chance), and, multiplied into a candidate's cue, a leak
#: moves straight music's octave too. Set from the renders' ranges (benchmarks/tempo_fit.py's table, README issue 19):
#: `_swing_pairs`: swing grooves 0.08-0.38 swung pairs, drum songs 0.00 (every one), music21 and folk clips up to
#: 0.22 but without a kit. The kit is the role check's drums margin (`listen.audio.drum_kit`, log-odds over the
#: presence model's decision): dry, swing grooves -9.0 to -3.5 (a jazz kit is under the decision, but far above
#: no kit), drum songs -3.2 to +12.7, folk bands -20.3 to -11.0, four-part strings, piano and choir -28 to -11.0;
#: through a first-order 3 kHz low-pass the kits fall 3-4 (swing -11.5 to -7.0) and the rest stay at -13.7 and under.
#: The gate is shut for every no-kit render dry or darkened, and open for every kit dry.
SWING_GATE = (0.05, 0.15)
KIT_GATE = (-10.5, -9.5)
#: the kit context where none was heard (no analysis engine, silence, or not asked for): below any render's
NO_KIT = -40.0


def _gate(x: float, edges: tuple[float, float]) -> float:
    return float(np.clip((x - edges[0]) / (edges[1] - edges[0]), 0.0, 1.0))


def style_context(feats: list[dict], swing: float, kit: float) -> list[dict]:
    """Clip-level style cues, the same on every candidate of a clip (issue 19: each style has its own convention
    for which metrical level is the beat — the swing quarter, the dance step, the score's): csw, the timekeeper's
    swing (`_swing_pairs`), ckit, a drum kit (the role check's drums margin, `listen.audio.drum_kit`), and their
    gates (`SWING_GATE`, `KIT_GATE`): gsw, gkit, gnokit = 1 − gkit. Alone they cancel in the softmax over a clip's
    candidates; times a candidate's cue ("gsw*sk") they make that cue's weight depend on the style
    (`STYLE_WEIGHTS`)."""
    gkit = _gate(kit, KIT_GATE)
    gsw = _gate(swing, SWING_GATE) * gkit  # a swung timekeeper is a cymbal: strings' few high onsets pair by chance
    ctx = {"csw": swing, "ckit": kit, "gsw": gsw, "gkit": gkit, "gnokit": 1.0 - gkit}
    for f in feats:
        f.update(ctx)
    return feats


def uses_kit(w: dict) -> bool:
    """Whether weights `w` read the drum-kit context (a key on ckit or a gate made from it): only then does the
    listener ask for it (`listen.audio.drum_kit`)."""
    return any(part in ("ckit", "gkit", "gnokit", "gsw") for k in w for part in k.split("*"))


def _on_grid(times: np.ndarray, first: float, step: float) -> float:
    """Share of `times` within a tolerance of a grid of `step` seconds, over what chance gives (0 = as random,
    1 = all on it; 0 under eight events). The raw share is not comparable across tempi: a finer grid catches
    more of anything (at 180 BPM a ±35 ms window covers 83 % of every 16th)."""
    if len(times) < 8:
        return 0.0
    tol = min(0.035, 0.25 * step)
    off = np.abs((times - first + step / 2) % step - step / 2)
    chance = 2.0 * tol / step
    return float((np.mean(off < tol) - chance) / (1.0 - chance))


def tempo_features(cands: list[tuple[float, float, float]], env: np.ndarray, low: np.ndarray, duration: float,
                   meters: list[tuple[int, int]], grid_of, pitch_env: np.ndarray | None = None,
                   high: np.ndarray | None = None, kit: float = NO_KIT) -> list[dict]:
    """Per fitted grid (score, period, phase in frames): what `tempo_value` weighs, and the grid itself.

    fit: the grid's comb score against the best grid's; thin: under 60 % of it (every other beat on nothing: too
    fast); contrast: harmonic change and low-band strength on its bar lines (`_meter_and_phase`; at half the tempo
    chords change mid-bar too, at double every other bar); prior: librosa's log-normal around 120 BPM (lp: its log);
    n8/n16/n12: note onsets (the melody's too) on its eighths / sixteenths / eighth triplets, k16: low-band hits on
    its sixteenths, chance-corrected (`_on_grid`): at 2/3 or 3/2 of the tempo a third of them fall between;
    sal: the onset strength on its beats over that on its off-beat eighths (log); triple: three beats to its bar.
    Against the beats tracked from it (`track_beats`: a live take drifts off any rigid grid): tfit, the onset
    strength on them against the best candidate's; tn8/tn16/tk16/tp8/tp16, the note onsets, low hits and new pitches
    on their eighths and sixteenths (`_on_track`). pdens (new pitches per beat against two:
    log2, squared, negated) and lt (log2 of the tempo over 120 BPM) are listed for the fit, not weighed now; so
    are the swing cues (issue 19: a swung groove heard at half its tempo): sw3/hsw3 (`_swing`, all and high band)
    and n8s/tn8s/p8s/tp8s (`_on_swung`: eighths on the straight or the swung offbeat), which did not pass.
    The content-dependent prior: lt times log2 of the clip's event rate per second (centred on `RATE_CENTRE`) for
    low-register onsets (ltk), note onsets (ltn), new pitches (ltp) and high-band onsets (lth) — the prior's centre
    moving with how busy the music is — and which level the bass marks (`_low_level`: kb, kcov, krate) are listed,
    not weighed: fitted, each cost a held-out set (README, issue 19). sk, the timekeeper's swung skip against its
    straight off-beat at this beat (`_swung_offbeat`), and the clip's style contexts (`style_context`: csw, ckit
    and their gates gsw, gkit, gnokit) enter as products with the cues above ("gsw*sk", `STYLE_WEIGHTS`).
    A candidate whose tracked mean tempo differs from its grid's by over `DRIFT_TOL` is re-gridded at that mean."""
    fps = SR / HOP
    top = max(c[0] for c in cands)
    hits = peak_pick(low, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                     delta=0.3 * float(low.max()), wait=8) / fps  # the loudest low-band hits
    notes = peak_pick(env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                      delta=0.2 * float(np.percentile(env, 99)), wait=4) / fps  # note onsets, melody too
    pitch_env = np.zeros_like(env) if pitch_env is None else pitch_env
    high = np.zeros_like(env) if high is None else high
    pitches = peak_pick(pitch_env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                        delta=0.2 * float(np.percentile(pitch_env, 99)), wait=4) / fps  # new pitches
    bass = peak_pick(low, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                     delta=0.2 * float(np.percentile(low, 99)), wait=4) / fps  # low-register notes and hits
    highs = peak_pick(high, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                      delta=0.2 * float(np.percentile(high, 99)) + 1e-9, wait=4) / fps  # cymbals, consonants
    rates = {k: float(np.log2((len(v) + 1.0) / max(duration, 1e-9))) for k, v in
             (("n", notes), ("p", pitches), ("h", highs), ("k", bass))}  # events per second, log2
    pcomb = [float(_comb(pitch_env, p, np.arange(0, p, 1.0)).max()) for _, p, _ in cands]
    ptop = max(max(pcomb), 1e-12)
    out = []
    for (sc, period, ph), psc in zip(cands, pcomb):
        if sc < 0.5 * top:
            continue
        tracked = track_beats(env, period)
        mean_period = (tracked[-1] - tracked[0]) / max(1, len(tracked) - 1)
        long_enough = tracked[-1] - tracked[0] >= DRIFT_MIN_S * fps
        if long_enough and abs(mean_period / period - 1.0) > DRIFT_TOL:  # a drifting performance
            for _ in range(3):  # centre the tracker's reach on the mean tempo it found, until it stays there
                tracked = track_beats(env, mean_period)
                again = (tracked[-1] - tracked[0]) / max(1, len(tracked) - 1)
                mean_period, moved = again, abs(again / mean_period - 1.0)
                if moved < 0.005:
                    break
            period, ph, _ = fit_grid(env, mean_period, span=0.0, steps=1)
        bs = period / fps
        first = (ph / fps) % bs
        bts = np.arange(first, duration - 0.05, bs)
        if len(bts) < MIN_BEATS:
            continue
        chroma_c, low_c = grid_of(bts)
        m, p, contrast = _meter_and_phase(_novelty(chroma_c), low_c, meters, TEMPO_CONTRAST_LOW)
        sixteenth = bs / 4
        off = np.abs((hits - first + sixteenth / 2) % sixteenth - sixteenth / 2)
        on_grid = float(np.mean(off < 0.035)) if len(hits) >= 8 else 1.0
        off_n = np.abs((notes - first + sixteenth / 2) % sixteenth - sixteenth / 2)
        note_grid = float(np.mean(off_n < 0.035)) if len(notes) >= 8 else 1.0
        half = _comb(env, period, np.array([ph + period / 2]))[0]
        if long_enough:
            tb = tracked / fps
            peak = np.maximum(env, np.maximum(np.roll(env, 1), np.roll(env, -1)))
            tsc = float(peak[np.clip(np.rint(tracked).astype(int), 0, len(env) - 1)].mean())
        else:  # no drift to follow in a short clip: its tracked beats are the grid
            tb, tsc = bts, sc
        out.append({"bpm": 60.0 / bs, "fit": sc / top, "contrast": contrast, "prior": _tempo_prior(60.0 / bs),
                    "lp": -float(np.log2(60.0 / bs / 120.0) ** 2), "thin": float(sc < 0.6 * top),
                    "off_grid": float(on_grid < 0.7), "note_grid": note_grid,
                    "n8": _on_grid(notes, first, bs / 2), "n16": _on_grid(notes, first, bs / 4),
                    "n12": _on_grid(notes, first, bs / 3), "k16": _on_grid(hits, first, bs / 4),
                    "sal": float(np.log((sc + 1e-9) / (half + 1e-9))), "triple": float(m[0] == 3),
                    "pfit": psc / ptop, "p8": _on_grid(pitches, first, bs / 2), "p16": _on_grid(pitches, first, bs / 4),
                    "tn8": _on_track(notes, tb, 2), "tn16": _on_track(notes, tb, 4), "tk16": _on_track(hits, tb, 4),
                    "tp8": _on_track(pitches, tb, 2), "tp16": _on_track(pitches, tb, 4), "tsc": tsc,
                    "pdens": -(float(np.log2((len(pitches) + 1.0) / len(bts))) - 1.0) ** 2,
                    "lt": float(np.log2(60.0 / bs / 120.0)), "sw3": _swing(env, tb[tb < duration - bs]),
                    "hsw3": _swing(high, tb[tb < duration - bs]),
                    "n8s": _on_swung(notes, bts), "tn8s": _on_swung(notes, tb), "p8s": _on_swung(pitches, bts),
                    "tp8s": _on_swung(pitches, tb), **_low_level(bass, tb),
                    "sk": _swung_offbeat(high, tb),
                    **{f"lt{k}": float(np.log2(60.0 / bs / 120.0)) * (r - RATE_CENTRE[k]) for k, r in rates.items()},
                    "beats": bts, "beat_s": bs, "chroma": chroma_c, "low": low_c, "meter": m, "phase": p})
    ttop = max((f["tsc"] for f in out), default=1.0)
    for f in out:
        f["tfit"] = f["tsc"] / (ttop + 1e-12)
    return style_context(out, _swing_pairs(highs), kit)
