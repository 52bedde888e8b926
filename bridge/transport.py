"""The transport model: where the DAW is, now and between its ticks.

DAWs report their position every ~100 ms (REAPER, AbletonOSC, Ardour) or once per audio cycle (JACK). The
bridge keeps one *anchor* — (position in DAW samples, monotonic time, playing, tempo) — and extrapolates
from it: `position_at(t) = anchor_pos + (t - anchor_time) * sample_rate` while playing. Every setter takes the
message's arrival time so the anchor is honest about *when* the DAW was there.

Why it looks the way it does:
- The setters are the OSC hot path (a REAPER feedback flood is thousands of messages a second). They only
  assign a few floats and compare them with the extrapolated position; they build no objects. Objects
  (`TransportSnapshot`, event callbacks) are made only when something the host cares about changes.
- Events (play, stop, locate, tempo, meter, region, generate, silent, resumed) go to plain callbacks that run
  on the thread that fed the transport (the OSC listener or the JACK poller). Keep them short; the PyQt host
  wraps them by emitting a queued signal. A callback that raises is logged once and never stops the feed.
- A *locate* is a position that disagrees with the extrapolation by more than `locate_tolerance` seconds
  (jumping backwards is always a locate); small disagreements are the DAW's tick jitter and just re-anchor.
- Bar maths uses the one `Timeline` (`self.timeline`), rebuilt only when tempo or meter change.
- Bad values (tempo 0, negative, 10,000; NaN positions; meters like 0/3) are refused, logged once per kind, and
  leave the last good state in place.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from backline.engines.core.errors import TimelineError
from backline.engines.core.timeline import BBT, MAX_BPM, MIN_BPM, Timeline

log = logging.getLogger("backline.bridge")

DEFAULT_SAMPLE_RATE = 48000


class Event(str, enum.Enum):
    """What a host can subscribe to. The payload is always a `TransportSnapshot` (plus `extra` for some)."""

    PLAY = "play"
    STOP = "stop"
    LOCATE = "locate"
    TEMPO = "tempo"
    METER = "meter"
    REGION = "region"      # a helper script sent a region (extra: (start_sample, stop_sample))
    GENERATE = "generate"  # a helper script asked for a generation (extra: tuple of OSC args)
    SILENT = "silent"      # the DAW stopped sending (extra: seconds since the last message)
    RESUMED = "resumed"    # messages flow again after SILENT


@dataclass(frozen=True)
class TransportSnapshot:
    """An immutable copy of the transport at `time` (monotonic seconds), safe to hand to any thread."""

    time: float
    playing: bool
    position: float          # DAW samples at `time` (extrapolated while playing)
    sample_rate: int
    bpm: float
    numerator: int
    denominator: int
    source: str              # dialect / source that last updated it ("reaper", "jack", ...)
    last_message_age: float  # seconds since the DAW last said anything (inf if never)

    @property
    def seconds(self) -> float:
        return self.position / self.sample_rate

    @property
    def timeline(self) -> Timeline:
        return Timeline.constant(self.bpm, self.sample_rate, self.numerator, self.denominator)

    @property
    def bar(self) -> float:
        return self.timeline.samples_to_bar(max(self.position, 0.0))

    @property
    def bbt(self) -> BBT:
        return self.timeline.samples_to_bbt(max(self.position, 0.0))

    def line(self) -> str:
        """One human line: `reaper ▶ 120.00 BPM 4/4  bar 9|1|000  16.000 s  768000 smp`."""
        state = "▶" if self.playing else "■"
        age = "" if self.last_message_age < 2.0 else (
            "  (no messages yet)" if math.isinf(self.last_message_age)
            else f"  (silent {self.last_message_age:.0f} s)")
        return (f"{self.source:<8} {state} {self.bpm:6.2f} BPM {self.numerator}/{self.denominator}  "
                f"bar {self.bbt!s:<12} {self.seconds:9.3f} s {int(self.position):>10d} smp{age}")


class _OnceLog:
    """Log each kind of problem once (then count it), and at most one line per second once a short burst is
    spent (a token bucket: `BURST` lines, refilled at one per second), so a storm of varied bad input never
    floods the log. A kind held back waits in `pending` and is written by a later call or by `flush()` (the
    OSC loop calls it while idle), so no kind of problem goes unreported."""

    BURST = 3
    RATE = 1.0  # lines per second after the burst

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._clock = clock
        self.counts: dict[str, int] = {}
        self._logged: set[str] = set()
        self.pending: dict[str, tuple[str, int]] = {}
        self._tokens = float(self.BURST)
        self._refilled = clock()

    def __call__(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind not in self._logged and kind not in self.pending and self._logger.isEnabledFor(level):
            self.pending[kind] = (message, level)
        self.flush()

    def flush(self) -> None:
        """Write pending lines while the bucket has tokens."""
        if not self.pending:
            return
        now = self._clock()
        self._tokens = min(float(self.BURST), self._tokens + (now - self._refilled) * self.RATE)
        self._refilled = now
        while self.pending and self._tokens >= 1.0:
            kind, (message, level) = next(iter(self.pending.items()))
            del self.pending[kind]
            self._logged.add(kind)
            self._tokens -= 1.0
            self._logger.log(level, "%s (logged once; later ones are counted)", message)


#: /backline/generate requests closer than this (seconds) are one request
GENERATE_MIN_INTERVAL = 1.0


class Transport:
    """Tempo, meter, play state and an extrapolated position; raises `Event`s for the host.

    Thread-safety: one feeder thread at a time calls the setters (the OSC listener or the JACK poller);
    any thread may call `position_at`, `snapshot` and read properties. Reads see a consistent anchor
    thanks to a sequence counter (no lock on the hot path).
    """

    def __init__(self, sample_rate: int = DEFAULT_SAMPLE_RATE, bpm: float = 120.0, numerator: int = 4,
                 denominator: int = 4, *, locate_tolerance: float = 0.05, silence_timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if int(sample_rate) <= 0:
            raise TimelineError(f"sample rate {sample_rate} must be positive",
                                fix="set the DAW project's sample rate, e.g. 48000")
        self.sample_rate = int(sample_rate)
        self.clock = clock
        self.locate_tolerance = float(locate_tolerance)
        self.silence_timeout = float(silence_timeout)
        self._bpm = float(bpm)
        self._num, self._den = int(numerator), int(denominator)
        self._timeline = Timeline.constant(self._bpm, self.sample_rate, self._num, self._den)
        # The anchor. `_seq` is odd while a setter is changing it (readers retry).
        self._seq = 0
        self._pos = 0.0
        self._t = clock()
        self._playing = False
        self._last_msg = -math.inf
        self._silent = False
        self.source = "none"
        self.region: tuple[int, int] | None = None
        self.updates = 0  # messages applied (for stats / benchmarks)
        self.on_update: Callable[[], None] | None = None  # benchmark probe; None in normal use
        self._subs: dict[Event, list[Callable[..., None]]] = {e: [] for e in Event}
        self._sub_lock = threading.Lock()
        self.problems = _OnceLog(log)
        self._last_generate = -math.inf
        self.generate_ignored = 0  # /backline/generate requests coalesced into the one before

    # --- reading -------------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def bpm(self) -> float:
        return self._bpm

    @property
    def meter(self) -> tuple[int, int]:
        return self._num, self._den

    @property
    def timeline(self) -> Timeline:
        """The `Timeline` for the current tempo and meter (the one place bar maths happens)."""
        return self._timeline

    def position_at(self, t: float | None = None) -> float:
        """DAW sample position at monotonic time `t` (default now), extrapolated while playing."""
        if t is None:
            t = self.clock()
        while True:
            seq = self._seq
            pos, t0, playing = self._pos, self._t, self._playing
            if seq == self._seq and not seq & 1:
                break
        return pos + (t - t0) * self.sample_rate if playing else pos

    def snapshot(self, t: float | None = None) -> TransportSnapshot:
        if t is None:
            t = self.clock()
        return TransportSnapshot(t, self._playing, self.position_at(t), self.sample_rate, self._bpm,
                                 self._num, self._den, self.source, t - self._last_msg)

    # --- events --------------------------------------------------------------------------------------
    def subscribe(self, event: Event | str, callback: Callable[..., None]) -> Callable[[], None]:
        """Call `callback(snapshot)` (or `callback(snapshot, extra)` for REGION/GENERATE/SILENT) on `event`.

        Returns a function that unsubscribes.
        """
        ev = Event(event)
        with self._sub_lock:
            self._subs[ev] = [*self._subs[ev], callback]

        def unsubscribe() -> None:
            with self._sub_lock:
                self._subs[ev] = [c for c in self._subs[ev] if c is not callback]
        return unsubscribe

    def _emit(self, event: Event, extra: object = None, t: float | None = None) -> None:
        callbacks = self._subs[event]
        if not callbacks:
            return
        snap = self.snapshot(t)  # at the message's time, not at whenever the callback runs
        for cb in callbacks:
            try:
                cb(snap) if extra is None else cb(snap, extra)
            except Exception as err:  # a host bug must not stop the DAW feed
                self.problems(f"callback:{event.value}", f"a {event.value} event handler raised {err!r}",
                              logging.ERROR)

    # --- feeding (hot path) -----------------------------------------------------------------------------
    def _heard(self, t: float, source: str) -> None:
        self._last_msg = t
        self.updates += 1
        if source is not self.source:
            self.source = source
        if self._silent:
            self._silent = False
            log.info("the DAW (%s) is sending again", source)
            self._emit(Event.RESUMED, None, t)

    def _anchor(self, pos: float, t: float, playing: bool) -> None:
        self._seq += 1
        self._pos, self._t, self._playing = pos, t, playing
        self._seq += 1

    def set_position(self, samples: float, t: float | None = None, source: str = "osc") -> None:
        """The DAW says it is at `samples` (DAW samples) at time `t`."""
        if t is None:
            t = self.clock()
        if not (isinstance(samples, (int, float)) and math.isfinite(samples)) or samples < -1e12 or samples > 1e13:
            self.problems("position", f"{source}: ignored an impossible position {samples!r}")
            return
        self._heard(t, source)
        expected = self.position_at(t)
        jump = samples - expected
        self._anchor(float(samples), t, self._playing)
        # A locate: far from where we thought, or backwards by more than jitter while stopped/playing.
        if abs(jump) > self.locate_tolerance * self.sample_rate:
            self._emit(Event.LOCATE, None, t)
        if self.on_update is not None:
            self.on_update()

    def set_seconds(self, seconds: float, t: float | None = None, source: str = "osc") -> None:
        if isinstance(seconds, (int, float)):
            self.set_position(seconds * self.sample_rate, t, source)
        else:
            self.problems("position", f"{source}: ignored a non-numeric time {seconds!r}")

    def set_quarters(self, quarters: float, t: float | None = None, source: str = "osc") -> None:
        """Position in quarter notes from the timeline origin (AbletonOSC's `current_song_time`)."""
        if not (isinstance(quarters, (int, float)) and math.isfinite(quarters)):
            self.problems("position", f"{source}: ignored a non-numeric beat position {quarters!r}")
            return
        self.set_position(self._timeline.quarters_to_seconds(quarters) * self.sample_rate, t, source)

    def set_bbt(self, bar: int, beat: int, fraction: float, t: float | None = None, source: str = "osc") -> None:
        """Position as 1-based bar and beat plus a 0..1 fraction of the beat."""
        if bar < 1 or not 1 <= beat <= self._num or not 0 <= fraction < 1:
            self.problems("bbt", f"{source}: ignored an impossible bar/beat {bar}|{beat}+{fraction:.2f}")
            return
        tl = self._timeline
        quarters = (bar - 1) * tl.quarters_per_bar + (beat - 1 + fraction) * tl.quarters_per_beat
        self.set_position(tl.quarters_to_seconds(quarters) * self.sample_rate, t, source)

    def set_playing(self, playing: bool, t: float | None = None, source: str = "osc") -> None:
        if t is None:
            t = self.clock()
        self._heard(t, source)
        playing = bool(playing)
        if playing == self._playing:
            return
        self._anchor(self.position_at(t), t, playing)
        self._emit(Event.PLAY if playing else Event.STOP, None, t)

    def set_tempo(self, bpm: float, t: float | None = None, source: str = "osc") -> None:
        if t is None:
            t = self.clock()
        if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
            self.problems("tempo", f"{source}: ignored tempo {bpm!r} BPM (outside {MIN_BPM:g}–{MAX_BPM:g});"
                                   f" keeping {self._bpm:g} BPM")
            return
        self._heard(t, source)
        if abs(bpm - self._bpm) < 1e-6:
            return
        self._bpm = float(bpm)
        self._timeline = Timeline.constant(self._bpm, self.sample_rate, self._num, self._den)
        self._emit(Event.TEMPO, None, t)

    def set_meter(self, numerator: int, denominator: int, t: float | None = None, source: str = "osc") -> None:
        if t is None:
            t = self.clock()
        try:
            num, den = int(numerator), int(denominator)
            timeline = Timeline.constant(self._bpm, self.sample_rate, num, den)
        except (TypeError, ValueError, OverflowError, TimelineError):
            self.problems("meter", f"{source}: ignored time signature {numerator!r}/{denominator!r}")
            return
        if num > 64:
            self.problems("meter", f"{source}: ignored time signature {num}/{den}")
            return
        self._heard(t, source)
        if (num, den) == (self._num, self._den):
            return
        self._num, self._den, self._timeline = num, den, timeline
        self._emit(Event.METER, None, t)

    def set_sample_rate(self, sample_rate: int) -> None:
        """The DAW's project rate changed: keep the position in seconds, rescale to samples."""
        sample_rate = int(sample_rate)
        if sample_rate <= 0 or sample_rate == self.sample_rate:
            return
        t = self.clock()
        seconds = self.position_at(t) / self.sample_rate
        self.sample_rate = sample_rate
        self._timeline = Timeline.constant(self._bpm, sample_rate, self._num, self._den)
        self._anchor(seconds * sample_rate, t, self._playing)

    def set_region(self, start: float, stop: float, source: str = "osc") -> None:
        """A helper script marked a region (DAW samples); the host picks it up as the bars to work on."""
        if not (math.isfinite(start) and math.isfinite(stop)) or start < 0 or stop <= start:
            self.problems("region", f"{source}: ignored region {start!r}..{stop!r} (needs 0 <= start < end)")
            return
        self._heard(self.clock(), source)
        self.region = (int(round(start)), int(round(stop)))
        self._emit(Event.REGION, self.region)

    def request_generate(self, args: tuple, source: str = "osc") -> None:
        """A helper script asks for a take. Requests closer than GENERATE_MIN_INTERVAL to the one before are
        the same press (a script or a flood repeating it): they are coalesced, so 100 messages queue one job."""
        t = self.clock()
        self._heard(t, source)
        if t - self._last_generate < GENERATE_MIN_INTERVAL:
            self.generate_ignored += 1
            self.problems("generate", f"{source}: ignored /backline/generate requests arriving faster than one per "
                                      f"{GENERATE_MIN_INTERVAL:g} s ({self.generate_ignored} so far)")
            return
        self._last_generate = t
        self._emit(Event.GENERATE, args)

    def flush_problems(self) -> None:
        """Write a problem line held back by the one-line-per-second limit (called by feeders while idle)."""
        if self.problems.pending:
            self.problems.flush()

    def check_silence(self, t: float | None = None) -> bool:
        """Raise SILENT once when the DAW has said nothing for `silence_timeout` s; True while silent.

        The feeder calls this when its socket times out. A silent DAW keeps its last state: a playing
        transport goes on extrapolating, because a DAW that stops sending is more often busy than stopped.
        """
        if t is None:
            t = self.clock()
        age = t - self._last_msg
        if not self._silent and math.isfinite(age) and age > self.silence_timeout:
            self._silent = True
            self.problems("silent", f"the DAW ({self.source}) has sent nothing for {age:.1f} s; keeping the "
                                    "last transport state", logging.INFO)
            self._emit(Event.SILENT, age, t)
        return self._silent
