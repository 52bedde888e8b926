"""Loopback latency calibration: a click out, a click in.

One duplex stream plays short clicks at known output frames and records the input; wherever the loopback
(a cable, the interface's loopback, a JACK connection) brings them back, the delay in frames is the round
trip. Duplex matters: input and output frames are counted by the same callback, so the measurement needs no
clock mapping. Several clicks are measured and the median taken; the spread says how much to trust it.

The round trip says how long the interface takes; it cannot say how the DAW's *reported* position relates
to the audio it sends, which is what capture stamps need. `measure_grid` measures exactly that: with the
DAW's metronome playing into the loopback, it captures a few beats stamped by the transport and takes the
median distance of each click from the transport's beat grid. That offset is the capture's compensation.

Results are stored in `~/.config/backline/bridge.json` (`BACKLINE_CONFIG` overrides the folder);
`capture_latency()` gives the capture its compensation: the grid offset when measured, otherwise the part of
the round trip PortAudio did not report as latency.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backline.bridge import devices
from backline.engines.core.audio import write_bytes_atomic
from backline.engines.core.errors import ConfigError, DeviceError


@dataclass(frozen=True)
class Calibration:
    roundtrip_frames: int
    spread_frames: int            # max - min over the clicks found
    clicks_found: int
    sample_rate: int
    reported_input: float         # seconds, PortAudio's input latency
    reported_output: float        # seconds, PortAudio's output latency
    device_in: str
    device_out: str

    @property
    def roundtrip_ms(self) -> float:
        return 1000.0 * self.roundtrip_frames / self.sample_rate

    @property
    def unreported_frames(self) -> int:
        reported = round((self.reported_input + self.reported_output) * self.sample_rate)
        return self.roundtrip_frames - reported


def click(sample_rate: int, ms: float = 2.0) -> np.ndarray:
    """A short raised-cosine burst: easy to find, not a DC step."""
    n = max(int(sample_rate * ms / 1000), 8)
    return (0.8 * np.sin(np.linspace(0, np.pi, n)) ** 2).astype(np.float32)


def find_clicks(recorded: np.ndarray, sent_at: list[int], pulse: np.ndarray, max_delay: int) -> list[int]:
    """Delay of each click: the cross-correlation peak within `max_delay` frames after it was sent."""
    delays = []
    for at in sent_at:
        seg = recorded[at:at + max_delay + len(pulse)]
        if len(seg) < len(pulse):
            continue
        corr = np.correlate(seg, pulse, mode="valid")
        peak = int(np.argmax(corr))
        noise = float(np.median(np.abs(corr))) + 1e-9
        if corr[peak] > 20 * noise and corr[peak] > 0.05 * float(np.dot(pulse, pulse)):
            delays.append(peak)
    return delays


def measure(*, input_device: str | int | None = None, output_device: str | int | None = None,
            hostapi: str | None = None, sample_rate: int = 48000, clicks: int = 5, interval: float = 0.25,
            max_delay: float = 0.5, on_start=None) -> Calibration:
    """Play `clicks` clicks `interval` s apart and measure the round trip (see module docstring).

    `on_start(stream)` runs right after the stream starts, before the first click (JACK: wire the loopback).
    """
    sd = devices.sd()
    i_in = devices.find_device(input_device, "input", hostapi=hostapi)
    i_out = devices.find_device(output_device, "output", hostapi=hostapi)
    pulse = click(sample_rate)
    spacing = int(interval * sample_rate)
    lead = int(0.5 * sample_rate)
    total = lead + clicks * spacing + int(max_delay * sample_rate) + spacing
    out_signal = np.zeros(total, np.float32)
    sent_at = [lead + k * spacing for k in range(clicks)]
    for at in sent_at:
        out_signal[at:at + len(pulse)] = pulse
    recorded = np.zeros(total, np.float32)
    pos = [0]
    done = threading.Event()

    def callback(indata, outdata, frames, time_info, status) -> None:
        p = pos[0]
        n = min(frames, total - p)
        outdata.fill(0.0)
        if n > 0:
            outdata[:n, 0] = out_signal[p:p + n]
            if outdata.shape[1] > 1:
                outdata[:n, 1] = out_signal[p:p + n]
            recorded[p:p + n] = indata[:n, 0]
        pos[0] = p + frames
        if pos[0] >= total:
            done.set()

    try:
        stream = sd.Stream(device=(i_in, i_out), channels=(1, 2), samplerate=sample_rate, blocksize=0,
                           dtype="float32", callback=callback)
    except sd.PortAudioError as err:
        raise DeviceError(f"cannot open {i_in}/{i_out} for calibration ({err})",
                          fix="pick devices that both run at the same sample rate") from err
    devices.register(stream)
    try:
        stream.start()
        if on_start is not None:
            on_start(stream)
        if not done.wait(total / sample_rate + 10.0):
            raise DeviceError("the audio device stopped during calibration", fix="check the device and retry")
        stream.stop()
        reported_in, reported_out = stream.latency
    finally:
        stream.close()
        devices.unregister(stream)
    delays = find_clicks(recorded, sent_at, pulse, int(max_delay * sample_rate))
    if len(delays) < max(2, clicks // 2):
        raise DeviceError(f"heard {len(delays)} of {clicks} clicks back",
                          fix="connect the output to the input (loopback cable or routing) and raise the level")
    return Calibration(int(np.median(delays)), int(max(delays) - min(delays)), len(delays), sample_rate,
                       float(reported_in), float(reported_out), sd.query_devices(i_in)["name"],
                       sd.query_devices(i_out)["name"])


@dataclass(frozen=True)
class GridCalibration:
    offset_frames: float          # median (click as stamped - beat grid line), in DAW samples
    spread_frames: float          # interquartile range of those offsets
    clicks: int
    sample_rate: int
    latency_before: float         # the compensation the capture already applied (seconds)

    @property
    def capture_latency(self) -> float:
        """Compensation that puts the clicks on the grid: what was applied plus what is left."""
        return self.latency_before + self.offset_frames / self.sample_rate


def click_positions(x: np.ndarray, sample_rate: int, min_gap: float = 0.05, rel: float = 0.3) -> np.ndarray:
    """Sample indices where `x` (mono) first crosses `rel` of its peak after `min_gap` s of no crossing."""
    env = np.abs(x)
    if env.size == 0 or env.max() <= 0:
        return np.zeros(0, np.int64)
    above = np.flatnonzero(env >= rel * env.max())
    if above.size == 0:
        return above
    keep = np.r_[True, np.diff(above) > int(min_gap * sample_rate)]
    return above[keep]


def measure_grid(capture, seconds: float = 6.0, division: int = 1, timeout: float = 30.0) -> GridCalibration:
    """Capture `seconds` of a metronome while the DAW plays; offset of the clicks from the beat grid.

    `capture` is a started `LoopbackCapture` whose transport follows the DAW. `division` is clicks per
    quarter note (1: a click on every quarter). Offsets wrap into half a grid step, so the DAW's clicks must be
    closer to their beat than half a beat (true for any sane setup).
    """
    import time as _time

    tr = capture.transport
    deadline = _time.monotonic() + timeout
    while not tr.playing or capture.captured_until() is None:
        if _time.monotonic() > deadline:
            raise DeviceError("the DAW did not start playing", fix="press play with the metronome on, then retry")
        _time.sleep(0.05)
    first = capture.captured_until()
    target = first + seconds * tr.sample_rate
    while (capture.captured_until() or 0) < target:
        if _time.monotonic() > deadline + seconds or not tr.playing:
            raise DeviceError("the DAW stopped during calibration", fix="let it play for the whole measurement")
        _time.sleep(0.05)
    start, stop = int(first), int(target)
    take = capture.extract(start, stop)
    mono = take.audio.samples.mean(axis=0)
    for a, b in take.gaps:  # no clicks from where nothing was captured
        mono[a - start:b - start] = 0.0
    clicks = click_positions(mono, tr.sample_rate) + start
    grid = np.array(tr.timeline.grid_samples(start - tr.sample_rate, stop + tr.sample_rate, division), np.int64)
    if clicks.size < 3 or grid.size < 2:
        raise DeviceError(f"heard {clicks.size} metronome clicks", fix="turn the DAW's metronome on and up")
    nearest = grid[np.clip(np.searchsorted(grid, clicks), 1, grid.size - 1) - 1]
    step = float(np.median(np.diff(grid)))
    offsets = (clicks - nearest + step / 2) % step - step / 2
    q1, med, q3 = np.percentile(offsets, [25, 50, 75])
    return GridCalibration(float(med), float(q3 - q1), int(clicks.size), tr.sample_rate, capture.latency)


def save_grid(cal: GridCalibration, path: Path | None = None) -> Path:
    path = path or config_path()
    data = load_all(path)
    data["grid"] = {**asdict(cal), "capture_latency": cal.capture_latency}
    return write_bytes_atomic(path, json.dumps(data, indent=1).encode(), overwrite=True)


def config_path() -> Path:
    root = Path(os.environ.get("BACKLINE_CONFIG", Path.home() / ".config" / "backline"))
    return root / "bridge.json"


def save(cal: Calibration, path: Path | None = None) -> Path:
    """Store the calibration (our own settings file, so replacing the previous one is intended)."""
    path = path or config_path()
    data = load_all(path)
    data["calibration"] = {**asdict(cal), "unreported_frames": cal.unreported_frames}
    return write_bytes_atomic(path, json.dumps(data, indent=1).encode(), overwrite=True)


def load_all(path: Path | None = None) -> dict:
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read bridge settings ({err})", path=path, fix="delete it and calibrate again") from err
    return data if isinstance(data, dict) else {}


def capture_latency(path: Path | None = None) -> float:
    """Seconds the capture should subtract from its stamps (0 when never calibrated)."""
    data = load_all(path)
    if data.get("grid"):
        return float(data["grid"]["capture_latency"])
    cal = data.get("calibration")
    if not cal:
        return 0.0
    return float(cal.get("unreported_frames", 0)) / float(cal.get("sample_rate", 48000))


def jack_loopback(stream: object = None) -> None:
    """Wire PortAudio's JACK output ports to its input ports (and nothing else): a software loopback."""
    try:
        import jack
    except (ImportError, OSError) as err:
        raise DeviceError("--jack-loopback needs JACK-Client and a running JACK server") from err
    client = jack.Client("backline-calibrate", no_start_server=True)
    try:
        outs = client.get_ports("PortAudio.*:out_", is_audio=True, is_output=True)
        ins = client.get_ports("PortAudio.*:in_", is_audio=True, is_input=True)
        if not outs or not ins:
            raise DeviceError("no PortAudio ports on the JACK server", fix="open the devices on the JACK host API")
        for port in ins + outs:
            for other in client.get_all_connections(port):
                if port.is_input:
                    client.disconnect(other, port)
                else:
                    client.disconnect(port, other)
        for src, dst in zip(outs, ins):
            client.connect(src, dst)
    finally:
        client.close()
