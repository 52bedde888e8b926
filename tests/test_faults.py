"""Issue 23, the fault matrix: every row ends in one clear line and exit 2 (or 130 on cancel) before any heavy
work, loses nothing and leaves nothing behind. Real files, real subprocesses, real signals; a full or read-only
disk is a real tmpfs mount where this runs as root with mount rights, else a real RLIMIT_FSIZE in a child."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import AudioFileError, BacklineError, BacklineWarning, WeightsError
from backline.engines.core.takes import LOCK_NAME, STAGING_PREFIX, OutputError, preflight, write_takes
from backline.host.cli import main as cli

ENV = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen"}


# --- helpers -------------------------------------------------------------------------------------------------

def one_line_error(capsys, args, code: int = 2) -> str:
    assert cli(args) == code
    err = capsys.readouterr().err
    assert err.startswith("backline: error: ") and err.count("\n") == 1, err
    return err


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def mix(tmp_path) -> Path:
    t = np.arange(44100 * 4) / 44100
    x = (0.2 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    return write_audio(tmp_path / "mix.wav", Audio(np.stack([x, x]), 44100))


def band_midi(path: Path, tempo: int = 500_000, meter: tuple[int, int] | None = None, quarters: int = 16) -> Path:
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    head = [mido.MetaMessage("set_tempo", tempo=tempo)]
    if meter:
        head.append(mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1]))
    mid.tracks.append(mido.MidiTrack(head))
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Piano"),
                                      mido.Message("note_on", note=60, velocity=80, time=0),
                                      mido.Message("note_off", note=60, velocity=0, time=480 * quarters)]))
    mid.save(path)
    return path


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail the test if any engine is built or any mix is read: the refusal must come before."""
    from backline.engines import registry
    from backline.engines.accompany import engine as accompany_engine
    from backline.engines.accompany import follow_engine as accompany_follow_engine
    from backline.engines.bass import engine as bass_engine
    from backline.engines.bass import follow_engine as bass_follow_engine
    from backline.engines.core import audio

    def not_reached(*args, **kwargs):
        raise AssertionError("heavy work started before the refusal")

    monkeypatch.setattr(bass_engine, "build", not_reached)
    monkeypatch.setattr(bass_follow_engine, "build", not_reached)
    monkeypatch.setattr(accompany_engine, "build", not_reached)
    monkeypatch.setattr(accompany_follow_engine, "build", not_reached)
    monkeypatch.setattr(registry, "build_engine", not_reached)
    monkeypatch.setattr(audio, "read_audio", not_reached)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False):
    """A real small filesystem at `path`, or pytest.skip where mounting is not allowed (then the RLIMIT
    variant of the same case runs)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount rights)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def small_result(engine: str = "x", seed: int = 1, seconds: float = 1.0, rate: int = 8000, level: float = 0.1):
    from backline.engines.core.protocol import GenerationResult, Take

    audio = Audio(np.full((2, int(seconds * rate)), level, np.float32), rate)
    return GenerationResult([Take(seed=seed, stems={engine: audio}, midi=b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00`",
                                  report={"level": level})], {"engine": engine})


# --- meters, tempi, regions, counts ----------------------------------------------------------------------------

@pytest.mark.parametrize("meter", ["1000/4", f"4/{2 ** 40}", "64/4"])
def test_absurd_meters_are_refused_before_any_work(tmp_path, capsys, mix, no_heavy_work, meter):
    out = tmp_path / "o"
    err = one_line_error(capsys, ["generate", "bass", "--mix", str(mix), "--out", str(out), "--meter", meter])
    assert "not a time signature" in err
    err = one_line_error(capsys, ["generate", "drums", "--mix", str(mix), "--bpm", "120", "--out", str(out),
                                  "--meter", meter])
    assert "not a time signature" in err  # one meter parser for every engine command
    assert not out.exists()


def test_a_meter_the_bass_planner_cannot_play_is_refused_before_listening(tmp_path, capsys, mix, no_heavy_work):
    err = one_line_error(capsys, ["generate", "bass", "--mix", str(mix), "--out", str(tmp_path / "o"), "--meter", "32/4"])
    assert "cannot play in 32/4" in err


@pytest.mark.parametrize("tempo, meter, words", [
    (1, None, "60,000,000 BPM"),                 # 1 µs per quarter note
    (500_000, (200, 4), "200/4"),                # a MIDI numerator is one byte
    (500_000, (4, 2 ** 40), f"4/{2 ** 40}"),
])
def test_band_midi_with_an_absurd_tempo_or_meter_is_refused(tmp_path, capsys, mix, no_heavy_work, tempo, meter, words):
    midi = band_midi(tmp_path / "band.mid", tempo, meter)
    err = one_line_error(capsys, ["generate", "bass", "--mix", str(mix), "--out", str(tmp_path / "o"),
                                  "--band-midi", str(midi)])
    assert words in err and "--band-midi" in err


def test_the_host_ignores_an_absurd_meter_from_a_sidecar_or_the_daw(tmp_path):
    from backline.bridge.transport import Transport
    from backline.engines.core.timeline import Timeline
    from backline.host.capture import CaptureModel

    fallback = Timeline.constant(100.0, 44100)
    for signature in ([1000, 4], [4, 2 ** 40]):
        (tmp_path / "extras.json").write_text(json.dumps({"tempo_bpm": 120, "time_signature": signature}))
        timeline, from_file = CaptureModel._timeline_beside(tmp_path / "mix.wav", 44100, fallback)
        assert not from_file and (timeline.numerator, timeline.denominator) == (4, 4)
    transport = Transport(sample_rate=48000)
    transport.set_meter(1000, 4)
    transport.set_meter(4, 2 ** 40)
    assert (transport.snapshot().numerator, transport.snapshot().denominator) == (4, 4)


def test_accompaniment_without_a_mix_is_bounded(tmp_path, capsys, no_heavy_work):
    err = one_line_error(capsys, ["generate", "accompaniment", "--prompt", "piano", "--out", str(tmp_path / "o"),
                                  "--bars", "1-100000", "--bpm", "120"])
    assert "--mix is needed to play along" in err  # follow mode (the default) plays along to a band
    err = one_line_error(capsys, ["generate", "accompaniment", "--mode", "free", "--prompt", "piano",
                                  "--out", str(tmp_path / "o"), "--bars", "1-100000", "--bpm", "120"])
    assert "longer than the 10 minutes" in err and "--bars 1-300" in err


@pytest.mark.parametrize("command", [
    ["generate", "bass", "--mix", "MIX", "--variations", "1000"],
    ["generate", "drums", "--mix", "MIX", "--bpm", "120", "--variations", "1000"],
    ["generate", "accompaniment", "--prompt", "piano", "--mix", "MIX", "--variations", "1000"],
    ["generate", "bass", "--mix", "MIX", "--seed", str(10 ** 20)],
    ["generate", "drums", "--mix", "MIX", "--bpm", "120", "--seed", str(10 ** 20)],
    ["generate", "bass", "--mix", "MIX", "--seed", "-1"],
])
def test_take_counts_and_seeds_are_bounded(tmp_path, capsys, mix, no_heavy_work, command):
    args = [str(mix) if a == "MIX" else a for a in command] + ["--out", str(tmp_path / "o")]
    err = one_line_error(capsys, args)
    assert "out of range" in err and "use " in err


def test_the_engine_path_bounds_them_too(tmp_path):
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.takes import generate_and_write
    from backline.engines.core.timeline import Timeline

    for seed, variations in ((0, 1000), (10 ** 20, 1)):
        request = GenerationRequest("x", tmp_path / "o", Timeline.constant(120, 8000), seed=seed, variations=variations)
        with pytest.raises(BacklineError, match="out of range"):
            generate_and_write(object(), request)
    assert not (tmp_path / "o").exists()


# --- the take writer: SIGKILL, overwrite, signals during the links -------------------------------------------

WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from backline.engines.core import takes
    from backline.engines.core.audio import Audio
    from backline.engines.core.protocol import GenerationResult, Take

    out, level, overwrite, kill_at = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
    rate = 8000
    result = GenerationResult([Take(seed=1, stems={"x": Audio(np.full((2, rate), level, np.float32), rate)},
                                    midi=b"MThd-" + sys.argv[2].encode(), report={"level": level})], {"engine": "x"})
    if kill_at == "link":  # killed between the file links of the commit
        real_link = os.link
        calls = []
        def link(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real_link(src, dst)
        os.link = link
    elif kill_at == "staging":  # killed while the take's WAV is half written into the staging folder
        real_write = takes.write_audio
        def write_audio(path, audio, **kw):
            part = path.with_name("." + path.stem + ".abc.partial.wav")
            part.write_bytes(b"RIFF" + bytes(1000))
            os.kill(os.getpid(), signal.SIGKILL)
        takes.write_audio = write_audio
    takes.write_takes(result, out, overwrite=overwrite)
    print("done")
""")


