"""Takes that drop into a session (issue 19, first half): audible onsets on the MIDI's note-ons (the instrument's
attack latency taken off), note-ons on the grid ticks, the level at the corpus balance against the band (and the
`level` control), tails faded rather than cut at the region's end, one region path for the host and the CLI, and
a `--reference` that follow mode cannot use yet said so in one line (refused when it is not audio)."""

from __future__ import annotations

import argparse
import math
import threading
from pathlib import Path

import mido
import numpy as np
import pytest
from test_host import WAIT_MS, make_window  # noqa: F401 - fixtures
from test_host_follow import song

from backline.engines.core.audio import Audio
from backline.engines.core.balance import LEVEL, balance_take, loudness_db, target_db
from backline.engines.core.errors import BacklineError
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.render import (
    attack_share,
    audible_onsets,
    find_soundfonts,
    render_midi,
    render_take,
)
from backline.engines.core.timeline import Timeline
from backline.engines.registry import build_engine

needs_fluid = pytest.mark.skipif("FluidR3_GM" not in find_soundfonts(), reason="FluidR3_GM soundfont not installed")


def line_midi(path: Path, notes: list[tuple[float, float, int]], program: int = 33, bpm: float = 120.0) -> Path:
    """(start s, end s, pitch) → a one-track MIDI file at `bpm`."""
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)),
                            mido.Message("program_change", program=program)])
    events = []
    tick = lambda s: int(round(s * bpm / 60 * 480))  # noqa: E731
    for a, b, p in notes:
        events += [(tick(a), 1, mido.Message("note_on", note=p, velocity=100)),
                   (tick(b), 0, mido.Message("note_off", note=p, velocity=0))]
    now = 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=t - now))
        now = t
    mid.tracks.append(track)
    mid.save(str(path))
    return path


def onset_errors(audio: Audio, times: list[float]) -> np.ndarray:
    """Audible onset − note-on, per note (the nearest onset within 80 ms)."""
    found = audible_onsets(audio)
    return np.array([found[np.argmin(np.abs(found - t))] - t for t in times
                     if len(found) and np.min(np.abs(found - t)) < 0.08])


@needs_fluid
def test_audible_onsets_land_on_the_note_ons(tmp_path, monkeypatch):
    """FluidR3's finger bass sounds 4–40 ms after a note-on, depending on the key; each note is rendered early by
    its key's measured latency."""
    monkeypatch.setenv("BACKLINE_CACHE", str(tmp_path / "cache"))
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    path = line_midi(tmp_path / "line.mid", [(t, t + 0.35, p) for t, p in zip(times, (33, 40, 45, 38, 43, 36, 41, 47))])
    raw = render_midi(path, "FluidR3_GM")
    take, report = render_take(path, "FluidR3_GM", frames=int(4.0 * 44100), sample_rate=44100, program=33, role="bass")
    late = np.median(onset_errors(raw, times))
    on_time = onset_errors(take, times)
    assert late > 0.01  # the instrument itself is late (5–33 ms on these keys; the demo's take carried that too)
    # the take keeps (1 - its share) of the attack, as the band's own parts sound behind their note-ons
    assert abs(np.median(on_time) - (1 - attack_share("bass")) * late) < 0.004 and np.max(np.abs(on_time)) < 0.03
    assert 0 < report["attack_latency_ms"] <= report["attack_latency_max_ms"] <= 60
    assert (tmp_path / "cache" / "render" / "attack_latency.json").is_file()  # measured once, then cached


@needs_fluid
def test_a_ringing_note_is_faded_at_the_region_end_not_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKLINE_CACHE", str(tmp_path / "cache"))
    path = line_midi(tmp_path / "long.mid", [(0.0, 2.0, 40)])  # still sounding when the region ends at 1 s
    frames = 44100
    raw = render_midi(path, "FluidR3_GM", frames=frames)
    take, report = render_take(path, "FluidR3_GM", frames=frames, sample_rate=44100, program=33, role="bass")
    assert take.frames == frames  # the engine contract: exactly the region
    assert np.abs(raw.samples[:, -1]).max() > 0.01  # a plain cut stops a sounding note dead (a click)
    assert np.abs(take.samples[:, -1]).max() < 1e-4 and report["faded"]
    tail = take.samples[:, -int(0.12 * 44100):]
    assert np.abs(np.diff(tail, axis=1)).max() < 0.05  # a smooth fade, no step
    assert np.abs(take.samples[:, : int(0.8 * 44100)]).max() > 0.05  # the music before the fade is untouched


