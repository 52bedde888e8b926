"""The DAW helpers import real takes: the REAPER and Ardour Lua scripts and the Ableton Live script read a take
folder written by the one take writer (`engines.core.takes.write_takes`), not a hand-made fixture.

The Lua scripts run for real under `lua5.4` (skipped where it is not installed) with the DAW's API replaced by a
recorder: REAPER and Ardour do not run here, so what is checked is everything up to the DAW call — which files
the script finds, which it picks, and where it asks the DAW to place them. The Ableton script runs under this
Python with a recorder for Live's song and track.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
from pathlib import Path

import mido
import numpy as np
import pytest

from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.protocol import GenerationResult, Take
from backline.engines.core.takes import DAW_MANIFEST_VERSION, write_takes
from backline.engines.core.timeline import Timeline

ROOT = Path(__file__).resolve().parents[1]
REAPER = ROOT / "packaging" / "reaper" / "backline.lua"
ARDOUR = ROOT / "packaging" / "ardour" / "backline_import.lua"
ABLETON = ROOT / "packaging" / "ableton" / "Backline" / "__init__.py"
LUA = shutil.which("lua5.4") or shutil.which("lua5.3") or shutil.which("lua")
SR = 48000
needs_lua = pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt install lua5.4)")


def midi_line() -> bytes:
    mid = mido.MidiFile(ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=38, velocity=90, time=0),
                                      mido.Message("note_off", note=38, time=480)]))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def write_one_take(folder: Path, seed: int, *, bar: int, bpm: float = 120.0, meter=(4, 4), midi: bool = True,
               stems: bool = True) -> Path:
    """One take through the real writer, as the job worker writes it (the request's timeline given)."""
    timeline = Timeline.constant(bpm, SR, *meter)
    start = timeline.bar_to_samples(bar)
    t = np.arange(SR) / SR
    tone = (0.2 * np.sin(2 * np.pi * 55.0 * t)).astype(np.float32)
    take = Take(seed=seed, stems={"bass": Audio(np.stack([tone, tone]), SR)} if stems else {},
                midi=midi_line() if midi else None, start_sample=start, report={"fit": 0.5})
    written = write_takes(GenerationResult([take], {"engine": "bass", "listening": {"chords": "A | D"}}), folder,
                          timeline=timeline)
    return Path(written.report["report_paths"][0])


@pytest.fixture
def takes(tmp_path):
    """A session's takes/ folder: an older take at the top (a CLI --out folder), the newest one in a job folder
    as the desktop app writes it, and an analysis report that is no take."""
    root = tmp_path / "Session" / "takes"
    old = write_one_take(root, 1, bar=3)
    analysis = root / "analysis_seed0.json"
    analysis.write_text(json.dumps({"engine": "analysis", "key": "A minor", "audio": "not-a-take.wav"}))
    newest = write_one_take(root / "20261206-171500-002-bass-seed7", 7, bar=9, bpm=100.0, meter=(3, 4))
    report = json.loads(newest.read_text())
    report["daw"]["written"] = json.loads(old.read_text())["daw"]["written"] + 5.0  # newest without a sleep
    newest.write_text(json.dumps(report, indent=1))
    return {"root": root, "old": old, "newest": newest}


def test_report_opens_with_the_daw_block(takes):
    text = takes["newest"].read_text()
    assert text.lstrip("{ \n").startswith('"daw"')  # first: the Lua readers match it at the top
    daw = json.loads(text)["daw"]
    folder = takes["newest"].parent
    assert daw["version"] == DAW_MANIFEST_VERSION and daw["engine"] == "bass" and daw["seed"] == 7
    assert daw["audio"] == "bass_seed7.wav" and daw["midi"] == "bass_seed7.mid"
    assert read_audio(folder / daw["audio"]).frames == SR and (folder / daw["midi"]).read_bytes()[:4] == b"MThd"
    # bar 9 in 3/4 at 100 BPM: 8 bars x 3 quarters = 24 quarters = 14.4 s
    assert daw["start_bar"] == 9 and daw["start_quarters"] == 24 and daw["start_seconds"] == pytest.approx(14.4)
    assert daw["start_sample"] == round(14.4 * SR) and daw["sample_rate"] == SR
    assert daw["bpm"] == 100.0 and daw["meter"] == [3, 4] and daw["length_seconds"] == 1.0
    assert daw["stems"] == {"bass": "bass_seed7.wav"}


def test_daw_block_without_audio_or_timeline(tmp_path):
    """A MIDI-only take still tells where it starts; a take with neither audio nor MIDI (analysis) has no block;
    a writer given no timeline says samples and seconds at the stem's rate and leaves the musical units null."""
    midi_only = json.loads(write_one_take(tmp_path / "m", 2, bar=5, stems=False).read_text())["daw"]
    assert midi_only["audio"] is None and midi_only["midi"] == "bass_seed2.mid" and midi_only["start_seconds"] == 8.0
    result = GenerationResult([Take(seed=0, report={"key": "A"})], {"engine": "analysis"})
    report = json.loads(Path(write_takes(result, tmp_path / "a").report["report_paths"][0]).read_text())
    assert "daw" not in report
    tone = Audio(np.zeros((1, SR // 2), np.float32), SR // 2)
    plain = write_takes(GenerationResult([Take(seed=0, stems={"x": tone}, start_sample=SR)], {"engine": "x"}),
                        tmp_path / "p")
    daw = json.loads(Path(plain.report["report_paths"][0]).read_text())["daw"]
    assert daw["sample_rate"] == SR // 2 and daw["start_seconds"] == 2.0 and daw["start_bar"] is None


def run_lua(script: Path, prelude: str, cwd: Path) -> list[str]:
    """Run a DAW script under the Lua interpreter after `prelude` (the DAW's API as a recorder); the recorder
    prints one line per DAW call."""
    code = prelude + f"\nlocal chunk = assert(loadfile({json.dumps(str(script))}))\nchunk()\n"
    out = subprocess.run([LUA, "-"], input=code, capture_output=True, text=True, cwd=cwd, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def reaper_prelude(root: Path, place_at_bar: bool) -> str:
    """REAPER's API as far as the script uses it: the folder listing is the real one (made here, since plain
    Lua cannot list a folder), the calls that change the project print what they were asked."""
    listing = {str(root): sorted(p.name for p in root.iterdir() if p.is_file())}
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    for sub in subdirs:
        listing[str(root / sub)] = sorted(p.name for p in (root / sub).iterdir() if p.is_file())
    lua_table = "{" + ", ".join(f"[{json.dumps(k)}] = {{{', '.join(json.dumps(n) for n in v)}}}"
                                for k, v in listing.items()) + "}"
    return f"""
BACKLINE_TAKES_DIR = {json.dumps(str(root))}
BACKLINE_PLACE_AT_TAKE_BAR = {str(place_at_bar).lower()}
local files, subdirs = {lua_table}, {{{', '.join(json.dumps(s) for s in subdirs)}}}
local cursor = 0.0
reaper = {{
  EnumerateFiles = function(folder, i) return (files[folder] or {{}})[i + 1] end,
  EnumerateSubdirectories = function(folder, i)
    if folder == {json.dumps(str(root))} then return subdirs[i + 1] end
  end,
  GetSet_LoopTimeRange = function() return 0.0, 0.0 end,
  GetSelectedTrack = function() return "track 1" end,
  GetLastTouchedTrack = function() return nil end,
  SetOnlyTrackSelected = function() end,
  Undo_BeginBlock = function() end,
  Undo_EndBlock = function(name) print("undo", name) end,
  UpdateArrange = function() end,
  SetEditCurPos = function(t) cursor = t end,
  GetCursorPosition = function() return cursor end,
  InsertMedia = function(path, mode) print("insert", path, mode, string.format("%.6f", cursor)) end,
  ShowMessageBox = function(text) print("message", text) end,
}}
"""


@needs_lua
def test_reaper_helper_imports_the_newest_real_take(takes):
    lines = run_lua(REAPER, reaper_prelude(takes["root"], place_at_bar=True), takes["root"])
    folder = takes["newest"].parent
    inserts = [line.split("\t") for line in lines if line.startswith("insert")]
    assert inserts == [["insert", str(folder / "bass_seed7.wav"), "0", "14.400000"],
                       ["insert", str(folder / "bass_seed7.mid"), "1", "14.400000"]], lines
    assert all(Path(i[1]).is_file() for i in inserts)
    assert ["undo", "Backline: import bass_seed7.wav"] == [line.split("\t") for line in lines
                                                           if line.startswith("undo")][0]


@needs_lua
def test_reaper_helper_at_the_cursor_and_with_no_take(takes, tmp_path):
    lines = run_lua(REAPER, reaper_prelude(takes["root"], place_at_bar=False), takes["root"])
    assert [line.split("\t")[3] for line in lines if line.startswith("insert")] == ["0.000000", "0.000000"]
    empty = tmp_path / "empty"
    empty.mkdir()
    lines = run_lua(REAPER, reaper_prelude(empty, place_at_bar=False), empty)
    assert lines and lines[0].startswith("message\tNo Backline take in") and not any("insert" in x for x in lines)


def ardour_prelude(report: Path, at_take: bool, session_rate: int) -> str:
    """Ardour's Lua API as far as the script uses it; the file dialog answers with `report`."""
    return f"""
function ardour(meta) print("action", meta.name) end
LuaDialog = {{
  Dialog = function(title, fields)
    return {{ run = function() return {{ report = {json.dumps(str(report))}, at_take = {str(at_take).lower()} }} end }}
  end,
  Message = function(title, text) return {{ run = function() print("message", text) end }} end,
  MessageType = {{ Error = 1 }}, ButtonType = {{ Close = 1 }},
}}
Session = {{}}
function Session:nominal_sample_rate() return {session_rate} end
function Session:transport_sample() return 12345 end
C = {{ StringVector = function()
  local v = {{ items = {{}} }}
  function v:push_back(s) self.items[#self.items + 1] = s end
  return v
end }}
Temporal = {{ timepos_t = function(s) return {{ samples = s }} end }}
Editing = {{ ImportDistinctFiles = "distinct", ImportAsTrack = "as-track" }}
ARDOUR = {{ SrcQuality = {{ SrcBest = "best" }}, MidiTrackNameSource = {{ SMFTrackName = "smf-name" }},
  MidiTempoMapDisposition = {{ SMFTempoIgnore = "ignore" }},
  PluginInfo = function() return "no-instrument" end, Track = function() return "new-track" end }}
Editor = {{}}
function Editor:do_import(files, disposition, mode, quality, names, tempo, pos, instrument, track, markers)
  for _, f in ipairs(files.items) do print("import", f, disposition, mode, pos.samples) end
end
"""


@needs_lua
def test_ardour_helper_imports_a_real_take_at_its_position(takes):
    prelude = ardour_prelude(takes["newest"], True, 44100)
    assert run_lua(ARDOUR, prelude, takes["root"]) == ["action\tBackline: import take"]  # loading registers it
    out = subprocess.run([LUA, "-"], input=prelude + f"\ndofile({json.dumps(str(ARDOUR))})\nfactory()()\n",
                         capture_output=True, text=True, timeout=30)  # running the action is factory()()
    assert out.returncode == 0, out.stderr
    folder = takes["newest"].parent
    imports = [line.split("\t") for line in out.stdout.splitlines() if line.startswith("import")]
    # 14.4 s into an Ardour session at 44.1 kHz (the take was made at 48 kHz)
    assert imports == [["import", str(folder / "bass_seed7.wav"), "distinct", "as-track", "635040"],
                       ["import", str(folder / "bass_seed7.mid"), "distinct", "as-track", "635040"]]


@needs_lua
def test_ardour_helper_at_the_playhead_and_refuses_other_json(takes):
    def run(report: Path, at_take: bool) -> list[str]:
        code = ardour_prelude(report, at_take, 48000) + f"\ndofile({json.dumps(str(ARDOUR))})\nfactory()()\n"
        out = subprocess.run([LUA, "-"], input=code, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    assert [line.split("\t")[-1] for line in run(takes["old"], False) if line.startswith("import")] == \
        ["12345", "12345"]
    lines = run(takes["root"] / "analysis_seed0.json", True)
    assert not any(line.startswith("import") for line in lines)
    assert any(line.startswith("message") and "not a Backline take report" in line for line in lines)


def load_ableton():
    spec = importlib.util.spec_from_file_location("backline_ableton_helper", ABLETON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingTrack:
    def __init__(self, name: str, audio: bool = True) -> None:
        self.name, self.has_audio_input, self.clips = name, audio, []

    def create_audio_clip(self, path: str, position: float) -> None:
        self.clips.append((path, position))


def test_ableton_helper_imports_the_newest_real_take(takes, monkeypatch):
    live = load_ableton()
    assert not hasattr(live, "create_instance")  # outside Live: the reader and importer only
    monkeypatch.setenv("BACKLINE_SESSION_DIR", str(takes["root"].parent))
    take = live.newest_take(live.takes_dir())
    folder = takes["newest"].parent
    assert take["audio"] == str(folder / "bass_seed7.wav") and take["midi"] == str(folder / "bass_seed7.mid")
    assert take["start_quarters"] == 24 and take["bpm"] == 100.0

    class Song:
        current_song_time = 3.0

        class view:  # noqa: N801 - Live's attribute name
            selected_track = RecordingTrack("Bass")

    line = live.import_take(Song, take)
    assert Song.view.selected_track.clips == [(str(folder / "bass_seed7.wav"), 24.0)], line
    assert Path(Song.view.selected_track.clips[0][0]).is_file() and "beat 24" in line
    midi_track = RecordingTrack("Keys", audio=False)
    assert "select an audio track" in live.import_take(Song, take, midi_track) and not midi_track.clips
    assert live.read_take(str(takes["root"] / "analysis_seed0.json")) is None


def test_an_exported_take_imports_too(takes, tmp_path):
    """"Export takes…" renames the files (bass.wav, bass.mid); its take.json opens with a `daw` block naming the
    copies, so the helpers import an export as they import the session's takes."""
    from backline.host.history import SessionStore, TakeRecord

    daw = json.loads(takes["newest"].read_text())["daw"]
    folder = takes["newest"].parent
    store = SessionStore(tmp_path / "session").load()
    store.add(TakeRecord(id="t7", number=1, engine="bass", seed=7, stems={"bass": str(folder / daw["audio"])},
                         midi=str(folder / daw["midi"]), start_sample=daw["start_sample"], sample_rate=SR, bpm=100.0,
                         meter=(3, 4), bars=(9, 10)))
    out = store.export(store.takes, tmp_path / "export")
    exported = load_ableton().newest_take(str(out))
    assert exported["audio"].endswith("/bass.wav") and read_audio(exported["audio"]).frames == SR
    assert Path(exported["midi"]).read_bytes() == (folder / daw["midi"]).read_bytes()
    assert exported["start_quarters"] == 24 and exported["start_seconds"] == pytest.approx(14.4)
    if LUA is not None:
        lines = run_lua(REAPER, reaper_prelude(out, place_at_bar=True), out)
        assert [line.split("\t")[1:] for line in lines if line.startswith("insert")] == \
            [[exported["audio"], "0", "14.400000"], [exported["midi"], "1", "14.400000"]]
