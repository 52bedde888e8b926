"""The main window: DAW status, capture, engine tabs, Generate, and the takes.

Everything slow happens elsewhere: generation in the engine worker process (`JobClient`), OSC on the bridge's
thread (`DawLink`), playback in PortAudio's callback thread. The UI thread only moves small messages and
paints, so it never freezes.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backline.bridge.timeline import Timeline
from backline.engines.audio import read_audio
from backline.engines.errors import BacklineError
from backline.engines.protocol import GenerationRequest, available_engines
from backline.host import theme
from backline.host.capture import CaptureModel
from backline.host.daw import DawLink
from backline.host.history import SessionStore, TakeRecord
from backline.host.jobclient import JobClient
from backline.host.panels import EnginePanel
from backline.host.player import Player, mix_against
from backline.host.presets import builtin_preset_dir
from backline.host.settings import HostSettings, SettingsDialog, config_dir
from backline.host.takecard import PendingCard, TakeCard, empty_takes_hint
from backline.host.widgets import CaptureView, LevelMeter, MessageBar

ENGINE_TITLES = {"bass": "Bass", "accompany": "Accompaniment", "drums": "Drums"}
TAB_ORDER = ("bass", "accompany", "drums")
NOT_TABS = ("analysis",)
MAX_CARDS = 40


@dataclass
class Job:
    """A job in flight and the settings that made it (saved with every take it yields)."""

    job_id: str
    engine: str
    title: str
    values: dict[str, Any]
    seed: int
    variations: int
    bars: tuple[int, int]
    region: tuple[int, int]
    timeline: Timeline
    out_dir: Path
    card: PendingCard
    started: float = field(default_factory=time.monotonic)
    fraction: float = 0.0


def _label(text: str, name: str = "") -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    return label


class MainWindow(QMainWindow):
    takeAdded = pyqtSignal(object)  # TakeRecord
    jobProgress = pyqtSignal(str, float)
    fileLoaded = pyqtSignal(int, object)  # load ticket, (path, audio, timeline, from_file, peaks) | BacklineError

    def __init__(self, settings: HostSettings, *, settings_path: Path | None = None, engine_config: str | None = None,
                 engine_device: str | None = None, connect_daw: bool = True,
                 preset_folders: list[Path] | None = None) -> None:
        super().__init__()
        theme.apply_once()
        self.settings = settings
        self.settings_path = settings_path
        self.setWindowTitle("Backline")
        self.resize(1280, 800)
        self.setMinimumSize(1024, 680)
        self.preset_folders = preset_folders if preset_folders is not None else \
            [p for p in (builtin_preset_dir(), config_dir() / "presets") if p is not None]
        self.store = SessionStore(settings.session_dir)
        self.capture = CaptureModel(self)
        self.daw = DawLink(self)
        self.jobs = JobClient(config=engine_config or settings.engine_config,
                              device=engine_device or settings.engine_device, parent=self)
        self.player = Player(settings.output_device)
        self.active: dict[str, Job] = {}
        self.cards: dict[str, TakeCard] = {}
        self.selected_take: str | None = None
        self.panels: dict[str, EnginePanel] = {}
        self.worker_text = "starting…"
        self._build()
        self._actions()
        self._wire()
        try:
            self.store.load()
            if self.store.warning:
                self.show_message("warning", self.store.warning)
        except BacklineError as err:
            self.show_message("error", str(err))
        self._load_history()
        self.jobs.start()
        self.tabs.currentChanged.connect(self._tab_changed)
        self.show_engine(settings.last_engine if settings.last_engine in self.panels else next(iter(self.panels)))
        self._tab_changed()
        self._live_pending: tuple | None = None
        if connect_daw:
            self.daw.start(settings.dialect, settings.osc_host, settings.osc_port, settings.daw_port)
            self.daw.start_capture(settings.input_device, settings.capture_minutes)
        self._update_daw(self.daw.snapshot())
        self._update_engine_info()

    # ------------------------------------------------------------------------------------------------------
    # building
    # ------------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(10, 8, 10, 6)
        root.setSpacing(8)
        root.addWidget(self._build_header())
        self.message_bar = MessageBar()
        root.addWidget(self.message_bar)
        root.addWidget(self._build_capture(), 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        split.addWidget(self._build_engines())
        split.addWidget(self._build_takes())
        split.setSizes([500, 760])
        root.addWidget(split, 7)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Ready")

    def _build_header(self) -> QFrame:
        header = QFrame()
        header.setObjectName("Header")
        row = QHBoxLayout(header)
        row.setContentsMargins(14, 6, 14, 6)
        row.setSpacing(18)
        title = QVBoxLayout()
        title.setSpacing(0)
        title.addWidget(_label("BACKLINE", "Title"))
        title.addWidget(_label("the rest of the band", "Dim"))
        row.addLayout(title)
        row.addWidget(self._vline())
        # DAW
        daw = QVBoxLayout()
        daw.setSpacing(2)
        daw.addWidget(_label("DAW", "Section"))
        line = QHBoxLayout()
        self.daw_dot = _label("●")
        line.addWidget(self.daw_dot)
        self.daw_name = _label("", "Value")
        line.addWidget(self.daw_name)
        self.daw_state = _label("", "Dim")
        line.addWidget(self.daw_state)
        line.addStretch(1)
        daw.addLayout(line)
        self.daw_detail = _label("", "Dim")
        daw.addWidget(self.daw_detail)
        row.addLayout(daw, 3)
        pos = QVBoxLayout()
        pos.setSpacing(2)
        pos.addWidget(_label("POSITION", "Section"))
        self.position = _label("–.–.–", "Big")
        pos.addWidget(self.position)
        row.addLayout(pos, 2)
        row.addWidget(self._vline())
        # input
        inp = QVBoxLayout()
        inp.setSpacing(3)
        inp.addWidget(_label("INPUT", "Section"))
        self.input_name = _label("", "Value")
        inp.addWidget(self.input_name)
        self.meter = LevelMeter()
        inp.addWidget(self.meter)
        row.addLayout(inp, 3)
        row.addWidget(self._vline())
        # engine
        eng = QVBoxLayout()
        eng.setSpacing(2)
        eng.addWidget(_label("ENGINE", "Section"))
        self.engine_device = _label("", "Value")
        eng.addWidget(self.engine_device)
        self.engine_weights = _label("", "Dim")
        eng.addWidget(self.engine_weights)
        row.addLayout(eng, 3)
        settings = QToolButton()
        settings.setText("⚙ Settings")
        settings.setToolTip("DAW, audio, session folder and engine settings (Ctrl+,)")
        settings.clicked.connect(self.open_settings)
        row.addWidget(settings)
        return header

    def _vline(self) -> QFrame:
        line = QFrame()
        line.setFrameShape(QFrame.Shape.VLine)
        line.setStyleSheet(f"color: {theme.BORDER}; background: {theme.BORDER}; max-width: 1px;")
        return line

    def _build_capture(self) -> QFrame:
        panel = QFrame()
        panel.setObjectName("Panel")
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(12, 8, 12, 10)
        layout.setSpacing(6)
        row = QHBoxLayout()
        row.addWidget(_label("CAPTURE", "Section"))
        self.capture_source = _label("nothing captured yet", "Dim")
        row.addWidget(self.capture_source, 1)
        row.addWidget(_label("Tempo", "Dim"))
        self.bpm = QDoubleSpinBox()
        self.bpm.setRange(20.0, 400.0)
        self.bpm.setDecimals(1)
        self.bpm.setSuffix(" BPM")
        self.bpm.setValue(120.0)
        self.bpm.setToolTip("Tempo of the captured audio (set by the DAW when it is connected)")
        row.addWidget(self.bpm)
        row.addSpacing(12)
        row.addWidget(_label("Bars", "Dim"))
        self.first_bar = QSpinBox()
        self.first_bar.setRange(1, 9999)
        self.last_bar = QSpinBox()
        self.last_bar.setRange(1, 9999)
        row.addWidget(self.first_bar)
        row.addWidget(_label("–", "Dim"))
        row.addWidget(self.last_bar)
        load = QPushButton("Load audio…")
        load.setToolTip("Use an audio file as the captured mix (Ctrl+O)")
        load.clicked.connect(self.choose_capture_file)
        row.addWidget(load)
        layout.addLayout(row)
        self.capture_view = CaptureView()
        self.capture_view.setMaximumHeight(170)
        layout.addWidget(self.capture_view, 1)
        heard = QHBoxLayout()  # what was heard in the mix, and the chord lane the musician can correct
        self.heard = _label("", "Dim")
        self.heard.setToolTip("Tempo, bar one and key heard in the loaded mix (the DAW's tempo wins when connected)")
        heard.addWidget(self.heard)
        heard.addWidget(_label("Chords", "Dim"))
        self.chord_lane = QLineEdit()
        self.chord_lane.setPlaceholderText("one bar per |, e.g. D | G A | Bm | G A7 — heard when a mix is loaded")
        self.chord_lane.setToolTip("The chords per bar the bass follows. Edit to correct what was heard; "
                                   "clear it to go back to the heard chords.")
        heard.addWidget(self.chord_lane, 1)
        layout.addLayout(heard)
        return panel

    def _build_engines(self) -> QFrame:
        panel = QFrame()
        panel.setObjectName("Panel")
        panel.setMinimumWidth(400)
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(8, 8, 8, 8)
        self.tabs = QTabWidget()
        # a tab per engine this install has (an engine still being written, e.g. accompany, shows up once its
        # module exists); test-only engines appear only when a test registers them
        present = set(available_engines())
        names = [n for n in TAB_ORDER if n in present] + sorted(n for n in present
                                                                if n not in TAB_ORDER and n not in NOT_TABS)
        for name in names:
            panel_widget = EnginePanel(name, ENGINE_TITLES.get(name, name.title()))
            panel_widget.message.connect(self.show_message)
            panel_widget.auditionRequested.connect(self.audition_preset)
            self.panels[name] = panel_widget
            self.tabs.addTab(panel_widget, panel_widget.title)
        layout.addWidget(self.tabs, 1)
        # generate bar
        bar = QHBoxLayout()
        bar.addWidget(_label("Seed", "Dim"))
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(random.randrange(1, 100000))
        self.seed.setFixedWidth(96)
        bar.addWidget(self.seed)
        dice = QToolButton()
        dice.setText("⚄")
        dice.setToolTip("New random seed")
        dice.clicked.connect(lambda: self.seed.setValue(random.randrange(1, 100000)))
        bar.addWidget(dice)
        bar.addWidget(_label("Variations", "Dim"))
        self.variations = QSpinBox()
        self.variations.setRange(1, 8)
        self.variations.setFixedWidth(56)
        bar.addWidget(self.variations)
        bar.addStretch(1)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("Generate")
        self.generate_button.setMinimumWidth(124)
        self.generate_button.setToolTip("Generate for the selected bars (Ctrl+Return, or /backline/generate)")
        self.generate_button.clicked.connect(self.generate)
        bar.addWidget(self.generate_button)
        layout.addLayout(bar)
        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        prog.addWidget(self.progress, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("Danger")
        self.cancel_button.setToolTip("Cancel the running take (Esc)")
        self.cancel_button.clicked.connect(self.cancel_current)
        prog.addWidget(self.cancel_button)
        layout.addLayout(prog)
        self._set_progress_visible(False)
        return panel

    def _build_takes(self) -> QFrame:
        panel = QFrame()
        panel.setObjectName("Panel")
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(10, 8, 10, 8)
        row = QHBoxLayout()
        row.addWidget(_label("TAKES", "Section"))
        self.take_count = _label("", "Dim")
        row.addWidget(self.take_count, 1)
        self.session_label = _label("", "Dim")
        row.addWidget(self.session_label)
        export = QPushButton("Export…")
        export.setToolTip("Copy the takes (audio, MIDI, settings) into a new folder (Ctrl+E)")
        export.clicked.connect(self.choose_export)
        row.addWidget(export)
        layout.addLayout(row)
        self.takes_scroll = QScrollArea()
        self.takes_scroll.setWidgetResizable(True)
        self.takes_scroll.setFrameShape(QFrame.Shape.NoFrame)
        holder = QWidget()
        self.takes_layout = QVBoxLayout(holder)
        self.takes_layout.setContentsMargins(0, 0, 4, 0)
        self.takes_layout.setSpacing(8)
        self.takes_hint = empty_takes_hint()
        self.takes_layout.addWidget(self.takes_hint)
        self.takes_layout.addStretch(1)
        self.takes_scroll.setWidget(holder)
        layout.addWidget(self.takes_scroll, 1)
        return panel

    def _actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        gen_menu = menu.addMenu("&Generate")
        view_menu = menu.addMenu("&View")
        help_menu = menu.addMenu("&Help")

        def act(m, text: str, slot, shortcut: str | QKeySequence.StandardKey | None = None) -> QAction:
            action = QAction(text, self)
            if shortcut is not None:
                action.setShortcut(QKeySequence(shortcut))
                action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(slot)
            m.addAction(action)
            return action

        act(file_menu, "Load audio as capture…", self.choose_capture_file, "Ctrl+O")
        act(file_menu, "Use the live capture", self.use_live_capture, "Ctrl+L")
        act(file_menu, "Export takes…", self.choose_export, "Ctrl+E")
        act(file_menu, "Settings…", self.open_settings, "Ctrl+,")
        file_menu.addSeparator()
        act(file_menu, "Quit", self.close, "Ctrl+Q")
        self.generate_action = act(gen_menu, "Generate", self.generate, "Ctrl+Return")
        extra = QAction(self)  # the keypad Enter as well
        extra.setShortcut(QKeySequence("Ctrl+Enter"))
        extra.triggered.connect(self.generate)
        self.addAction(extra)
        act(gen_menu, "Cancel", self.cancel_current, "Esc")
        act(gen_menu, "Regenerate selected take with a new seed", self.regenerate_selected, "Ctrl+R")
        act(gen_menu, "Play / stop selected take", self.toggle_play_selected, "Space")
        act(gen_menu, "Play selected take with the mix", lambda: self.toggle_play_selected(True), "Shift+Space")
        for i, name in enumerate(self.panels):
            act(view_menu, f"{self.panels[name].title}", lambda _=False, n=name: self.show_engine(n), f"Ctrl+{i + 1}")
        act(help_menu, "Keyboard shortcuts", self.show_shortcuts, "F1")

    def _wire(self) -> None:
        self.capture.changed.connect(self._capture_changed)
        self.capture_view.selectionChanged.connect(self._selection_from_view)
        self.capture_view.fileDropped.connect(self.load_capture_file_async)
        self.fileLoaded.connect(self._file_loaded)
        self.first_bar.valueChanged.connect(self._selection_from_spins)
        self.last_bar.valueChanged.connect(self._selection_from_spins)
        self.bpm.editingFinished.connect(self._bpm_edited)
        self.chord_lane.editingFinished.connect(self._chords_edited)
        self.jobs.ready.connect(self._worker_ready)
        self.jobs.described.connect(self._described)
        self.jobs.progress.connect(self._job_progress)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.failed.connect(self._job_failed)
        self.jobs.crashed.connect(self._job_crashed)
        self.jobs.restarted.connect(lambda n: self._update_engine_info())
        self.daw.status.connect(self._update_daw)
        self.daw.transportEvent.connect(self._transport_event)
        self.daw.region.connect(self._daw_region)
        self.daw.generate.connect(self._daw_generate)
        self.daw.disconnected.connect(self._daw_silent)
        self.daw.reconnected.connect(lambda: self.show_message("info", f"{self.daw.dialect() or 'The DAW'} is back"))
        self.daw.failed.connect(lambda text: self.show_message("warning", text))
        self.daw.level.connect(self.meter.set_level)
        self.daw.captured.connect(self._live_captured)

    # ------------------------------------------------------------------------------------------------------
    # messages
    # ------------------------------------------------------------------------------------------------------
    def show_message(self, level: str, text: str) -> None:
        self.message_bar.show_message(level, text)
        self.statusBar().showMessage(text, 10000)

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", "\n".join(self.shortcut_lines()))

    def shortcut_lines(self) -> list[str]:
        return [f"{a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)}\t{a.text()}"
                for menu_action in self.menuBar().actions() if menu_action.menu() is not None
                for a in menu_action.menu().actions() if not a.shortcut().isEmpty()]

    # ------------------------------------------------------------------------------------------------------
    # DAW
    # ------------------------------------------------------------------------------------------------------
    def _update_daw(self, snap) -> None:
        bridge = self.daw.bridge
        heard = snap.last_message_age < 1e9
        silent = heard and snap.last_message_age > self.daw.transport.silence_timeout
        if bridge is None:
            colour, name, state = theme.TEXT_DIM, "Not connected", "DAW link off — see Settings"
        elif not heard:
            colour, name, state = theme.TEXT_DIM, "Waiting for the DAW", f"listening on {bridge.host}:{bridge.port}"
        elif silent:
            colour, name, state = theme.WARN, self.daw.dialect() or "DAW", f"silent for {snap.last_message_age:.0f} s"
        else:
            colour, name = theme.OK, self.daw.dialect() or "DAW"
            state = "▶ Playing" if snap.playing else "■ Stopped"
        self.daw_dot.setStyleSheet(f"color: {colour}; font-size: 12pt;")
        self.daw_name.setText(name)
        self.daw_state.setText(f"· {state}")
        if heard:
            self.daw_detail.setText(f"{snap.bpm:.1f} BPM · {snap.numerator}/{snap.denominator} · "
                                    f"{snap.sample_rate / 1000:g} kHz")
            bbt = snap.bbt
            self.position.setText(f"{bbt.bar}.{bbt.beat}.{int(bbt.tick * 4 // (snap.timeline.ppq or 960)) + 1}")
            if self.capture.path is None:
                self.capture_view.set_playhead(int(snap.position))
        else:
            self.daw_detail.setText(f"dialect: {self.settings.dialect}")
            self.position.setText("–.–.–")

    def _transport_event(self, name: str, snap) -> None:
        if name in ("tempo", "meter") and self.capture.audio is not None and not self.capture.tempo_from_file:
            if self.capture.live:
                self.capture.timeline = self.daw.transport.timeline
                self.capture.changed.emit()
            else:
                self.capture.set_tempo(snap.bpm, snap.numerator, snap.denominator)
        if name == "play":
            self.statusBar().showMessage("DAW playing", 3000)

    def _daw_region(self, start: int, stop: int) -> None:
        """The DAW's time selection (/backline/region) becomes the selected bars."""
        timeline = self.capture.timeline or self.daw.transport.timeline
        scale = timeline.sample_rate / self.daw.transport.sample_rate
        first = int(timeline.samples_to_bar(start * scale) + 1e-6)
        last = max(first, int(timeline.samples_to_bar(stop * scale) - 1e-6))
        self.select_bars(first, last)
        self.show_message("info", f"DAW selection: bars {first}–{last}")

    def _daw_generate(self, args: tuple) -> None:
        """/backline/generate [engine]: generate now, with the current panel or the engine named. While a take
        is being made a DAW request is dropped, not queued (a script or a flood repeating it queued 100 jobs)."""
        if self.active:
            self.statusBar().showMessage("The DAW asked for a take while one is being made: request ignored", 5000)
            return
        name = next((str(a) for a in args if isinstance(a, str) and str(a) in self.panels), None)
        if name:
            self.show_engine(name)
        self.generate()

    def _daw_silent(self, age: float) -> None:
        name = self.daw.dialect() or "the DAW"
        self.show_message("warning", f"Lost contact with {name}: no OSC for {age:.0f} s. The capture and your takes "
                                     "are kept; check that the DAW is running and its OSC output is on.")

    # ------------------------------------------------------------------------------------------------------
    # capture and selection
    # ------------------------------------------------------------------------------------------------------
    def _live_captured(self, audio, origin: int, peaks=None, span=None) -> None:
        """A fresh copy of what the loopback capture holds; shown unless the musician pinned a file."""
        self._live_pending = (audio, origin, peaks, span)
        if self.capture.path is not None:
            self.statusBar().showMessage("Live capture is recording — File ▸ Use the live capture (Ctrl+L)", 5000)
            return
        self.use_live_capture()

    def use_live_capture(self) -> None:
        if self._live_pending is None:
            self.show_message("warning", "Nothing has been captured from the DAW yet: check the capture input in "
                                         "Settings ▸ Audio and press play in the DAW.")
            return
        audio, origin, peaks, span = self._live_pending
        name = self.daw.dialect() or "DAW"
        if self.capture.path is not None:
            self.capture_view.reset_view()
        held = (span[1] - span[0]) / self.daw.transport.sample_rate if span else audio.seconds
        self.capture.set_live(audio, origin, self.daw.transport.timeline, f"live · {name} · {held:.0f} s captured",
                              extractor=self.daw.extract, span=span, peaks=peaks)

    def choose_capture_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load audio as capture", str(Path.home()),
                                              "Audio (*.wav *.flac *.ogg *.mp3 *.aif *.aiff);;All files (*)")
        if path:
            self.load_capture_file_async(path)

    def load_capture_file_async(self, path: str | Path) -> None:
        """Decode on a worker thread (a long recording takes seconds); the window stays live meanwhile."""
        path = Path(path)
        self.capture_source.setText(f"loading {path.name}…")
        self._file_loads = getattr(self, "_file_loads", 0) + 1
        ticket = self._file_loads
        fallback = self.daw.transport.timeline

        def work() -> None:
            try:
                result = CaptureModel.read_file(path, fallback)
            except BacklineError as err:
                result = err
            self.fileLoaded.emit(ticket, result)

        threading.Thread(target=work, name="backline-load-capture", daemon=True).start()

    def _file_loaded(self, ticket: int, result) -> None:
        if ticket != self._file_loads:  # a newer load was asked for meanwhile
            return
        if isinstance(result, BacklineError):
            self.capture_source.setText(self.capture.source or "nothing captured yet")
            self.show_message("error", f"Cannot use this as the capture: {result}")
            return
        self.capture_view.reset_view()
        self.capture.apply_file(*result)
        self.show_message("info", f"Loaded {result[0].name} as the captured mix — drag across bars to select")

    def load_capture_file(self, path: str | Path) -> bool:
        view = self.capture_view.view_range
        self.capture_view.reset_view()  # a new source opens on its own view (set again below by the selection)
        try:
            self.capture.load_file(path, self.daw.transport.timeline)
        except BacklineError as err:
            self.capture_view.view_range = view
            self.show_message("error", f"Cannot use this as the capture: {err}")
            return False
        self.show_message("info", f"Loaded {Path(path).name} as the captured mix — drag across bars to select")
        return True

    def _capture_changed(self) -> None:
        cap = self.capture
        self.capture_view.set_capture(cap.audio, cap.origin, cap.timeline, cap.peaks)
        self.capture_source.setText(cap.source or "nothing captured yet")
        if cap.timeline is not None:
            self.bpm.blockSignals(True)
            self.bpm.setValue(cap.timeline.bpm)
            self.bpm.blockSignals(False)
        lst = cap.listening
        self.heard.setText(f"heard: {lst.bpm:.1f} BPM · {lst.numerator}/{lst.denominator} · bar one at "
                           f"{lst.bar_one:.2f} s · {lst.key_name}" if lst is not None else "")
        self.chord_lane.setText(cap.chord_chart())
        last = cap.last_bar()
        if last:
            for spin in (self.first_bar, self.last_bar):
                spin.blockSignals(True)
                spin.setRange(cap.first_bar(), last)
                spin.blockSignals(False)
            sel = self.capture_view.selection
            if sel is None or sel[1] > last:
                self.select_bars(cap.first_bar(), min(last, cap.first_bar() + 7))
            else:
                self.capture_view.update()

    def _bpm_edited(self) -> None:
        if self.capture.timeline is not None and abs(self.bpm.value() - self.capture.timeline.bpm) > 1e-6:
            tl = self.capture.timeline
            self.capture.set_tempo(self.bpm.value(), tl.numerator, tl.denominator)
            self.capture.tempo_from_file = False

    def _chords_edited(self) -> None:
        """The musician corrected the chord lane: check it (one-line reason if it is not a chart) and keep it."""
        from backline.engines.listen import parse_chart

        text = self.chord_lane.text().strip()
        heard = self.capture.heard_chart()
        if text == (self.capture.chart or heard):
            return
        if text:
            try:
                parse_chart(text, self.capture.timeline.numerator if self.capture.timeline else 4)
            except BacklineError as err:
                self.show_message("error", f"Chord lane: {err}")
                return
        self.capture.chart = "" if text == heard else text
        self.show_message("info", "Chord lane updated: the bass follows these chords" if text
                          else "Chord lane cleared: the bass listens for the chords")

    def select_bars(self, first: int, last: int) -> None:
        self.capture_view.set_selection(first, last)

    def selection(self) -> tuple[int, int] | None:
        return self.capture_view.selection

    def _selection_from_view(self, first: int, last: int) -> None:
        for spin, value in ((self.first_bar, first), (self.last_bar, last)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    def _selection_from_spins(self) -> None:
        first, last = self.first_bar.value(), self.last_bar.value()
        if last < first:
            last = first
        self.capture_view.set_selection(first, last)

    # ------------------------------------------------------------------------------------------------------
    # engines and jobs
    # ------------------------------------------------------------------------------------------------------
    def show_engine(self, name: str) -> None:
        if name in self.panels:
            self.tabs.setCurrentWidget(self.panels[name])

    def _tab_changed(self, _index: int = -1) -> None:
        """Engines load when their tab is first opened: no GPU memory for an engine nobody uses."""
        name = self.current_engine()
        self.settings.last_engine = name
        if name in available_engines() and name not in self.jobs.wanted:
            self.jobs.describe(name)

    def current_engine(self) -> str:
        for name, panel in self.panels.items():
            if panel is self.tabs.currentWidget():
                return name
        return next(iter(self.panels))

    def _worker_ready(self, device: str) -> None:
        self.worker_text = device
        self._update_engine_info()

    def _update_engine_info(self) -> None:
        restarts = self.jobs.worker.restarts
        self.engine_device.setText(self.worker_text + (f" · restarted ×{restarts}" if restarts else ""))
        config = self.jobs.worker.config
        ready = [p.title for n, p in self.panels.items() if p.ready and n in TAB_ORDER]
        others = sum(p.ready for n, p in self.panels.items() if n not in TAB_ORDER)
        listing = ", ".join(ready) + (f" +{others}" if others else "")
        self.engine_weights.setText(f"{config} weights · " + (listing + " ready" if listing else "loading…"))
        self.engine_weights.setToolTip("\n".join(f"{p.title}: {p.description.weights}" for p in self.panels.values()
                                                 if p.ready))

    def _described(self, name: str, description, error: str) -> None:
        panel = self.panels.get(name)
        if panel is None:
            return
        if description is None:
            panel.set_state(f"The {panel.title} engine could not be loaded:\n{error}", error=True)
            self.show_message("error", error)
        else:
            panel.build(description, self.preset_folders)
        self._update_engine_info()

    def _set_progress_visible(self, on: bool) -> None:
        self.progress.setVisible(on)
        self.cancel_button.setVisible(on)

    def generate(self, _checked: bool = False, *, engine: str | None = None, values: dict | None = None,
                 seed: int | None = None, variations: int | None = None, bars: tuple[int, int] | None = None
                 ) -> str | None:
        """Start a job for the selected bars with the current panel (or the given settings). Returns its id."""
        engine = engine or self.current_engine()
        panel = self.panels[engine]
        if not panel.ready:
            self.show_message("warning", f"The {panel.title} engine is not ready: "
                                         f"{' '.join(panel.state_text.split()) or 'it is still loading'}")
            return None
        bars = bars or self.selection()
        if bars is None:
            self.show_message("warning", "Select some bars on the captured waveform first (drag across them).")
            return None
        values = values if values is not None else panel.values()
        seed = self.seed.value() if seed is None else int(seed)
        variations = self.variations.value() if variations is None else int(variations)
        needs_mix = "mix" in panel.description.inputs
        out_dir = None
        try:
            reference, band_midi = values.get("reference"), values.get("midi")
            known = {c.name for c in panel.description.controls}
            # a take recalled from an older session may carry a control the engine no longer has (drums'
            # "overwrite" moved to the take writer): drop it rather than refuse to regenerate
            controls = {k: v for k, v in dict(values.get("controls", {})).items() if k in known}
            if "vst3" in known and self.settings.drum_instrument:  # file handling lives in Settings
                controls["vst3"] = self.settings.drum_instrument
            if needs_mix or not self.capture.empty:
                # the one region path (engines.region.cut, as the CLI's --bars): the capture's grid (the DAW's,
                # the file's or heard over the whole file) and the chord lane under the selection go with it
                region = self.capture.region(*bars, controls=controls, control_names=known)
                start, stop, mix, timeline, controls = region.start, region.stop, region.mix, region.timeline, \
                    region.controls
            else:
                timeline = self.daw.transport.timeline
                start, stop = timeline.bar_range_to_samples(*bars)
                mix = None
            number = self.store.next_number() + len(self.active)
            out_dir = self.store.job_dir(f"{time.strftime('%Y%m%d-%H%M%S')}-{number:03d}-{engine}-seed{seed}")
            request = GenerationRequest(engine=engine, out_dir=out_dir, timeline=timeline, region_start=start,
                                        region_stop=stop, mix=mix, reference=Path(reference) if reference else None,
                                        midi=Path(band_midi) if band_midi else None,
                                        preset=values.get("preset"), controls=controls,
                                        seed=seed, variations=variations)
            panel.description.validate({k: v for k, v in request.controls.items()})
            job_id = self.jobs.submit(request)
            if self.capture.last_coverage < 0.999:
                self.show_message("warning", f"Bars {bars[0]}–{bars[1]} were only {self.capture.last_coverage:.0%} "
                                             "captured; the gaps are silence. Play them once more for a full take.")
        except BacklineError as err:
            if out_dir is not None and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()  # the job never started: leave no empty folder behind
            self.show_message("error", str(err))
            return None
        card = PendingCard(job_id, f"{panel.title} · {variations} take{'s' if variations > 1 else ''}", bars, seed)
        card.cancelRequested.connect(self.cancel_job)
        self._insert_card(card)
        self.active[job_id] = Job(job_id, engine, panel.title, values, seed, variations, tuple(bars), (start, stop),
                                  timeline, out_dir, card)
        self._set_progress_visible(True)
        self.progress.setValue(0)
        self.progress.setFormat(f"{panel.title}: starting…")
        self.statusBar().showMessage(f"Generating {panel.title} for bars {bars[0]}–{bars[1]} (seed {seed})")
        self.seed.setValue(random.randrange(1, 100000))  # next press gives a new take
        return job_id

    def current_job(self) -> Job | None:
        return next(iter(self.active.values()), None)

    def cancel_current(self) -> None:
        job = self.current_job()
        if job is not None:
            self.cancel_job(job.job_id)
        elif self.player.playing:
            self.player.stop()

    def cancel_job(self, job_id: str) -> None:
        job = self.active.get(job_id)
        if job is None:
            return
        job.card.set_cancelling()
        self.jobs.cancel(job_id)
        self.statusBar().showMessage("Cancelling…")

    def _job_progress(self, job_id: str, fraction: float, message: str) -> None:
        job = self.active.get(job_id)
        if job is None:
            return
        job.fraction = fraction
        job.card.set_progress(fraction, message)
        if job is self.current_job():
            self.progress.setValue(int(fraction * 1000))
            self.progress.setFormat(f"{job.title}: {fraction * 100:.0f} %  {message}")
        self.jobProgress.emit(job_id, fraction)

    def _finish_job(self, job_id: str) -> Job | None:
        job = self.active.pop(job_id, None)
        if job is not None:
            job.card.setParent(None)
            job.card.deleteLater()
        current = self.current_job()
        if current is None:
            self._set_progress_visible(False)
        else:
            self.progress.setValue(int(current.fraction * 1000))
        return job

    def _record(self, job: Job, **extra: Any) -> TakeRecord:
        return TakeRecord(id=f"{job.out_dir.name}-{extra.pop('index', 0)}", number=self.store.next_number(),
                          engine=job.engine, engine_title=job.title, seed=extra.pop("seed", job.seed),
                          controls=dict(job.values.get("controls", {})), preset=job.values.get("preset"),
                          reference=job.values.get("reference"), variations=job.variations, bars=job.bars,
                          region_start=job.region[0], region_stop=job.region[1],
                          sample_rate=job.timeline.sample_rate, bpm=job.timeline.bpm,
                          meter=(job.timeline.numerator, job.timeline.denominator), **extra)

    def _job_finished(self, job_id: str, result) -> None:
        job = self._finish_job(job_id)
        if job is None:
            return
        added = []
        for i, take in enumerate(result.takes):
            fit = take.report.get("fit", result.report.get("fit") if len(result.takes) == 1 else None)
            record = self._record(job, index=i, seed=int(take.seed),
                                  stems={k: self.store.relative(v) for k, v in take.stems.items()},
                                  midi=self.store.relative(take.midi) if take.midi else None,
                                  start_sample=int(take.start_sample),
                                  fit=float(fit) if isinstance(fit, (int, float)) else None,
                                  report=dict(take.report))
            added.append(self._add_take(record))
        if not added:
            self._add_take(self._record(job, status="error", error=f"the {job.title} engine returned no takes"))
        elapsed = time.monotonic() - job.started
        self.statusBar().showMessage(f"{job.title}: {len(added)} take(s) in {elapsed:.1f} s", 8000)
        learned = (result.report.get("reference") or {}).get("learned")  # issue 22: what the reference taught
        if learned:  # (a warning below replaces it: a warning matters more)
            self.show_message("info", f"{job.title}, learned from your reference: {learned}")
        for warning in result.report.get("warnings", [])[:1]:
            self.show_message("warning", f"{job.title}: {warning}")
        if added:
            self.select_take(added[-1].id)

    def _job_failed(self, job_id: str, message: str, cancelled: bool) -> None:
        job = self._finish_job(job_id)
        if job is None:
            return
        if cancelled:
            self.show_message("info", f"{job.title}: cancelled — nothing was written.")
            return
        self._add_take(self._record(job, status="error", error=message))
        self.show_message("error", f"{job.title} failed: {message}")

    def _job_crashed(self, job_id: str, message: str) -> None:
        job = self._finish_job(job_id) if job_id else None
        if job is not None:
            self._add_take(self._record(job, status="error", error=message))
        self.show_message("error", f"{job.title if job else 'Engine'}: {message}")
        self._update_engine_info()

    # ------------------------------------------------------------------------------------------------------
    # takes
    # ------------------------------------------------------------------------------------------------------
    def _load_history(self) -> None:
        for record in self.store.takes[-MAX_CARDS:]:
            self._add_card(record)
        self.session_label.setText(f"session: {self.store.root}")
        self._update_take_count()

    def _insert_card(self, card: QWidget) -> None:
        self.takes_hint.hide()
        self.takes_layout.insertWidget(0, card)
        self.takes_scroll.verticalScrollBar().setValue(0)

    def _add_card(self, record: TakeRecord) -> TakeCard:
        card = TakeCard(record, self.store)
        card.playRequested.connect(self.play_take)
        card.recallRequested.connect(self.recall_take)
        card.regenerateRequested.connect(self.regenerate_take)
        card.rerenderRequested.connect(self.choose_rerender)
        card.previewMidiRequested.connect(self.preview_take_midi)
        card.selected.connect(self.select_take)
        card.message.connect(self.show_message)
        card.dragStarted.connect(lambda mime: self.statusBar().showMessage(
            f"Drop {Path(mime.urls()[0].toLocalFile()).name} on a DAW track", 5000))
        self.cards[record.id] = card
        self._insert_card(card)
        while len(self.cards) > MAX_CARDS:  # the history keeps all; the list shows the newest
            oldest = next(iter(self.cards))
            self.cards.pop(oldest).deleteLater()
        return card

    def _add_take(self, record: TakeRecord) -> TakeRecord:
        try:
            self.store.add(record)
        except BacklineError as err:  # e.g. disk full: keep the take on screen, say the history is behind
            self.show_message("error", f"{record.label} is on screen but could not be saved to the history: {err}")
        self._add_card(record)
        self._update_take_count()
        self.takeAdded.emit(record)
        return record

    def _update_take_count(self) -> None:
        ok = sum(t.status == "ok" for t in self.store.takes)
        self.take_count.setText(f"{ok} take{'s' if ok != 1 else ''}" if ok else "")

    def select_take(self, take_id: str) -> None:
        self.selected_take = take_id
        for tid, card in self.cards.items():
            card.set_selected(tid == take_id)

    def play_take(self, take_id: str, with_mix: bool = False) -> None:
        try:
            take = self.store.get(take_id)
            path = self.store.stem_path(take)
            if path is None:
                raise BacklineError(f"{take.label} has no audio")
            audio = read_audio(path)
            if not with_mix and self.daw.connected:  # in sync with the DAW: it plays the rest of the song
                daw_rate = self.daw.transport.sample_rate  # a file capture's positions are in the file's rate
                start = round(take.start_sample * daw_rate / take.sample_rate)
                self.player.play_synced(self.daw.transport, audio, start, take_id)
                self.select_take(take_id)
                self.statusBar().showMessage(f"{take.label} follows the DAW: play bars {take.bars[0]}–"
                                             f"{take.bars[1]} there to hear it in place", 6000)
                return
            if with_mix:
                if self.capture.empty:
                    raise BacklineError("there is no captured mix to play against",
                                        fix="load or capture the mix first, or use Play")
                if self.capture.live:  # read exactly the take's bars from the capture, not the display copy
                    stop = take.start_sample + round(audio.frames * take.sample_rate / audio.sample_rate)
                    under = self.capture.extractor(take.start_sample, stop).audio
                    audio = mix_against(audio, take.start_sample, under, take.start_sample)
                else:
                    audio = mix_against(audio, take.start_sample, self.capture.audio, self.capture.origin)
            self.player.play(audio, take_id)
        except BacklineError as err:
            self.show_message("error", str(err))
            return
        self.select_take(take_id)
        self.statusBar().showMessage(f"Playing {take.label}" + (" with the mix" if with_mix else ""), 4000)

    def toggle_play_selected(self, with_mix: bool = False) -> None:
        if self.player.playing:
            self.player.stop()
        elif self.selected_take:
            self.play_take(self.selected_take, with_mix)

    def preview_take_midi(self, take_id: str) -> None:
        """Play a bass take's MIDI file (what the MIDI chip drags out, edits included) in the take's sound."""
        try:
            take = self.store.get(take_id)
            midi = self.store.absolute(take.midi)
            if midi is None or not Path(midi).is_file():
                raise BacklineError(f"{take.label} has no MIDI file to preview")
            from backline.engines.bass.engine import ALL_CONTROLS
            from backline.engines.bass.reference import preview_midi

            sound = take.controls.get("sound") or next(c.default for c in ALL_CONTROLS if c.name == "sound")
            audio = preview_midi(midi, reference=take.reference, preset=take.preset, sound=sound)
            self.player.play(audio, f"midi:{take_id}")
            self.statusBar().showMessage(f"Previewing the MIDI of {take.label} in its sound", 4000)
        except BacklineError as err:
            self.show_message("error", str(err))

    def audition_preset(self, preset) -> None:
        try:
            audio = read_audio(preset.reference)
            audio = audio.slice(0, min(audio.frames, audio.sample_rate * 8))
            self.player.play(audio, f"preset:{preset.name}")
            self.statusBar().showMessage(f"Auditioning preset {preset.name}", 4000)
        except BacklineError as err:
            self.show_message("error", str(err))

    def recall_take(self, take_id: str) -> None:
        try:
            take = self.store.get(take_id)
        except BacklineError as err:
            self.show_message("error", str(err))
            return
        panel = self.panels.get(take.engine)
        if panel is None or not panel.ready:
            self.show_message("warning", f"The {take.engine} engine is not available to recall this take.")
            return
        self.show_engine(take.engine)
        panel.set_values({"controls": take.controls, "preset": take.preset, "reference": take.reference})
        self.seed.setValue(take.seed)
        self.variations.setValue(max(1, take.variations))
        if not self.capture.empty and take.bars[1] <= self.capture.last_bar():
            self.select_bars(*take.bars)
        self.show_message("info", f"Recalled the settings of {take.label} (seed {take.seed}).")

    def regenerate_take(self, take_id: str) -> str | None:
        """Same engine, settings and bars as the take, with a new seed."""
        try:
            take = self.store.get(take_id)
        except BacklineError as err:
            self.show_message("error", str(err))
            return None
        if take.engine not in self.panels:
            self.show_message("error", f"engine {take.engine!r} is not available")
            return None
        new_seed = random.randrange(1, 100000)
        while new_seed == take.seed:
            new_seed = random.randrange(1, 100000)
        values = {"controls": take.controls, "preset": take.preset, "reference": take.reference}
        return self.generate(engine=take.engine, values=values, seed=new_seed, variations=1, bars=take.bars)

    def rerender_take(self, take_id: str, midi: str | Path | None = None) -> str | None:
        """Play a take's (edited) MIDI again in the take's sound: same engine, preset, bars and seed, the line
        from `midi` (default: the take's own MIDI file) instead of a newly planned one."""
        try:
            take = self.store.get(take_id)
        except BacklineError as err:
            self.show_message("error", str(err))
            return None
        panel = self.panels.get(take.engine)
        if panel is None or not panel.ready or "midi_in" not in {c.name for c in panel.description.controls}:
            self.show_message("warning", f"The {take.engine} engine cannot play a MIDI line.")
            return None
        source = Path(midi) if midi else self.store.absolute(take.midi)
        if source is None or not Path(source).is_file():
            self.show_message("error", f"No MIDI file to re-render from ({source or 'the take has none'})")
            return None
        controls = dict(take.controls) | {"midi_in": str(source)}
        values = {"controls": controls, "preset": take.preset, "reference": take.reference}
        return self.generate(engine=take.engine, values=values, seed=take.seed, variations=1, bars=take.bars)

    def choose_rerender(self, take_id: str) -> None:
        take = self.store.get(take_id)
        start = self.store.absolute(take.midi)
        path, _ = QFileDialog.getOpenFileName(self, "Re-render the take from this MIDI (edited in the DAW)",
                                              str(start.parent if start else Path.home()), "MIDI (*.mid *.midi)")
        if path:
            self.rerender_take(take_id, path)

    def regenerate_selected(self) -> None:
        if self.selected_take:
            self.regenerate_take(self.selected_take)

    def choose_export(self) -> None:
        parent = QFileDialog.getExistingDirectory(self, "Export takes into…", str(self.store.root))
        if parent:
            self.export_takes(Path(parent) / f"Backline takes {time.strftime('%Y-%m-%d %H%M%S')}")

    def export_takes(self, dest: Path) -> Path | None:
        try:
            out = self.store.export(self.store.takes, dest)
        except BacklineError as err:
            self.show_message("error", str(err))
            return None
        self.show_message("info", f"Exported {sum(t.status == 'ok' for t in self.store.takes)} takes to {out}")
        return out

    # ------------------------------------------------------------------------------------------------------
    # settings and life cycle
    # ------------------------------------------------------------------------------------------------------
    def _calibrate(self) -> str:
        """Run the bridge's calibration with the capture paused (it needs the same input), then resume it."""
        from backline.host.calibration import calibrate

        was_capturing = self.daw.capture is not None
        self.daw.stop_capture()
        try:
            return calibrate(self.settings)
        finally:
            if was_capturing:
                self.daw.start_capture(self.settings.input_device, self.settings.capture_minutes)

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self, calibrate=self._calibrate)
        if dialog.exec():
            self.apply_settings(dialog.result_settings)

    def apply_settings(self, new: HostSettings) -> None:
        old, self.settings = self.settings, new
        try:
            new.save(self.settings_path)
        except BacklineError as err:
            self.show_message("error", f"settings are in use but could not be saved: {err}")
        if (old.dialect, old.osc_host, old.osc_port, old.daw_port) != (new.dialect, new.osc_host, new.osc_port,
                                                                       new.daw_port):
            self.daw.start(new.dialect, new.osc_host, new.osc_port, new.daw_port)
        self.player = Player(new.output_device)
        if (old.input_device, old.capture_minutes) != (new.input_device, new.capture_minutes) \
                and self.daw.bridge is not None:
            self.daw.start_capture(new.input_device, new.capture_minutes)
        self._update_input()
        if old.session_dir != new.session_dir:
            self._switch_session(new.session_dir)
        if (old.engine_config, old.engine_device) != (new.engine_config, new.engine_device):
            for job in list(self.active):
                self._job_failed(job, "cancelled: the engine settings changed", True)
            self.worker_text = "restarting…"
            self.jobs.reconfigure(new.engine_config, new.engine_device)
            self._update_engine_info()

    def _switch_session(self, folder: str) -> None:
        store = SessionStore(folder)
        try:
            store.load()
        except BacklineError as err:
            self.show_message("error", str(err))
            return
        self.store = store
        for card in self.cards.values():
            card.deleteLater()
        self.cards.clear()
        self.takes_hint.show()
        self._load_history()

    def _update_input(self) -> None:
        from backline.host.settings import audio_device_names

        names = audio_device_names("input")
        capture = self.daw.capture
        if capture is not None and getattr(capture, "device_name", ""):
            self.input_name.setText(capture.device_name)
        elif self.settings.input_device:
            self.input_name.setText(self.settings.input_device + ("" if self.settings.input_device in names
                                                                  else " (not connected)"))
        else:
            self.input_name.setText("System default" if names else "No input device")
        self.input_name.setToolTip("loopback input the capture records from (Settings ▸ Audio)")

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._update_input()

    def closeEvent(self, event) -> None:
        try:
            saved, warning = HostSettings.load(self.settings_path)
            if not warning and saved.last_engine != self.settings.last_engine:
                saved.last_engine = self.settings.last_engine
                saved.save(self.settings_path)
        except (BacklineError, OSError):
            pass  # remembering the tab is a nicety; never block quitting over it
        self.player.stop()
        self.daw.close()
        self.jobs.stop()
        super().closeEvent(event)
