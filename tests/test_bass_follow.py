"""Follow mode (listen → plan → render), the bass planner (shipped weights), its trainer and data readers, and
`--midi-in`."""

import json
from pathlib import Path

import mido
import numpy as np
import pytest

from backline.engines.bass.follow_engine import build
from backline.engines.bass.planner import WEIGHTS, line_attributes, load_planner
from backline.engines.bass.planner_data import composed_examples, track_example
from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import ConfigError, FileExistsRefusal
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.takes import generate_and_write
from backline.engines.core.timeline import Timeline
from backline.engines.core.transcribe import Note, midi_to_notes, notes_to_midi
from backline.engines.data.slakh import list_tracks
from backline.host.cli import main as cli_main


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def band(tiny_corpus):
    tr = next(t for t in list_tracks(tiny_corpus) if t.extras["time_signature"] == [4, 4])
    audios = [read_audio(s.audio) for s in tr.audio_stems() if s.role != "bass"]
    n = min(a.frames for a in audios)
    return tr, Audio(np.sum([a.samples[:, :n] for a in audios], axis=0).astype(np.float32), audios[0].sample_rate)


def _shares(notes, ex, bar_s):
    """(chord-tone, in-key) note-time shares of notes in seconds against extras.json."""
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    k = names.index(ex["key"])
    scale = {(k + d) % 12 for d in ((0, 2, 4, 5, 7, 9, 11) if ex["mode"] == "major" else (0, 2, 3, 5, 7, 8, 10, 11))}
    chords = {c["bar"]: set(c["pitch_classes"]) for c in ex["chords"]}
    tot = ch = key = 0
    for n in notes:
        for t in np.arange(n.start, n.end, 0.02):
            tot += 1
            ch += n.pitch % 12 in chords.get(int(t // bar_s) + 1, set())
            key += n.pitch % 12 in scale
    return ch / tot, key / tot


def test_follow_mode_end_to_end_writes_a_take_on_the_heard_tempo(band, tmp_path):
    tr, mix = band
    engine = build("debug")
    req = GenerationRequest("bass", tmp_path / "o", Timeline.constant(120.0, mix.sample_rate), mix=mix,
                            region_stop=mix.frames, preset="finger", seed=3)
    res = generate_and_write(engine, req)
    take = res.takes[0]
    wav = read_audio(take.stems["bass"])
    assert wav.frames == mix.frames and wav.sample_rate == mix.sample_rate and wav.peak() > 0.01
    mid = mido.MidiFile(str(take.midi))
    tempo = mido.tempo2bpm(next(m.tempo for m in mid.tracks[0] if m.type == "set_tempo"))
    assert abs(tempo - tr.extras["tempo_bpm"]) / tr.extras["tempo_bpm"] < 0.01  # not the 120 placeholder
    notes = midi_to_notes(mid)
    assert notes and all(0 <= n.start < n.end <= mix.seconds + 1e-3 for n in notes)
    assert all(24 <= n.pitch <= 60 for n in notes)  # the planner's range
    report = json.loads(Path(take.report["files"]["report"]).read_text())
    assert res.report["mode"] == "follow" and report["listening"]["sources"]["tempo"] == "audio"
    assert report["plan"]["style"] == "root_fifth"  # the finger preset's style
    with pytest.raises(FileExistsRefusal):
        generate_and_write(engine, req)


def test_midi_in_renders_the_users_line_exactly(band, tmp_path, capsys):
    _, mix = band
    line = [Note(40, 0.5, 1.0, 100), Note(47, 1.0, 1.5, 90), Note(45, 2.0, 3.0, 80)]
    path = tmp_path / "line.mid"
    notes_to_midi(line, Timeline.constant(100.0, 44100), program=33).save(str(path))
    out = tmp_path / "o"
    assert cli_main(["generate", "bass", "--mix", _write(tmp_path, mix), "--out", str(out), "--config", "debug",
                     "--midi-in", str(path), "--bpm", "100", "--preset", "pick"]) == 0, capsys.readouterr().err
    got = midi_to_notes(mido.MidiFile(str(out / "bass_seed0.mid")))
    assert [(n.pitch, round(n.start, 3), round(n.end, 3)) for n in got] == [(n.pitch, n.start, n.end) for n in line]
    wav = read_audio(out / "bass_seed0.wav").with_channels(1).samples[0]
    sr = mix.sample_rate
    rms = lambda a, b: float(np.sqrt(np.mean(wav[int(a * sr):int(b * sr)] ** 2)))  # noqa: E731
    assert rms(0.6, 0.9) > 30 * rms(0.05, 0.4)  # sound where the notes are, silence before


@pytest.mark.parametrize("chart, needle", [("D | H7 | G", "'H7'"), ("D | G A Bm C D", "5 chords")])
def test_bad_chord_charts_fail_before_any_work(band, tmp_path, capsys, chart, needle):
    _, mix = band
    assert cli_main(["generate", "bass", "--mix", _write(tmp_path, mix), "--out", str(tmp_path / "o"),
                     "--config", "debug", "--chords", chart]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


def _write(tmp_path, mix) -> str:
    path = tmp_path / "mix.wav"
    if not path.exists():
        write_audio(path, mix)
    return str(path)


@pytest.mark.skipif(not WEIGHTS.with_suffix(".safetensors").is_file(), reason="planner weights not shipped")
def test_shipped_planner_plays_chord_tones_in_key_and_can_lock_to_the_kick():
    planner = load_planner()
    true_ct, plan_ct, keys, kick_off, kick_on = [], [], [], [], []
    for i, ex in enumerate(composed_examples(6, 4242, min_bars=16, max_bars=20)):  # never trained on
        pcs = [ex.grid.chord_pcs(s) for s in range(ex.grid.steps)]
        scale = {(ex.grid.key_pc + d) % 12 for d in ((0, 2, 4, 5, 7, 9, 11) if ex.grid.mode == "major"
                                                      else (0, 2, 3, 5, 7, 8, 10, 11))}

        def share(line, pcs_at, n=ex.grid.steps):
            """Note-time share whose pitch class is in pcs_at(step)."""
            steps = [(s, x.pitch % 12) for x in line for s in range(x.step, min(n, x.step + x.length))]
            return np.mean([pc in pcs_at(s) for s, pc in steps])

        line = planner.plan(ex.grid, ex.style, planner.attributes(ex.style), seed=i, in_key=False)
        assert line
        true_ct.append(share(ex.notes, pcs.__getitem__))
        plan_ct.append(share(line, pcs.__getitem__))
        guarded = planner.plan(ex.grid, ex.style, planner.attributes(ex.style), seed=i)  # as follow mode plays
        keys.append(share(guarded, lambda s, scale=scale: scale))
        kick_off.append(line_attributes(line, ex.grid)["lock"])
        locked = planner.plan(ex.grid, ex.style, planner.attributes(ex.style, lock_to_kick=True), seed=i,
                              lock_to_kick=True)
        kick_on.append(line_attributes(locked, ex.grid)["lock"])
    assert np.mean(plan_ct) >= 0.9 * np.mean(true_ct)  # the model alone, without the in-key guard
    assert np.mean(keys) >= 0.98
    assert np.mean(kick_on) > np.mean(kick_off)


def test_planner_trains_exports_and_reads_slakh_layout(tiny_corpus, tmp_path):
    ex = track_example(list_tracks(tiny_corpus)[0].path)
    bass = next(s for s in list_tracks(tiny_corpus)[0].stems.values() if s.role == "bass")
    assert len(ex.notes) == len(midi_to_notes(mido.MidiFile(str(bass.midi)))) and ex.style != "unknown"
    assert ex.grid.root[0] == ex.grid.key_pc or ex.grid.root[0] < 12
    run = tmp_path / "run"
    args = ["train", "bass-planner", "--synth", "3", "--val-songs", "2", "--corpus", str(tiny_corpus),
            "--config", "debug", "--run", str(run), "--steps", "2", "--batch", "2", "--bars", "2",
            "--export", str(tmp_path / "planner")]
    assert cli_main(args) == 0
    planner = load_planner(tmp_path / "planner")
    assert set(planner.style_attrs) >= {ex.style, "unknown"}
    assert cli_main(args[:args.index("--steps") + 1] + ["4"] + args[args.index("--steps") + 2:]) == 0  # resumes
    assert json.loads((tmp_path / "planner.json").read_text())["training"]["steps"] == 4


def test_follow_controls_are_checked(band, tmp_path):
    _, mix = band
    engine = build("debug")
    for controls, match in (({"style": "polka"}, "style"), ({"swing": 2.0}, "swing"), ({"register": 3}, "register"),
                            ({"mode": "loud"}, "mode")):
        req = GenerationRequest("bass", tmp_path / "o", Timeline.constant(120.0, mix.sample_rate), mix=mix,
                                preset="finger", controls=controls)
        with pytest.raises(ConfigError, match=match):
            engine.generate(req)
    assert not (tmp_path / "o").exists()


def test_free_mode_midi_carries_the_heard_tempo_without_bpm(band, tmp_path):
    """Paper 000's path too: a plain file given without --bpm is not taken as 120 BPM."""
    tr, mix = band
    clip = mix.slice(0, 6 * mix.sample_rate)
    req = GenerationRequest("bass", tmp_path / "o", Timeline.constant(120.0, mix.sample_rate), mix=clip,
                            region_stop=clip.frames, preset="finger", controls={"mode": "free", "steps": 2})
    res = build("debug").generate(req)
    tempo = mido.tempo2bpm(next(m.tempo for m in res.takes[0].midi.tracks[0] if m.type == "set_tempo"))
    assert abs(tempo - tr.extras["tempo_bpm"]) / tr.extras["tempo_bpm"] < 0.01


def test_a_follow_take_never_imports_torch(band, tmp_path):
    """`backline generate bass --mix X` and `generate accompaniment --mix X --prompt piano` (listen, the role check,
    plan, render, level) run in numpy: torch's import alone was 1.6 CPU-s, most of a take's start-up. The role check
    must have run without it (it says the band's drums are playing), not been skipped by the check's own never-fail
    guard."""
    import os
    import subprocess
    import sys

    _, mix = band
    clip = tmp_path / "band.wav"
    write_audio(clip, Audio(mix.samples[:, : 8 * mix.sample_rate], mix.sample_rate))
    code = f"""
import sys
from backline.host.cli import main
from backline.engines.analysis.api import role_already_playing
from backline.engines.core.audio import read_audio
rc = main(["generate", "bass", "--mix", {str(clip)!r}, "--out", {str(tmp_path / "out")!r}, "--device", "cpu"])
rc += main(["generate", "accompaniment", "--mix", {str(clip)!r}, "--prompt", "piano", "--out",
            {str(tmp_path / "acc")!r}, "--device", "cpu"])
drums = role_already_playing("drums", read_audio({str(clip)!r}))
print("RESULT", rc, "torch" in sys.modules, "torchaudio" in sys.modules, bool(drums))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    assert line, proc.stderr[-2000:]
    assert line[0].split()[1:] == ["0", "False", "False", "True"], proc.stdout + proc.stderr[-2000:]
    assert (tmp_path / "out" / "bass_seed0.mid").exists() and (tmp_path / "out" / "bass_seed0.wav").exists()
    assert (tmp_path / "acc" / "accompany_seed0.mid").exists()
