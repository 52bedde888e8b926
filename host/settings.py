"""Host settings (persisted as JSON) and the settings dialog.

Settings live in `$BACKLINE_CONFIG/host.json` (default `~/.config/backline/host.json`). A settings file
that cannot be read is kept aside under a new name and defaults are used, so a bad edit never stops the app
from starting and nothing the user wrote is thrown away.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from backline.bridge.calibrate import load_all
from backline.engines.core.audio import write_bytes_atomic

DIALECTS = ("auto", "reaper", "ableton", "ardour", "bitwig", "backline")
ENGINE_DEVICES = ("auto", "cpu", "cuda")
ENGINE_CONFIGS = ("shipped", "debug")


def config_dir() -> Path:
    """Same folder (and variable) as the bridge's calibration file, bridge.json."""
    return Path(os.environ.get("BACKLINE_CONFIG") or Path.home() / ".config" / "backline")


def default_session_dir() -> Path:
    return Path(os.environ.get("BACKLINE_SESSION_DIR") or Path.home() / "Music" / "Backline" / "Session")


@dataclass
class HostSettings:
    dialect: str = "auto"
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000  # where Backline listens
    daw_port: int = 8000  # where the DAW listens (for AbletonOSC queries, Ardour's /set_surface ...)
    input_device: str = ""  # "" = system default
    output_device: str = ""
    capture_minutes: int = 10
    session_dir: str = field(default_factory=lambda: str(default_session_dir()))
    engine_device: str = "auto"
    engine_config: str = "shipped"
    last_engine: str = "bass"  # the tab that was open at quit
    drum_instrument: str = ""  # a VST3 drum instrument to render drums through ("" = the soundfont kit)

    @classmethod
    def load(cls, path: Path | None = None) -> tuple[HostSettings, str]:
        """(settings, warning). A broken file is renamed aside and defaults are used."""
        path = path or config_dir() / "host.json"
        if not path.exists():
            return cls(), ""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            settings = cls(**{k: v for k, v in data.items() if k in known})
            settings.validate()
            return settings, ""
        except (OSError, ValueError, TypeError) as err:
            aside = path.with_name(f"{path.stem}.broken-{time.strftime('%Y%m%d-%H%M%S')}.json")
            try:
                path.rename(aside)
            except OSError:
                aside = path
            return cls(), f"settings file {path} could not be read ({err}); kept it as {aside.name} and used defaults"

    def validate(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect {self.dialect!r} is not one of {', '.join(DIALECTS)}")
        if self.engine_device not in ENGINE_DEVICES:
            raise ValueError(f"engine device {self.engine_device!r} is not one of {', '.join(ENGINE_DEVICES)}")
        if self.engine_config not in ENGINE_CONFIGS:
            raise ValueError(f"engine config {self.engine_config!r} is not one of {', '.join(ENGINE_CONFIGS)}")
        for port in (self.osc_port, self.daw_port):
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"port {port} is not between 1 and 65535")

    def save(self, path: Path | None = None) -> Path:
        path = path or config_dir() / "host.json"
        return write_bytes_atomic(path, json.dumps(asdict(self), indent=2).encode(), overwrite=True)


def calibration_text() -> str:
    """The capture's latency compensation as the bridge stores it."""
    try:
        cal = load_all().get("calibration")
    except Exception as err:  # a broken bridge.json is reported, not fatal
        return f"unreadable ({err})"
    if not cal:
        return "not calibrated (0 ms)"
    rate = float(cal.get("sample_rate", 48000))
    return (f"{1000 * float(cal.get('unreported_frames', 0)) / rate:.1f} ms compensation "
            f"(round trip {1000 * float(cal.get('roundtrip_frames', 0)) / rate:.1f} ms)")


def audio_device_names(kind: str) -> list[str]:
    """Names of input ('input') or output ('output') devices; empty when there is no sound card."""
    try:
        import sounddevice as sd

        key = "max_input_channels" if kind == "input" else "max_output_channels"
        return [d["name"] for d in sd.query_devices() if d.get(key, 0) > 0]
    except Exception:  # PortAudio missing or no devices: the dialog says so instead of failing
        return []


