"""The main window: its layout and its wiring. What each part does lives in a controller (host/controllers/).

Everything slow happens elsewhere: generation in the engine worker process (`JobClient`), OSC on the bridge's
thread (`DawLink`), playback in PortAudio's callback thread. The UI thread only moves small messages and
paints, so it never freezes. The window builds the widgets (header with the DAW strip, capture panel, engine
tabs with Generate, take list), connects them to the four controllers — DAW, capture, jobs, take list — and
keeps a few entry points (generate, load_capture_file, select_bars, ...) that the launcher, the screenshots,
the benchmarks and the tests drive it by.
"""

from __future__ import annotations

import random
from pathlib import Path

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QDoubleSpinBox,
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

from backline.engines.core.errors import BacklineError
from backline.engines.registry import available_engines
from backline.host import theme
from backline.host.capture import CaptureModel
from backline.host.controllers import CaptureController, DawController, Job, JobController, TakeListController
from backline.host.controllers.jobs import TAB_ORDER
from backline.host.controllers.takes import MAX_CARDS
from backline.host.daw import DawLink
from backline.host.history import SessionStore
from backline.host.jobclient import JobClient
from backline.host.panels import EnginePanel
from backline.host.player import Player
from backline.host.presets import builtin_preset_dir
from backline.host.settings import HostSettings, SettingsDialog, config_dir
from backline.host.takecard import TakeCard, empty_takes_hint
from backline.host.widgets import CaptureView, LevelMeter, MessageBar

ENGINE_TITLES = {"bass": "Bass", "accompany": "Accompaniment", "drums": "Drums"}
NOT_TABS = ("analysis",)

__all__ = ["ENGINE_TITLES", "MAX_CARDS", "NOT_TABS", "TAB_ORDER", "Job", "MainWindow"]


def _label(text: str, name: str = "") -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    return label