def test_balance_take_sits_at_the_corpus_balance_plus_level():
    rng = np.random.default_rng(0)
    sr = 22050
    band = Audio((0.1 * rng.standard_normal((2, sr * 2))).astype(np.float32), sr)
    t = np.arange(sr * 2) / sr
    take = Audio(np.stack([0.01 * np.sin(2 * np.pi * 55 * t)] * 2).astype(np.float32), sr)
    out, rep = balance_take(take, band, "bass")
    assert loudness_db(out) - loudness_db(band) == pytest.approx(target_db("bass"), abs=0.05)
    softer, _ = balance_take(take, band, "bass", level_db=-6.0)
    assert loudness_db(out) - loudness_db(softer) == pytest.approx(6.0, abs=0.05)
    drums, _ = balance_take(take, band, "drums")
    assert loudness_db(drums) - loudness_db(band) == pytest.approx(target_db("drums"), abs=0.05)
    loud_band = Audio((0.5 * rng.standard_normal((2, sr * 2))).astype(np.float32), sr)
    loud, rep = balance_take(take, loud_band, "bass", level_db=12.0)  # would pass the ceiling: held back, said
    assert np.abs(loud.samples).max() <= 10 ** (-1 / 20) + 1e-6 and rep["held_back_db"] > 0
    same, rep = balance_take(take, None, "drums")
    assert same is take and not rep["applied"]


def test_the_balance_table_and_the_level_control():
    from backline.engines.core.balance import balance_table

    roles = balance_table()["roles"]
    assert roles["bass"]["songs"] >= 10 and roles["drums"]["songs"] >= 10
    assert -12 < roles["bass"]["median_db"] < 0 and -8 < roles["drums"]["median_db"] < 4
    from backline.engines.bass.common import ALL_CONTROLS
    from backline.engines.drums.engine import CONTROLS as DRUM_CONTROLS

    assert LEVEL in ALL_CONTROLS and LEVEL in DRUM_CONTROLS  # one declaration: panel and CLI flags both come from it
    from backline.engines import runner
    from backline.engines.bass import cli

    parser = argparse.ArgumentParser()
    runner.configure(parser, cli)
    assert parser.parse_args(["--level", "-3"]).level == -3.0


def test_snap_to_grid_keeps_a_region_on_its_bar_line():
    """Bar starts are rounded to whole samples; read back, one can land half a sample *past* its bar line, and a
    ceil then puts bar one a whole bar late (the host's 'bar one at 2.3985 s')."""
    hits = 0
    for bpm in np.linspace(96.0, 104.0, 81):
        tl = Timeline.constant(float(bpm), 22050)
        start = tl.bar_to_samples(3)
        q = tl.samples_to_quarters(start)
        exact = tl.snap_to_grid(start)
        assert abs(exact - start) <= 0.5 and tl.samples_to_quarters(exact) == pytest.approx(8.0, abs=1e-12)
        assert math.ceil(tl.samples_to_quarters(exact) / 4 - 1e-9) == 2
        hits += math.ceil(q / 4 - 1e-9) == 3  # the old arithmetic: a bar late
    assert hits > 0
    assert Timeline.constant(100.0, 22050).snap_to_grid(12345) == 12345  # off the grid: left alone


