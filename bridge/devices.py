"""Audio devices through sounddevice (PortAudio): find one by name, re-scan safely, and map stream time.

PortAudio scans devices once, when `sounddevice` is imported. A JACK server started later (the tests do
that), a USB interface plugged in later, or one that came back after being unplugged is only seen after a
re-scan, and a re-scan (`Pa_Terminate` + `Pa_Initialize`) is only safe with no stream open — PortAudio's JACK
host API even aborts the process when it closes a stream whose server died. So every stream the bridge
opens is registered here, streams whose device died are *abandoned* (never closed), and `rescan()` refuses
while any is open or abandoned.

`StreamClock` turns a stream's sample clock (frames delivered so far / rate, or JACK's frame clock) into
`time.monotonic()` seconds, the clock the `Transport` runs on: the offset between the two is the *smallest*
`monotonic_at_callback - stream_seconds` seen over the last second or two, because a callback can only ever
be late (GIL, scheduler), never early. (PortAudio's own `inputBufferAdcTime` was tried first: with the JACK
host API it follows JACK's frame-time estimate, which wandered by several milliseconds on the dummy backend.)
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

from backline.engines.core.errors import DeviceError, MissingDependencyError

log = logging.getLogger("backline.bridge")

_lock = threading.Lock()
_open: set[int] = set()
_abandoned: list[object] = []
JACK_HOSTAPI = "JACK Audio Connection Kit"


def sd():
    """The sounddevice module, or a clear error when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as err:  # libportaudio2 missing
        raise MissingDependencyError("PortAudio is not installed, so no audio device can be opened",
                                     fix="install libportaudio2 (see packaging/apt-packages.txt)") from err
    return sounddevice


def register(stream: object) -> None:
    with _lock:
        _open.add(id(stream))


def unregister(stream: object) -> None:
    with _lock:
        _open.discard(id(stream))


def abandon(stream: object) -> None:
    """Forget a stream whose device died without closing it (closing can abort inside PortAudio/JACK).

    PortAudio would close it again at interpreter exit, so sounddevice's exit handler is disarmed; the OS
    frees what is left.
    """
    with _lock:
        _open.discard(id(stream))
        _abandoned.append(stream)
    mod = sd()
    try:
        atexit.unregister(mod._exit_handler)
    except AttributeError:  # a sounddevice without it: nothing to disarm
        pass


def rescan() -> bool:
    """Re-read PortAudio's device list. Returns False (and changes nothing) while a stream is open."""
    mod = sd()
    with _lock:
        if _open or _abandoned:
            return False
        mod._terminate()
        mod._initialize()
    return True


def hostapi_name(device: dict) -> str:
    return sd().query_hostapis(device["hostapi"])["name"]


def find_device(spec: str | int | None, kind: str, *, hostapi: str | None = None, refresh: bool = True) -> int:
    """Index of the device matching `spec` (index, exact name, or a case-insensitive part of the name).

    `kind` is "input" or "output". `None` means the host API's (or PortAudio's) default. Unknown names
    trigger one re-scan (when safe) before giving up with a message that lists what exists.
    """
    mod = sd()
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    for attempt in range(2):
        devices = list(mod.query_devices())
        candidates = [i for i, d in enumerate(devices)
                      if d[key] > 0 and (hostapi is None or hostapi_name(d) == hostapi)]
        if isinstance(spec, int) and spec in candidates:
            return spec
        if spec is None and candidates:
            if hostapi is not None:
                default = mod.query_hostapis(devices[candidates[0]]["hostapi"])[f"default_{kind}_device"]
                return default if default in candidates else candidates[0]
            default = mod.default.device[0 if kind == "input" else 1]
            if default is not None and default >= 0 and default in candidates:
                return int(default)
            return candidates[0]
        if isinstance(spec, str):
            exact = [i for i in candidates if devices[i]["name"] == spec]
            part = [i for i in candidates if spec.lower() in devices[i]["name"].lower()]
            if exact or part:
                return (exact or part)[0]
        if attempt == 0 and not (refresh and rescan()):
            break
    names = ", ".join(f"{i}: {d['name']} ({hostapi_name(d)})" for i, d in enumerate(mod.query_devices())
                      if d[key] > 0) or "none"
    what = "the default" if spec is None else repr(spec)
    raise DeviceError(f"no {kind} device matches {what}" + (f" on {hostapi}" if hostapi else ""),
                      fix=f"pick one of: {names}")


class StreamClock:
    """Maps a stream's sample clock to `time.monotonic()` (see the module docstring).

    A lower envelope of `monotonic_at_callback - stream_seconds` over windows of `window` seconds; when
    `slip_count` callbacks in a row arrive more than `slip` seconds later than the envelope allows, frames
    were lost (an xrun the count did not see), and the envelope jumps to the new level at once instead of
    waiting for the window to forget the old one.
    """

    __slots__ = ("_best", "_next", "_window_end", "window", "slip", "slip_count", "_slips", "_slip_min")

    def __init__(self, window: float = 0.5, slip: float = 0.012, slip_count: int = 4) -> None:
        self.window, self.slip, self.slip_count = window, slip, slip_count
        self.reset()

    def reset(self) -> None:
        self._best = self._next = self._slip_min = float("inf")
        self._window_end = 0.0
        self._slips = 0

    def offset(self, now: float, current_time: float) -> float:
        """Update with one callback observation; return monotonic - stream time."""
        obs = now - current_time
        if obs > self._best + self.slip:
            self._slips += 1
            self._slip_min = min(self._slip_min, obs)
            if self._slips >= self.slip_count:  # a slip, not a late callback: re-level now
                self._best = self._next = self._slip_min
                self._window_end = now + self.window
                self._slips, self._slip_min = 0, float("inf")
        else:
            self._slips, self._slip_min = 0, float("inf")
        if obs < self._next:
            self._next = obs
        if obs < self._best:
            self._best = obs
        if now >= self._window_end:  # slide: forget minima older than ~2 windows (clock drift)
            self._best, self._next = self._next, obs
            self._window_end = now + self.window
        return self._best


def now() -> float:
    return time.monotonic()


class portaudio_paused:  # noqa: N801 - used as a context manager, reads like one
    """Terminate PortAudio for the block, initialize it again after.

    Stop a JACK server inside this block: PortAudio's JACK host API asserts (aborting the process) if it
    is terminated after its server died, and it holds a JACK client for as long as it is initialized.
    """

    def __enter__(self) -> portaudio_paused:
        mod = sd()
        with _lock:
            if _open or _abandoned:
                raise DeviceError("cannot pause PortAudio while an audio stream is open",
                                  fix="stop capture and playback first")
            self._was = mod._initialized
            while mod._initialized:
                mod._terminate()
        return self

    def __exit__(self, *exc: object) -> None:
        mod = sd()
        for _ in range(max(self._was, 1)):
            mod._initialize()
