"""The DAW link: the bridge's Qt-free transport and OSC listener, wrapped in Qt signals.

The bridge calls its callbacks on the OSC thread; each callback here only emits a signal, which Qt queues
to the UI thread, so neither side ever waits on the other. The position display is refreshed from
`Transport.snapshot()` on a 10 Hz timer (the transport extrapolates between DAW ticks), which costs nothing
on the OSC hot path.
"""

from __future__ import annotations

import math
import threading
import time

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from backline.bridge.calibrate import capture_latency
from backline.bridge.capture import LoopbackCapture
from backline.bridge.osc import DIALECTS, OscBridge
from backline.bridge.transport import Event, Transport, TransportSnapshot
from backline.engines.core.errors import BacklineError
from backline.host.widgets import peak_summary

SNAPSHOT_SECONDS = 2.0
DISPLAY_SECONDS = 240.0

DIALECT_NAMES = {"reaper": "REAPER", "ableton": "Ableton Live", "ardour": "Ardour", "bitwig": "Bitwig",
                 "backline": "Backline script", "jack": "JACK", "none": "", "osc": "OSC"}


class DawLink(QObject):
    status = pyqtSignal(object)  # TransportSnapshot, ~10 Hz
    transportEvent = pyqtSignal(str, object)  # 'play' | 'stop' | 'locate' | 'tempo' | 'meter', snapshot
    region = pyqtSignal(int, int)  # DAW samples [start, stop)
    generate = pyqtSignal(object)  # OSC args tuple
    disconnected = pyqtSignal(float)  # seconds of silence
    reconnected = pyqtSignal()
    failed = pyqtSignal(str)
    level = pyqtSignal(float)  # input peak (linear), ~10 Hz
    captured = pyqtSignal(object, int, object, object)  # Audio, DAW sample of its first frame, peaks, span

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.transport = Transport()
        self.bridge = None
        self.capture = None  # LoopbackCapture (or anything with .ring and .extract)
        self._snapshot_written = -1
        self._snapshot_time = 0.0
        self._snapshot_thread: threading.Thread | None = None
        self.connected = False  # the DAW has spoken and not gone silent since
        self._unsubscribe: list = []
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._tick)
        for event in (Event.PLAY, Event.STOP, Event.LOCATE, Event.TEMPO, Event.METER):
            self._unsubscribe.append(self.transport.subscribe(
                event, lambda snap, name=event.value: self.transportEvent.emit(name, snap)))
        self._unsubscribe += [
            self.transport.subscribe(Event.REGION, lambda snap, extra: self.region.emit(int(extra[0]), int(extra[1]))),
            self.transport.subscribe(Event.GENERATE, lambda snap, extra: self.generate.emit(tuple(extra))),
            self.transport.subscribe(Event.SILENT, lambda snap, extra: self.disconnected.emit(float(extra))),
            self.transport.subscribe(Event.RESUMED, lambda snap: self.reconnected.emit()),
        ]
        self.disconnected.connect(lambda _age: setattr(self, "connected", False))

    def start(self, dialect: str, host: str, port: int, daw_port: int) -> bool:
        """Listen for the DAW. A busy port is reported through `failed`, and the app carries on without it."""
        self.stop()
        try:
            self.bridge = OscBridge(self.transport, dialect=dialect if dialect in DIALECTS else "auto",
                                    host=host, port=port, daw_port=daw_port).start()
        except BacklineError as err:
            self.bridge = None
            self.failed.emit(f"DAW link is off: {err}")
            return False
        self._timer.start()
        return True

    def stop(self) -> None:
        if self.capture is None:
            self._timer.stop()
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None

    # -- capture ------------------------------------------------------------------------------------------
    def start_capture(self, device: str, minutes: int) -> bool:
        """Record the loopback input. No device (or no sound card) is reported through `failed`."""
        self.stop_capture()
        try:
            capture = LoopbackCapture(self.transport, device=device or None, seconds=60.0 * minutes,
                                      latency=capture_latency()).start()
        except (BacklineError, OSError) as err:
            self.failed.emit(f"Capture is off: {err}")
            return False
        self.attach_capture(capture)
        return True

    def attach_capture(self, capture) -> None:
        """Use a (started) capture; the UI polls its ring."""
        self.capture = capture
        self._snapshot_written = -1
        self._timer.start()

    def stop_capture(self) -> None:
        capture, self.capture = self.capture, None
        if capture is not None and hasattr(capture, "stop"):
            capture.stop()

    def captured_span(self) -> tuple[int, int] | None:
        """DAW samples [first, last) that some pass of the capture covers (None before anything was played)."""
        if self.capture is None:
            return None
        ring = self.capture.ring
        passes = ring.passes()
        if not passes:
            return None
        ratio = ring.daw_rate / ring.sample_rate
        lo = min(offset for _, _, offset, _ in passes)
        hi = max(offset + (end - first) * ratio for first, end, offset, _ in passes)
        return int(math.floor(max(lo, 0))), int(math.ceil(hi))

    def extract(self, start: int, stop: int):
        """Exactly DAW samples [start, stop) from the capture, as the bridge's `Extract` (audio + gaps)."""
        if self.capture is None:
            raise BacklineError("the capture is not running", fix="choose a capture input in Settings ▸ Audio")
        return self.capture.extract(start, stop)

    def _poll_capture(self) -> None:
        ring = self.capture.ring
        self.level.emit(ring.latest(0.05).peak() if ring.written else 0.0)
        now = time.monotonic()
        if ring.written == self._snapshot_written or now - self._snapshot_time < SNAPSHOT_SECONDS:
            return
        if self._snapshot_thread is not None and self._snapshot_thread.is_alive():
            return
        span = self.captured_span()
        if span is None or span[1] <= span[0]:
            return
        self._snapshot_written, self._snapshot_time = ring.written, now
        self._snapshot_thread = threading.Thread(target=self._snapshot, args=(self.capture, span), daemon=True,
                                                 name="backline-capture-snapshot")
        self._snapshot_thread.start()

    def _snapshot(self, capture, span: tuple[int, int]) -> None:
        """Background: copy the newest part of the span and its peaks; the signal hands them to the UI."""
        try:
            start = max(span[0], span[1] - int(DISPLAY_SECONDS * capture.ring.daw_rate))
            audio = capture.extract(start, span[1]).audio
            self.captured.emit(audio, start, peak_summary(audio), span)
        except Exception as err:  # a display copy is not worth a crash; the next one will try again
            self.failed.emit(f"capture display skipped: {err}")

    def close(self) -> None:
        self.stop()
        self.stop_capture()
        self._timer.stop()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    @property
    def port(self) -> int | None:
        return self.bridge.port if self.bridge is not None else None

    def dialect(self) -> str:
        name = (self.bridge.dialect if self.bridge is not None else None) or self.transport.source
        return DIALECT_NAMES.get(name, name or "")

    def snapshot(self) -> TransportSnapshot:
        return self.transport.snapshot()

    def _tick(self) -> None:
        if self.capture is not None:
            self._poll_capture()
        snap = self.transport.snapshot()
        heard = math.isfinite(snap.last_message_age)
        if heard and snap.last_message_age < self.transport.silence_timeout and not self.connected:
            self.connected = True
        self.status.emit(snap)
