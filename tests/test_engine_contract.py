"""The engine contract, checked for every registered engine with its debug config (a new engine gets these
tests for free by being in `ENGINE_REGISTRY`).

For each engine: the defaults validate; generate() is pure and its stems are exactly the region's length; a
cancel in the middle of a run and a SIGTERM leave the output folder exactly as it was; two runs into one folder
give one take and one clear error; a read-only folder gives a one-line error before any work.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mido
import numpy as np
import pytest

from backline.engines.core.audio import Audio
from backline.engines.core.errors import BacklineError, Cancelled, FileExistsRefusal
from backline.engines.core.protocol import GenerationRequest, available_engines, build_engine
from backline.engines.core.takes import OutputError, generate_and_write, preflight
from backline.engines.core.timeline import Timeline

SR = 44100
BPM = 120.0
BARS = (2, 3)  # the region: bars 2-3 of a 4-bar song (4 s at 120 BPM)
ENGINES = sorted(available_engines())


@pytest.fixture(scope="module")
def band(tmp_path_factory) -> tuple[Path, Audio]:
    """A 4-bar band as MIDI (piano chords + a bass line) and as audio (the same harmony as tones)."""
    folder = tmp_path_factory.mktemp("band")
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM)),
                                mido.MetaMessage("time_signature", numerator=4, denominator=4)])
    mid.tracks.append(conductor)
    for name, program, channel, pitches in (("Piano", 0, 0, (60, 64, 67)), ("Bass", 33, 1, (36,))):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name),
                                mido.Message("program_change", program=program, channel=channel)])
        for _beat in range(16):
            for p in pitches:
                track.append(mido.Message("note_on", note=p, velocity=90, channel=channel, time=0))
            for k, p in enumerate(pitches):
                track.append(mido.Message("note_off", note=p, velocity=0, channel=channel, time=440 if k == 0 else 0))
            track.append(mido.Message("note_off", note=pitches[0], velocity=0, channel=channel, time=40))
        mid.tracks.append(track)
    path = folder / "band.mid"
    mid.save(path)
    t = np.arange(int(4 * 4 * 60 / BPM * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f * t) for f in (65.4, 261.6, 329.6, 392.0)) * 0.15
    tone *= 0.6 + 0.4 * (np.sin(2 * np.pi * BPM / 60 * t) > 0)  # a pulse on the beat
    return path, Audio(np.stack([tone, tone]).astype(np.float32), SR)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    return build_engine(request.param, "debug")


def make_request(engine, band, out_dir: Path, seed: int = 0) -> GenerationRequest:
    midi_path, audio = band
    tl = Timeline.constant(BPM, SR)
    start, stop = tl.bar_range_to_samples(*BARS)
    inputs = engine.describe().inputs  # alternatives: the band's MIDI when the engine reads it, else the mix
    controls = {"steps": 2} if engine.name in ("bass", "bass-latent") else {}
    midi = midi_path if "midi" in inputs else None
    return GenerationRequest(engine.name, out_dir, tl, region_start=start, region_stop=stop,
                             mix=audio.slice(start, stop) if midi is None and "mix" in inputs else None,
                             midi=midi, controls=controls, seed=seed)


def listing(folder: Path) -> dict[str, bytes] | None:
    """Everything in a folder (names, hidden ones too, and contents), or None when it does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def user_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_song.txt").write_text("the user's own file")
    return out


def test_defaults_validate(engine):
    desc = engine.describe()
    assert desc.name == engine.name
    assert desc.validate({}) == desc.defaults()
    assert desc.validate(desc.defaults()) == desc.defaults()


