"""The desktop app, driven like a musician would: select bars, generate, watch progress, cancel, get a take,
drag it out, restart and find it again — plus the worker dying mid-job and the app carrying on.

Runs headless (QT_QPA_PLATFORM=offscreen, set in conftest) with pytest-qt. The main flow uses the real bass
engine's debug config; cancel and crash use the test engines of tests/test_jobs_engines.py. Screenshots of
the main states go to $BACKLINE_SCREENSHOTS (default tests/screenshots/, which git ignores).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import test_jobs_engines
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtWidgets import QApplication, QToolButton

from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.registry import available_engines
from backline.host.history import SessionStore
from backline.host.mainwindow import MainWindow
from backline.host.settings import HostSettings
from backline.host.takecard import PendingCard, TakeCard

WAIT_MS = 180_000  # generous: a loaded 2-core CI machine; nothing here asserts on time
SHOTS = Path(os.environ.get("BACKLINE_SCREENSHOTS") or Path(__file__).parent / "screenshots")


def synthetic_mix(path: Path, bars: int = 12, bpm: float = 120.0, sr: int = 44100) -> Path:
    """A drum-and-bass-ish loop, for when the demo song is not installed."""
    rng = np.random.default_rng(0)
    n = int(bars * 4 * 60 / bpm * sr)
    t = np.arange(n) / sr
    beat = (t * bpm / 60) % 1
    kick = 0.6 * np.exp(-beat * 25) * np.sin(2 * np.pi * 55 * t)
    hat = 0.08 * rng.standard_normal(n) * np.exp(-((t * bpm / 30) % 1) * 60)
    chord = 0.12 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.6 + 0.4 * np.cos(2 * np.pi * t / 4))
    x = (kick + hat + chord).astype(np.float32)
    return write_audio(path, Audio(np.stack([x, 0.95 * x]), sr))


@pytest.fixture(scope="module")
def capture_file(tmp_path_factory) -> Path:
    """The demo song's mix when the corpus helper ships it, else a synthetic loop."""
    try:
        from backline.host.app import demo_mix

        return demo_mix()
    except Exception:
        return synthetic_mix(tmp_path_factory.mktemp("mix") / "mix.wav")


@pytest.fixture()
def make_window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKLINE_CONFIG", str(tmp_path / "config"))
    test_jobs_engines.register()
    windows = []

    def make(session: Path | None = None, presets: list[Path] | None = None, engine: str = "sine",
             **kwargs) -> MainWindow:
        settings = HostSettings(session_dir=str(session or tmp_path / "session"), engine_config="debug",
                                engine_device="cpu", last_engine=engine)
        window = MainWindow(settings, settings_path=tmp_path / "config" / "host.json", connect_daw=False,
                            preset_folders=presets, **kwargs)
        qtbot.addWidget(window)
        window.resize(1280, 800)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
    test_jobs_engines.unregister()


def wait_ready(qtbot, window: MainWindow, engine: str) -> None:
    window.show_engine(engine)  # engines load when their tab is opened
    qtbot.waitUntil(lambda: window.panels[engine].ready, timeout=WAIT_MS)


def shot(window: MainWindow, name: str) -> Path:
    window.centralWidget().layout().activate()  # a message bar just hidden gives its room back first
    QApplication.processEvents()
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    assert window.grab().save(str(path))
    assert path.stat().st_size > 10_000  # a real rendering, not an empty image
    return path


