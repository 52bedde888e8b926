"""The rendered corpus (`backline data synth`): Slakh2100 layout, levels, onsets against the MIDI, fills,
determinism, resumption and bad input. Uses the shared `tiny_corpus` (2 songs, seed 0, 8–12 bars)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import yaml

from backline.engines.core.audio import audio_info, read_audio
from backline.engines.core.errors import Cancelled, ConfigError, DatasetError, MissingDependencyError
from backline.engines.data import synth
from backline.engines.data.midi import note_on_seconds, song_midi_bytes
from backline.engines.data.onsets import match_onsets
from backline.engines.data.song import CRASH, HH_CLOSED, HH_OPEN, RIDE, make_song
from backline.host.cli import main as cli

ROLES = {"bass", "drums", "piano", "guitar", "strings", "lead"}
TOMS_AND_SNARE = {38, 41, 45, 47, 50}


def _tracks(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("Track"))


def _meta(track: Path) -> dict:
    return yaml.safe_load((track / "metadata.yaml").read_text())


def _extras(track: Path) -> dict:
    return json.loads((track / "extras.json").read_text())


def test_layout_metadata_and_labels(tiny_corpus):
    tracks = _tracks(tiny_corpus)
    assert [t.name for t in tracks] == ["Track00001", "Track00002"]
    for track in tracks:
        meta, ex = _meta(track), _extras(track)
        assert (track / "mix.flac").is_file() and (track / "all_src.mid").is_file()
        assert set(meta["stems"]) == set(ex["roles"]) and len(meta["stems"]) >= 5
        assert {"bass", "drums", "piano", "guitar", "strings"} <= set(ex["roles"].values()) <= ROLES
        frames = {audio_info(track / "mix.flac")}
        for sid, stem in meta["stems"].items():
            assert {"inst_class", "program_num", "is_drum", "midi_program_name", "audio_rendered",
                    "plugin_name"} <= set(stem)
            assert (track / "stems" / f"{sid}.flac").is_file() and (track / "MIDI" / f"{sid}.mid").is_file()
            frames.add(audio_info(track / "stems" / f"{sid}.flac"))
            notes = [m for m in mido.MidiFile(str(track / "MIDI" / f"{sid}.mid")) if m.type == "note_on"]
            programs = [m.program for m in mido.MidiFile(str(track / "MIDI" / f"{sid}.mid"))
                        if m.type == "program_change"]
            assert notes, f"{sid} has no notes"
            if ex["roles"][sid] == "drums":
                assert stem["is_drum"] and stem["inst_class"] == "Drums" and {m.channel for m in notes} == {9}
            else:
                assert not stem["is_drum"] and programs == [stem["program_num"]] and 9 not in {m.channel for m in notes}
            if ex["roles"][sid] == "bass":  # GM programs 33–40 = mido 32–39
                assert 32 <= stem["program_num"] <= 39 and stem["inst_class"] == "Bass"
        assert frames == {(44100, 2, next(iter(frames))[2])}, "all files 44.1 kHz stereo, same length"
        # extras: the documented format
        assert ex["time_signature"][0] in (3, 4, 6) and 70 <= ex["tempo_bpm"] <= 170 and ex["mode"] in ("major", "minor")
        assert sum(s["bars"] for s in ex["sections"]) == ex["bars"] and all(s["bars"] in (4, 8) for s in ex["sections"])
        assert [c["bar"] for c in ex["chords"]] == list(range(1, ex["bars"] + 1))
        assert all(set(c) >= {"symbol", "root_pc", "quality", "pitch_classes"} for c in ex["chords"])


def _drum_notes(track: Path) -> tuple[list[tuple[int, int]], int]:
    ex = _extras(track)
    sid = next(s for s, r in ex["roles"].items() if r == "drums")
    mid = mido.MidiFile(str(track / "MIDI" / f"{sid}.mid"))
    now, out = 0, []
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((now, msg.note))
    return out, mid.ticks_per_beat


def test_fills_land_before_section_changes_and_differ_from_the_groove(tiny_corpus):
    for track in _tracks(tiny_corpus):
        ex = _extras(track)
        notes, ppq = _drum_notes(track)
        bar_ticks = ex["time_signature"][0] * 4 * ppq // ex["time_signature"][1]
        ends = [s["start_bar"] + s["bars"] - 1 for s in ex["sections"]][:-1]
        fills = {f["bar"]: f for f in ex["fills"]}
        assert set(ends) <= set(fills), "every section change is prepared by a fill"
        for bar, fill in fills.items():
            assert fill["kind"] in ("bar", "half") and fill["reason"] in ("section_end", "random")
            assert (fill["reason"] == "section_end") == (bar in ends)
            lo = (bar - 1) * bar_ticks + (0 if fill["kind"] == "bar" else bar_ticks // 2)
            hi = bar * bar_ticks
            region = [p for t, p in notes if lo <= t < hi]
            # a real fill: a run of snare/tom hits, and the groove's time-keeping cymbals stop
            assert sum(p in TOMS_AND_SNARE for p in region) >= 4, region
            assert not {HH_CLOSED, HH_OPEN, RIDE} & set(region)
            if fill["reason"] == "section_end":  # crash on the next downbeat
                assert any(p == CRASH and abs(t - hi) <= 8 for t, p in notes)
        groove_bars = [b for b in range(1, ex["bars"] + 1) if b not in fills]
        for b in groove_bars:
            region = {p for t, p in notes if (b - 1) * bar_ticks <= t < b * bar_ticks}
            assert region & {HH_CLOSED, HH_OPEN, RIDE, CRASH}, f"bar {b} keeps time"


def test_mix_equals_sum_of_stems_and_no_stem_is_silent(tiny_corpus):
    for track in _tracks(tiny_corpus):
        meta = _meta(track)
        mix = read_audio(track / "mix.flac").samples
        total = np.zeros_like(mix, dtype=np.float64)
        for sid in meta["stems"]:
            x = read_audio(track / "stems" / f"{sid}.flac").samples
            assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 10 ** (-45 / 20), f"{track.name}/{sid} is silent"
            total += x
        # stems are rounded to 24 bit before summing, so the only error is FLAC's own scaling of the grid
        assert np.max(np.abs(mix - total)) < 1e-6
        assert np.abs(mix).max() <= 10 ** (-1 / 20) + 1e-6  # the one global gain keeps the mix under -1 dBFS
        assert 0 < meta["overall_gain"] <= 1.0


def test_rendered_onsets_match_the_midi_within_15_ms(tiny_corpus):
    checked = 0
    for track in _tracks(tiny_corpus):
        for sid in _meta(track)["stems"]:
            audio = read_audio(track / "stems" / f"{sid}.flac")
            times = note_on_seconds(track / "MIDI" / f"{sid}.mid")
            m = match_onsets(audio.samples, audio.sample_rate, times)
            assert len(m.events) >= 8
            assert m.fraction_within(0.015) >= 0.9, (track.name, sid, np.round(m.errors * 1000, 1))
            assert np.median(np.abs(m.errors)) <= 0.010, (track.name, sid)
            # the same check rejects a MIDI file 30 ms off: the measurement really discriminates
            shifted = match_onsets(audio.samples, audio.sample_rate, times, shift_s=0.030)
            assert shifted.fraction_within(0.015) <= 0.5, (track.name, sid)
            checked += 1
    assert checked >= 10


def test_onset_check_fails_on_audio_that_is_late(tiny_corpus):
    track = _tracks(tiny_corpus)[0]
    sid = next(s for s, r in _extras(track)["roles"].items() if r == "piano")
    audio = read_audio(track / "stems" / f"{sid}.flac")
    late = np.pad(audio.samples, ((0, 0), (int(0.025 * 44100), 0)))[:, : audio.frames]
    m = match_onsets(late, 44100, note_on_seconds(track / "MIDI" / f"{sid}.mid"))
    assert m.fraction_within(0.015) < 0.5


def test_same_seed_gives_byte_identical_midi(tiny_corpus, tmp_path, capsys):
    """A fresh CLI run of song 0 (seed 0) reproduces the fixture's MIDI, labels and soundfont choices."""
    out = tmp_path / "again"
    assert cli(["data", "synth", "--songs", "1", "--out", str(out), "--seed", str(0), "--jobs", "1",
                "--min-bars", "8", "--max-bars", "12"]) == 0
    assert "1 tracks built" in capsys.readouterr().out
    a, b = tiny_corpus / "Track00001", out / "Track00001"
    for rel in ["all_src.mid", "extras.json"] + [f"MIDI/{p.name}" for p in sorted((a / "MIDI").iterdir())]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert _meta(a)["stems"] == _meta(b)["stems"]
    # a different seed or song index gives different music
    songs = [song_midi_bytes(make_song(synth.song_rng(s, i), min_bars=8, max_bars=12)) for s, i in ((0, 0), (1, 0), (0, 1))]
    assert len(set(songs)) == 3
    assert songs[0] == song_midi_bytes(make_song(synth.song_rng(0, 0), min_bars=8, max_bars=12))


