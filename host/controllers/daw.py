"""The DAW seam: the header's DAW strip and input name, and what the DAW asks for over OSC."""

from __future__ import annotations

from backline.host import theme
from backline.host.calibration import calibrate
from backline.host.controllers.base import Controller
from backline.host.settings import audio_device_names


class DawController(Controller):
    """Shows the DAW link's state and turns its requests (/backline/region, /backline/generate, tempo and meter
    changes) into selections, takes and capture tempo."""

    def update_status(self, snap) -> None:
        w, daw = self.window, self.window.daw
        bridge = daw.bridge
        heard = snap.last_message_age < 1e9
        silent = heard and snap.last_message_age > daw.transport.silence_timeout
        if bridge is None:
            colour, name, state = theme.TEXT_DIM, "Not connected", "DAW link off — see Settings"
        elif not heard:
            colour, name, state = theme.TEXT_DIM, "Waiting for the DAW", f"listening on {bridge.host}:{bridge.port}"
        elif silent:
            colour, name, state = theme.WARN, daw.dialect() or "DAW", f"silent for {snap.last_message_age:.0f} s"
        else:
            colour, name = theme.OK, daw.dialect() or "DAW"
            state = "▶ Playing" if snap.playing else "■ Stopped"
        w.daw_dot.setStyleSheet(f"color: {colour}; font-size: 12pt;")
        w.daw_name.setText(name)
        w.daw_state.setText(f"· {state}")
        if heard:
            w.daw_detail.setText(f"{snap.bpm:.1f} BPM · {snap.numerator}/{snap.denominator} · "
                                 f"{snap.sample_rate / 1000:g} kHz")
            bbt = snap.bbt
            w.position.setText(f"{bbt.bar}.{bbt.beat}.{int(bbt.tick * 4 // (snap.timeline.ppq or 960)) + 1}")
            if w.capture.path is None:
                w.capture_view.set_playhead(int(snap.position))
        else:
            w.daw_detail.setText(f"dialect: {w.settings.dialect}")
            w.position.setText("–.–.–")

    def transport_event(self, name: str, snap) -> None:
        capture = self.window.capture
        if name in ("tempo", "meter") and capture.audio is not None and not capture.tempo_from_file:
            if capture.live:
                capture.timeline = self.window.daw.transport.timeline
                capture.changed.emit()
            else:
                capture.set_tempo(snap.bpm, snap.numerator, snap.denominator)
        if name == "play":
            self.status("DAW playing", 3000)

    def region(self, start: int, stop: int) -> None:
        """The DAW's time selection (/backline/region) becomes the selected bars."""
        w = self.window
        timeline = w.capture.timeline or w.daw.transport.timeline
        scale = timeline.sample_rate / w.daw.transport.sample_rate
        first = int(timeline.samples_to_bar(start * scale) + 1e-6)
        last = max(first, int(timeline.samples_to_bar(stop * scale) - 1e-6))
        w.capture_control.select_bars(first, last)
        self.show_message("info", f"DAW selection: bars {first}–{last}")

    def generate(self, args: tuple) -> None:
        """/backline/generate [engine]: generate now, with the current panel or the engine named. While a take
        is being made a DAW request is dropped, not queued (a script or a flood repeating it queued 100 jobs)."""
        jobs = self.window.job_control
        if jobs.active:
            self.status("The DAW asked for a take while one is being made: request ignored", 5000)
            return
        name = next((str(a) for a in args if isinstance(a, str) and str(a) in self.window.panels), None)
        if name:
            jobs.show_engine(name)
        jobs.generate()

    def silent(self, age: float) -> None:
        name = self.window.daw.dialect() or "the DAW"
        self.show_message("warning", f"Lost contact with {name}: no OSC for {age:.0f} s. The capture and your takes "
                                     "are kept; check that the DAW is running and its OSC output is on.")

    def reconnected(self) -> None:
        self.show_message("info", f"{self.window.daw.dialect() or 'The DAW'} is back")

    def calibrate(self) -> str:
        """Run the bridge's calibration with the capture paused (it needs the same input), then resume it."""
        w = self.window
        was_capturing = w.daw.capture is not None
        w.daw.stop_capture()
        try:
            return calibrate(w.settings)
        finally:
            if was_capturing:
                w.daw.start_capture(w.settings.input_device, w.settings.capture_minutes)

    def update_input(self) -> None:
        """The header's INPUT line: the device the loopback capture records from, or why there is none."""
        w = self.window
        names = audio_device_names("input")
        capture = w.daw.capture
        if capture is not None and getattr(capture, "device_name", ""):
            w.input_name.setText(capture.device_name)
        elif w.settings.input_device:
            w.input_name.setText(w.settings.input_device + ("" if w.settings.input_device in names
                                                            else " (not connected)"))
        else:
            w.input_name.setText("System default" if names else "No input device")
        w.input_name.setToolTip("loopback input the capture records from (Settings ▸ Audio)")

    def apply_settings(self, old, new) -> None:
        """Restart what the new settings change: the OSC link, the capture input."""
        daw = self.window.daw
        if (old.dialect, old.osc_host, old.osc_port, old.daw_port) != (new.dialect, new.osc_host, new.osc_port,
                                                                       new.daw_port):
            daw.start(new.dialect, new.osc_host, new.osc_port, new.daw_port)
        if (old.input_device, old.capture_minutes) != (new.input_device, new.capture_minutes) \
                and daw.bridge is not None:
            daw.start_capture(new.input_device, new.capture_minutes)
        self.update_input()
