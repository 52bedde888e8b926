"""JACK transport as a transport source (Hydrogen, Ardour on JACK, any JACK timebase master).

Hydrogen sends no transport over OSC; it drives the JACK transport instead. A tiny JACK process
callback records, every cycle, the transport position *of that cycle*, the cycle's start on JACK's frame
clock (`jack_last_frame_time`) and `time.monotonic()` — outside the process callback JACK2 may already report
the next cycle's position and its frame-time estimate wanders with the dummy driver, which put stamps one to
several buffers off. A poller thread anchors the `Transport` every `interval` seconds with that cycle's
position at that cycle's time, the frame clock mapped to monotonic time by `devices.StreamClock` (the least
delayed callback wins), exactly as the capture maps PortAudio's stream time. BBT (tempo, meter) is used when a timebase
master publishes it. Uses the `JACK-Client` package (cffi over libjack).
"""

from __future__ import annotations

import logging
import threading
import time

from backline.bridge.devices import StreamClock
from backline.bridge.transport import Transport
from backline.engines.core.errors import DeviceError, MissingDependencyError

log = logging.getLogger("backline.bridge")


def _jack():
    try:
        import jack
    except (ImportError, OSError) as err:
        raise MissingDependencyError("reading the JACK transport needs JACK-Client and libjack",
                                     fix="pip install JACK-Client and apt-get install libjack-jackd2-0") from err
    return jack


class JackTransportSource:
    """Feeds `transport` from the JACK transport of the server named by JACK_DEFAULT_SERVER (or `server`)."""

    def __init__(self, transport: Transport, *, client_name: str = "backline-transport",
                 server: str | None = None, interval: float = 0.01) -> None:
        jack = _jack()
        try:
            self.client = jack.Client(client_name, no_start_server=True, servername=server)
        except jack.JackOpenError as err:
            raise DeviceError("no JACK server is running", fix="start JACK (or pick another transport source)") from err
        self.transport = transport
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self._jack = jack
        # written by the process callback: (cycle start frame, transport frame, rolling, seq, monotonic)
        self._cycle = [0, 0, False, 0, 0.0]
        self._clock = StreamClock()
        self._last_seq = self._last_start = self._wraps = 0
        self._rate = float(self.client.samplerate)
        self._bbt: tuple[float, int, int] | None = None
        self.client.set_process_callback(self._process)
        if self.client.samplerate != transport.sample_rate:
            log.info("JACK runs at %d Hz; the transport follows it", self.client.samplerate)
            transport.set_sample_rate(self.client.samplerate)

    def start(self) -> JackTransportSource:
        self.client.activate()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="backline-jack-transport", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        try:
            self.client.deactivate()
            self.client.close()
        except self._jack.JackError:  # server already gone
            pass

    def __enter__(self) -> JackTransportSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _process(self, frames: int) -> None:
        """JACK's real-time thread: store four numbers, nothing else."""
        state, pos = self.client.transport_query_struct()
        cycle = self._cycle
        cycle[4] = time.monotonic()
        cycle[0], cycle[1], cycle[2] = self.client.last_frame_time, pos.frame, state == self._jack.ROLLING
        if pos.valid & self._jack._lib.JackPositionBBT:
            self._bbt = (pos.beats_per_minute, int(round(pos.beats_per_bar)), int(round(pos.beat_type)))
        cycle[3] += 1

    def cycle_position(self) -> tuple[float, bool] | None:
        """(transport frame, rolling) of the JACK cycle being processed *now*; call it from a JACK audio
        callback (e.g. the capture's, running on PortAudio's JACK host API). Exact — no clock mapping: the
        frame clock is shared by every client of the server. None when no recent cycle was recorded.
        """
        cycle = self._cycle
        while True:
            seq = cycle[3]
            start, frame, rolling = cycle[0], cycle[1], cycle[2]
            if seq == cycle[3]:
                break
        if seq == 0:
            return None
        delta = (self.client.last_frame_time - start) & 0xFFFFFFFF
        if delta > 8 * self.client.blocksize:
            return None
        return (frame + delta if rolling else frame), rolling

    def poll(self) -> None:
        """Anchor the transport once from the last cycle the process callback saw."""
        tr = self.transport
        cycle = self._cycle
        while True:
            seq = cycle[3]
            start, frame, rolling, seen = cycle[0], cycle[1], cycle[2], cycle[4]
            if seq == cycle[3]:
                break
        if seq == 0 or seq == self._last_seq:
            return  # no new cycle
        self._last_seq = seq
        if start < self._last_start:  # the 32-bit frame clock wrapped (~25 h at 48 kHz)
            self._wraps += 1
        self._last_start = start
        clock_seconds = (start + self._wraps * 2**32) / self._rate
        t = clock_seconds + self._clock.offset(seen, clock_seconds)
        bbt = self._bbt
        if bbt is not None:
            tr.set_tempo(float(bbt[0]), t, "jack")
            tr.set_meter(bbt[1], bbt[2], t, "jack")
        if rolling != tr.playing:
            tr.set_position(frame, t, "jack")
            tr.set_playing(rolling, t, "jack")
        else:
            tr.set_position(frame, t, "jack")
        self.polls += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except self._jack.JackError as err:
                tr = self.transport
                tr.problems("jack", f"lost the JACK transport ({err}); keeping the last state")
                return

    # transport control (tests, benchmarks, a host "play" button on JACK setups)
    def play(self) -> None:
        self.client.transport_start()

    def pause(self) -> None:
        self.client.transport_stop()

    def locate(self, frame: int) -> None:
        self.client.transport_frame = int(frame)