def test_generate_is_pure_and_outputs_are_exactly_the_region(engine, band, tmp_path):
    out = tmp_path / "out"
    request = make_request(engine, band, out)
    result = engine.generate(request, progress=lambda f, m: None, cancel=threading.Event())
    assert not out.exists()  # generate() wrote nothing
    assert result.takes
    start, stop = request.region_start, request.region_stop
    for take in result.takes:
        assert take.start_sample == start
        for audio in take.stems.values():
            assert isinstance(audio, Audio)
            assert audio.frames == stop - start and audio.sample_rate == SR
    written = generate_and_write(engine, request)
    names = sorted(p.name for p in out.iterdir())
    assert f"{engine.name}_seed0.json" in names and not any(n.startswith(".") for n in names)
    for take in written.takes:
        assert all(Path(p).is_file() for p in take.stems.values())


def test_cancel_mid_run_leaves_the_folder_as_it_was(engine, band, tmp_path):
    out = user_folder(tmp_path)
    before = listing(out)
    cancel = threading.Event()
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        if len(calls) == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        generate_and_write(engine, make_request(engine, band, out), progress=progress, cancel=cancel)
    assert len(calls) >= 2  # it was running when cancelled
    assert listing(out) == before
    # and into a folder that did not exist: it does not exist afterwards either
    fresh = tmp_path / "new" / "folder"
    cancel2 = threading.Event()
    cancel2.set()
    with pytest.raises(Cancelled):
        generate_and_write(engine, make_request(engine, band, fresh), cancel=cancel2)
    assert not (tmp_path / "new").exists()


SIGTERM_SCRIPT = """
import os, pickle, signal, sys
from backline.engines.core.protocol import build_engine, generate_in_terminal
from backline.engines.core.errors import BacklineError
name, path = sys.argv[1], sys.argv[2]
request = pickle.load(open(path, "rb"))
engine = build_engine(name, "debug")
generate = engine.generate
def terminated_mid_run(request, *, progress, cancel):
    calls = []
    def tracked(fraction, message):
        calls.append(fraction)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)   # what `kill PID` or a logout does, mid-run
        progress(fraction, message)
    return generate(request, progress=tracked, cancel=cancel)
engine.generate = terminated_mid_run
try:
    generate_in_terminal(engine, request)
except KeyboardInterrupt:
    print("cancelled"); sys.exit(130)
except BacklineError as err:
    print(f"error: {err}"); sys.exit(2)
print("finished"); sys.exit(0)
"""


def test_sigterm_mid_run_cancels_like_ctrl_c(engine, band, tmp_path):
    out = user_folder(tmp_path)
    before = listing(out)
    request_file = tmp_path / "request.pickle"
    request_file.write_bytes(pickle.dumps(make_request(engine, band, out)))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SIGTERM_SCRIPT, engine.name, str(request_file)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 130 and "cancelled" in proc.stdout, proc.stdout + proc.stderr
    assert listing(out) == before


