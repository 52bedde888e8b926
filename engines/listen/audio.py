"""Listening to a mix: the cues read from the samples, then tempo, bar one, key and chords per beat in order."""

from __future__ import annotations

import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.dsp import frame_rms
from backline.engines.core.errors import ConfigError
from backline.engines.listen.chart import Chord, _chart_on_beats
from backline.engines.listen.harmony import _beat_chroma, _frame_chroma, chords_from_chroma, hold_through
from backline.engines.listen.key import key_from_chords, key_from_chroma
from backline.engines.listen.listening import Listening
from backline.engines.listen.phase import attack_grid, attacks
from backline.engines.listen.tempo import (
    ENVELOPE_LAG_S,
    HOP,
    NO_KIT,
    SR,
    TEMPO_WEIGHTS,
    _kicks,
    _meter_and_phase,
    _novelty,
    _onsets,
    fit_grid,
    swing_beat_shift,
    tempo_candidates,
    tempo_features,
    tempo_value,
    uses_kit,
)


def _cues(y: np.ndarray):
    """Everything listening reads from the samples: the onset envelopes (`_onsets`), the CQT chroma, the band's
    low voice, the pitch-change envelope (aligned with the onset envelope) and the upper chroma (`_frame_chroma`)."""
    env, low, kick_env, high = _onsets(y)
    frame_chroma, band_low, pitch_env, upper_chroma = _frame_chroma(y)
    pitch_env = np.pad(pitch_env, (0, max(0, len(env) - len(pitch_env))))[:len(env)]
    return env, low, kick_env, frame_chroma, band_low, pitch_env, upper_chroma, high


def drum_kit(mix: Audio) -> float:
    """Whether a drum kit plays (the style contexts' ckit, `style_context`): the role check's drums value
    (`analysis.api.drums_playing`: log-odds over its decision), through the analysis engine's hook; `NO_KIT`
    without that engine.
    The presence model hears a kit through a recording's EQ where a flatness above 4 kHz did not (README, issue
    19), and its last report is cached by the mix's fingerprint: on a follow take the role check has already run
    it on this mix, so the listener pays a hash."""
    import backline.engines.registry  # noqa: F401  # lazy: declares the hook providers (no engine is imported)
    from backline.engines.core.hooks import drums_playing

    value = drums_playing(mix)
    return NO_KIT if value is None else value