class MainWindow(QMainWindow):
    """Builds the widgets and connects them to the controllers (`daw_control`, `capture_control`,
    `job_control`, `take_list`), which hold the behaviour; the models (`daw`, `capture`, `jobs`, `store`,
    `player`) and the widgets stay here, where every controller reaches them."""

    takeAdded = pyqtSignal(object)  # TakeRecord
    jobProgress = pyqtSignal(str, float)

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
        self.panels: dict[str, EnginePanel] = {}
        self.daw_control = DawController(self)
        self.capture_control = CaptureController(self)
        self.job_control = JobController(self)
        self.take_list = TakeListController(self)
        self._build()
        self._actions()
        self._wire()
        try:
            self.store.load()
            if self.store.warning:
                self.show_message("warning", self.store.warning)
        except BacklineError as err:
            self.show_message("error", str(err))
        self.take_list.load_history()
        self.jobs.start()
        self.tabs.currentChanged.connect(self.job_control.tab_changed)
        self.show_engine(settings.last_engine if settings.last_engine in self.panels else next(iter(self.panels)))
        self.job_control.tab_changed()
        if connect_daw:
            self.daw.start(settings.dialect, settings.osc_host, settings.osc_port, settings.daw_port)
            self.daw.start_capture(settings.input_device, settings.capture_minutes)
        self.daw_control.update_status(self.daw.snapshot())
        self.job_control.update_engine_info()

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
        load.clicked.connect(self.capture_control.choose_file)
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
            panel_widget.auditionRequested.connect(self.take_list.audition_preset)
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
        self.generate_button.clicked.connect(self.job_control.generate)
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
        self.cancel_button.clicked.connect(self.job_control.cancel_current)
        prog.addWidget(self.cancel_button)
        layout.addLayout(prog)
        self.job_control.set_progress_visible(False)
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
        export.clicked.connect(self.take_list.choose_export)
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

        act(file_menu, "Load audio as capture…", self.capture_control.choose_file, "Ctrl+O")
        act(file_menu, "Use the live capture", self.capture_control.use_live_capture, "Ctrl+L")
        act(file_menu, "Export takes…", self.take_list.choose_export, "Ctrl+E")
        act(file_menu, "Settings…", self.open_settings, "Ctrl+,")
        file_menu.addSeparator()
        act(file_menu, "Quit", self.close, "Ctrl+Q")
        self.generate_action = act(gen_menu, "Generate", self.job_control.generate, "Ctrl+Return")
        extra = QAction(self)  # the keypad Enter as well
        extra.setShortcut(QKeySequence("Ctrl+Enter"))
        extra.triggered.connect(self.job_control.generate)
        self.addAction(extra)
        act(gen_menu, "Cancel", self.job_control.cancel_current, "Esc")
        act(gen_menu, "Regenerate selected take with a new seed", self.take_list.regenerate_selected, "Ctrl+R")
        act(gen_menu, "Play / stop selected take", self.take_list.toggle_play_selected, "Space")
        act(gen_menu, "Play selected take with the mix", lambda: self.take_list.toggle_play_selected(True), "Shift+Space")
        for i, name in enumerate(self.panels):
            act(view_menu, f"{self.panels[name].title}", lambda _=False, n=name: self.show_engine(n), f"Ctrl+{i + 1}")
        act(help_menu, "Keyboard shortcuts", self.show_shortcuts, "F1")

    def _wire(self) -> None:
        """Models and widgets to the controllers (the take cards are wired one by one in `TakeListController`)."""
        capture, daw, jobs = self.capture_control, self.daw_control, self.job_control
        self.capture.changed.connect(capture.capture_changed)
        self.capture_view.selectionChanged.connect(capture.selection_from_view)
        self.capture_view.fileDropped.connect(capture.load_file_async)
        self.first_bar.valueChanged.connect(capture.selection_from_spins)
        self.last_bar.valueChanged.connect(capture.selection_from_spins)
        self.bpm.editingFinished.connect(capture.bpm_edited)
        self.chord_lane.editingFinished.connect(capture.chords_edited)
        self.jobs.ready.connect(jobs.worker_ready)
        self.jobs.described.connect(jobs.described)
        self.jobs.progress.connect(jobs.job_progress)
        self.jobs.finished.connect(jobs.job_finished)
        self.jobs.failed.connect(jobs.job_failed)
        self.jobs.crashed.connect(jobs.job_crashed)
        self.jobs.restarted.connect(lambda n: jobs.update_engine_info())
        self.daw.status.connect(daw.update_status)
        self.daw.transportEvent.connect(daw.transport_event)
        self.daw.region.connect(daw.region)
        self.daw.generate.connect(daw.generate)
        self.daw.disconnected.connect(daw.silent)
        self.daw.reconnected.connect(daw.reconnected)
        self.daw.failed.connect(lambda text: self.show_message("warning", text))
        self.daw.level.connect(self.meter.set_level)
        self.daw.captured.connect(capture.live_captured)

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
    # entry points (the launcher, screenshots, benchmarks and tests drive the window by these)
    # ------------------------------------------------------------------------------------------------------
    @property
    def active(self) -> dict[str, Job]:
        """Jobs in flight, by id."""
        return self.job_control.active

    @property
    def cards(self) -> dict[str, TakeCard]:
        """The take cards on screen, by take id (oldest first)."""
        return self.take_list.cards

    @property
    def selected_take(self) -> str | None:
        return self.take_list.selected_take

    def generate(self, _checked: bool = False, *, engine: str | None = None, values: dict | None = None,
                 seed: int | None = None, variations: int | None = None, bars: tuple[int, int] | None = None
                 ) -> str | None:
        """Start a job for the selected bars with the current panel (or the given settings). Returns its id."""
        return self.job_control.generate(engine=engine, values=values, seed=seed, variations=variations, bars=bars)

    def show_engine(self, name: str) -> None:
        self.job_control.show_engine(name)

    def current_engine(self) -> str:
        return self.job_control.current_engine()

    def load_capture_file(self, path: str | Path) -> bool:
        """Use an audio file as the captured mix (decoded now; the file drop and Ctrl+O decode in the background)."""
        return self.capture_control.load_file(path)

    def select_bars(self, first: int, last: int) -> None:
        self.capture_control.select_bars(first, last)

    def selection(self) -> tuple[int, int] | None:
        return self.capture_control.selection()

    def select_take(self, take_id: str) -> None:
        self.take_list.select_take(take_id)

    def play_take(self, take_id: str, with_mix: bool = False) -> None:
        self.take_list.play_take(take_id, with_mix)

    def recall_take(self, take_id: str) -> None:
        self.take_list.recall_take(take_id)

    def regenerate_take(self, take_id: str) -> str | None:
        return self.take_list.regenerate_take(take_id)

    def rerender_take(self, take_id: str, midi: str | Path | None = None) -> str | None:
        return self.take_list.rerender_take(take_id, midi)

    def preview_take_midi(self, take_id: str) -> None:
        self.take_list.preview_take_midi(take_id)

    def export_takes(self, dest: Path) -> Path | None:
        return self.take_list.export_takes(dest)

    # ------------------------------------------------------------------------------------------------------
    # settings and life cycle
    # ------------------------------------------------------------------------------------------------------
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self, calibrate=self.daw_control.calibrate)
        if dialog.exec():
            self.apply_settings(dialog.result_settings)

    def apply_settings(self, new: HostSettings) -> None:
        old, self.settings = self.settings, new
        try:
            new.save(self.settings_path)
        except BacklineError as err:
            self.show_message("error", f"settings are in use but could not be saved: {err}")
        self.player = Player(new.output_device)
        self.daw_control.apply_settings(old, new)
        if old.session_dir != new.session_dir:
            self.take_list.switch_session(new.session_dir)
        if (old.engine_config, old.engine_device) != (new.engine_config, new.engine_device):
            self.job_control.reconfigure(new.engine_config, new.engine_device)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.daw_control.update_input()

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
