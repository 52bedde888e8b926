"""The app against bad input and the outside world: non-audio drops, broken presets, a full disk on export,
no sound card, the DAW over real OSC (status, region, generate, going silent) and the live loopback capture.

Each bad input must end in a clear message in the UI and lose no take.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PyQt6.QtGui import QDragEnterEvent, QDropEvent
from PyQt6.QtWidgets import QApplication
from pythonosc.udp_client import SimpleUDPClient
from test_host import WAIT_MS, capture_file, make_window, synthetic_mix, wait_ready

from backline.bridge.capture import LoopbackCapture
from backline.engines.core.audio import Audio, write_audio

SHARED_FIXTURES = (capture_file, make_window)  # from test_host, so pytest finds them here too


def drop(widget, path: Path) -> None:
    """Deliver a real drag-enter + drop of a file onto `widget`, as a file manager would."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(pos.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    event = QDropEvent(pos, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def generate_take(qtbot, window, engine: str = "sine"):
    window.show_engine(engine)
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        assert window.generate() is not None, window.message_bar.text()
    return added.args[0]


def test_dropping_files_that_are_not_audio(qtbot, make_window, capture_file, tmp_path):
    window = make_window()
    wait_ready(qtbot, window, "sine")
    well = window.panels["sine"].style_well
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording")
    drop(well, notes)
    assert "notes.txt is not an audio file" in window.message_bar.text() and window.message_bar.level == "error"
    assert well.path is None
    fake = tmp_path / "song.wav"
    fake.write_text("RIFF? no, just text")
    drop(well, fake)
    assert "song.wav" in window.message_bar.text() and "cannot be decoded" in window.message_bar.text()
    assert well.path is None
    drop(window.capture_view, notes)  # the capture refuses it too (decoded off the UI thread), keeps what it had
    qtbot.waitUntil(lambda: "Cannot use this as the capture" in window.message_bar.text(), timeout=30_000)
    assert window.capture.empty and "notes.txt" in window.message_bar.text()
    # a real recording is taken, and travels with the take
    reference = write_audio(tmp_path / "ref.flac", Audio(np.full((2, 4410), 0.1, np.float32), 44100))
    drop(well, reference)
    assert well.path == reference
    drop(window.capture_view, capture_file)  # a real recording dropped on the capture becomes the capture
    qtbot.waitUntil(lambda: not window.capture.empty, timeout=30_000)
    assert window.capture.path == capture_file and window.capture_view.peaks.size
    window.select_bars(1, 1)
    record = generate_take(qtbot, window)
    assert record.status == "ok" and record.reference == str(reference)


def test_broken_presets_are_skipped_with_a_message(qtbot, make_window, capture_file, tmp_path):
    folder = tmp_path / "presets" / "sine"
    folder.mkdir(parents=True)
    write_audio(folder / "warm.wav", Audio(np.full((1, 8000), 0.2, np.float32), 8000))
    (folder / "warm.toml").write_text('name = "warm"\ntitle = "Warm sine"\nengine = "sine"\nreference = "warm.wav"\n'
                                      '[controls]\nsteps = 3\noctave = "high"\n')
    (folder / "broken.toml").write_text('name = "broken\nengine = sine')
    (folder / "lost.toml").write_text('name = "lost"\nengine = "sine"\nreference = "gone.flac"\n')
    window = make_window(presets=[tmp_path / "presets"])
    wait_ready(qtbot, window, "sine")
    browser = window.panels["sine"].preset_browser
    assert [p.name for p in browser.presets] == ["warm"]
    assert any("broken.toml skipped" in p and "not valid TOML" in p for p in browser.problems)
    assert any("lost.toml skipped" in p and "missing" in p for p in browser.problems)
    assert browser.list.count() == 3  # the good one plus a visible line per skipped file
    browser.list.setCurrentRow(0)
    panel = window.panels["sine"]
    assert panel.widgets["steps"].value() == 3 and panel.widgets["octave"].currentText() == "high"
    # audition with no sound card: a clear message, nothing else happens
    browser.audition.click()
    assert "no audio output device" in window.message_bar.text()
    window.load_capture_file(capture_file)
    window.select_bars(1, 1)
    record = generate_take(qtbot, window)
    assert record.preset == "warm" and record.controls["steps"] == 3
    window.play_take(record.id, with_mix=True)
    assert "no audio output device" in window.message_bar.text()