def test_follow_take_is_on_the_grid_and_at_the_band_balance(tmp_path):
    """No --bpm: the grid is heard (bar one ~30 ms in, the listener's latency), and the take starts on it."""
    from backline.engines.core.audio import read_audio

    mix = read_audio(song(tmp_path / "song.wav"))
    engine = build_engine("bass", "debug")
    tl = Timeline.constant(120.0, mix.sample_rate)
    request = GenerationRequest("bass", tmp_path / "out", tl, region_start=0, region_stop=mix.frames, mix=mix,
                                preset="finger", controls={"style": "root_fifth"}, seed=0)
    result = engine.generate(request, progress=lambda f, m: None, cancel=threading.Event())
    take = result.takes[0]
    mid = take.midi
    ons = []
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity:
                ons.append(now)
    sixteenth = mid.ticks_per_beat // 4
    assert ons and all(t % sixteenth == 0 for t in ons)  # every note-on on a 16th tick (no 31 ms offset)
    audio = take.stems["bass"]
    seconds = [mido.tick2second(t, mid.ticks_per_beat, mido.bpm2tempo(result.report["region"]["bpm"])) for t in ons]
    errors = onset_errors(audio, seconds)
    # and it sounds there, keeping part of its attack (`attack_share`) like the band's own parts (never the 31-46 ms of before)
    assert 0.0 <= np.median(errors) < 0.010
    balance = take.report["level"]["balance"]
    assert balance["applied"]
    assert loudness_db(audio) - loudness_db(mix) == pytest.approx(target_db("bass") - balance["held_back_db"], abs=0.1)


def midi_notes(path: Path) -> list[tuple[int, int, int]]:
    """(tick, pitch, velocity) of every note-on in a MIDI file."""
    out = []
    for track in mido.MidiFile(str(path)).tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity:
                out.append((now, msg.note, msg.velocity))
    return sorted(out)


def host_bass_take(qtbot, make_window, path: Path):  # noqa: F811
    """Bars 3–6 of the WAV at `path`, loaded into the host, as a root-fifth bass take (seed 0): (window, record)."""
    window = make_window(engine="bass")
    qtbot.waitUntil(lambda: window.panels["bass"].ready, timeout=WAIT_MS)
    assert window.load_capture_file(path)
    window.panels["bass"].widgets["style"].setCurrentText("root_fifth")
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        assert window.generate(engine="bass", bars=(3, 6), seed=0)
    record = added.args[0]
    assert record.status == "ok", record.error
    return window, record


def test_a_mid_song_region_is_the_same_from_the_host_and_the_cli(qtbot, make_window, tmp_path):  # noqa: F811
    """Bars 3–6 of a plain WAV (chords D G A G D Bm G A): the host's selection and `--bars 3-6` hear the whole file,
    cut the same region and give the same notes at the same ticks — bar 3's chord on bar 3."""
    from backline.engines import runner
    from backline.engines.bass import cli

    path = song(tmp_path / "song.wav")
    window, record = host_bass_take(qtbot, make_window, path)
    host_heard = record.report["listening"]
    assert host_heard["chords"] == "A | G | D | Bm" and host_heard["bar_one_s"] == 0.0  # not a bar late
    host_notes = midi_notes(window.store.absolute(record.midi))

    parser = argparse.ArgumentParser()
    runner.configure(parser, cli)
    args = parser.parse_args(["--mix", str(path), "--out", str(tmp_path / "cli"), "--bars", "3-6", "--config", "debug",
                              "--style", "root_fifth", "--seed", "0"])
    assert runner.run(args, cli) == 0
    cli_mid = tmp_path / "cli" / "bass_seed0.mid"
    assert host_notes and midi_notes(cli_mid) == host_notes
    import json

    assert json.loads((tmp_path / "cli" / "bass_seed0.json").read_text())["listening"]["chords"] == "A | G | D | Bm"


def test_a_reference_that_is_not_audio_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from backline.engines import runner
    from backline.engines.bass import cli, engine

    def no_work(*a, **k):
        raise AssertionError("the engine was built")

    monkeypatch.setattr(engine, "build", no_work)
    mix = song(tmp_path / "song.wav")
    text = tmp_path / "notes.txt"
    text.write_text("not a bass")
    parser = argparse.ArgumentParser()
    runner.configure(parser, cli)
    for ref in (text, Path("/etc/passwd")):
        args = parser.parse_args(["--mix", str(mix), "--out", str(tmp_path / "o"), "--reference", str(ref)])
        with pytest.raises(BacklineError) as err:
            runner.run(args, cli)
        assert "--reference is not an audio file" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


