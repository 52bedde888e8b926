"""The DAW bridge: where the DAW is (OSC / JACK transport), what it played (loopback capture), and the way
back (stem preview in sync, takes written for import). Qt-free; the host wraps the callbacks in signals.

Typical host wiring::

    from backline.bridge import Transport, Event, OscBridge, LoopbackCapture, StemPlayer

    transport = Transport(sample_rate=48000)
    transport.subscribe(Event.PLAY, lambda snap: ...)            # runs on the bridge thread: emit a signal
    transport.subscribe(Event.REGION, lambda snap, region: ...)  # (start_sample, stop_sample)
    osc = OscBridge(transport, dialect="auto", port=9000).start()         # 127.0.0.1 by default
    capture = LoopbackCapture(transport, device="Loopback", latency=capture_latency()).start()
    take = capture.bars(9, 24)          # Extract: .audio (Audio, exactly bars 9-24), .gaps, .coverage
    player = StemPlayer(transport, device="Loopback").start(); player.load(stem, start=take.start)
    ...
    for part in (player, capture, osc): part.stop()

Modules: `transport` (Transport, Event, TransportSnapshot), `osc` (OscBridge and the OSC codec), `capture`
(CaptureRing, LoopbackCapture, Extract), `playback` (StemPlayer; takes are written by
`backline.engines.core.takes`), `jack_transport`
(JackTransportSource), `calibrate` (measure, save, capture_latency), `devices` (find_device, rescan),
`timeline` (the one Timeline).
"""

from backline.bridge.calibrate import Calibration, capture_latency
from backline.bridge.capture import CaptureRing, Extract, LoopbackCapture
from backline.bridge.osc import DIALECTS, REMOTE_COMMANDS, OscBridge
from backline.bridge.playback import StemPlayer
from backline.bridge.transport import Event, Transport, TransportSnapshot
from backline.engines.core.timeline import BBT, TempoMap, Timeline, parse_bar_range

__all__ = [
    "BBT", "Calibration", "CaptureRing", "DIALECTS", "Event", "Extract", "LoopbackCapture", "OscBridge",
    "REMOTE_COMMANDS", "StemPlayer", "TempoMap", "Timeline", "Transport", "TransportSnapshot",
    "capture_latency", "parse_bar_range",
]


def __getattr__(name: str):
    if name == "JackTransportSource":
        # lazy: optional dependency (JACK-Client), imported only when asked for
        from backline.bridge.jack_transport import JackTransportSource

        return JackTransportSource
    raise AttributeError(name)
