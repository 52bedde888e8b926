"""Loopback capture: a bounded ring of the DAW's mix, every block stamped with the DAW sample position.

`CaptureRing` is the buffer (default 10 minutes at 48 kHz stereo; memory is allocated once and never grows).
Each audio block written into it is logged with its capture time (monotonic seconds, from PortAudio's ADC
time), the DAW position the `Transport` gives for that time (minus the latency compensation), whether the
DAW was playing, and the callback's overflow flags. Nothing is interpreted in the audio callback.

`CaptureRing.extract(start, stop)` does the interpreting, when the host asks for "bars 9–24":
- rolling blocks whose stamps continue each other (within `continuity` seconds) form a *pass*; a pass maps
  its frames to DAW samples with one offset — the median of its blocks' stamps — so the audio inside a pass
  stays sample-continuous even though OSC stamps jitter by a millisecond or two;
- a locate, a stop, an overflow or lost frames (ADC time jumping) end a pass;
- the newest pass wins where passes overlap (the musician played the bars again);
- whatever no pass covers is silence in the result *and* listed in `Extract.gaps` — never papered over.

`LoopbackCapture` runs the sounddevice input stream (`blocksize=0`: whatever the host API likes best) and a
watchdog: a device that stops delivering (unplugged, JACK server gone) is logged once and abandoned, the
buffer stays queryable, and the capture re-opens when the device is back (when PortAudio can safely re-scan).
A device that comes back at another sample rate gets a new ring (an *epoch*); the previous ring is kept and
queries read from both, resampling with the one resampler.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from backline.bridge import devices
from backline.bridge.transport import Transport, _OnceLog
from backline.engines.core.audio import resample as _resample

if TYPE_CHECKING:  # pragma: no cover
    from backline.bridge.jack_transport import JackTransportSource
from backline.engines.core.audio import Audio, resample
from backline.engines.core.errors import AudioFormatError, DeviceError

log = logging.getLogger("backline.bridge")

FLAG_OVERFLOW = 1
FLAG_UNDERFLOW = 2
FLAG_PRIMING = 4


@dataclass(frozen=True)
class Extract:
    """Audio for DAW samples `[start, stop)` plus an honest account of where it came from."""

    audio: Audio
    start: int
    stop: int
    gaps: list[tuple[int, int]]          # DAW sample ranges with no captured audio (silence in `audio`)
    passes: int                          # how many passes (takes) contributed
    overflows: int                       # input overflows reported inside the passes used

    @property
    def coverage(self) -> float:
        missing = sum(b - a for a, b in self.gaps)
        return 1.0 - missing / max(self.stop - self.start, 1)


@dataclass
class _Pass:
    first: int            # stream frame of its first block
    end: int              # stream frame after its last block
    offsets: list[float] = field(default_factory=list)
    overflows: int = 0


class CaptureRing:
    """Ring buffer of `[frames, channels]` float32 plus a log of the blocks written into it."""

    def __init__(self, sample_rate: int = 48000, channels: int = 2, seconds: float = 600.0, *,
                 daw_rate: int | None = None, continuity: float = 0.025, min_block: int = 64) -> None:
        if sample_rate <= 0 or channels <= 0 or seconds <= 0:
            raise AudioFormatError(f"cannot capture {channels} channels at {sample_rate} Hz for {seconds} s")
        self.sample_rate = int(sample_rate)
        self.daw_rate = int(daw_rate or sample_rate)
        self.channels = int(channels)
        self.capacity = int(round(seconds * sample_rate))
        self.samples = np.zeros((self.capacity, self.channels), np.float32)
        self.written = 0   # stream frames ever written
        self.continuity = continuity
        nb = max(self.capacity // min_block, 16)
        self._b_frame = np.zeros(nb, np.int64)
        self._b_len = np.zeros(nb, np.int32)
        self._b_daw = np.zeros(nb, np.float64)
        self._b_time = np.zeros(nb, np.float64)
        self._b_play = np.zeros(nb, np.bool_)
        self._b_flags = np.zeros(nb, np.uint8)
        self.blocks = 0    # blocks ever written
        self.overflows = 0

    # --- writing (audio callback) --------------------------------------------------------------------
    def write(self, block: np.ndarray, daw_position: float, playing: bool, adc_time: float, flags: int = 0) -> None:
        """Append one `[frames, channels]` block. Real-time safe: numpy copies and scalar stores only."""
        n = block.shape[0]
        if n == 0:
            return
        if n > self.capacity:  # absurdly large block: keep its newest part
            block, n = block[-self.capacity:], self.capacity
        i = self.written % self.capacity
        first = min(n, self.capacity - i)
        self.samples[i:i + first] = block[:first]
        if first < n:
            self.samples[:n - first] = block[first:]
        k = self.blocks % self._b_frame.shape[0]
        self._b_frame[k] = self.written
        self._b_len[k] = n
        self._b_daw[k] = daw_position
        self._b_time[k] = adc_time
        self._b_play[k] = playing
        self._b_flags[k] = flags
        if flags & FLAG_OVERFLOW:
            self.overflows += 1
        self.blocks += 1          # publish the block last: readers never see a half-written entry
        self.written += n

    # --- reading (any thread) ------------------------------------------------------------------------
    def _block_log(self) -> tuple[np.ndarray, ...]:
        blocks, written = self.blocks, self.written
        nb = self._b_frame.shape[0]
        lo = max(0, blocks - nb + 1)  # one entry of slack against the writer
        idx = np.arange(lo, blocks) % nb
        frame, length = self._b_frame[idx].copy(), self._b_len[idx].copy()
        keep = frame >= written - self.capacity + 1  # audio still in the ring
        return (frame[keep], length[keep], self._b_daw[idx][keep], self._b_time[idx][keep],
                self._b_play[idx][keep], self._b_flags[idx][keep])

    def _frames(self, first: int, stop: int) -> np.ndarray | None:
        """Stream frames `[first, stop)` as `[channels, n]`, or None if overwritten meanwhile."""
        n = stop - first
        if n <= 0:
            return np.zeros((self.channels, 0), np.float32)
        i = first % self.capacity
        a = min(n, self.capacity - i)
        out = np.empty((n, self.channels), np.float32)
        out[:a] = self.samples[i:i + a]
        if a < n:
            out[a:] = self.samples[:n - a]
        if first < self.written - self.capacity:  # the writer lapped us while copying
            return None
        return out.T

    def passes(self) -> list[tuple[int, int, float, int]]:
        """(first stream frame, end stream frame, DAW offset, overflows) of every pass, oldest first.

        DAW position of stream frame f inside a pass = offset + (f - first) * daw_rate / sample_rate.
        """
        frame, length, daw, when, play, flags = self._block_log()
        ratio = self.daw_rate / self.sample_rate
        tol_daw = self.continuity * self.daw_rate
        out: list[tuple[int, int, float, int]] = []
        cur: _Pass | None = None
        prev_end_daw = prev_end_time = 0.0
        prev_end_frame = -1
        for j in range(frame.shape[0]):
            f, n = int(frame[j]), int(length[j])
            if not play[j]:
                if cur is not None:
                    out.append(_close(cur))
                    cur = None
                continue
            lost = (cur is not None and (abs(daw[j] - prev_end_daw) > tol_daw or f != prev_end_frame
                                         or abs(when[j] - prev_end_time) > self.continuity))
            if cur is None or lost or flags[j] & FLAG_OVERFLOW:
                if cur is not None:
                    out.append(_close(cur))
                cur = _Pass(f, f)
            cur.offsets.append(float(daw[j]) - (f - cur.first) * ratio)
            cur.end = f + n
            cur.overflows += int(flags[j] & FLAG_OVERFLOW != 0)
            prev_end_daw = float(daw[j]) + n * ratio
            prev_end_time = float(when[j]) + n / self.sample_rate
            prev_end_frame = f + n
        if cur is not None:
            out.append(_close(cur))
        return out

    def extract(self, start: int, stop: int) -> Extract:
        """DAW samples `[start, stop)` at the DAW rate, newest pass first, gaps listed."""
        start, stop = int(start), int(stop)
        if stop <= start:
            raise AudioFormatError(f"empty capture range {start}..{stop}", fix="ask for at least one sample")
        out = np.zeros((self.channels, stop - start), np.float32)
        covered = np.zeros(stop - start, np.bool_)
        counts = [0, 0]
        self._fill(out, covered, start, stop, reversed(self.passes()), counts)
        return Extract(Audio(out, self.daw_rate), start, stop, _gaps(covered, start), counts[0], counts[1])

    def _fill(self, out: np.ndarray, covered: np.ndarray, start: int, stop: int, passes, counts: list[int]) -> None:
        ratio = self.daw_rate / self.sample_rate
        for first, end, offset, ovf in passes:
            d0 = offset
            d1 = offset + (end - first) * ratio
            a, b = max(start, int(np.ceil(d0 - 1e-6))), min(stop, int(np.floor(d1 + 1e-6)))
            if b <= a or covered[a - start:b - start].all():
                continue
            if ratio == 1.0:
                f0 = first + int(round(a - d0))
                chunk = self._frames(f0, f0 + (b - a))
            else:  # an epoch at another rate: read a little more, resample, trim to the DAW grid
                f0 = first + int(np.floor((a - d0) / ratio))
                f1 = min(end, first + int(np.ceil((b - d0) / ratio)) + 1)
                raw = self._frames(f0, f1)
                chunk = None if raw is None else resample(raw, self.sample_rate, self.daw_rate)
                if chunk is not None:
                    chunk = Audio(chunk, self.daw_rate).slice(0, b - a).samples
            if chunk is None:
                continue
            if chunk.shape[1] < b - a:  # the ring wrapped at the pass's old end
                b = a + chunk.shape[1]
            free = ~covered[a - start:b - start]
            target = out[:, a - start:b - start]
            target[:, free] = chunk[:, free]
            covered[a - start:b - start] = True
            counts[0] += 1
            counts[1] += ovf

    def captured_until(self) -> float | None:
        """DAW position just after the newest block, if the DAW was playing when it was captured."""
        blocks = self.blocks
        if blocks == 0:
            return None
        k = (blocks - 1) % self._b_frame.shape[0]
        if not self._b_play[k]:
            return None
        return float(self._b_daw[k]) + int(self._b_len[k]) * self.daw_rate / self.sample_rate

    def latest(self, seconds: float) -> Audio:
        """The newest `seconds` of raw capture, whatever the transport did (meters, calibration)."""
        n = min(int(seconds * self.sample_rate), self.written, self.capacity)
        written = self.written
        chunk = self._frames(written - n, written)
        return Audio(chunk if chunk is not None else np.zeros((self.channels, 0), np.float32), self.sample_rate)


def _close(p: _Pass) -> tuple[int, int, float, int]:
    return p.first, p.end, float(np.median(p.offsets)), p.overflows


def _mask(gaps: list[tuple[int, int]], start: int, stop: int) -> np.ndarray:
    out = np.zeros(stop - start, np.bool_)
    for a, b in gaps:
        out[a - start:b - start] = True
    return out


def _gaps(covered: np.ndarray, start: int) -> list[tuple[int, int]]:
    if covered.all():
        return []
    edges = np.flatnonzero(np.diff(np.r_[1, covered.view(np.int8), 1].astype(np.int8)))
    return [(start + int(a), start + int(b)) for a, b in zip(edges[::2], edges[1::2])]


class LoopbackCapture:
    """Records an input device into a `CaptureRing`, stamped by `transport`. Use as a context manager.

    `latency` (seconds) is subtracted from every stamp: the part of the DAW→capture path PortAudio does not
    report (set it from `backline bridge calibrate`). `device` is a name part or an index; `hostapi`
    narrows the search (e.g. "JACK Audio Connection Kit"). With `jack` (a running `JackTransportSource`)
    and a capture on PortAudio's JACK host API, blocks are stamped with the transport frame of the very JACK
    cycle they were captured in — no clock mapping at all; otherwise with the `Transport`'s position at the
    block's capture time: the count of delivered frames (`clock="frames"`, the default) or PortAudio's ADC
    time (`clock="stream"`), mapped to monotonic time by `devices.StreamClock`. Frames won: on JACK,
    PortAudio's stream time follows JACK's frame-time *estimate* and wandered by up to ~40 ms under load,
    while the frame count was off by a constant one buffer (which calibration removes).
    """

    def __init__(self, transport: Transport, *, device: str | int | None = None, hostapi: str | None = None,
                 channels: int = 2, sample_rate: int | None = None, seconds: float = 600.0,
                 latency: float = 0.0, watchdog: float = 0.25, stall: float = 1.0,
                 jack: JackTransportSource | None = None, clock: str = "frames") -> None:
        if clock not in ("stream", "frames"):
            raise ValueError(f"clock must be 'stream' or 'frames', not {clock!r}")
        self.transport = transport
        self.jack = jack
        self.clock = clock
        self.device_spec, self.hostapi = device, hostapi
        self.channels = channels
        self.sample_rate = int(sample_rate or transport.sample_rate)
        self.seconds = seconds
        self.latency = float(latency)
        self.stall = stall
        self.ring = CaptureRing(self.sample_rate, channels, seconds, daw_rate=transport.sample_rate)
        self.epochs: list[CaptureRing] = []  # older rings (another sample rate), newest last, at most 1
        self.problems = _OnceLog(log)
        self.device_name = ""
        self.hostapi_name = ""
        self.input_latency = 0.0
        self.lost = False
        self.callbacks = 0
        self.callback_seconds = 0.0  # CPU time spent in the callback (benchmarks)
        self._clock = devices.StreamClock()
        self._delivered = 0
        self._stream = None
        self._last_callback = 0.0
        self._watch_stop = threading.Event()
        self._watch_every = watchdog
        self._watcher: threading.Thread | None = None
        self._time = transport.clock

    # --- life cycle ----------------------------------------------------------------------------------
    def start(self) -> LoopbackCapture:
        self._open()
        self._watch_stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="backline-capture-watchdog", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2.0)
            self._watcher = None
        self._close()

    def __enter__(self) -> LoopbackCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open(self) -> None:
        sd = devices.sd()
        index = devices.find_device(self.device_spec, "input", hostapi=self.hostapi)
        info = sd.query_devices(index)
        rate = self.sample_rate
        try:
            stream = sd.InputStream(device=index, channels=self.channels, samplerate=rate, blocksize=0,
                                    dtype="float32", callback=self._callback)
        except sd.PortAudioError as err:
            default = int(info["default_samplerate"])
            if default == rate or default <= 0:
                raise DeviceError(f"cannot open capture device {info['name']!r} ({err})",
                                  fix="check that it exists and is not in exclusive use") from err
            self.problems("rate", f"capture device {info['name']!r} runs at {default} Hz, not {rate} Hz; "
                                  "kept the audio captured so far and continue at the new rate")
            self._new_epoch(default)
            # extract() will resample with torchaudio: load it now, not while the stream runs — loading
            # libtorch holds the GIL for seconds, and JACK drops a client whose callback waits that long
            _resample(np.zeros((1, 64), np.float32), default, self.transport.sample_rate)
            stream = sd.InputStream(device=index, channels=self.channels, samplerate=default, blocksize=0,
                                    dtype="float32", callback=self._callback)
        self.device_name = info["name"]
        self.hostapi_name = devices.hostapi_name(info)
        self.input_latency = float(stream.latency)
        devices.register(stream)
        self._clock = devices.StreamClock()
        self._delivered = 0
        self._last_callback = self._time()
        self._stream = stream
        stream.start()
        self.lost = False

    def _new_epoch(self, rate: int) -> None:
        if self.ring.written:
            self.epochs = [self.ring]  # keep one older ring: bounded memory
        self.sample_rate = rate
        self.ring = CaptureRing(rate, self.channels, self.seconds, daw_rate=self.transport.sample_rate)

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if self.lost:
            # PortAudio's JACK host API aborts the process when it closes a stream whose server died;
            # other host APIs are asked to abort and close, and abandoned only if that fails
            if self.hostapi_name == devices.JACK_HOSTAPI:
                devices.abandon(stream)
                return
            try:
                stream.abort()
                stream.close()
                devices.unregister(stream)
            except Exception as err:
                self.problems("close", f"could not close the lost capture stream ({err})", logging.INFO)
                devices.abandon(stream)
            return
        try:
            stream.stop()
            stream.close()
        finally:
            devices.unregister(stream)

    # --- the audio callback --------------------------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        t0 = time.thread_time()
        now = self._time()
        flags = (FLAG_OVERFLOW if status.input_overflow else 0) | (FLAG_PRIMING if status.priming_output else 0)
        before = self._delivered
        self._delivered = before + frames
        rate = self.sample_rate
        current = time_info.currentTime
        if self.clock == "stream" and current > 0.0:  # PortAudio's own ADC time
            adc_mono = time_info.inputBufferAdcTime + self._clock.offset(now, current)
        else:  # frames delivered so far (lost frames show up as a slip, see devices.StreamClock)
            adc_mono = before / rate + self._clock.offset(now, self._delivered / rate) - self.input_latency
        tr = self.transport
        ring = self.ring
        exact = self.jack.cycle_position() if self.jack is not None else None
        if exact is not None:
            daw, playing = exact[0] - self.latency * ring.daw_rate, exact[1]
        else:
            daw, playing = tr.position_at(adc_mono) - self.latency * ring.daw_rate, tr.playing
        ring.write(indata, daw, playing, adc_mono, flags)
        self._last_callback = now
        self.callbacks += 1
        self.callback_seconds += time.thread_time() - t0

    # --- the watchdog ---------------------------------------------------------------------------------
    def _watch(self) -> None:
        last_tick = self._time()
        suspect = 0
        while not self._watch_stop.wait(self._watch_every):
            now = self._time()
            starved = now - last_tick > self._watch_every + 0.5 * self.stall
            last_tick = now
            if starved:  # this process was frozen (GIL held by a long import, swapping): so was the callback
                suspect = 0
                continue
            if self.ring.overflows:
                self.problems("overflow", f"capture input overflowed ({self.ring.overflows} so far): the "
                                          "machine was too busy; those bars have gaps")
            stalled = not self.lost and self._stream is not None and now - self._last_callback > self.stall
            suspect = suspect + 1 if stalled else 0
            if suspect >= 2:  # two on-time ticks in a row without audio: the device is gone
                suspect = 0
                self.lost = True
                self.problems("lost", f"capture device {self.device_name!r} stopped delivering audio; the "
                                      f"{self.ring.written / self.sample_rate:.1f} s captured are kept",
                              logging.WARNING)
                self._close()
            if self.lost and self._stream is None and devices.rescan():
                try:
                    self._open()
                    log.info("capture device %r is back", self.device_name)
                except Exception as err:  # not back yet: try again next tick
                    self.problems("reopen", f"capture device not back yet ({err})", logging.INFO)

    # --- queries -------------------------------------------------------------------------------------
    def extract(self, start: int, stop: int) -> Extract:
        """DAW samples `[start, stop)`; reads the older epoch for what the current ring lacks."""
        result = self.ring.extract(start, stop)
        for old in reversed(self.epochs):
            if not result.gaps:
                break
            older = old.extract(start, stop)
            missing, old_missing = _mask(result.gaps, start, stop), _mask(older.gaps, start, stop)
            take = missing & ~old_missing
            samples = result.audio.samples.copy()
            samples[:, take] = older.audio.samples[:, take]
            result = Extract(Audio(samples, result.audio.sample_rate), start, stop,
                             _gaps(~(missing & old_missing), start), result.passes + older.passes,
                             result.overflows + older.overflows)
        return result

    def captured_until(self) -> float | None:
        """DAW position the capture has reached (None while the DAW is stopped): wait for it to pass the
        end of the bars you want before asking for them."""
        return self.ring.captured_until()

    def bars(self, first: int, last: int) -> Extract:
        """Bars `first..last` (inclusive, 1-based) on the transport's current timeline."""
        a, b = self.transport.timeline.bar_range_to_samples(first, last)
        return self.extract(a, b)