def _tiny_filesystem(path: Path) -> bool:
    """Mount a 64 KiB tmpfs at `path` (needs root); False where that is not allowed."""
    path.mkdir()
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_export_to_a_full_disk_loses_nothing(qtbot, make_window, capture_file, tmp_path, monkeypatch):
    window = make_window()
    wait_ready(qtbot, window, "sine")
    window.load_capture_file(capture_file)
    window.select_bars(1, 4)  # 8 s of float WAV: far more than 64 KiB
    window.panels["sine"].widgets["parts"].setValue(2)
    record = generate_take(qtbot, window)
    chips = window.cards[record.id].chips
    assert set(chips) == {"wav:sine", "wav:octave1", "midi"}  # one chip per stem
    dragged = {Path(c.mime_data().urls()[0].toLocalFile()) for k, c in chips.items() if k.startswith("wav")}
    assert len(dragged) == 2 and all(p.stat().st_size > 1000 for p in dragged)
    stem = window.store.stem_path(record)
    before = stem.read_bytes()
    full = tmp_path / "full"
    mounted = _tiny_filesystem(full)
    try:
        if not mounted:  # not root: make the copy fail the way a full disk does
            import backline.host.history as history

            def no_space(src, dst, **kwargs):
                Path(dst).write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(history.shutil, "copyfile", no_space)
        assert window.export_takes(full / "My takes") is None
        assert "disk is full" in window.message_bar.text() and window.message_bar.level == "error"
        assert "takes are safe" in window.message_bar.text()
        assert list(full.iterdir()) == []  # no half-written export left behind
    finally:
        if mounted:
            subprocess.run(["umount", str(full)], check=False)
        monkeypatch.undo()
    assert stem.read_bytes() == before and window.store.get(record.id).status == "ok"
    out = window.export_takes(tmp_path / "exported")
    assert out is not None
    folder = next(out.iterdir())
    assert (folder / "take.json").exists() and json.loads((folder / "take.json").read_text())["seed"] == record.seed
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".mid", ".wav", ".wav"]
    assert window.export_takes(tmp_path / "exported") is None  # never overwrites an export
    assert "already exists" in window.message_bar.text()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daw_over_osc_status_region_generate_and_disconnect(qtbot, make_window, tmp_path):
    window = make_window()
    wait_ready(qtbot, window, "sine")
    window.load_capture_file(synthetic_mix(tmp_path / "mix.wav", bars=8))  # no tempo of its own: the DAW's applies
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:  # another program holds the port
        busy.bind(("127.0.0.1", 0))
        assert not window.daw.start("auto", "127.0.0.1", busy.getsockname()[1], free_udp_port())
    assert "DAW link is off" in window.message_bar.text() and "cannot listen" in window.message_bar.text()
    port = free_udp_port()
    window.daw.transport.silence_timeout = 1.0
    assert window.daw.start("auto", "127.0.0.1", port, free_udp_port())
    daw = SimpleUDPClient("127.0.0.1", port)  # plays REAPER: its default OSC pattern
    daw.send_message("/tempo/raw", 100.0)
    daw.send_message("/play", 1.0)
    daw.send_message("/time", 4.8)
    qtbot.waitUntil(lambda: window.daw_name.text() == "REAPER" and "Playing" in window.daw_state.text(),
                    timeout=30_000)
    assert "100.0 BPM" in window.daw_detail.text()
    qtbot.waitUntil(lambda: window.position.text().startswith("3."), timeout=30_000)  # 4.8 s at 100 BPM = bar 3
    assert window.capture.timeline.bpm == pytest.approx(100.0)  # the DAW's tempo lays the bars on the capture
    heartbeat = QTimer()  # the DAW keeps talking while a take is made
    heartbeat.timeout.connect(lambda: daw.send_message("/play", 1.0))
    heartbeat.start(200)
    window.select_bars(1, 1)
    earlier = generate_take(qtbot, window)
    assert window.daw.connected
    window.play_take(earlier.id)  # in sync with the DAW: the bridge's return path, but no sound card here
    assert "no audio output for in-sync audition" in window.message_bar.text()
    heartbeat.stop()
    # the DAW goes quiet: say so, keep everything
    qtbot.waitUntil(lambda: "Lost contact with REAPER" in window.message_bar.text(), timeout=30_000)
    assert window.message_bar.level == "warning" and not window.capture.empty
    # the DAW's time selection and a generate request from a helper script
    daw.send_message("/backline/region", [2.4, 7.2])  # seconds: bars 2-3 at 100 BPM
    qtbot.waitUntil(lambda: window.selection() == (2, 3), timeout=30_000)
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        daw.send_message("/backline/generate", "sine")
    record = added.args[0]
    assert record.engine == "sine" and record.bars == (2, 3) and record.status == "ok"
    assert window.tabs.currentWidget() is window.panels["sine"]


def test_live_loopback_capture_feeds_the_waveform_and_the_engines(qtbot, make_window, monkeypatch):
    """A real `LoopbackCapture` ring, fed block by block as PortAudio would (no sound card here)."""
    import backline.host.daw as daw_module

    monkeypatch.setattr(daw_module, "DISPLAY_SECONDS", 3.0)  # the waveform shows the newest 3 s of 6
    window = make_window()
    wait_ready(qtbot, window, "sine")
    transport = window.daw.transport
    sr = transport.sample_rate
    capture = LoopbackCapture(transport, seconds=30.0)
    block, t0 = 512, time.monotonic()
    bar = transport.timeline.bar_to_samples(2)
    frames = 3 * bar  # the DAW plays bars 1-3 once
    for k in range(-(-frames // block)):
        x = 0.3 * np.sin(2 * np.pi * 110 * (np.arange(block) + k * block) / sr, dtype=np.float64)
        capture.ring.write(np.stack([x, x], 1).astype(np.float32), k * block, True, t0 + k * block / sr)
    window.daw.attach_capture(capture)
    qtbot.waitUntil(lambda: window.capture.live, timeout=30_000)
    span = window.capture.span
    assert span[0] == 0 and span[1] >= frames  # the whole pass (rounded up to whole blocks)
    assert window.capture.origin == span[1] - 3 * sr and window.capture.audio.frames == 3 * sr  # display copy
    assert (window.capture.first_bar(), window.capture.last_bar()) == (1, 3)  # all the ring holds
    assert "live" in window.capture_source.text()
    qtbot.waitUntil(lambda: window.meter.level_db > -20, timeout=30_000)  # the level meter reads the ring
    window.select_bars(1, 2)  # bar 1 is older than the display copy: read from the ring itself
    record = generate_take(qtbot, window)
    assert record.status == "ok" and window.capture.last_coverage == pytest.approx(1.0)
    assert record.region_start == 0 and record.sample_rate == sr
    window.play_take(record.id, with_mix=True)  # the mix under the take is read from the ring; no sound card
    assert "no audio output device" in window.message_bar.text()
    # bars the DAW never played are refused with the captured range named, not generated from silence
    window.capture_view.set_selection(3, 5)
    assert window.generate() is None and "outside the captured audio (bars 1–3)" in window.message_bar.text()
