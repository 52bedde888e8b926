"""Listening: tempo, beats, bar one, meter, key and chords per beat of a mix — what a session player hears first.

Shared by the bass engine, the accompaniment engine and the host. Each field comes from the best source there is,
in this order: the DAW's transport (a `Timeline` the bridge reports) > what the user typed (`--bpm`, `--meter`,
`--key`, `--chords "D | G A | Bm | G A7"` per bar, the host's chord lane) > the band's MIDI (`--band-midi`, read with
pretty_midi) > the audio. `Listening.sources` says where each field came from.

Choices for audio, and why:
- librosa's algorithms, not madmom: madmom does not install here (Python 3.12/NumPy 2) and its model files are
  CC BY-NC-SA. They run as ports on the project's front end (`core.frontend`: mel, CQT, chroma, tuning;
  `core.dsp`: onset envelope, peak picking, tempo estimate, Viterbi) that give librosa's numbers: importing librosa
  (scipy, numba) cost more CPU than a take's listening (issue 23).
- Tempo and beats: librosa's onset envelope and tempo estimate give candidates; then a *rigid grid* (one period,
  one phase) is fitted to the onset envelope, because music made in a DAW (and the corpus) keeps a constant tempo
  and a grid fit averages over every beat: the tempo comes out within a fraction of a percent, where a
  beat-by-beat tracker wobbles. Candidates: librosa's estimate and the strongest onset-autocorrelation peaks
  with their doubles and halves (`_tempo_guesses`), then each grid's metrical relatives (2/3, 3/2, 4/3, 3/4 of
  its tempo: a beat heard in threes where the music moves in twos is the common miss without drums;
  `tempo_candidates`). The choice (`tempo_value`) is a conditional logit over the candidates, fitted by
  benchmarks/tempo_fit.py on music21 pieces outside the evaluation set and rendered songs with drums: how well the
  grid explains the onset envelope and the pitch-change envelope (a choir or bowed strings change notes without
  an attack: `_pitch_flux`), whether note onsets, new pitches and low hits fall on its 8ths and 16ths (chance-
  corrected: a finer grid catches more of anything), whether its bar lines carry the chord changes (harmonic
  rhythm) and librosa's log-normal prior around 120 BPM. A clip of two bars (four beats) is enough. A take played
  without a click drifts off any rigid grid: each candidate's beats are also tracked through the drift (`track_beats`,
  Ellis's dynamic programme) and the onsets are weighed against those too; where the tracked mean tempo leaves the
  grid's by over 1.5 % (clips of 8 s and more), the tempo heard is the tracked mean.
- Bar one and meter: the phase (and 3 vs 4 beats) that puts the most harmonic change (beat-synchronous chroma
  novelty, two beats against the two before: `_novelty`) and low-frequency (kick, bass) onset strength on the
  first beat of the bar. Chords change on bar lines and the kick plays on one in almost every groove.
- Key: Krumhansl–Kessler profiles correlated with the duration-weighted chroma (24 keys).
- Chords: beat-synchronous CQT chroma matched to templates (maj, min, 7, maj7, min7, dim, sus4; N for silence),
  a key prior on diatonic chords, then Viterbi smoothing (`core.dsp.viterbi`) over (chord, beat-in-bar)
  states, so a chord changes much more readily on a bar line than mid-bar. A "no chord" heard where the band still
  sounds (a fading cadence, a unison) continues the chord before it (`hold_through`): a player holds the harmony.
- The band's lowest voice (`Listening.band_low`, from the same CQT): the bass planner stays within an octave of it,
  as a cellist under a string trio or an upright under a choir would.

The package, by job: `chart` (the chord vocabulary and what users type), `listening` (the result and the
listener's controls), `tempo` (beats, tempo, meter, bar one), `harmony` (chroma, chords, the low voice), `key`,
`midi` (the band's MIDI), `audio` (a mix, cue by cue), `region` (bars of a file); `listen` below picks the source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError
from backline.engines.core.timeline import Timeline, check_bpm
from backline.engines.listen.audio import kick_onsets, listen_audio, tempo_table
from backline.engines.listen.chart import (
    NO_CHORD,
    NOTE_NAMES,
    QUALITIES,
    Chord,
    _chart_on_beats,
    parse_chart,
    parse_chord,
    parse_key,
    parse_meter,
)
from backline.engines.listen.harmony import chords_from_chroma, hold_through
from backline.engines.listen.key import key_from_chroma, train_key_finder
from backline.engines.listen.listening import LISTEN_CONTROLS, Listening
from backline.engines.listen.midi import chords_from_notes, listen_midi

__all__ = ["Chord", "LISTEN_CONTROLS", "Listening", "NOTE_NAMES", "NO_CHORD", "QUALITIES",
           "chords_from_chroma", "chords_from_notes", "hold_through", "key_from_chroma", "kick_onsets",
           "listen", "listen_audio", "listen_midi", "parse_chart", "parse_chord", "parse_key", "parse_meter",
           "tempo_table", "train_key_finder"]


def listen(mix: Audio | None, *, transport: Timeline | None = None, region_start: int = 0, bpm: float | None = None,
           meter: str | tuple[int, int] | None = None, key: str | None = None, chords: str | None = None,
           band_midi: str | Path | None = None) -> Listening:
    """Listen to a mix with everything else that is known (see the module docstring for the priority order).

    `transport` is the DAW's timeline; `region_start` (DAW samples) is where the mix sits on it."""
    meter_t = parse_meter(meter) if isinstance(meter, str) else meter
    if bpm is not None:
        bpm = check_bpm(bpm)
    key_t = parse_key(key) if key else None
    chart = parse_chart(chords, meter_t[0] if meter_t else (transport.numerator if transport else 4)) if chords else None
    sources: dict[str, str] = {}
    if key_t:
        sources["key"] = "user"
    midi_l = listen_midi(band_midi, mix.seconds if mix is not None else None) if band_midi else None
    if transport is not None:
        meter_t = (transport.numerator, transport.denominator)
        bpm = transport.bpm
        sr = transport.sample_rate
        # a region cut on a bar line is *on* it, not half a sample past it (read back, a ceil skipped a whole bar)
        region_start = transport.snap_to_grid(region_start)
        duration = mix.seconds if mix is not None else (midi_l.duration if midi_l else 0.0)
        t0 = region_start / sr  # the region's first sample, in the timeline's seconds
        q0, q1 = transport.samples_to_quarters(region_start), transport.seconds_to_quarters(t0 + duration)
        qb = transport.quarters_per_beat
        beats = np.array([transport.quarters_to_seconds(q) - t0
                          for q in np.arange(np.ceil(q0 / qb - 1e-9) * qb, q1 - 1e-9, qb)])
        beats = beats[beats < duration - 1e-3]  # a beat on the region's last sample starts the next bar
        bar_q = transport.quarters_per_bar
        first_bar_q = np.ceil(q0 / bar_q - 1e-9) * bar_q
        downbeat = transport.quarters_to_seconds(first_bar_q) - t0
        sources |= {"tempo": "daw", "meter": "daw", "bar_one": "daw"}
        beats_hint, down_hint = beats, downbeat
    elif midi_l is not None and bpm is None:
        bpm, meter_t = midi_l.bpm, (midi_l.numerator, midi_l.denominator)
        beats_hint, down_hint = midi_l.beats, midi_l.bar_one
        sources |= {"tempo": "midi", "meter": "midi", "bar_one": "midi"}
    else:
        beats_hint, down_hint = None, None
        if bpm is not None:
            sources["tempo"] = "user"
        if meter_t is not None:
            sources["meter"] = "user"
    if midi_l is not None:
        if key_t is None:
            key_t = (midi_l.key_pc, midi_l.mode)
            sources["key"] = "midi"
    if mix is None:
        if midi_l is None:
            raise ConfigError("nothing to listen to", fix="give a mix, or --band-midi")
        lst = midi_l
        if key_t:
            lst.key_pc, lst.mode = key_t
        if chart is not None:
            lst.chords = _chart_on_beats(chart, len(lst.beats), 0, lst.numerator)
            sources["chords"] = "user"
        lst.sources = {**lst.sources, **sources}
        return lst
    lst = listen_audio(mix, bpm=bpm, meter=meter_t, key=key_t, chart=chart, beats_hint=beats_hint,
                       downbeat_hint=down_hint, sources=sources)
    if midi_l is not None and chart is None:  # the MIDI's chords are exact: lay them on the beats
        lst.chords = [midi_l.chord_at(t + 1e-3) for t in lst.beats]
        lst.sources["chords"] = "midi"
    return lst