def _at_beats(env: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """An onset-hop envelope's peak within ±2 frames (±23 ms) of each beat."""
    fr = np.clip(np.rint(beats * SR / HOP).astype(int), 0, len(env) - 1)
    return np.array([env[max(0, f - 2):f + 3].max() for f in fr])


def _grid_cues(frame_chroma: np.ndarray, low: np.ndarray, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per beat of a grid: its chroma, and the low-band onset strength at it (bar one's cues)."""
    return _beat_chroma(frame_chroma, beats), _at_beats(low, beats)


def tempo_table(mix: Audio, meters: tuple[tuple[int, int], ...] = ((4, 4), (3, 4))) -> list[dict]:
    """Every tempo candidate `listen` weighs for this mix, with its features (`tempo_features`): what
    benchmarks/tempo_fit.py fits `TEMPO_WEIGHTS` on."""
    y = np.nan_to_num(mix.with_channels(1).resampled(SR).samples[0].astype(np.float32))
    env, low, _, frame_chroma, _, pitch_env, _, high = _cues(y)
    return tempo_features(tempo_candidates(env), env, low, len(y) / SR, list(meters),
                          lambda beats: _grid_cues(frame_chroma, low, beats), pitch_env, high, drum_kit(mix))


def listen_audio(mix: Audio, *, bpm: float | None = None, meter: tuple[int, int] | None = None,
                 key: tuple[int, str] | None = None, chart: list[list[Chord]] | None = None,
                 beats_hint: np.ndarray | None = None, downbeat_hint: float | None = None,
                 sources: dict[str, str] | None = None) -> Listening:
    """Listen to audio; anything given (bpm, meter, key, chart, beats from MIDI/DAW) is used instead of guessed."""
    sources = dict(sources or {})
    y = mix.with_channels(1).resampled(SR).samples[0].astype(np.float32)
    y = np.nan_to_num(y)
    duration = len(y) / SR
    if duration < 2.0:
        raise ConfigError(f"the mix is {duration:.1f} s long; listening needs at least two bars",
                          fix="give a longer mix, or the tempo and chords (--bpm, --chords)")
    env, low, kick_env, frame_chroma, band_low, pitch_env, upper_chroma, high = _cues(y)
    fps = SR / HOP
    fr_of = lambda t: np.clip(np.rint(t * fps).astype(int), 0, len(low) - 1)  # noqa: E731
    want_compound = meter == (6, 8) and beats_hint is None
    # a 6/8 the user names is felt in quarters (three to the bar) or in dotted quarters (two): try both
    meters = [(3, 4), (6, 8)] if want_compound else [meter] if meter else [(4, 4), (3, 4)]
    if meter is not None:
        sources.setdefault("meter", "user")

    rms = frame_rms(y, hop=512)[None]  # chroma is normalised per frame: level from here

    def grid_of(beats: np.ndarray):
        return _grid_cues(frame_chroma, low, beats)

    octave = None  # double or half time that came close (only where the tempo was chosen from audio)
    if beats_hint is not None:
        beats = np.asarray(beats_hint, float)
        beat_s = float(np.median(np.diff(beats))) if len(beats) > 1 else 0.5
        chroma, lowb = grid_of(beats)
        if downbeat_hint is not None:
            meter = meter or (4, 4)
            phase = int(np.argmin(np.abs(beats - downbeat_hint))) % meter[0]
        else:
            meter, phase, _ = _meter_and_phase(_novelty(chroma), lowb, meters)
    else:
        if bpm is not None:
            beat_q = 4.0 / (meter[1] if meter else 4)
            period = fps * 60.0 / bpm * beat_q
            _, ph, sc = fit_grid(env, period, span=0.0)
            cands = [(sc, period, ph)]
        else:
            cands = tempo_candidates(env)
            sources["tempo"] = "audio"
        # the kit context where the weights read it: for the octave, and (the tempo given too) for where a swing
        # groove's beat and bar one sit (`swing_beat_shift`, `_meter_and_phase`'s swing cue)
        kit = drum_kit(mix) if uses_kit(TEMPO_WEIGHTS) else NO_KIT
        scored = [(tempo_value(f), f) for f in tempo_features(cands, env, low, duration, meters, grid_of, pitch_env,
                                                              high, kit)]
        if not scored:
            raise ConfigError("no steady beat was heard in the mix", fix="give the tempo with --bpm")
        value, f = max(scored, key=lambda vf: vf[0])
        if bpm is None:
            octave = octave_doubt([(v, g["bpm"]) for v, g in scored], value, f["bpm"])
        beats, beat_s, chroma, lowb, meter, phase = (f[k] for k in ("beats", "beat_s", "chroma", "low", "meter", "phase"))
        # bar one: harmony and the low band (in swing, new pitches too)
        meter, phase, _ = _meter_and_phase(_novelty(chroma), lowb, meters, pitch=_at_beats(pitch_env, beats),
                                           swing=f["gsw"])
        # with a kit, a swing timekeeper's quarter is the beat, not the band's anticipations (`swing_beat_shift`);
        # bar one and each beat's harmony stay as read at the band's attacks: a push belongs to the beat it
        # anticipates (read from the ride's beats instead, filosax01's chords lost 0.975 -> 0.813 chord tones)
        moved = swing_beat_shift(high, beat_s * fps, float(beats[0]) * fps) / fps if f["gkit"] >= 0.5 else 0.0
        if moved:
            beats = beats + moved
            if beats[0] < 0.0:  # the first beat moved off the clip: bar one is a beat nearer the start
                per_bar = meter[0] // 3 if meter[1] == 8 and meter[0] % 3 == 0 else meter[0]
                beats, chroma, phase = beats[1:], chroma[:, 1:], (phase - 1) % per_bar
            beats = beats[beats < duration - 0.05]
            chroma = chroma[:, :len(beats)]
        sources["bar_one"] = "audio"
        sources.setdefault("meter", "audio")
    energy = _beat_chroma(rms, beats)[0]
    if key is None:
        key = key_from_chroma((chroma * energy[None]).sum(1))
        sources["key"] = "audio"
    if meter == (3, 4) and beats_hint is None and sources.get("meter") != "user" or want_compound:
        # 3/4 or 6/8? Both have six eighths in a bar; 6/8 accents the fourth (two groups of three), 3/4 the third
        # and fifth (three groups of two). Compare the onset strength there, bar by bar.
        per = 3 if meter == (6, 8) else 2  # eighths per heard beat (dotted quarter or quarter)
        peak = np.maximum(env, np.maximum(np.roll(env, 1), np.roll(env, -1)))
        first = beats[phase] if phase < len(beats) else beats[0]
        eighth = beat_s / per
        eighths = first + np.arange(int((duration - first) / eighth)) * eighth
        prof = np.array([peak[fr_of(eighths[p::6])].mean() if len(eighths[p::6]) else 0.0 for p in range(6)])
        if want_compound or prof[3] > max(prof[2], prof[4]):
            meter = (6, 8)
            start = first - np.floor(first / eighth) * eighth
            beats = np.arange(start, duration - 0.05, eighth)
            phase = int(round((first - start) / eighth)) % 6
            chroma = np.repeat(chroma, per, axis=1)
            energy = np.repeat(energy, per)
            if chroma.shape[1] < len(beats):
                pad = len(beats) - chroma.shape[1]
                chroma = np.pad(chroma, ((0, 0), (pad, 0)), mode="edge")
                energy = np.pad(energy, (pad, 0), mode="edge")
            chroma, energy = chroma[:, :len(beats)], energy[:len(beats)]
            beat_s = eighth
    num = meter[0]
    bar_pos = (np.arange(len(beats)) - phase) % num
    downbeats = beats[bar_pos == 0]
    quarter_s = beat_s * meter[1] / 4.0
    tempo = bpm if bpm is not None else 60.0 / quarter_s
    if chart is not None:
        chords = _chart_on_beats(chart, len(beats), int(np.argmax(bar_pos == 0)), num)
        sources["chords"] = "user"
    else:
        upper = _beat_chroma(upper_chroma, beats)
        chords = hold_through(chords_from_chroma(chroma, bar_pos, num, key, energy, upper), energy)
        sources.setdefault("chords", "audio")
    if sources.get("key") == "audio":
        key = key_from_chords(chords, bar_pos == 0, (chroma * energy[None]).sum(1), key)
    if beats_hint is None and len(beats):  # the grid onto the band's note-ons (`phase`): the envelope's lag off,
        # then the attacks' own offset, and their period unless the user gave the tempo (DAW/MIDI beats: untouched)
        first = float(beats[0]) - ENVELOPE_LAG_S
        shift, period = attack_grid(attacks(y, SR), first, beat_s, refit=bpm is None) or (0.0, beat_s)
        beats = np.maximum(first + shift + np.arange(len(beats)) * period, 0.0)
        keep = max(1, int(np.sum(beats < duration)))  # a longer period may carry the last beat past the end
        beats, bar_pos, chords = beats[:keep], bar_pos[:keep], chords[:keep]
        downbeats = beats[bar_pos == 0]
        if bpm is None:
            tempo = 60.0 / (period * meter[1] / 4.0)
    return Listening(float(tempo), num, meter[1], beats, downbeats, key[0], key[1], chords, duration, sources,
                     kicks=_kicks(kick_env), band_low=band_low,
                     octave_alternative=float(tempo) * octave if octave else None)


#: how close (in `tempo_value`) the best candidate at double or half the chosen tempo must come for the listener
#: to say so (`Listening.octave_alternative`). On the 211 training clips of `benchmarks/tempo_fit.py` (the shipped
#: weights): at 1.5 the line names the right tempo on 17 of the 42 clips whose octave was chosen wrong, and is said
#: beside 54 of the 169 right ones (1.0: 14 and 31; 2.0: 23 and 79). A hint, never a choice: the take keeps the
#: chosen tempo and `--bpm` picks the other.
OCTAVE_DOUBT = 1.5


def octave_doubt(scored: list[tuple[float, float]], best_value: float, best_bpm: float) -> float | None:
    """2.0 or 0.5 when a candidate at double or half `best_bpm` scores within `OCTAVE_DOUBT` of the best."""
    close = [(value, bpm) for value, bpm in scored if best_value - value < OCTAVE_DOUBT]
    for _, bpm in sorted(close, reverse=True):
        for ratio in (2.0, 0.5):
            if abs(bpm / best_bpm / ratio - 1.0) < 0.04:
                return ratio
    return None


def kick_onsets(mix: Audio) -> np.ndarray:
    """Times of kick-drum hits in a mix (what `listen` stores as `Listening.kicks`)."""
    y = np.nan_to_num(mix.with_channels(1).resampled(SR).samples[0].astype(np.float32))
    return _kicks(_onsets(y)[2])
