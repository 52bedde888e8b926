"""The capture seam: which mix the engines hear (live loopback or a file), its tempo, chords and selected bars."""

from __future__ import annotations

import threading
from pathlib import Path

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QFileDialog

from backline.engines.core.errors import BacklineError
from backline.engines.listen import parse_chart
from backline.host.capture import CaptureModel
from backline.host.controllers.base import Controller


class CaptureController(Controller):
    """Keeps the capture panel (waveform, tempo, bars, chord lane) and the `CaptureModel` in step. A file is
    decoded on a worker thread; its result comes back through `fileLoaded` on the UI thread."""

    fileLoaded = pyqtSignal(int, object)  # load ticket, (path, audio, timeline, from_file, peaks) | BacklineError

    def __init__(self, window) -> None:
        super().__init__(window)
        self._live_pending: tuple | None = None
        self._file_loads = 0
        self.fileLoaded.connect(self._file_loaded)

    # -- live capture -------------------------------------------------------------------------------------
    def live_captured(self, audio, origin: int, peaks=None, span=None) -> None:
        """A fresh copy of what the loopback capture holds; shown unless the musician pinned a file."""
        self._live_pending = (audio, origin, peaks, span)
        if self.window.capture.path is not None:
            self.status("Live capture is recording — File ▸ Use the live capture (Ctrl+L)", 5000)
            return
        self.use_live_capture()

    def use_live_capture(self) -> None:
        if self._live_pending is None:
            self.show_message("warning", "Nothing has been captured from the DAW yet: check the capture input in "
                                         "Settings ▸ Audio and press play in the DAW.")
            return
        w = self.window
        audio, origin, peaks, span = self._live_pending
        name = w.daw.dialect() or "DAW"
        if w.capture.path is not None:
            w.capture_view.reset_view()
        held = (span[1] - span[0]) / w.daw.transport.sample_rate if span else audio.seconds
        w.capture.set_live(audio, origin, w.daw.transport.timeline, f"live · {name} · {held:.0f} s captured",
                           extractor=w.daw.extract, span=span, peaks=peaks)

    # -- files --------------------------------------------------------------------------------------------
    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Load audio as capture", str(Path.home()),
                                              "Audio (*.wav *.flac *.ogg *.mp3 *.aif *.aiff);;All files (*)")
        if path:
            self.load_file_async(path)

    def load_file_async(self, path: str | Path) -> None:
        """Decode on a worker thread (a long recording takes seconds); the window stays live meanwhile."""
        path = Path(path)
        self.window.capture_source.setText(f"loading {path.name}…")
        self._file_loads += 1
        ticket = self._file_loads
        fallback = self.window.daw.transport.timeline

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
        w = self.window
        if isinstance(result, BacklineError):
            w.capture_source.setText(w.capture.source or "nothing captured yet")
            self.show_message("error", f"Cannot use this as the capture: {result}")
            return
        w.capture_view.reset_view()
        w.capture.apply_file(*result)
        self.show_message("info", f"Loaded {result[0].name} as the captured mix — drag across bars to select")

    def load_file(self, path: str | Path) -> bool:
        w = self.window
        view = w.capture_view.view_range
        w.capture_view.reset_view()  # a new source opens on its own view (set again below by the selection)
        try:
            w.capture.load_file(path, w.daw.transport.timeline)
        except BacklineError as err:
            w.capture_view.view_range = view
            self.show_message("error", f"Cannot use this as the capture: {err}")
            return False
        self.show_message("info", f"Loaded {Path(path).name} as the captured mix — drag across bars to select")
        return True

    # -- the capture panel --------------------------------------------------------------------------------
    def capture_changed(self) -> None:
        w = self.window
        cap = w.capture
        w.capture_view.set_capture(cap.audio, cap.origin, cap.timeline, cap.peaks)
        w.capture_source.setText(cap.source or "nothing captured yet")
        if cap.timeline is not None:
            w.bpm.blockSignals(True)
            w.bpm.setValue(cap.timeline.bpm)
            w.bpm.blockSignals(False)
        lst = cap.listening
        w.heard.setText(f"heard: {lst.bpm:.1f} BPM · {lst.numerator}/{lst.denominator} · bar one at "
                        f"{lst.bar_one:.2f} s · {lst.key_name}{lst.octave_hint('Tempo')}" if lst is not None else "")
        w.chord_lane.setText(cap.chord_chart())
        last = cap.last_bar()
        if last:
            for spin in (w.first_bar, w.last_bar):
                spin.blockSignals(True)
                spin.setRange(cap.first_bar(), last)
                spin.blockSignals(False)
            sel = w.capture_view.selection
            if sel is None or sel[1] > last:
                self.select_bars(cap.first_bar(), min(last, cap.first_bar() + 7))
            else:
                w.capture_view.update()

    def bpm_edited(self) -> None:
        w = self.window
        if w.capture.timeline is not None and abs(w.bpm.value() - w.capture.timeline.bpm) > 1e-6:
            tl = w.capture.timeline
            w.capture.set_tempo(w.bpm.value(), tl.numerator, tl.denominator, keep_bar_one=True)
            w.capture.tempo_from_file = False

    def chords_edited(self) -> None:
        """The musician corrected the chord lane: check it (one-line reason if it is not a chart) and keep it."""
        capture = self.window.capture
        text = self.window.chord_lane.text().strip()
        heard = capture.heard_chart()
        if text == (capture.chart or heard):
            return
        if text:
            try:
                parse_chart(text, capture.timeline.numerator if capture.timeline else 4)
            except BacklineError as err:
                self.show_message("error", f"Chord lane: {err}")
                return
        capture.chart = "" if text == heard else text
        self.show_message("info", "Chord lane updated: the bass follows these chords" if text
                          else "Chord lane cleared: the bass listens for the chords")

    # -- the bar selection --------------------------------------------------------------------------------
    def select_bars(self, first: int, last: int) -> None:
        self.window.capture_view.set_selection(first, last)

    def selection(self) -> tuple[int, int] | None:
        return self.window.capture_view.selection

    def selection_from_view(self, first: int, last: int) -> None:
        w = self.window
        for spin, value in ((w.first_bar, first), (w.last_bar, last)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    def selection_from_spins(self) -> None:
        w = self.window
        first, last = w.first_bar.value(), w.last_bar.value()
        if last < first:
            last = first
        w.capture_view.set_selection(first, last)
