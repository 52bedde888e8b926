"""The one MIDI → audio renderer (fluidsynth CLI + GM soundfonts)."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from backline.engines.core import render
from backline.engines.core.errors import AudioFileError, MissingDependencyError


def _midi(path, notes, *, channel=0, program=0, bpm=120):
    """notes: (start_beat, length_beats, pitch)."""
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    tr.append(mido.Message("program_change", channel=channel, program=program))
    events = []
    for start, length, pitch in notes:
        events.append((int(start * 480), 1, mido.Message("note_on", channel=channel, note=pitch, velocity=100)))
        events.append((int((start + length) * 480), 0, mido.Message("note_off", channel=channel, note=pitch)))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tr.append(msg.copy(time=tick - now))
        now = tick
    mid.save(str(path))
    return path


def test_the_three_gm_soundfonts_are_found():
    fonts = render.find_soundfonts()
    assert set(fonts) == {"FluidR3_GM", "TimGM6mb", "MuseScore_General"}
    assert all(f.path.is_file() for f in fonts.values())


@pytest.mark.parametrize("font", ["FluidR3_GM", "TimGM6mb", "MuseScore_General"])
def test_render_is_aligned_stereo_44k_of_the_asked_length(tmp_path, font):
    path = _midi(tmp_path / "p.mid", [(1, 0.5, 60), (2, 0.5, 64)])  # notes at 0.5 s and 1.0 s
    audio = render.render_midi(path, font, frames=44100 * 2)
    assert audio.sample_rate == 44100 and audio.samples.shape == (2, 88200)
    env = np.abs(audio.samples).max(axis=0)
    first = int(np.argmax(env > 0.01 * env.max()))
    assert env[: int(0.49 * 44100)].max() == 0.0  # silence before the first note-on
    assert abs(first / 44100 - 0.5) < 0.006  # sample 0 is MIDI time 0
    longer = render.render_midi(path, font, frames=44100 * 5)
    assert longer.frames == 5 * 44100 and np.array_equal(longer.samples[:, :88200], audio.samples)


def test_drums_render_on_channel_10(tmp_path):
    path = _midi(tmp_path / "d.mid", [(0, 0.25, 36), (1, 0.25, 38)], channel=9)
    audio = render.render_midi(path, "FluidR3_GM", frames=44100)
    assert audio.peak() > 0.01


def test_missing_pieces_get_one_line_messages(tmp_path, monkeypatch):
    with pytest.raises(AudioFileError, match="MIDI file not found"):
        render.render_midi(tmp_path / "nope.mid", "FluidR3_GM")
    path = _midi(tmp_path / "p.mid", [(0, 1, 60)])
    with pytest.raises(MissingDependencyError, match="soundfont file not found"):
        render.render_midi(path, tmp_path / "missing.sf2")
    monkeypatch.setattr(render, "SOUNDFONT_DIRS", ())
    monkeypatch.delenv("BACKLINE_SOUNDFONT_PATH", raising=False)
    with pytest.raises(MissingDependencyError, match="apt-get install timgm6mb-soundfont"):
        render.soundfont("TimGM6mb")
    with pytest.raises(MissingDependencyError, match="apt-get install fluidsynth fluid-soundfont-gm") as err:
        render.require_soundfonts()
    assert "\n" not in str(err.value)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="'fluidsynth' program is not installed"):
        render.render_midi(path, "FluidR3_GM")


def test_extra_soundfont_folders_come_first(tmp_path, monkeypatch):
    (tmp_path / "sf2").mkdir()
    fake = tmp_path / "sf2" / "TimGM6mb.sf2"
    fake.write_bytes(b"not really a soundfont")
    monkeypatch.setenv("BACKLINE_SOUNDFONT_PATH", str(tmp_path))
    assert render.find_soundfonts()["TimGM6mb"].path == fake
    with pytest.raises(MissingDependencyError, match="cannot load this soundfont"):
        render.render_midi(_midi(tmp_path / "p.mid", [(0, 1, 60)]), fake)