HOLD_SCRIPT = """
import sys
from backline.engines.core.takes import preflight
with preflight(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_two_runs_into_one_folder_give_one_take_and_one_clear_error(engine, band, tmp_path):
    out = user_folder(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = []
        with pytest.raises(OutputError) as err:  # fails at once: the engine never starts
            generate_and_write(engine, make_request(engine, band, out),
                               progress=lambda f, m: started.append(f))
        assert not started
        message = str(err.value)
        assert "\n" not in message and f"process {holder.pid}" in message and "overwrite" not in message
    finally:
        holder.communicate("\n", timeout=30)
    first = generate_and_write(engine, make_request(engine, band, out))
    files = listing(out)
    started = []
    with pytest.raises(FileExistsRefusal) as err:  # same seed again: refused before any work
        generate_and_write(engine, make_request(engine, band, out), progress=lambda f, m: started.append(f))
    assert not started and "\n" not in str(err.value)
    assert listing(out) == files  # one take, unchanged
    assert first.takes and all(Path(p).is_file() for t in first.takes for p in t.stems.values())
    second = generate_and_write(engine, make_request(engine, band, out, seed=5))  # another seed: its own files
    assert second.takes[0].seed == 5 and set(listing(out)) > set(files)


def test_read_only_folder_fails_in_one_line_before_any_work(engine, band, tmp_path):
    out = user_folder(tmp_path)
    before = listing(out)
    os.chmod(out, 0o555)
    try:
        started = []
        with pytest.raises(BacklineError) as err:
            generate_and_write(engine, make_request(engine, band, out), progress=lambda f, m: started.append(f))
        assert not started
        assert "\n" not in str(err.value) and "read-only" in str(err.value)
        assert listing(out) == before
    finally:
        os.chmod(out, 0o755)


def test_a_full_disk_is_refused_before_any_work(engine, band, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    out = user_folder(tmp_path)
    started = []
    with pytest.raises(OutputError, match="MB free"):
        generate_and_write(engine, make_request(engine, band, out), progress=lambda f, m: started.append(f))
    assert not started


def test_preflight_of_a_file_and_a_lock_in_this_process(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        preflight(tmp_path / "file")
    with preflight(tmp_path / "a"):
        with pytest.raises(OutputError, match="being written"):
            preflight(tmp_path / "a")
    assert not (tmp_path / "a").exists()  # created for the run, empty, removed again


def test_test_only_engines_are_not_registered_outside_tests():
    code = "from backline.engines.core.protocol import ENGINE_REGISTRY as R, available_engines as a; print(sorted(R), a())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sine" not in out and "crash" not in out and "broken" not in out


def test_signal_during_the_final_links_is_held_until_they_are_done(tmp_path):
    """A Ctrl+C that lands while the files are being linked into place waits until the take is complete."""
    from backline.engines.core import takes
    from backline.engines.core.protocol import GenerationResult, Take

    result = GenerationResult([Take(seed=1, stems={"x": Audio(np.full((1, 100), 0.1, np.float32), 8000)}, midi=b"MThd")],
                              {"engine": "x"})
    real_link = os.link  # the commit links each staged file into place
    calls = []

    def link(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # arrives between the first and the second file
        real_link(src, dst)

    os.link = link
    try:
        with pytest.raises(KeyboardInterrupt):
            takes.write_takes(result, tmp_path / "o")
    finally:
        os.link = real_link
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["x_seed1.json", "x_seed1.mid", "x_seed1.wav"]


def test_core_types_come_from_one_place_without_the_bridge_or_torch():
    code = ("import sys, backline.engines.core, backline.engines.core.protocol, backline.engines.core.takes; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('backline.bridge')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    root = Path(__file__).resolve().parents[1] / "engines"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "backline.bridge" in p.read_text(encoding="utf-8")]
    assert offenders == []  # engines never import the bridge (the timeline lives in engines/core/timeline.py)
    # MIDI objects become bytes in one helper
    serialisers = [str(p.relative_to(root)) for p in root.rglob("*.py")
                   if ".save(file=" in p.read_text(encoding="utf-8") and p.name != "midi.py"]
    assert serialisers == []


def test_benchmarks_share_one_hardware_and_timing_helper():
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    copies = [p.name for p in root.glob("*.py") if p.name != "_common.py" and "/proc/cpuinfo" in p.read_text()]
    assert copies == []
    users = [p.name for p in root.glob("*.py") if "_common" in p.read_text()]
    assert len(users) >= 7


def test_overwrite_replaces_a_take_whole_never_mixing_old_and_new(tmp_path):
    """Issue 15 case 1: --overwrite without audio must not leave the old WAV beside the new MIDI and report."""
    from backline.engines.core.protocol import GenerationResult, Take
    from backline.engines.core.takes import write_takes

    audio = Audio(np.full((1, 100), 0.1, np.float32), 8000)
    write_takes(GenerationResult([Take(seed=0, stems={"x": audio}, midi=b"old")], {"engine": "x"}), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_seed0.json", "x_seed0.mid", "x_seed0.wav"]
    with pytest.raises(FileExistsRefusal):
        write_takes(GenerationResult([Take(seed=0, midi=b"new")], {"engine": "x"}), tmp_path)
    write_takes(GenerationResult([Take(seed=0, midi=b"new")], {"engine": "x"}), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_seed0.json", "x_seed0.mid"]
    assert (tmp_path / "x_seed0.mid").read_bytes() == b"new"