class SettingsDialog(QDialog):
    """DAW dialect and ports, audio devices, calibration, session folder, engine device."""

    def __init__(self, settings: HostSettings, parent: QWidget | None = None, calibrate=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Backline settings")
        self.setMinimumWidth(520)
        self._calibrate = calibrate
        self.result_settings = HostSettings(**asdict(settings))
        form = QFormLayout()
        form.setVerticalSpacing(8)

        def section(text: str) -> None:
            label = QLabel(text.upper())
            label.setObjectName("Section")
            form.addRow(label)

        section("DAW")
        self.dialect = QComboBox()
        self.dialect.addItems(DIALECTS)
        self.dialect.setCurrentText(settings.dialect)
        self.dialect.setToolTip("auto detects REAPER, Ableton (AbletonOSC), Ardour or Bitwig from their OSC traffic")
        form.addRow("Dialect", self.dialect)
        self.osc_host = QLineEdit(settings.osc_host)
        form.addRow("Listen address", self.osc_host)
        self.osc_port = QSpinBox()
        self.osc_port.setRange(1, 65535)
        self.osc_port.setValue(settings.osc_port)
        form.addRow("Listen port (DAW → Backline)", self.osc_port)
        self.daw_port = QSpinBox()
        self.daw_port.setRange(1, 65535)
        self.daw_port.setValue(settings.daw_port)
        form.addRow("DAW port (Backline → DAW)", self.daw_port)

        section("Audio")
        self.input_device = self._device_combo("input", settings.input_device)
        form.addRow("Capture input (loopback)", self.input_device)
        self.output_device = self._device_combo("output", settings.output_device)
        form.addRow("Audition output", self.output_device)
        self.capture_minutes = QSpinBox()
        self.capture_minutes.setRange(1, 60)
        self.capture_minutes.setSuffix(" min")
        self.capture_minutes.setValue(settings.capture_minutes)
        form.addRow("Capture history", self.capture_minutes)
        row = QHBoxLayout()
        self.latency = QLabel(calibration_text())
        self.latency.setToolTip("measured by the bridge's calibration (click out, click in); stored in bridge.json")
        row.addWidget(self.latency, 1)
        self.calibrate_button = QPushButton("Calibrate…")
        self.calibrate_button.setToolTip("play a click out and record it back in to measure the round trip")
        self.calibrate_button.clicked.connect(self._run_calibration)
        self.calibrate_button.setEnabled(calibrate is not None)
        row.addWidget(self.calibrate_button)
        form.addRow("Latency compensation", row)
        self.calibration_note = QLabel("")
        self.calibration_note.setObjectName("Dim")
        self.calibration_note.setWordWrap(True)
        form.addRow("", self.calibration_note)

        section("Session")
        row = QHBoxLayout()
        self.session_dir = QLineEdit(settings.session_dir)
        row.addWidget(self.session_dir, 1)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(browse)
        form.addRow("Session folder", row)

        section("Engine")
        self.engine_device = QComboBox()
        self.engine_device.addItems(ENGINE_DEVICES)
        self.engine_device.setCurrentText(settings.engine_device)
        form.addRow("Device", self.engine_device)
        self.engine_config = QComboBox()
        self.engine_config.addItems(ENGINE_CONFIGS)
        self.engine_config.setCurrentText(settings.engine_config)
        self.engine_config.setToolTip("'debug' runs tiny random-weight models: fast, for trying the app out")
        form.addRow("Weights", self.engine_config)

        section("Instruments")
        row = QHBoxLayout()
        self.drum_instrument = QLineEdit(settings.drum_instrument)
        self.drum_instrument.setPlaceholderText("the soundfont drum kit (choose one in the Drums panel)")
        self.drum_instrument.setToolTip("a VST3 drum instrument to render the drums through instead of the "
                                        "soundfont kit; the MIDI is the same either way")
        row.addWidget(self.drum_instrument, 1)
        pick = QPushButton("Browse…")
        pick.clicked.connect(self._browse_instrument)
        row.addWidget(pick)
        form.addRow("Drum instrument (VST3)", row)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _device_combo(self, kind: str, current: str) -> QComboBox:
        combo = QComboBox()
        names = audio_device_names(kind)
        combo.addItem("System default", "")
        for name in names:
            combo.addItem(name, name)
        if current and current not in names:
            combo.addItem(f"{current} (not connected)", current)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        if not names:
            combo.setToolTip(f"no audio {kind} devices were found on this machine")
        return combo

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Session folder", self.session_dir.text())
        if folder:
            self.session_dir.setText(folder)

    def _browse_instrument(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Drum instrument (VST3)", self.drum_instrument.text(),
                                              "VST3 instruments (*.vst3);;All files (*)")
        if path:
            self.drum_instrument.setText(path)

    def _run_calibration(self) -> None:
        try:
            note = self._calibrate()
        except Exception as err:  # the dialog reports it; calibration is optional
            self.calibration_note.setText(f"Calibration failed: {err}")
            return
        self.latency.setText(calibration_text())
        self.calibration_note.setText(note)

    def accept(self) -> None:
        s = self.result_settings
        s.dialect, s.osc_host = self.dialect.currentText(), self.osc_host.text().strip() or "127.0.0.1"
        s.osc_port, s.daw_port = self.osc_port.value(), self.daw_port.value()
        s.input_device, s.output_device = self.input_device.currentData() or "", self.output_device.currentData() or ""
        s.capture_minutes = self.capture_minutes.value()
        s.session_dir = self.session_dir.text().strip() or str(default_session_dir())
        s.engine_device, s.engine_config = self.engine_device.currentText(), self.engine_config.currentText()
        s.drum_instrument = self.drum_instrument.text().strip()
        super().accept()
