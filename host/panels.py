"""An engine's panel, built from its `describe()` alone, so a new engine needs no new UI code.

Control kinds map to widgets: int → spin box, float → slider + spin box, bool → check box, choice → combo
box, text → line edit (with `choices`: a label field — completion after each comma and one toggle chip per
known label, e.g. the accompaniment prompt "piano, strings"), audio → the style well (drop a reference recording), preset → the preset browser.
Controls named `seed` and `variations` are not drawn here: the Generate bar owns them for every engine. A
control named `preset` (whatever its kind; engines often declare it as a choice of preset names) is the
preset browser, and `audio` controls are the style well; their values travel as `GenerationRequest.preset` and
`.reference`, not among the controls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backline.engines.core.protocol import Control, EngineDescription
from backline.host.presets import Preset, load_presets
from backline.host.widgets import MidiWell, StyleWell

GENERATE_BAR_CONTROLS = ("seed", "variations")


def section_label(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("Section")
    return label


class FloatControl(QWidget):
    """A slider for feel plus a spin box for exact values."""

    def __init__(self, control: Control) -> None:
        super().__init__()
        lo = control.minimum if control.minimum is not None else 0.0
        hi = control.maximum if control.maximum is not None else max(1.0, float(control.default) * 4)
        self.lo, self.hi = float(lo), float(hi)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 1000)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(self.lo, self.hi)
        step = control.step or (self.hi - self.lo) / 100
        self.spin.setSingleStep(step)
        self.spin.setDecimals(3 if step < 0.01 else 2)
        self.spin.setFixedWidth(80)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self.slider.valueChanged.connect(lambda v: self.spin.setValue(self.lo + v / 1000 * (self.hi - self.lo)))
        self.spin.valueChanged.connect(self._to_slider)
        self.set_value(float(control.default))

    def _to_slider(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round((value - self.lo) / max(self.hi - self.lo, 1e-12) * 1000))
        self.slider.blockSignals(False)

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, value: float) -> None:
        self.spin.setValue(float(value))
        self._to_slider(float(value))


class LabelCompleter(QCompleter):
    """Completes the label after the last comma of a comma-separated list ("piano, str" → "piano, strings")."""

    def splitPath(self, path: str) -> list[str]:  # noqa: N802 - Qt override
        return [path.split(",")[-1].strip()]

    def pathFromIndex(self, index) -> str:  # noqa: N802 - Qt override
        head = self.widget().text().rsplit(",", 1)
        return (head[0] + ", " if len(head) > 1 else "") + super().pathFromIndex(index)


def label_chips(field: QLineEdit, labels: tuple[str, ...]) -> QWidget:
    """One checkable chip per known label; clicking adds it to / removes it from the field's list."""
    row = QWidget()
    layout = QGridLayout(row)  # three per row, so six labels fit a narrow panel
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    buttons: dict[str, QToolButton] = {}

    def current() -> list[str]:
        return [p.strip().lower() for p in field.text().split(",") if p.strip()]

    def sync() -> None:
        chosen = set(current())
        for name, b in buttons.items():
            b.blockSignals(True)
            b.setChecked(name in chosen)
            b.blockSignals(False)

    def toggle(name: str, on: bool) -> None:
        parts = [p for p in current() if p != name] + ([name] if on else [])
        field.setText(", ".join(sorted(set(parts), key=lambda p: labels.index(p) if p in labels else 99)))

    for name in labels:
        b = QToolButton()
        b.setText(name)
        b.setCheckable(True)
        b.setObjectName("Chip")
        b.setToolTip(f"add or remove {name}")
        b.toggled.connect(lambda on, n=name: toggle(n, on))
        buttons[name] = b
        layout.addWidget(b, (len(buttons) - 1) // 3, (len(buttons) - 1) % 3)
    field.textChanged.connect(lambda _t: sync())
    sync()
    return row


class PresetBrowser(QWidget):
    """Presets for one engine; ▶ auditions the preset's reference, selecting one applies its controls."""

    presetChosen = pyqtSignal(object)  # Preset | None
    auditionRequested = pyqtSignal(object)  # Preset
    problem = pyqtSignal(str)

    def __init__(self, engine: str) -> None:
        super().__init__()
        self.engine = engine
        self.presets: list[Preset] = []
        self.problems: list[str] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        row = QHBoxLayout()  # the heading carries the buttons: one row less at 1280×800
        row.addWidget(section_label("Presets"))
        row.addStretch(1)
        self.audition = QToolButton()
        self.audition.setText("▶ Audition")
        self.audition.setToolTip("Play a short excerpt of the selected preset's reference")
        self.audition.clicked.connect(self._audition)
        row.addWidget(self.audition)
        self.none_button = QToolButton()
        self.none_button.setText("No preset")
        self.none_button.clicked.connect(lambda: self.list.setCurrentRow(-1))
        row.addWidget(self.none_button)
        layout.addLayout(row)
        self.list = QListWidget()
        self.list.setMaximumHeight(86)
        self.list.currentRowChanged.connect(self._chosen)
        layout.addWidget(self.list)

    def load(self, folders: list[Path]) -> None:
        self.presets, self.problems = load_presets(self.engine, folders)
        self.list.clear()
        for preset in self.presets:
            item = QListWidgetItem(preset.title or preset.name)
            item.setToolTip(preset.description or preset.title or preset.name)
            self.list.addItem(item)
        for problem in self.problems:
            item = QListWidgetItem(f"⚠ {problem}")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            item.setToolTip(problem)
            self.list.addItem(item)
            self.problem.emit(problem)
        if not self.presets and not self.problems:
            item = QListWidgetItem("No presets yet — add TOML files to the presets folder")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(item)
        self.list.setCurrentRow(-1)
        self.audition.setEnabled(bool(self.presets))
        self.audition.setVisible(any(p.reference for p in self.presets))  # drum styles have nothing to audition

    def current(self) -> Preset | None:
        row = self.list.currentRow()
        return self.presets[row] if 0 <= row < len(self.presets) else None

    def select(self, name: str | None) -> None:
        for row, preset in enumerate(self.presets):
            if preset.name == name:
                self.list.setCurrentRow(row)
                return
        self.list.setCurrentRow(-1)

    def _chosen(self, _row: int) -> None:
        self.presetChosen.emit(self.current())

    def _audition(self) -> None:
        preset = self.current() or (self.presets[0] if self.presets else None)
        if preset is None:
            return
        if preset.reference is None:
            self.problem.emit(f"preset {preset.name} has no reference recording to audition")
            return
        self.auditionRequested.emit(preset)


class EnginePanel(QScrollArea):
    """One engine tab. Until the worker has described the engine it shows why it is not ready."""

    message = pyqtSignal(str, str)  # level, text
    auditionRequested = pyqtSignal(object)  # Preset

    def __init__(self, engine: str, title: str) -> None:
        super().__init__()
        self.engine, self.title = engine, title
        self.description: EngineDescription | None = None
        self.state_text = ""
        self.widgets: dict[str, QWidget] = {}
        self.preset_browser: PresetBrowser | None = None
        self.style_well: StyleWell | None = None
        self.preset_folders: list[Path] = []
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)  # drops land on the viewport; viewportEvent hands them to us
        self.midi_well: MidiWell | None = None
        self.set_state(f"Loading the {title} engine…")

    # -- states -------------------------------------------------------------------------------------------
    def set_state(self, text: str, error: bool = False) -> None:
        self.description = None
        self.state_text = text
        holder = QWidget()
        layout = QVBoxLayout(holder)
        label = QLabel(text)
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setObjectName("Error" if error else "Dim")
        layout.addStretch(1)
        layout.addWidget(label)
        layout.addStretch(2)
        self.setWidget(holder)

    @property
    def ready(self) -> bool:
        return self.description is not None

    def build(self, description: EngineDescription, preset_folders: list[Path]) -> None:
        """(Re)build the controls from `description`, keeping values the user already set where they fit."""
        previous = self.values() if self.ready else None
        self.description = description
        self.state_text = ""
        self.preset_folders = preset_folders
        self.widgets = {}
        self.preset_browser = None
        self.style_well = None
        holder = QWidget()
        outer = QVBoxLayout(holder)
        outer.setContentsMargins(12, 10, 12, 10)
        outer.setSpacing(8)
        info = QLabel(f"<b>{description.title}</b>")
        info.setWordWrap(True)
        info.setToolTip(f"weights: {description.weights or 'n/a'}\ndevice: {description.device}")
        outer.addWidget(info)
        kinds = {c.kind for c in description.controls}
        preset_control = next((c for c in description.controls if c.kind == "preset" or c.name == "preset"), None)
        if preset_control is not None or self._has_presets():
            self.preset_browser = PresetBrowser(self.engine)
            self.preset_browser.problem.connect(lambda text: self.message.emit("warning", text))
            self.preset_browser.auditionRequested.connect(self.auditionRequested)
            self.preset_browser.presetChosen.connect(self._apply_preset)
            outer.addWidget(self.preset_browser)
            self.preset_browser.load(preset_folders)
            if preset_control is not None and preset_control.default:
                self.preset_browser.blockSignals(True)  # the default needs no "preset applied" message
                self.preset_browser.select(str(preset_control.default))
                self.preset_browser.blockSignals(False)
        self.midi_well = None
        if "midi" in description.inputs:
            outer.addWidget(section_label("Band MIDI"))
            self.midi_well = MidiWell()
            self.midi_well.rejected.connect(lambda text: self.message.emit("error", text))
            outer.addWidget(self.midi_well)
        if "audio" in kinds:
            outer.addWidget(section_label("Style reference"))
            self.style_well = StyleWell()
            self.style_well.rejected.connect(lambda text: self.message.emit("error", text))
            outer.addWidget(self.style_well)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setHorizontalSpacing(12)
        drawn = [c for c in description.controls if c.name not in GENERATE_BAR_CONTROLS
                 and c.kind not in ("audio", "preset") and c is not preset_control
                 and getattr(c, "group", "") != "cli"]  # file paths and output handling: the host's own job
        main = [c for c in drawn if getattr(c, "group", "") != "advanced"]
        advanced = [c for c in drawn if getattr(c, "group", "") == "advanced"]
        if main:
            outer.addWidget(section_label("Controls"))
        for control in main:
            self._add_row(form, control)
        outer.addLayout(form)
        self.advanced_toggle = None
        if advanced:
            self.advanced_toggle = QToolButton()
            self.advanced_toggle.setText("▸ Advanced")
            self.advanced_toggle.setCheckable(True)
            self.advanced_toggle.setToolTip("sampler settings: leave them alone unless a take sounds wrong")
            self.advanced_box = QWidget()
            adv_form = QFormLayout(self.advanced_box)
            adv_form.setContentsMargins(0, 0, 0, 0)
            adv_form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
            adv_form.setHorizontalSpacing(12)
            for control in advanced:
                self._add_row(adv_form, control)
            self.advanced_box.setVisible(False)
            self.advanced_toggle.toggled.connect(self._toggle_advanced)
            outer.addWidget(self.advanced_toggle)
            outer.addWidget(self.advanced_box)
        outer.addStretch(1)
        self.setWidget(holder)
        if previous:
            self.set_values(previous)

    def _add_row(self, form: QFormLayout, control: Control) -> None:
        widget = self._widget_for(control)
        widget.setToolTip(control.help or control.label or control.name)
        self.widgets[control.name] = widget
        label = QLabel(control.label or control.name.replace("_", " ").capitalize())
        label.setToolTip(control.help)
        form.addRow(label, widget)
        if control.kind == "text" and control.choices and isinstance(widget, QLineEdit):
            form.addRow(QLabel(""), label_chips(widget, control.choices))

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced_box.setVisible(on)
        self.advanced_toggle.setText(("▾ " if on else "▸ ") + "Advanced")

    # -- drag and drop: the band's MIDI anywhere on the panel -------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if getattr(self, "midi_well", None) is not None and event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if getattr(self, "midi_well", None) is not None and urls and self.midi_well.offer(urls[0].toLocalFile()):
            event.acceptProposedAction()

    def _has_presets(self) -> bool:
        return any(f.is_dir() and (any(f.glob(f"{self.engine}/*.toml"))) for f in self.preset_folders)

    def _widget_for(self, control: Control) -> QWidget:
        kind = control.kind
        if kind == "int":
            w = QSpinBox()
            w.setRange(int(control.minimum if control.minimum is not None else -(2**31)),
                       int(control.maximum if control.maximum is not None else 2**31 - 1))
            w.setSingleStep(int(control.step or 1))
            w.setValue(int(control.default))
            return w
        if kind == "float":
            return FloatControl(control)
        if kind == "bool":
            w = QCheckBox()
            w.setChecked(bool(control.default))
            return w
        if kind == "choice":
            w = QComboBox()
            w.addItems(list(control.choices))
            w.setCurrentText(str(control.default))
            return w
        w = QLineEdit(str(control.default or ""))
        w.setPlaceholderText(control.help or control.label)
        if control.choices:
            w.setCompleter(LabelCompleter(list(control.choices), w))
        return w

    # -- values -------------------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """{'controls': {...}, 'preset': name | None, 'reference': path | None} for a GenerationRequest."""
        controls: dict[str, Any] = {}
        for name, w in self.widgets.items():
            if isinstance(w, QSpinBox):
                controls[name] = w.value()
            elif isinstance(w, FloatControl):
                controls[name] = w.value()
            elif isinstance(w, QCheckBox):
                controls[name] = w.isChecked()
            elif isinstance(w, QComboBox):
                controls[name] = w.currentText()
            elif isinstance(w, QLineEdit):
                controls[name] = w.text()
        preset = self.preset_browser.current() if self.preset_browser else None
        reference = self.style_well.path if self.style_well else None
        midi = self.midi_well.path if getattr(self, "midi_well", None) is not None else None
        return {"controls": controls, "preset": preset.name if preset else None,
                "reference": str(reference) if reference else None, "midi": str(midi) if midi else None}

    def set_values(self, values: dict[str, Any]) -> None:
        """Recall: put a take's settings back (unknown or out-of-range values are left as they are)."""
        if self.preset_browser is not None:
            self.preset_browser.select(values.get("preset"))
        for name, value in (values.get("controls") or {}).items():
            w = self.widgets.get(name)
            try:
                if isinstance(w, QSpinBox):
                    w.setValue(int(value))
                elif isinstance(w, FloatControl):
                    w.set_value(float(value))
                elif isinstance(w, QCheckBox):
                    w.setChecked(value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str)
                                 else bool(value))
                elif isinstance(w, QComboBox) and w.findText(str(value)) >= 0:
                    w.setCurrentText(str(value))
                elif isinstance(w, QLineEdit):
                    w.setText(str(value))
            except (TypeError, ValueError):
                continue
        if getattr(self, "midi_well", None) is not None:
            midi = values.get("midi")
            self.midi_well.set_reference(Path(midi) if midi and Path(midi).exists() else None)
        if self.style_well is not None:
            ref = values.get("reference")
            if ref and Path(ref).exists():
                self.style_well.set_reference(Path(ref))
            elif not ref:
                self.style_well.set_reference(None)

    def _apply_preset(self, preset: Preset | None) -> None:
        if preset is None:
            return
        known = {c.name for c in self.description.controls} if self.description else set()
        unknown = sorted(set(preset.controls) - known)
        self.set_values({"controls": {k: v for k, v in preset.controls.items() if k in known},
                         "preset": preset.name})
        if unknown:
            self.message.emit("warning", f"preset {preset.name}: ignored unknown control(s) {', '.join(unknown)}")
        self.message.emit("info", f"Preset {preset.name}" + (f" — {preset.description}" if preset.description else ""))