@needs_fluid
def test_drum_take_sits_at_the_balance_against_the_band_audio(tmp_path, monkeypatch):
    """The drums play from the band's MIDI; given the band's audio too (the host's capture, `--mix`), their
    level is set against it, and their hits sound on the grid."""
    monkeypatch.setenv("BACKLINE_CACHE", str(tmp_path / "cache"))
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120.0))]))
    piano = mido.MidiTrack([mido.MetaMessage("track_name", name="Piano"), mido.Message("program_change", program=0)])
    for _ in range(16):
        piano += [mido.Message("note_on", note=p, velocity=80, time=0) for p in (60, 64, 67)]
        piano += [mido.Message("note_off", note=p, velocity=0, time=480 if k == 0 else 0) for k, p in enumerate((60, 64, 67))]
    mid.tracks.append(piano)
    path = tmp_path / "band.mid"
    mid.save(str(path))
    band = render_midi(path, "FluidR3_GM", frames=8 * 44100)
    engine = build_engine("drums")  # the shipped models (the untrained debug ones may play nothing)
    request = GenerationRequest("drums", tmp_path / "o", Timeline.constant(120.0, 44100), midi=path, mix=band,
                                controls={"humanise": 0.0}, seed=0)
    take = engine.generate(request, progress=lambda f, m: None, cancel=threading.Event()).takes[0]
    audio, info = take.stems["drums"], take.report["render"]
    assert info["balance"]["applied"]
    assert loudness_db(audio) - loudness_db(band) == pytest.approx(
        target_db("drums") - info["balance"]["held_back_db"], abs=0.1)
    ticks = [t for t, *_ in midi_notes_of(take.midi)]
    seconds = [t / take.midi.ticks_per_beat * 0.5 for t in ticks]  # 120 BPM: a quarter is 0.5 s
    assert abs(np.median(onset_errors(audio, sorted(set(seconds))))) < 0.006


def midi_notes_of(mid: mido.MidiFile) -> list[tuple[int, int, int]]:
    out = []
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity:
                out.append((now, msg.note, msg.velocity))
    return sorted(out)


def test_a_region_of_a_recording_with_a_lead_in_sits_on_its_bars(qtbot, make_window, tmp_path):  # noqa: F811
    """The same song behind 0.3 s of silence (a recording that does not start on bar 1): bars 3–6 are counted
    from the first bar line heard, so the take starts 0.3 s later than on the export and holds the same notes —
    from the host and the CLI alike. Before, both cut bars 3–6 from the first sample and the take came 300 ms
    early."""
    import json

    from backline.engines import runner
    from backline.engines.bass import cli
    from backline.engines.core.audio import read_audio, write_audio

    plain = read_audio(song(tmp_path / "song.wav"))
    lead = int(0.3 * plain.sample_rate)
    path = tmp_path / "late.wav"
    write_audio(path, plain.slice(-lead, plain.frames))
    bar = 4 * 60.0 / 100.0

    def cli_take(mix: Path, out: str) -> tuple[int, list]:
        parser = argparse.ArgumentParser()
        runner.configure(parser, cli)
        args = parser.parse_args([str(mix), "--out", str(tmp_path / out), "--bars", "3-6", "--config", "debug",
                                  "--style", "root_fifth", "--seed", "0"])
        assert runner.run(args, cli) == 0
        report = json.loads((tmp_path / out / "bass_seed0.json").read_text())
        return report["start_sample"], midi_notes(tmp_path / out / "bass_seed0.mid")

    start_plain, notes_plain = cli_take(tmp_path / "song.wav", "plain")
    start_late, notes_late = cli_take(path, "late")
    rate = plain.sample_rate
    assert abs(start_plain / rate - 2 * bar) < 0.02
    assert abs(start_late / rate - (2 * bar + 0.3)) < 0.02  # on bar 3 of the music, not of the file
    assert [p for _, p, _ in notes_late] == [p for _, p, _ in notes_plain]  # bar 3's chord on bar 3

    window, record = host_bass_take(qtbot, make_window, path)
    assert midi_notes(window.store.absolute(record.midi)) == notes_late
    assert record.start_sample == start_late
    origin = window.capture.timeline.origin
    assert abs(origin - lead) < 0.02 * rate
    assert record.origin == origin and record.timeline().samples_to_bar(record.start_sample) == pytest.approx(3.0, abs=1e-4)
    window.bpm.setValue(200.0)  # the musician types double time: bar 1 stays on the music's first beat
    window.bpm.editingFinished.emit()
    assert window.capture.timeline.origin == origin and window.capture.timeline.bpm == 200.0