def drag_select(qtbot, window: MainWindow, first: int, last: int) -> None:
    """Press on bar `first`, move to bar `last`, release — as a musician drags across the waveform."""
    view = window.capture_view
    y = view.height() // 2
    x0 = int((view.bar_x(first) + view.bar_x(first + 1)) / 2)
    x1 = int((view.bar_x(last) + view.bar_x(last + 1)) / 2)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(x0, y))
    qtbot.mouseMove(view, QPoint((x0 + x1) // 2, y))
    qtbot.mouseMove(view, QPoint(x1, y))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(x1, y))


def cards(window: MainWindow, kind=TakeCard) -> list:
    layout = window.takes_layout
    return [layout.itemAt(i).widget() for i in range(layout.count())
            if isinstance(layout.itemAt(i).widget(), kind)]


@pytest.mark.skipif("bass" not in available_engines(), reason="the bass engine is not installed")
def test_generate_with_the_bass_engine_drag_out_and_restart(qtbot, make_window, capture_file, tmp_path):
    window = make_window(engine="bass")
    wait_ready(qtbot, window, "bass")
    window.show_engine("bass")
    panel = window.panels["bass"]
    assert panel.preset_browser is not None and panel.preset_browser.presets  # presets/bass/*.toml
    assert panel.preset_browser.current().name == "finger"  # the engine's default preset
    assert panel.style_well is not None  # the 'reference' audio control
    assert {"steps", "cfg", "rescale"} <= set(panel.widgets)  # built from describe()
    panel.widgets["steps"].setValue(2)  # debug engine, tiny run
    panel.widgets["mode"].setCurrentText("free")  # the diffusion path: steps to watch (follow mode takes ~0.3 s)
    window.message_bar.hide()
    shot(window, "01-empty.png")

    assert window.load_capture_file(capture_file), window.message_bar.text()
    drag_select(qtbot, window, 2, 3)
    assert window.selection() == (2, 3)
    assert (window.first_bar.value(), window.last_bar.value()) == (2, 3)
    window.message_bar.hide()
    shot(window, "02-capture-selection.png")

    progress: list[float] = []
    window.jobProgress.connect(lambda job, f: progress.append(f))
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
        assert window.progress.isVisible() and cards(window, PendingCard)
        qtbot.waitUntil(lambda: any(0.25 <= f < 1 for f in progress), timeout=WAIT_MS)
        shot(window, "03-generating.png")
    record = added.args[0]
    assert record.status == "ok", record.error
    assert progress == sorted(progress)
    assert not window.progress.isVisible() and not cards(window, PendingCard)

    # the take: audio exactly covering bars 2-3 of the capture, MIDI, settings saved with it
    timeline = window.capture.timeline
    start, stop = timeline.bar_range_to_samples(2, 3)
    stem = window.store.stem_path(record)
    audio = read_audio(stem)
    assert record.start_sample == start and record.bars == (2, 3)
    assert abs(audio.frames * timeline.sample_rate / audio.sample_rate - (stop - start)) <= 2
    assert record.controls["steps"] == 2 and record.preset == "finger"
    card = window.cards[record.id]
    qtbot.waitUntil(card.isVisible, timeout=10_000)
    assert set(card.chips) == {"wav", "midi"}
    window.message_bar.hide()
    shot(window, "04-take.png")

    # drag the WAV chip: the file is written into the session folder before the drag starts
    chip = card.chips["wav"]
    centre = chip.rect().center()
    with qtbot.waitSignal(chip.dragStarted, timeout=10_000) as started:
        qtbot.mousePress(chip, Qt.MouseButton.LeftButton, pos=centre)
        qtbot.mouseMove(chip, centre + QPoint(40, 12))
    urls = started.args[0].urls()
    dragged = Path(urls[0].toLocalFile())
    assert urls[0].isLocalFile() and dragged.exists() and dragged.stat().st_size > 1000
    assert dragged.parent == window.store.root / "drag" and dragged.suffix == ".wav"
    assert read_audio(dragged).frames == audio.frames
    midi = Path(card.chips["midi"].mime_data().urls()[0].toLocalFile())
    assert midi.suffix == ".mid" and midi.read_bytes()[:4] == b"MThd"

    # history survives a restart: a new window on the same session shows the take, files and settings
    session = window.store.root
    window.close()
    again = make_window(session=session)
    assert record.id in again.cards and set(again.cards[record.id].chips) == {"wav", "midi"}
    back = again.store.get(record.id)
    assert (back.stems, back.midi, back.seed, back.controls, back.bars, back.preset, back.start_sample) == \
        (record.stems, record.midi, record.seed, record.controls, record.bars, record.preset, record.start_sample)


def test_cancel_a_running_take(qtbot, make_window, capture_file):
    window = make_window()
    wait_ready(qtbot, window, "sine")
    window.show_engine("sine")
    panel = window.panels["sine"]
    panel.widgets["steps"].setValue(200)
    panel.widgets["step_seconds"].set_value(0.05)  # 10 s unless cancelled
    window.load_capture_file(capture_file)
    window.select_bars(1, 2)
    progress: list[float] = []
    window.jobProgress.connect(lambda job, f: progress.append(f))
    job = window.generate()
    assert job is not None
    out_dir = window.active[job].out_dir
    qtbot.waitUntil(lambda: bool(progress), timeout=WAIT_MS)
    qtbot.keyClick(window, Qt.Key.Key_Escape)  # the Cancel shortcut
    qtbot.waitUntil(lambda: not window.active, timeout=WAIT_MS)
    assert "cancelled" in window.message_bar.text()
    assert not cards(window, PendingCard) and not window.store.takes
    assert not out_dir.exists()  # nothing written, not even the take's folder
    assert not window.progress.isVisible()


def test_worker_crash_mid_job_shows_on_the_take_and_the_app_recovers(qtbot, make_window, capture_file):
    window = make_window(engine="crash")
    wait_ready(qtbot, window, "crash")
    window.load_capture_file(capture_file)
    window.select_bars(1, 1)
    window.show_engine("crash")
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Generate shortcut
    failed = added.args[0]
    assert failed.status == "error" and "died" in failed.error and "Regenerate" in failed.error
    assert "died" in window.message_bar.text() and window.message_bar.level == "error"
    assert window.jobs.worker.restarts == 1
    assert cards(window)[0].take.id == failed.id and cards(window)[0].property("status") == "error"
    # the restarted worker describes the engines again and generates
    wait_ready(qtbot, window, "sine")
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        window.generate()
    assert added.args[0].status == "ok"
    # the failed take is in the history too, and survives a restart of the store
    store = SessionStore(window.store.root).load()
    assert [t.status for t in store.takes] == ["error", "ok"]
    # an engine that raises is an error on its take, not a crash: the worker stays up
    wait_ready(qtbot, window, "broken")
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        window.generate()
    assert "ZeroDivisionError" in added.args[0].error and window.jobs.worker.restarts == 1


@pytest.mark.skipif("accompany" not in available_engines(), reason="the accompaniment engine is not installed")
def test_accompaniment_tab_prompt_chips_and_a_drag_chip_per_stem(qtbot, make_window, capture_file):
    window = make_window(engine="accompany")
    wait_ready(qtbot, window, "accompany")
    panel = window.panels["accompany"]
    prompt = panel.widgets["prompt"]
    assert prompt.text() == "piano" and {"mode", "steps", "alpha", "beta", "gamma"} <= set(panel.widgets)
    assert prompt.completer() is not None  # the known labels are offered while typing
    chips = {b.text(): b for b in panel.findChildren(QToolButton, "Chip")}
    assert {"piano", "electric piano", "acoustic guitar", "strings", "pad"} <= set(chips) and chips["piano"].isChecked()
    chips["strings"].click()  # a chip adds its instrument in the list's order ...
    assert prompt.text() == "piano, strings"
    prompt.setText("piano, strings, pad")  # ... and typing checks the chips
    assert chips["pad"].isChecked()
    chips["pad"].click()
    assert prompt.text() == "piano, strings"
    prompt.setText("bass, piano")  # separation takes the model's role labels
    panel.widgets["mode"].setCurrentText("separate")
    panel.widgets["steps"].setValue(2)
    assert window.load_capture_file(capture_file), window.message_bar.text()
    drag_select(qtbot, window, 2, 3)
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    record = added.args[0]
    assert record.status == "ok", record.error
    card = window.cards[record.id]
    qtbot.waitUntil(card.isVisible, timeout=10_000)
    assert {"wav:bass", "wav:piano"} <= set(card.chips)  # one drag chip per stem
    timeline = window.capture.timeline
    start, stop = timeline.bar_range_to_samples(2, 3)
    for rel in record.stems.values():
        audio = read_audio(window.store.absolute(rel))
        assert abs(audio.frames * timeline.sample_rate / audio.sample_rate - (stop - start)) <= 2
    window.message_bar.hide()
    shot(window, "05-accompaniment-take.png")
