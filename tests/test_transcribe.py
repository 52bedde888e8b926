"""engines.transcribe on audio rendered by fluidsynth from known notes: the notes must come back."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError
from backline.engines.core.render import find_soundfonts, render_midi
from backline.engines.core.timeline import Timeline
from backline.engines.core.transcribe import (
    Note,
    midi_to_notes,
    note_f1,
    notes_to_midi,
    transcribe_monophonic,
    transcribe_polyphonic,
)

TL = Timeline.constant(120, 44100)
needs_fluidsynth = pytest.mark.skipif(not find_soundfonts(), reason="fluidsynth soundfonts not installed")


def _render(notes: list[Note], program: int, tmp_path) -> Audio:
    path = tmp_path / f"p{program}.mid"
    notes_to_midi(notes, TL, program=program).save(path)
    return render_midi(path, "FluidR3_GM")


@needs_fluidsynth
def test_monophonic_bass_line_comes_back(tmp_path):
    # repeated notes (40, 40) test re-articulation; 36 = C2 tests the low end
    pitches = [40, 40, 43, 45, 47, 45, 36, 38]
    ref = [Note(p, 0.1 + i * 0.5, 0.1 + i * 0.5 + 0.4, 100) for i, p in enumerate(pitches)]
    est = transcribe_monophonic(_render(ref, 33, tmp_path))  # 33 = fingered electric bass
    precision, recall, f1 = note_f1(ref, est, onset_tolerance=0.05)
    assert f1 >= 0.85, (precision, recall, est)
    assert all(n.end > n.start and 1 <= n.velocity <= 127 for n in est)


@needs_fluidsynth
def test_polyphonic_chords_come_back(tmp_path):
    chords = [[60, 64, 67], [57, 60, 64], [62, 65, 69], [59, 62, 67]]
    ref = [Note(p, i * 1.0, i * 1.0 + 0.9, 90) for i, ch in enumerate(chords) for p in ch]
    est = transcribe_polyphonic(_render(ref, 0, tmp_path))
    _, recall, f1 = note_f1(ref, est, onset_tolerance=0.05)
    assert recall >= 0.9 and f1 >= 0.7, (recall, f1, est)


def test_silence_gives_no_notes():
    silence = Audio.silence(44100, 44100)
    assert transcribe_monophonic(silence) == []
    assert transcribe_polyphonic(silence) == []


def test_notes_to_midi_round_trip_quantised_and_tempo():
    tl = Timeline.constant(90, 48000, 3, 4)
    beat = 60 / 90
    notes = [Note(40, 0.0, beat, 100), Note(43, beat * 1.02, beat * 2, 80), Note(45, beat * 2.5, beat * 2.9, 64)]
    mid = notes_to_midi(notes, tl, quantise=4, program=33, channel=1)
    assert mid.ticks_per_beat == tl.ppq
    metas = [m for m in mid.tracks[0] if m.is_meta]
    assert any(m.type == "set_tempo" and abs(mido.tempo2bpm(m.tempo) - 90) < 1e-3 for m in metas)
    assert any(m.type == "time_signature" and (m.numerator, m.denominator) == (3, 4) for m in metas)
    assert any(m.type == "program_change" and m.program == 33 for m in mid.tracks[1])
    back = midi_to_notes(mid, channel=1)
    assert [n.pitch for n in back] == [40, 43, 45]
    # 1.02 beats snaps to beat 1 on the 16th grid; 2.5 beats is on the grid already
    assert np.allclose([n.start / beat for n in back], [0.0, 1.0, 2.5], atol=1e-6)
    assert [n.velocity for n in back] == [100, 80, 64]


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError):
        notes_to_midi([], TL, quantise=0)
    with pytest.raises(ConfigError):
        notes_to_midi([], TL, channel=16)
    with pytest.raises(ConfigError):
        transcribe_monophonic(Audio.silence(1000, 44100), model="huge")