def test_interrupted_run_resumes_and_half_written_track_is_rebuilt(tiny_corpus, tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    shutil.copy(tiny_corpus / synth.CORPUS_MANIFEST, out / synth.CORPUS_MANIFEST)
    shutil.copytree(tiny_corpus / "Track00001", out / "Track00001")
    shutil.copytree(tiny_corpus / "Track00002", out / "Track00002")
    (out / "Track00002" / "stems" / "S01.flac").unlink()  # half written (e.g. copied by hand, disk full)
    (out / ".Track00003.partial-123-abcd").mkdir()  # left over by a killed run
    kept_mtime = (out / "Track00001" / "mix.flac").stat().st_mtime_ns
    logs: list[str] = []
    report = synth.synthesize(out, 2, 0, jobs=1, min_bars=8, max_bars=12, progress=False, log=logs.append)
    assert report.kept == ["Track00001"] and report.rebuilt == ["Track00002"] and report.built == ["Track00002"]
    assert any("Track00002" in line and "half written" in line and "stems/S01.flac" in line for line in logs)
    assert not list(out.glob(".Track*"))
    assert (out / "Track00001" / "mix.flac").stat().st_mtime_ns == kept_mtime
    assert synth.missing_parts(out / "Track00002") == []
    assert (out / "Track00002" / "all_src.mid").read_bytes() == (tiny_corpus / "Track00002" / "all_src.mid").read_bytes()


def test_a_crash_mid_track_leaves_nothing_half_written(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth.render_midi

    def render_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Cancelled()
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_midi", render_then_die)
    with pytest.raises(Cancelled):
        synth.build_track(tmp_path, 0, 0, min_bars=8, max_bars=8)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_gets_one_line_errors(tmp_path, capsys, monkeypatch):
    assert cli(["data", "synth", "--songs", "0", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--songs" in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError):
        synth.synthesize(tmp_path / "c", -3, 1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        synth.synthesize(a_file, 1, 1, progress=False)
    # resuming with another seed would mix two corpora: refused, naming the folder
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / synth.CORPUS_MANIFEST).write_text(json.dumps({"seed": 5}))
    with pytest.raises(ConfigError, match="seed=5"):
        synth.synthesize(tmp_path / "c", 1, 1, progress=False)
    # no fluidsynth on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli(["data", "synth", "--songs", "1", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fluidsynth" in err and "apt-get install fluidsynth fluid-soundfont-gm" in err and len(err.splitlines()) == 1
    with pytest.raises(MissingDependencyError):
        synth.synthesize(tmp_path / "d", 1, 1, progress=False)


def test_composer_covers_meters_styles_and_instrument_ranges():
    """Pure composition over many seeds (no rendering): the musical vocabulary the issue asks for."""
    from backline.engines.data.song import BASS_STYLES, PPQ

    meters, bass_styles, grooves, fill_patterns = set(), set(), set(), set()
    for i in range(80):
        song = make_song(synth.song_rng(42, i), min_bars=16, max_bars=32)
        meters.add((song.numerator, song.denominator))
        parts = {p.role: p for p in song.parts}
        bass_styles.add(parts["bass"].style)
        grooves.add(parts["drums"].style)
        fill_patterns |= {f.pattern for f in song.fills}
        assert 32 <= parts["bass"].program <= 39 and parts["drums"].channel == 9
        assert 70 <= song.bpm <= 170 and 16 <= song.bars <= 32
        assert {s.name for s in song.sections} >= {"intro", "verse"} and song.sections[-1].name == "outro"
        end = song.bars * song.bar_ticks
        for part in song.parts:
            assert part.notes and all(0 <= n.start < end and n.duration > 0 for n in part.notes)
            assert all(n.start % 1 == 0 and 1 <= n.velocity <= 127 for n in part.notes)
            if part.role == "bass":
                assert all(24 <= n.pitch <= 60 for n in part.notes)
        if song.numerator == 3:
            assert parts["drums"].style == "waltz"
        if (song.numerator, song.denominator) == (6, 8):
            assert parts["drums"].style == "six_eight" and song.bar_ticks == 3 * PPQ
        vel = [n.velocity for n in parts["piano"].notes]
        assert len(set(vel)) > 5  # humanised velocities
    assert meters == {(4, 4), (3, 4), (6, 8)}
    assert bass_styles == set(BASS_STYLES)
    assert grooves >= {"rock", "funk", "half_time", "shuffle", "disco", "waltz", "six_eight"}
    assert fill_patterns == {"tom_run", "snare_roll", "snare_toms", "triplet_toms"}


def test_every_program_the_composer_uses_has_a_soundfont_with_tight_onsets():
    from backline.engines.data.calibrate_fonts import MAX_LAG_S
    from backline.engines.data.song import PROGRAMS

    table = synth._onset_table()
    for role, programs in PROGRAMS.items():
        for program in programs:
            lags = table[str(program)]
            assert set(lags) == {"FluidR3_GM", "TimGM6mb", "MuseScore_General"}
            assert min(lags.values()) <= MAX_LAG_S, (role, program, lags)
