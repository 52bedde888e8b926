"""Issue 15 list 9: messages that used to mislead now say what is wrong, in one line (exit 2), or warn."""

from __future__ import annotations

import logging
import struct

import mido
import numpy as np
import pytest

from backline.bridge.osc import OscBridge
from backline.bridge.transport import Transport
from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import AudioFileError, BacklineWarning, ConfigError, DeviceError
from backline.host.cli import main as cli


def _one_line_error(capsys, args) -> str:
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("backline: error: ") and err.count("\n") == 1, err
    return err


def test_an_empty_wav_says_it_has_no_audio(tmp_path, capsys):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 2, 44100,
                                                                                     176400, 4, 16)
                     + b"data" + struct.pack("<I", 0))
    with pytest.raises(AudioFileError, match="no audio"):
        read_audio(path)
    err = _one_line_error(capsys, ["generate", "bass", "--mix", str(path), "--out", str(tmp_path / "o")])
    assert "no audio" in err and "entire file" not in err


def test_a_truncated_wav_warns(tmp_path):
    full = write_audio(tmp_path / "full.wav", Audio(np.full((2, 44100), 0.1, np.float32), 44100))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:100_000])
    with pytest.warns(BacklineWarning, match="truncated"):
        audio = read_audio(cut)
    assert audio.frames == 44100  # still the announced length: the rest is silence, and the user was told
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", BacklineWarning)
        read_audio(full)  # a whole file does not warn


@pytest.mark.parametrize("args, words", [
    (["generate", "bass", "--mix", "MIX", "--out", "OUT", "--device", "bogus"], "not a compute device"),
    (["bridge", "--port", "70000"], "not a UDP port"),
    (["bridge", "--interval", "-1"], "--interval"),
    (["bridge", "--host", "999.1.1.1"], "not an IPv4 address"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, args, words):
    write_audio(tmp_path / "mix.wav", Audio(np.full((2, 44100), 0.1, np.float32), 44100))
    args = [str(tmp_path / "mix.wav") if a == "MIX" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    err = _one_line_error(capsys, args)
    assert words in err and "another program" not in err


def test_listening_on_an_address_this_machine_does_not_have_says_so():
    with pytest.raises(DeviceError, match="not an address of this machine"):
        OscBridge(Transport(), host="192.0.2.1", port=0).start()  # TEST-NET-1: no machine has it
    with pytest.raises(ConfigError, match="not an IPv4"):
        OscBridge(Transport(), host="999.1.1.1")


def test_listening_on_every_interface_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="backline.bridge"):
        with OscBridge(Transport(), host="0.0.0.0", port=0):
            pass
    assert any("other machines on the network" in r.getMessage() for r in caplog.records)


def test_midi_given_a_folder_says_it_is_a_folder(tmp_path, capsys):
    err = _one_line_error(capsys, ["generate", "drums", "--band-midi", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--config", "debug"])
    assert "is a folder" in err and "not found" not in err


def test_an_absurd_midi_tempo_is_reported_not_clamped_silently(tmp_path):
    from backline.engines.drums.inputs import read_midi_files

    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(3.58))]))
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Piano"),
                                      mido.Message("note_on", note=60, velocity=80, time=0),
                                      mido.Message("note_off", note=60, velocity=0, time=480)]))
    path = tmp_path / "slow.mid"
    mid.save(path)
    with pytest.warns(BacklineWarning, match="3.58 BPM"):
        band = read_midi_files([path])
    assert band.timeline.bpm == 10.0


def test_a_2000_bar_midi_is_refused_before_any_work_in_the_users_words(tmp_path, capsys, monkeypatch):
    from backline.engines.drums.pipeline import DrumPipeline

    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120))]))
    notes = mido.MidiTrack([mido.MetaMessage("track_name", name="Piano")])
    for _bar in range(2000):
        notes += [mido.Message("note_on", note=60, velocity=80, time=0),
                  mido.Message("note_off", note=60, velocity=0, time=4 * 96)]
    mid.tracks.append(notes)
    path = tmp_path / "long.mid"
    mid.save(path)

    def not_reached(*args, **kwargs):
        raise AssertionError("the models ran before the length was checked")

    monkeypatch.setattr(DrumPipeline, "generate", not_reached)
    err = _one_line_error(capsys, ["generate", "drums", "--band-midi", str(path), "--out", str(tmp_path / "o"),
                                   "--config", "debug"])
    assert "bars 1-2000 last 66:40" in err and "--bars" in err and "--no-render" in err
    assert "tmp" not in err.split("—")[0] and "iter_audio_chunks" not in err
    assert not (tmp_path / "o").exists()


def test_a_15_minute_mix_is_refused_up_front_with_an_estimate(tmp_path, capsys, monkeypatch):
    """Refused from the file's header: nothing is read, no weights are loaded."""
    from backline.engines.bass import common as bass_common
    from backline.engines.bass import engine as bass_engine
    from backline.engines.bass import follow_engine

    monkeypatch.delenv("BACKLINE_MEMORY_GB", raising=False)
    path = tmp_path / "long.wav"
    frames = 15 * 60 * 8000
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + frames * 2) + b"WAVEfmt "
                     + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", frames * 2)
                     + bytes(frames * 2))

    def not_reached(*args, **kwargs):
        raise AssertionError("the engine was built before the length was checked")

    monkeypatch.setattr(bass_engine, "build", not_reached)
    monkeypatch.setattr(follow_engine, "build", not_reached)
    err = _one_line_error(capsys, ["generate", "bass", "--mix", str(path), "--out", str(tmp_path / "o")])
    assert "a 15:00 mix needs about 4.9 GB" in err and "--bars" in err and "BACKLINE_MEMORY_GB=5" in err
    assert bass_common.estimate_memory_bytes(3.5 * 60) < 2e9  # a 3:30 song still fits the default limit
    monkeypatch.setenv("BACKLINE_MEMORY_GB", "5")
    bass_common.check_memory(15 * 60)  # raised limit: allowed
