"""The return path: play a generated stem into an output device in sync with the DAW.

`StemPlayer` places a stem at a DAW sample position (usually the start of the bars it was generated for) and,
in the output callback, copies the part of it the DAW is at *when the block will be heard*. The play head
runs freely from block to block (so jitter in the DAW's position reports never clicks) and jumps only when
the transport disagrees by more than `resync` seconds: a locate, a start, a loop. Outside the stem, or while
the DAW is stopped, it outputs silence. On a JACK output with a `JackTransportSource` it follows the JACK
cycle's own transport frame exactly.

Takes reach the disk through the one take writer (`backline.engines.core.takes`), whose report carries the
`daw` block the DAW helper scripts import a take by.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from backline.bridge import devices
from backline.bridge.transport import Transport, _OnceLog
from backline.engines.core.audio import Audio
from backline.engines.core.errors import AudioFormatError

if TYPE_CHECKING:  # pragma: no cover
    from backline.bridge.jack_transport import JackTransportSource

log = logging.getLogger("backline.bridge")


class StemPlayer:
    """Plays `load()`ed stems on an output device following `transport`. Use as a context manager."""

    def __init__(self, transport: Transport, *, device: str | int | None = None, hostapi: str | None = None,
                 channels: int = 2, latency: float = 0.0, resync: float = 0.010, gain: float = 1.0,
                 jack: JackTransportSource | None = None) -> None:
        self.transport = transport
        self.device_spec, self.hostapi = device, hostapi
        self.channels = channels
        self.latency = float(latency)
        self.resync = float(resync)
        self.gain = float(gain)
        self.jack = jack
        self.sample_rate = transport.sample_rate
        self.problems = _OnceLog(log)
        self.resyncs = 0
        self.callbacks = 0
        self._stem: np.ndarray | None = None  # [frames, channels] at the device rate
        self._start = 0
        self._head: int | None = None
        self._lock = threading.Lock()
        self._stream = None
        self._clock = devices.StreamClock()
        self._delivered = 0

    def load(self, stem: Audio, start: int) -> None:
        """Play `stem` from DAW sample `start` on. Resampled / channel-matched here, never in the callback."""
        if start < 0:
            raise AudioFormatError(f"a stem cannot start before the DAW's origin (sample {start})")
        audio = stem.resampled(self.sample_rate).with_channels(self.channels)
        data = np.ascontiguousarray(audio.samples.T * self.gain, dtype=np.float32)
        with self._lock:
            self._stem, self._start, self._head = data, int(start), None

    def unload(self) -> None:
        with self._lock:
            self._stem = None

    def start(self) -> StemPlayer:
        sd = devices.sd()
        index = devices.find_device(self.device_spec, "output", hostapi=self.hostapi)
        stream = sd.OutputStream(device=index, channels=self.channels, samplerate=self.sample_rate, blocksize=0,
                                 dtype="float32", callback=self._callback)
        self.output_latency = float(stream.latency)
        devices.register(stream)
        self._stream = stream
        stream.start()
        return self

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            finally:
                devices.unregister(stream)

    def __enter__(self) -> StemPlayer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        now = time.monotonic()
        before = self._delivered
        self._delivered = before + frames
        rate = self.sample_rate
        if status.output_underflow:
            self._clock.reset()
        # the first frame of this block is heard one block plus the output latency after it is asked for
        dac = before / rate + self._clock.offset(now, before / rate) + self.output_latency + self.latency
        exact = self.jack.cycle_position() if self.jack is not None else None
        if exact is not None:
            pos, playing = exact[0] + self.latency * rate, exact[1]
        else:
            pos, playing = self.transport.position_at(dac), self.transport.playing
        self.callbacks += 1
        stem = self._stem
        if stem is None or not playing:
            outdata.fill(0.0)
            self._head = None
            return
        target = int(round(pos)) - self._start
        head = self._head
        if head is None or abs(target - head) > self.resync * rate:
            if head is not None:
                self.resyncs += 1
            head = target
        outdata.fill(0.0)
        lo, hi = max(head, 0), min(head + frames, stem.shape[0])
        if hi > lo:
            outdata[lo - head:hi - head] = stem[lo:hi]
        self._head = head + frames

