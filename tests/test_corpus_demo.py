"""The bundled demo song: shipped as MIDI + labels, rendered into the cache on first use, atomically."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest

from backline.engines.core.audio import read_audio
from backline.engines.core.errors import FileExistsRefusal
from backline.engines.data import demo
from backline.engines.data.synth import missing_parts
from backline.host.cli import main as cli


def test_shipped_demo_is_small_and_labelled():
    src = demo.DEMO_DIR
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert size < 64 * 1024 and not list(src.rglob("*.flac"))  # MIDI + labels only
    ex = json.loads((src / "extras.json").read_text())
    assert ex["bars"] == 8 and ex["time_signature"] == [4, 4] and ex["tempo_bpm"] == 100.0
    assert set(ex["roles"].values()) == {"bass", "drums", "piano", "guitar", "strings", "lead"}
    assert [s["name"] for s in ex["sections"]] == ["intro", "verse"]
    assert {"bar": 4, "reason": "section_end"}.items() <= ex["fills"][0].items()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("BACKLINE_CACHE", str(cache))
    yield demo.demo_song(), cache
    mp.undo()


def test_demo_renders_once_into_the_cache(rendered, monkeypatch):
    track, cache = rendered
    assert track.parent == cache / "demo" and missing_parts(track) == []
    assert not list(track.parent.glob(".*partial*"))
    monkeypatch.setenv("BACKLINE_CACHE", str(cache))
    before = (track / "mix.flac").stat().st_mtime_ns
    assert demo.demo_song() == track and (track / "mix.flac").stat().st_mtime_ns == before  # cached
    mix = read_audio(track / "mix.flac")
    stems = sorted((track / "stems").glob("*.flac"))
    assert len(stems) == 6 and mix.sample_rate == 44100 and mix.channels == 2
    total = sum(read_audio(s).samples.astype(np.float64) for s in stems)
    assert np.max(np.abs(mix.samples - total)) < 1e-6
    assert abs(mix.seconds - (8 * 2.4 + 2.0)) < 0.05  # 8 bars at 100 BPM plus the release tail


def test_backline_demo_prints_where_stems_are(rendered, monkeypatch, capsys, tmp_path):
    track, cache = rendered
    monkeypatch.setenv("BACKLINE_CACHE", str(cache))
    assert cli(["demo", "--render-only"]) == 0
    out = capsys.readouterr().out
    assert str(track / "mix.flac") in out and out.count("stem:") == 6
    assert cli(["demo", "--render-only", "--out", str(tmp_path / "copy")]) == 0
    assert (tmp_path / "copy" / "mix.flac").is_file()
    assert cli(["demo", "--render-only", "--out", str(tmp_path / "copy")]) == 2  # never overwrites


def test_main_job_generates_bass_and_drums_on_the_demo(rendered, monkeypatch, capsys, tmp_path):
    """The first set-up command's main job: the band without its bass → analysis, a bass take (WAV aligned to
    the band, MIDI with notes) and a drum take with fills, all in a new takes folder."""
    track, cache = rendered
    monkeypatch.setenv("BACKLINE_CACHE", str(cache))
    takes = tmp_path / "takes"
    assert cli(["demo", "--takes", str(takes)]) == 0
    out = capsys.readouterr().out
    assert "analysis of the band without its bass" in out and str(takes) in out
    band = read_audio(takes / "band_without_bass.wav")
    bass = read_audio(takes / "bass" / "bass_seed0.wav")
    assert bass.frames == band.frames and bass.sample_rate == band.sample_rate
    assert float(np.abs(bass.samples).max()) > 0.01
    notes = [m for m in mido.MidiFile(takes / "bass" / "bass_seed0.mid") if m.type == "note_on" and m.velocity]
    assert len(notes) >= 8
    drums = mido.MidiFile(takes / "drums" / "drums_seed0.mid")
    assert any(m.type == "note_on" and m.channel == 9 for m in drums)
    assert cli(["demo", "--takes", str(takes)]) == 2  # never overwrites a takes folder


def test_demo_band_midi_without_drums(tmp_path):
    path = demo.demo_midi_without_drums(tmp_path)
    notes = [m for m in mido.MidiFile(str(path)) if m.type == "note_on" and m.velocity > 0]
    assert notes and 9 not in {m.channel for m in notes} and len({m.channel for m in notes}) == 5
    assert demo.demo_midi_without_drums(tmp_path) == path  # same content: reused
    path.write_bytes(b"MThd other")
    with pytest.raises(FileExistsRefusal):
        demo.demo_midi_without_drums(tmp_path)