def run_writer(out: Path, level: float, overwrite: bool, kill_at: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRITER, str(out), str(level), "1" if overwrite else "0", kill_at],
                          capture_output=True, text=True, env=ENV, timeout=120)


def take_level(out: Path) -> tuple[float, float, bytes]:
    """(level in the WAV, level in the JSON, the MIDI bytes): all three agree for a whole take."""
    return (round(float(read_audio(out / "x_seed1.wav").samples.mean()), 3),
            json.loads((out / "x_seed1.json").read_text())["level"], (out / "x_seed1.mid").read_bytes())


def test_sigkill_between_the_links_of_an_overwrite_is_finished_by_the_next_run(tmp_path):
    out = tmp_path / "o"
    assert run_writer(out, 0.1, False).returncode == 0
    assert take_level(out) == (0.1, 0.1, b"MThd-0.1")
    killed = run_writer(out, 0.2, True, "link")
    assert killed.returncode == -signal.SIGKILL
    # the kill left the swap half done: old files aside in the staging folder, a journal, the lock file
    staging = [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert len(staging) == 1 and (staging[0] / ".commit.json").is_file() and (out / LOCK_NAME).exists()
    with pytest.warns(BacklineWarning, match="finished a take"):
        with preflight(out):  # the next run into the folder, before it does anything else
            pass
    assert sorted(p.name for p in out.iterdir()) == ["x_seed1.json", "x_seed1.mid", "x_seed1.wav"]
    assert take_level(out) == (0.2, 0.2, b"MThd-0.2")  # the new take, whole; nothing mixed, nothing stranded


def test_sigkill_mid_run_leaves_staging_and_a_lock_that_the_next_run_cleans(tmp_path):
    out = tmp_path / "o"
    assert run_writer(out, 0.1, False).returncode == 0
    killed = run_writer(out, 0.2, True, "staging")
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert LOCK_NAME in leftovers and any(n.endswith(".partial.wav") for n in leftovers)
    assert (out / LOCK_NAME).read_text().strip().isdigit()  # the dead run's pid
    with preflight(out):  # the next run into the folder: the dead run's flock went with it
        assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert sorted(p.name for p in out.iterdir()) == ["x_seed1.json", "x_seed1.mid", "x_seed1.wav"]
    assert take_level(out) == (0.1, 0.1, b"MThd-0.1")  # the old take untouched, the leftovers gone


def test_a_signal_during_the_final_links_is_reported_truthfully(tmp_path, capsys, monkeypatch):
    """The links finish first (nothing partial); then the CLI says the take *was* written, not the opposite."""
    from backline.engines.drums.engine import DrumEngine

    midi = band_midi(tmp_path / "band.mid", quarters=8)
    real_link = os.link
    calls = []

    def link(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(DrumEngine, "generate", _tiny_drum_take)
    assert cli(["generate", "drums", "--band-midi", str(midi), "--out", str(tmp_path / "o"), "--config", "debug"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only after the take was complete" in err and "nothing" not in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["drums_seed0.json", "drums_seed0.mid",
                                                                   "drums_seed0.wav"]


def _tiny_drum_take(self, request, *, progress, cancel):
    result = small_result("drums", seed=request.seed)
    result.report["tracks"] = []
    return result


@pytest.mark.parametrize("command, sig", [
    (["generate", "bass", "--mix", "MIX", "--out", "OUT"], signal.SIGINT),
    (["generate", "drums", "--band-midi", "MIDI", "--out", "OUT"], signal.SIGINT),
    (["generate", "bass", "--mix", "MIX", "--out", "OUT"], signal.SIGTERM),
    (["generate", "drums", "--band-midi", "MIDI", "--out", "OUT"], signal.SIGTERM),
])
def test_ctrl_c_or_sigterm_in_the_first_second_is_one_line_and_130(tmp_path, mix, command, sig):
    midi = band_midi(tmp_path / "band.mid")
    args = [str(mix) if a == "MIX" else str(midi) if a == "MIDI" else str(tmp_path / "o") if a == "OUT" else a
            for a in command]
    proc = subprocess.Popen([sys.executable, "-m", "backline.host.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(0.8)  # python is up and importing torch and the engine: the heavy imports of the first seconds
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == "backline: cancelled; nothing partial was written\n", err
    assert not (tmp_path / "o").exists()


SIGNAL_INSIDE_AN_IMPORT = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from backline.host import cli
    cli._signals_cancel()
    try:
        import slow_native_start  # sends itself SIGTERM half-way, like a Ctrl+C during torch's C++ start-up
    except KeyboardInterrupt:
        print("interrupted inside the import")
        sys.exit(1)
    try:
        time.sleep(5)
    except KeyboardInterrupt:
        print("finished:", slow_native_start.FINISHED, "then interrupted")
        sys.exit(0)
    print("never interrupted")
""")


def test_a_signal_inside_an_import_waits_for_it_then_cancels(tmp_path):
    """A KeyboardInterrupt raised under torch's pybind11 start-up aborts the process (SIGABRT, no message): the
    CLI's handler lets the import under way finish, then the cancel lands."""
    (tmp_path / "slow_native_start.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(0.3)\nFINISHED = True\n")
    proc = subprocess.run([sys.executable, "-c", SIGNAL_INSIDE_AN_IMPORT, str(tmp_path)], capture_output=True,
                          text=True, env=ENV, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "finished: True then interrupted", proc.stdout + proc.stderr


# --- disks: full, read-only, under a file ------------------------------------------------------------------

FILL_AFTER_CHECKS = textwrap.dedent("""
    import os, resource, signal, sys
    import numpy as np
    from backline.engines.core.audio import Audio
    from backline.engines.core.errors import BacklineError
    from backline.engines.core.protocol import GenerationResult, Take
    from backline.engines.core.takes import preflight, write_takes

    out, limit = sys.argv[1], int(sys.argv[2])
    result = GenerationResult([Take(seed=1, stems={"x": Audio(np.full((2, 400000), 0.1, np.float32), 8000)})],
                              {"engine": "x"})
    with preflight(out, need_bytes=0) as lock:       # the checks pass ...
        if limit:                                    # ... then the disk fills (a real file-size limit)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        else:                                        # ... then the disk fills (a real tmpfs, all but 200 KB)
            free = os.statvfs(out).f_bavail * os.statvfs(out).f_frsize
            with open(os.path.join(out, "..", "filler"), "wb") as f:
                f.write(bytes(free - 200 * 1024))
        try:
            write_takes(result, out, lock=lock)
        except BacklineError as err:
            print(err)
""")


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_the_disk_filling_after_the_checks_is_one_line_and_leaves_the_folder_as_it_was(tmp_path, how):
    disk = tmp_path / "disk"
    with (tmpfs(disk, "24m") if how == "tmpfs" else contextlib.nullcontext(disk.mkdir() or disk)):
        out = disk / "o"
        out.mkdir()
        before = listing(out)
        proc = subprocess.run([sys.executable, "-c", FILL_AFTER_CHECKS, str(out), "0" if how == "tmpfs" else "500000"],
                              capture_output=True, text=True, env=ENV, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1 and "could not be written" in lines[0] and "nothing was written" in lines[0]
        assert listing(out) == before


def test_codec_roundtrip_and_analyze_out_to_a_path_under_a_file(tmp_path, capsys, mix, no_heavy_work):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    err = one_line_error(capsys, ["codec", "roundtrip", str(mix), str(blocker / "out.wav")])
    assert "cannot be written" in err and "is a file, not a folder" in err
    err = one_line_error(capsys, ["analyze", str(mix), "--out", str(blocker / "sub")])
    assert "is a file, not a folder" in err


def test_codec_roundtrip_and_analyze_out_to_a_read_only_or_full_disk(tmp_path, capsys, mix, no_heavy_work):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        err = one_line_error(capsys, ["codec", "roundtrip", str(mix), str(ro / "out.wav")])
        assert "Read-only file system" in err
        err = one_line_error(capsys, ["analyze", str(mix), "--out", str(ro / "report")])
        assert "read-only disk" in err
    with tmpfs(tmp_path / "full", "1m") as full:
        (full / "filler").write_bytes(bytes(1024 * 1024 - 64 * 1024))
        for args in (["codec", "roundtrip", str(mix), str(full / "out.wav")],
                     ["analyze", str(mix), "--out", str(full / "report")]):
            err = one_line_error(capsys, args)
            assert "MB free" in err
        assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_drums_take_size_is_estimated_from_the_band_midi(tmp_path):
    """A 19 s drum take (7.3 MB of float32 stereo) was refused on a disk with 100 MB free ("needs about 237 MB"):
    the estimate assumed 10 minutes. It now follows the MIDI's length."""
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.takes import estimate_bytes
    from backline.engines.core.timeline import Timeline

    midi = band_midi(tmp_path / "band.mid", quarters=38)  # 19 s at 120 BPM
    request = GenerationRequest("drums", tmp_path / "o", Timeline.constant(120, 48000), midi=midi)
    take = 19 * 48000 * 2 * 4
    assert take <= estimate_bytes(request) <= 2 * take
    with tmpfs(tmp_path / "disk", "100m") as disk:
        with preflight(disk / "o", need_bytes=estimate_bytes(request)):
            pass


# --- input files ---------------------------------------------------------------------------------------------

def test_a_truncated_flac_says_so_instead_of_the_mix_is_silent(tmp_path, capsys, mix):
    flac = write_audio(tmp_path / "mix.flac", read_audio(mix))
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 3])
    with pytest.raises(AudioFileError, match="truncated or corrupt"):
        read_audio(cut)
    err = one_line_error(capsys, ["generate", "bass", "--mix", str(cut), "--out", str(tmp_path / "o")])
    assert "truncated or corrupt" in err and "silent" not in err
    read_audio(flac)  # a whole FLAC reads


@pytest.mark.parametrize("reference", ["TEXT", "/etc/passwd"])
def test_a_reference_that_is_not_audio_is_refused(tmp_path, capsys, mix, no_heavy_work, reference):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    reference = str(text) if reference == "TEXT" else reference
    err = one_line_error(capsys, ["generate", "bass", "--mix", str(mix), "--out", str(tmp_path / "o"),
                                  "--reference", reference])
    assert "--reference is not an audio file" in err


def test_a_key_with_two_modes_is_refused(tmp_path, capsys, mix, no_heavy_work):
    err = one_line_error(capsys, ["generate", "bass", "--mix", str(mix), "--out", str(tmp_path / "o"),
                                  "--key", "C major minor"])
    assert "'C major minor' is not a key" in err


def test_a_weights_json_nested_200k_deep_is_one_line(tmp_path):
    from backline.engines.bass.engine import WEIGHTS_DIR, load_bass_model

    (tmp_path / "bass.safetensors").symlink_to(WEIGHTS_DIR / "bass.safetensors")
    (tmp_path / "bass.json").write_text('{"kind": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(WeightsError, match="nested too deeply") as err:
        load_bass_model(weights=tmp_path / "bass")
    assert "\n" not in str(err.value)


def test_write_takes_refuses_a_result_it_cannot_place_without_leaving_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        write_takes(small_result(), tmp_path / "file" / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- OSC: a flood of generate requests and of wide bundles ---------------------------------------------------

def _bundle(messages: list[bytes]) -> bytes:
    import struct

    return b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"".join(struct.pack(">i", len(m)) + m for m in messages)


def test_many_generate_messages_queue_one_job():
    import socket

    from backline.bridge.osc import OscBridge, encode_message, wait_for
    from backline.bridge.transport import Event, Transport

    transport = Transport(48000)
    asked = []
    transport.subscribe(Event.GENERATE, lambda snap, extra: asked.append(extra))
    with OscBridge(transport, dialect="reaper", port=0) as bridge:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        message = encode_message("/backline/generate", "bass")
        for _ in range(100):
            sock.sendto(message, ("127.0.0.1", bridge.port))
        sock.close()
        assert wait_for(lambda: bridge.stats["messages"] >= 100, 10.0), bridge.stats
    assert len(asked) == 1 and transport.generate_ignored == 99


def test_a_flood_of_wide_bundles_is_capped_and_gives_up_real_time_priority():
    import socket

    from backline.bridge.osc import (
        MAX_BUNDLE_MESSAGES,
        MAX_MESSAGES_PER_SECOND,
        OscBridge,
        encode_message,
        wait_for,
    )
    from backline.bridge.transport import Transport

    transport = Transport(48000)
    wide = _bundle([encode_message("/time", float(k)) for k in range(2000)])  # ~40 kB: 2,000 messages
    assert len(wide) < 65000
    bridge = OscBridge(transport, dialect="reaper", port=0)  # handle() is the receive path minus the socket
    bridge.handle(bytearray(wide), len(wide), 0.0)  # one wide bundle: only its first messages are applied
    assert bridge.stats["messages"] == MAX_BUNDLE_MESSAGES and bridge.stats["dropped"] == 1
    # a flood: past MAX_MESSAGES_PER_SECOND within one second the listener drops datagrams for the rest of
    # that second and gives up real-time priority (a SCHED_FIFO thread in a flood takes the core)
    bridge.scheduling = "SCHED_FIFO 10"
    assert not bridge._flooded(100.0)
    while bridge.stats["messages"] < MAX_MESSAGES_PER_SECOND + MAX_BUNDLE_MESSAGES:
        assert not bridge._flooded(100.5)
        bridge.handle(bytearray(wide), len(wide), 100.5)
    assert bridge._flooded(100.6) and bridge.scheduling == "normal"
    assert not bridge._flooded(101.7)  # the next second is handled again
    # and over a real socket: whatever arrives, each second handles a bounded number of messages
    with OscBridge(Transport(48000), dialect="reaper", port=0) as live:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        started = time.monotonic()
        for _ in range(200):
            sock.sendto(wide, ("127.0.0.1", live.port))
        sock.close()
        assert wait_for(lambda: live.stats["bundles"] + live.stats["dropped"] >= 200, 10.0), live.stats
        seconds = time.monotonic() - started
        assert live.stats["messages"] <= (seconds + 1) * (MAX_MESSAGES_PER_SECOND + MAX_BUNDLE_MESSAGES)


# --- the host's screenshots, training exports --------------------------------------------------------------

def test_host_screenshot_session_is_removed_again(tmp_path):
    """`--screenshot` / `--first-screen` without `--session` work in a temporary session (14 MB of takes after
    a screenshot run): it is gone when the command ends."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = ENV | {"TMPDIR": str(scratch), "BACKLINE_CONFIG": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-m", "backline.host.cli", "host", "--first-screen",
                           str(tmp_path / "first.png")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "first.png").stat().st_size > 1000
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["train", "drums", "--synth", "2", "--steps", "1", "--run", "RUN", "--export", "EXPORT"],
    ["train", "presence", "--corpus", "RUN", "--out", "EXPORT/presence"],
])
def test_train_export_to_an_existing_path_is_refused_before_training(tmp_path, capsys, command):
    export = tmp_path / "weights"
    export.mkdir()
    for name in ("seq2seq", "presence"):
        (export / f"{name}.safetensors").write_bytes(b"mine")
        (export / f"{name}.json").write_text("{}")
    before = listing(tmp_path)
    args = [str(tmp_path / "run") if a == "RUN" else a.replace("EXPORT", str(export)) for a in command]
    err = one_line_error(capsys, args)
    assert "already exists" in err and "--overwrite" in err
    assert listing(tmp_path) == before  # no run folder, no corpus, nothing trained
    # under a file: refused the same way
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [str(tmp_path / "run") if a == "RUN" else a.replace("EXPORT", str(blocker / "w")) for a in command]
    assert "is a file, not a folder" in one_line_error(capsys, args)


# --- benchmarks from a fresh clone -----------------------------------------------------------------------------

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_benchmarks_run_from_a_fresh_clone(tmp_path):
    """No script defaults to one machine's folder; every corpus is an argument or rendered by the script; one
    speed convention; bridge.py needs no pytest; a missing corpus folder is one line and exit 2."""
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 10
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        assert "/work/" not in text, f"{script.name} names a folder of one machine"
        if any(flag in text for flag in ('"--corpus"', '"--data"', '"--heldout"')):
            assert "corpus_or_render" in text, f"{script.name} takes a corpus but cannot render one"
        assert "RTF" not in text and "audio_s / t_" not in text, f"{script.name} prints the inverse speed"
    no_pytest = tmp_path / "no_pytest"
    (no_pytest / "pytest").mkdir(parents=True)
    (no_pytest / "pytest" / "__init__.py").write_text("raise ImportError('pytest is not installed here')\n")
    env = ENV | {"PYTHONPATH": str(no_pytest)}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bridge.py"), "--help"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0 and "--seconds" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, str(BENCHMARKS / "drums_eval.py"), "--data", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "corpus folder not found" in done.stderr



@pytest.mark.parametrize("module", ["backline.engines.bass.cli", "backline.engines.drums.cli",
                                    "backline.engines.accompany.cli", "backline.engines.separate.cli",
                                    "backline.engines.analysis.analyze_cli"])
def test_device_auto_everywhere(module):
    """`--device auto` (the default: CUDA when present) on every command that runs a model, from one helper."""
    import argparse
    import importlib

    from backline.engines import runner
    from backline.engines.core.protocol import resolve_device

    parser = argparse.ArgumentParser()
    runner.configure(parser, importlib.import_module(module))
    device = next(a for a in parser._actions if "--device" in a.option_strings)
    assert device.default == "auto"
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BacklineError, match="no CUDA GPU"):
            resolve_device("cuda")
