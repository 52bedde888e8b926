"""Drum engine: representation, novelty, inputs, the pipeline on debug-size models, modes, bad input, CLI.

The pipeline tests train the debug-size models for a few dozen steps on a tiny MIDI-only corpus written by
the corpus builder's own writer (`write_song_files`), so they exercise `backline train drums` too and the
models have learned enough (a groove, tom fills) for the checks to mean something.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path

import mido
import numpy as np
import pytest

from backline.engines.core.errors import AudioFileError, ConfigError, FileExistsRefusal, TimelineError
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.drums import novelty as nov
from backline.engines.drums.inputs import read_midi_files
from backline.engines.drums.representation import (
    CLASS_PITCH,
    CLOSED_HAT,
    KICK,
    LOW_TOM,
    MID_TOM,
    N_CLASSES,
    RIDE,
    SNARE,
    STEPS_PER_QUARTER,
    drum_tokens,
    quarters_per_bar,
    tokens_to_drums,
)

SPB = 4 * STEPS_PER_QUARTER  # 96 steps per 4/4 bar


def groove_bar(cymbal: int = CLOSED_HAT) -> np.ndarray:
    bar = np.zeros((SPB, N_CLASSES), bool)
    bar[::12, cymbal] = True  # eighths
    bar[[0, 48, 60], KICK] = True
    bar[[24, 72], SNARE] = True
    return bar


def fill_bar() -> np.ndarray:
    bar = groove_bar()
    bar[48:, :] = False
    for k, s in enumerate(range(48, 96, 6)):  # 16th tom run over the second half
        bar[s, (SNARE, LOW_TOM, MID_TOM)[k % 3]] = True
    return bar


# --- representation and novelty ------------------------------------------------------------------------

def test_novelty_finds_the_one_fill_in_a_hand_made_pattern():
    bars = [groove_bar() for _ in range(8)]
    bars[5] = fill_bar()
    drums = np.concatenate(bars)
    curve = nov.novelty(drums, SPB)
    assert int(np.argmax(curve)) == 5
    assert np.flatnonzero(nov.fill_bars(drums, SPB)).tolist() == [5]
    assert curve[5] > 0.3 and np.delete(curve, 5).max() < 0.05


def test_novelty_ignores_a_section_change_and_silence():
    # hats for 4 bars, then ride for 4 bars: the first ride bar matches the bars after it, so it is no fill
    drums = np.concatenate([groove_bar()] * 4 + [groove_bar(RIDE)] * 4)
    assert not nov.fill_bars(drums, SPB).any()
    silent = np.zeros((4 * SPB, N_CLASSES), bool)
    assert not nov.fill_bars(silent, SPB).any()
    # a one-bar break (silence) inside a groove is an improvisation, by the same measure
    with_break = np.concatenate([groove_bar()] * 3 + [np.zeros((SPB, N_CLASSES), bool)] + [groove_bar()] * 3)
    assert np.flatnonzero(nov.fill_bars(with_break, SPB)).tolist() == [3]


def test_tokens_round_trip_and_meters():
    drums = np.concatenate([groove_bar(), fill_bar()])
    tok = drum_tokens(drums)
    assert tok.shape == (8, 216)
    assert np.array_equal(tokens_to_drums(tok), drums)
    assert quarters_per_bar(4, 4) == 4 and quarters_per_bar(3, 4) == 3 and quarters_per_bar(6, 8) == 3
    assert quarters_per_bar(12, 8) == 6
    with pytest.raises(TimelineError, match="7/8"):
        quarters_per_bar(7, 8)


# --- MIDI input ------------------------------------------------------------------------------------------

def _track(name: str, program: int | None, channel: int, notes: list[tuple[float, float, int]], ppq: int = 480):
    from backline.engines.core.transcribe import events_to_track

    ev = []
    if program is not None:
        ev.append((0, mido.Message("program_change", program=program, channel=channel)))
    for q0, q1, p in notes:
        ev.append((int(q0 * ppq), mido.Message("note_on", note=p, velocity=90, channel=channel)))
        ev.append((int(q1 * ppq), mido.Message("note_off", note=p, velocity=0, channel=channel)))
    return events_to_track(ev, name)


def _midi(path: Path, tracks, tempos=((0, 120.0),), meters=((0, 4, 4),), ppq: int = 480) -> Path:
    from backline.engines.core.transcribe import events_to_track

    meta = [(int(q * ppq), mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(b))) for q, b in tempos]
    meta += [(int(q * ppq), mido.MetaMessage("time_signature", numerator=n, denominator=d)) for q, n, d in meters]
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    mid.tracks.append(events_to_track(meta, "tempo"))
    mid.tracks.extend(tracks)
    mid.save(path)
    return path


def test_tracks_map_to_roles_by_name_program_channel_and_override(tmp_path):
    chords = [(b * 4.0, b * 4.0 + 3.5, 60) for b in range(4)]
    path = _midi(tmp_path / "band.mid", [
        _track("Rhodes", 80, 1, chords),           # name wins over the program (80 would be strings)
        _track("", 33, 2, chords),                  # unnamed: program 33 → bass
        _track("Lead synth", 81, 3, chords),        # other families fold into strings (LPD-5)
        _track("Kit", None, 9, [(0, 0.1, 36)]),     # channel 10 → drums
        _track("Nylon", 24, 4, chords),             # guitar by program; overridden below
    ])
    band = read_midi_files([path], role_overrides={"4": "ignore"})
    roles = {t.name: (t.role, t.source) for t in band.tracks}
    assert roles["Rhodes"] == ("piano", "name")
    assert roles["track 1"] == ("bass", "program")
    assert roles["Lead synth"] == ("strings", "program")
    assert roles["Kit"] == ("drums", "name") or roles["Kit"][0] == "drums"
    assert roles["Nylon"] == ("ignore", "override")
    assert band.grid.roles_present == ("piano", "bass", "strings")
    assert band.grid.n_bars == 4 and band.grid.drums[0, KICK]


# --- the pipeline on trained-for-a-minute debug models ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_songs(tmp_path_factory):
    from backline.engines.data.song import make_song
    from backline.engines.data.synth import song_rng, write_song_files

    root = tmp_path_factory.mktemp("drumcorpus")
    for i in range(5):
        song = make_song(song_rng(11, i), min_bars=16, max_bars=24, meter=(4, 4))
        write_song_files(song, root / f"Track{i + 1:05d}", ["x"] * len(song.parts), [0.0] * len(song.parts), uid=str(i))
    return root


@pytest.fixture(scope="module")
def engine(tiny_songs, tmp_path_factory):
    """`backline train drums --config debug` for 60 steps per model (200 for the infiller), exported and loaded like shipped weights."""
    from backline.engines.drums import train
    from backline.engines.drums.engine import DrumEngine, load_models

    run_dir, out = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("weights")
    parser = argparse.ArgumentParser()
    train.configure(parser)
    args = parser.parse_args(["--data", str(tiny_songs), "--run", str(run_dir), "--config", "debug", "--steps", "60",
                              "--phase-steps", "infiller=200", "--batch", "16", "--lr", "5e-3", "--export", str(out), "--overwrite"])
    assert train.run(args) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["final_losses"]) == {"seq2seq", "locator", "infiller", "vae"}
    return DrumEngine(load_models("shipped", weights_dir=out))


@pytest.fixture(scope="module")
def band_midi(tmp_path_factory):
    from backline.engines.data.midi import song_midi_bytes
    from backline.engines.data.song import make_song
    from backline.engines.data.synth import song_rng

    folder = tmp_path_factory.mktemp("band")
    song = make_song(song_rng(99, 0), min_bars=16, max_bars=20, meter=(4, 4), bpm=110)
    (folder / "band.mid").write_bytes(song_midi_bytes(song, [p for p in song.parts if p.role != "drums"]))
    (folder / "drums.mid").write_bytes(song_midi_bytes(song, [p for p in song.parts if p.role == "drums"]))
    return folder / "band.mid", folder / "drums.mid", song


def _generate(engine, out, midi, seed: int = 0, overwrite: bool = False, **controls):
    """Generate (pure) and write the take the one way every caller does (engines.takes.write_takes)."""
    from backline.engines.core.takes import write_takes

    req = GenerationRequest("drums", out, Timeline.constant(120, 48000), midi=Path(midi),
                            controls={"render": False} | controls, seed=seed)
    return write_takes(engine.generate(req, progress=lambda f, m: None, cancel=threading.Event()), out,
                       overwrite=overwrite)


def _notes(path: Path) -> list[tuple[int, int, int, int]]:
    """(tick, channel, pitch, velocity) of every note-on."""
    out, tick = [], 0
    for msg in mido.merge_tracks(mido.MidiFile(str(path)).tracks):
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((tick, msg.channel, msg.note, msg.velocity))
    return out


def test_midi_in_drum_midi_out_bar_aligned_channel_10_with_fills(engine, band_midi, tmp_path):
    band, _, song = band_midi
    result = _generate(engine, tmp_path, band, fill_bars="4,12", render=True, humanise=0.0)  # 0: on the grid
    take = result.takes[0]
    mid = mido.MidiFile(str(take.midi))
    notes = _notes(take.midi)
    assert len(notes) > 50
    assert {ch for _, ch, _, _ in notes} == {9}  # GM channel 10
    assert {p for _, _, p, _ in notes} <= set(CLASS_PITCH)
    ppq = mid.ticks_per_beat
    assert all(t % (ppq // STEPS_PER_QUARTER) == 0 for t, *_ in notes)  # on the 24-per-quarter grid
    assert any(t % (4 * ppq) == 0 for t, *_ in notes)  # downbeats present: tick 0 is bar 1
    assert max(t for t, *_ in notes) < song.bars * 4 * ppq
    tempos = [m for m in mid.tracks[0] if m.type == "set_tempo"]
    assert abs(mido.tempo2bpm(tempos[0].tempo) - 110) < 0.01  # the band MIDI's tempo, not the request's 120
    report = take.report
    assert report["fill_bars"] == [4, 12]
    curve = report["novelty"]
    others = [v for k, v in curve.items() if int(k) not in (4, 12)]
    assert min(curve["4"], curve["12"]) > nov.DEFAULT_THRESHOLD >= np.median(others)
    assert all(1 <= v <= 127 for *_, v in notes)
    wav = take.stems["drums"]
    from backline.engines.core.audio import read_audio

    audio = read_audio(wav)
    assert audio.sample_rate == 48000 and audio.peak() > 0.01
    file_bpm = mido.tempo2bpm(round(mido.bpm2tempo(110)))  # MIDI stores whole microseconds per quarter
    expected = Timeline.constant(file_bpm, 48000).bar_to_samples(song.bars + 1)
    assert audio.frames == expected  # exactly the region (bars 1..end), the engine contract


def test_region_output_starts_at_the_region_and_predicts_fills(engine, band_midi, tmp_path):
    band, _, _ = band_midi
    take = _generate(engine, tmp_path, band, bars="5-12").takes[0]
    report = take.report
    assert report["bars"] == [5, 12]
    file_bpm = mido.tempo2bpm(round(mido.bpm2tempo(110)))
    assert report["start_sample"] == Timeline.constant(file_bpm, 48000).bar_to_samples(5)
    assert set(map(int, report["fill_probability"])) == set(range(5, 13))
    assert all(5 <= b <= 12 for b in report["fill_bars"])
    notes = _notes(take.midi)
    assert notes and max(t for t, *_ in notes) < 8 * 4 * 480 * 2  # within 8 bars at the file's ppq


def test_fills_mode_keeps_the_users_part_outside_the_fill(engine, band_midi, tmp_path):
    band, drums, _ = band_midi
    take = _generate(engine, tmp_path, band, mode="fills", drums_midi=str(drums), fill_bars="8").takes[0]
    user = read_midi_files([drums], role_overrides={"drums": "drums"})
    out = read_midi_files([take.midi])
    spb = user.grid.steps_per_bar
    keep = np.ones(user.grid.steps, bool)
    keep[7 * spb:8 * spb + STEPS_PER_QUARTER] = False  # the fill bar and the quarter after it may change
    assert np.array_equal(out.grid.drums[keep], user.grid.drums[keep])
    assert np.array_equal(out.grid.drum_vel[keep], user.grid.drum_vel[keep])  # velocities kept too
    assert take.report["fill_bars"] == [8] and take.report["generated_bars"] == [8]


def test_regenerate_mode_only_touches_its_bars(engine, band_midi, tmp_path):
    band, drums, _ = band_midi
    take = _generate(engine, tmp_path, band, mode="regenerate", drums_midi=str(drums), bars="9-12", fills=False).takes[0]
    assert take.report["bars"] == [9, 12] and take.report["generated_bars"] == [9, 10, 11, 12]
    assert take.report["notes"] > 10


def test_debug_build_runs_and_describes_itself(band_midi, tmp_path):
    from backline.engines.registry import build_engine

    eng = build_engine("drums", "debug")
    desc = eng.describe()
    assert {c.name for c in desc.controls} >= {"mode", "bars", "fill_bars", "variation", "drums_midi"}
    res = _generate(eng, tmp_path, band_midi[0], fill_bars="3", variation=1.0)
    assert res.takes[0].midi.is_file()


def test_cancel_writes_nothing(engine, band_midi, tmp_path):
    from backline.engines.core.errors import Cancelled

    cancel = threading.Event()
    cancel.set()
    req = GenerationRequest("drums", tmp_path / "out", Timeline.constant(120, 48000), midi=band_midi[0])
    with pytest.raises(Cancelled):
        engine.generate(req, progress=lambda f, m: None, cancel=cancel)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- bad input ---------------------------------------------------------------------------------------------

def test_bad_inputs_get_clear_errors(engine, band_midi, tmp_path):
    band, drums, _ = band_midi
    empty = _midi(tmp_path / "empty.mid", [_track("Piano", 0, 0, [])])
    with pytest.raises(ConfigError, match="no notes"):
        _generate(engine, tmp_path, empty)
    with pytest.raises(ConfigError, match="only drums"):
        _generate(engine, tmp_path, drums)
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06garbage" + bytes(range(40)))
    with pytest.raises(AudioFileError, match="not a readable MIDI"):
        _generate(engine, tmp_path, corrupt)
    odd = _midi(tmp_path / "odd.mid", [_track("Piano", 0, 0, [(0, 1, 60)])], meters=((0, 7, 8),))
    with pytest.raises(TimelineError, match="7/8"):
        _generate(engine, tmp_path, odd)
    change = _midi(tmp_path / "change.mid", [_track("Piano", 0, 0, [(0, 1, 60)])], meters=((0, 4, 4), (16, 3, 4)))
    with pytest.raises(TimelineError, match="meter changes"):
        _generate(engine, tmp_path, change)
    with pytest.raises(TimelineError, match="outside the song"):
        _generate(engine, tmp_path, band, bars="40-48")
    with pytest.raises(ConfigError, match="does not exist"):
        _generate(engine, tmp_path, band, fill_bars="99")
    with pytest.raises(ConfigError, match="outside the region"):
        _generate(engine, tmp_path, band, bars="1-8", fill_bars="12")
    with pytest.raises(ConfigError, match="drum part"):
        _generate(engine, tmp_path, band, mode="fills")
    with pytest.raises(AudioFileError, match="not found"):
        _generate(engine, tmp_path, tmp_path / "missing.mid")


def test_tempo_changes_are_carried_and_outputs_never_overwritten(engine, tmp_path):
    chords = [(b * 4.0 + k, b * 4.0 + k + 0.9, 48 + (b % 3)) for b in range(12) for k in range(4)]
    path = _midi(tmp_path / "tempo.mid", [_track("Bass", 33, 0, chords), _track("Piano", 0, 1, chords)],
                 tempos=((0, 100.0), (16, 140.0)))
    take = _generate(engine, tmp_path / "o", path, bars="3-8").takes[0]
    mid = mido.MidiFile(str(take.midi))
    tempos, tick = [], 0
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "set_tempo":
            tempos.append((tick, round(mido.tempo2bpm(msg.tempo), 3)))
    # the region starts at bar 3 (quarter 8, still 100 BPM); the change at quarter 16 lands on tick 8 quarters
    assert tempos == [(0, 100.0), (8 * mid.ticks_per_beat, 140.0)]
    with pytest.raises(FileExistsRefusal):
        _generate(engine, tmp_path / "o", path, bars="3-8")
    before = take.midi.read_bytes()
    _generate(engine, tmp_path / "o", path, bars="3-8", overwrite=True)
    assert take.midi.read_bytes() == before  # deterministic for the same seed


# --- CLI --------------------------------------------------------------------------------------------------

def test_cli_writes_midi_wav_and_report_and_reports_errors(band_midi, tmp_path, capsys):
    from backline.host.cli import main

    out = tmp_path / "cli"
    rc = main(["generate", "drums", "--band-midi", str(band_midi[0]), "--out", str(out), "--config", "debug",
               "--fill-bars", "4", "--seed", "3"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"drums_seed3.mid", "drums_seed3.wav", "drums_seed3.json"}
    report = json.loads((out / "drums_seed3.json").read_text())
    assert report["fill_bars"] == [4] and report["seed"] == 3
    rc = main(["generate", "drums", "--band-midi", str(tmp_path / "nope.mid"), "--out", str(out), "--config", "debug"])
    assert rc == 2 and "MIDI file not found" in capsys.readouterr().err


def test_vst3_path_is_checked(tmp_path):
    from backline.engines.drums.engine import render_vst3

    with pytest.raises(AudioFileError, match="VST3 plugin not found"):
        render_vst3(tmp_path / "Kit.vst3", mido.MidiFile(), 1.0, 48000)


# --- JACK live input --------------------------------------------------------------------------------------

def test_jack_midi_input_records_notes(tmp_path):
    rtmidi = pytest.importorskip("rtmidi")
    from bridge_peers import JackServer, require

    require("jackd", "jack_lsp")
    from backline.engines.drums.inputs import JackMidiInput

    server = JackServer(48000, 256, tmp_path)
    server.start()
    server.activate_env()
    inp = sender = None
    try:
        inp = JackMidiInput(client="bl-drums-test", port="band-in", role="bass")
        sender = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bl-sender")
        port = next(i for i, p in enumerate(sender.get_ports()) if "bl-drums-test:band-in" in p)
        sender.open_port(port, "out")
        inp.start()
        import time

        for pitch in (40, 43, 45, 47):
            sender.send_message([0x90, pitch, 100])
            time.sleep(0.06)
            sender.send_message([0x80, pitch, 0])
            time.sleep(0.04)
        sender.send_message([0x99, 36, 110])
        time.sleep(0.3)
        notes = inp.notes()
        assert [n[2] for n in notes] == [40, 43, 45, 47, 36]
        assert notes[-1][4] == 9 and all(b[0] >= a[0] for a, b in zip(notes, notes[1:]))
        band = inp.band(Timeline.constant(120, 48000))
        assert band.grid.roles_present == ("bass",) and band.grid.drums.any()
    finally:
        if sender is not None:
            sender.close_port()
            del sender
        if inp is not None:
            inp.close()
        server.stop()
        server.restore_env()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_audio_input_is_transcribed_and_gets_drums(engine, tmp_path):
    """The audio path: a rendered band (bass + piano, 4 bars) → basic-pitch → MA roles → drum MIDI."""
    from backline.engines.core.render import find_soundfonts, render_midi

    if not find_soundfonts():
        pytest.skip("fluidsynth soundfonts not installed")
    bass = [(b * 4.0 + k * 2, b * 4.0 + k * 2 + 1.8, (40, 45, 43, 38)[b]) for b in range(4) for k in range(2)]
    chords = [(b * 4.0 + k, b * 4.0 + k + 0.9, p) for b in range(4) for k in range(4) for p in (60, 64, 67)]
    path = _midi(tmp_path / "band.mid", [_track("Bass", 33, 0, bass), _track("Piano", 0, 1, chords)])
    audio = render_midi(path, "FluidR3_GM", sample_rate=44100)
    tl = Timeline.constant(120, 44100)
    req = GenerationRequest("drums", tmp_path / "out", tl, mix=audio, controls={"render": False, "fill_bars": "4"})
    result = engine.generate(req, progress=lambda f, m: None, cancel=threading.Event())
    take = result.takes[0]
    roles = {t["role"]: t["notes"] for t in result.report["tracks"]}
    assert roles["bass"] >= 6 and roles["piano"] >= 30  # 8 bass notes, 48 piano notes were played
    assert take.report["bars"][0] == 1 and take.report["bars"][1] >= 4
    assert take.report["notes"] > 0 and take.report["fill_bars"] == [4]


def test_lpd5_songs_read_and_train(tmp_path):
    """LPD-5 `.npz` (written by the foundation's writer) → grids with novelty labels → `train drums --lpd5`."""
    from backline.engines.data.lpd5 import LPDSong, write_npz
    from backline.engines.drums import data as drum_data
    from backline.engines.drums import train

    root = tmp_path / "lpd"
    for k in range(2):
        bars = [groove_bar() for _ in range(12)]
        bars[7] = fill_bar()
        grid = np.concatenate(bars)
        drums = np.zeros((grid.shape[0], 128), np.uint8)
        for cls, pitch in enumerate(CLASS_PITCH):
            drums[grid[:, cls], pitch] = 100
        piano = np.zeros_like(drums)
        bass = np.zeros_like(drums)
        for b in range(12):
            piano[b * SPB:(b + 1) * SPB - 4, [60 + k, 64, 67]] = 80
            bass[b * SPB:b * SPB + 40, 36 + b % 3] = 90
        song = LPDSong(f"song{k}", None, {"Drums": drums, "Piano": piano, "Bass": bass},
                       {"Drums": 0, "Piano": 0, "Bass": 33}, {"Drums": True, "Piano": False, "Bass": False},
                       np.full(grid.shape[0], 120.0), None)
        write_npz(root / f"s{k}.npz", song)
    songs = drum_data.read_lpd5(root)
    assert len(songs) == 2 and songs[0].grid.n_bars == 12
    assert np.flatnonzero(songs[0].novelty_fills).tolist() == [7]
    assert np.array_equal(songs[0].grid.drums, np.concatenate([groove_bar()] * 7 + [fill_bar()] + [groove_bar()] * 4))
    assert songs[0].grid.roles_present == ("piano", "bass")
    parser = argparse.ArgumentParser()
    train.configure(parser)
    args = parser.parse_args(["--data", "", "--lpd5", str(root), "--run", str(tmp_path / "run"), "--config", "debug",
                              "--steps", "2", "--batch", "4", "--val-fraction", "0.5"])
    assert train.run(args) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["lpd5"] == str(root)



def test_variation_zero_is_deterministic_across_seeds(engine, band_midi):
    grid = read_midi_files([band_midi[0]]).grid
    a = engine.pipeline.generate(grid, fill_bars=[3], seed=1)
    b = engine.pipeline.generate(grid, fill_bars=[3], seed=2)
    assert np.array_equal(a.drums, b.drums)  # variation 0: the infiller's fill, the same for every seed


def test_audio_without_bpm_is_heard_and_the_take_starts_on_its_first_bar_line(tmp_path, capsys):
    """`backline generate drums BAND.wav` with no --bpm, as a new user types it: the tempo and the first bar line
    are heard (the bass's listening path), the take starts on that bar line and its report says where it sits
    in the file. The band comes in after 0.3 s of silence, at 120 BPM."""
    from backline.engines.core.audio import write_audio
    from backline.engines.core.render import find_soundfonts, render_midi
    from backline.host.cli import main

    if not find_soundfonts():
        pytest.skip("fluidsynth soundfonts not installed")
    bass = [(b * 4.0 + k, b * 4.0 + k + 0.9, (40, 45, 43, 38)[b % 4] + 12 * (k == 2)) for b in range(6)
            for k in range(4)]
    roots = (40, 45, 43, 38)
    chords = [(b * 4.0 + k, b * 4.0 + k + 0.9, roots[b % 4] + 24 + i) for b in range(6) for k in range(4)
              for i in (0, 4, 7)]  # a triad on each beat over the bar's root, a new chord each bar
    path = _midi(tmp_path / "band.mid", [_track("Bass", 33, 0, bass), _track("Piano", 0, 1, chords)])
    audio = render_midi(path, "FluidR3_GM", sample_rate=44100)
    lead = int(0.3 * 44100)
    write_audio(tmp_path / "band.wav", audio.slice(-lead, audio.frames))
    out = tmp_path / "take"
    assert main(["generate", "drums", str(tmp_path / "band.wav"), "--out", str(out), "--config", "debug"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("heard 1") and "BPM" in said
    report = json.loads((out / "drums_seed0.json").read_text())
    bpm = float(said.split()[1])
    assert abs(bpm - 120.0) < 2.0, said
    beat = int(round(60.0 / bpm * 44100))
    assert abs(report["start_sample"] - lead) <= 0.02 * 44100, (report["start_sample"], lead, beat)
    assert report["daw"]["start_sample"] == report["start_sample"]
    assert main(["generate", "drums", "--jack", "4", "--out", str(tmp_path / "j")]) == 2
    assert "--jack needs the tempo" in capsys.readouterr().err


def test_band_midi_bar_one_is_the_captures_first_bar_line(engine, band_midi, tmp_path):
    """On a capture whose first bar line was heard 0.3 s in (`Timeline.origin`), the band MIDI's bar 1 sits
    there: bars 5-12 start 0.3 s later than on a DAW's timeline, with the same notes."""
    from backline.engines.core.takes import write_takes

    band, _, _ = band_midi
    lead = int(0.3 * 48000)
    takes = []
    for origin in (0, lead):
        req = GenerationRequest("drums", tmp_path / f"o{origin}", Timeline.constant(120, 48000, origin=origin),
                                midi=Path(band), controls={"render": False, "bars": "5-12"}, seed=0)
        takes.append(write_takes(engine.generate(req, progress=lambda f, m: None, cancel=threading.Event()),
                                 tmp_path / f"o{origin}").takes[0])
    assert takes[1].report["start_sample"] - takes[0].report["start_sample"] == lead
    assert _notes(takes[1].midi) == _notes(takes[0].midi)
