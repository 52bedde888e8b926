"""The DAW link: the bridge's Qt-free transport and OSC listener, wrapped in Qt signals.

The bridge calls its callbacks on the OSC thread; each callback here only emits a signal, which Qt queues
to the UI thread, so neither side ever waits on the other. The position display is refreshed from
`Transport.snapshot()` on a 10 Hz timer (the transport extrapolates between DAW ticks), which costs nothing
on the OSC hot path.
"""

from __future__ import annotations

import math

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from backline.bridge.transport import Event, Transport, TransportSnapshot
from backline.engines.errors import BacklineError

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

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.transport = Transport()
        self.bridge = None
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
        from backline.bridge.osc import DIALECTS, OscBridge

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
        self._timer.stop()
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None

    def close(self) -> None:
        self.stop()
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
        snap = self.transport.snapshot()
        heard = math.isfinite(snap.last_message_age)
        if heard and snap.last_message_age < self.transport.silence_timeout and not self.connected:
            self.connected = True
        self.status.emit(snap)
