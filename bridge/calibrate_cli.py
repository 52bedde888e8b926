"""`backline bridge calibrate`: measure the loopback latency (a click out, a click in) and save it.

Two measurements (see `backline.bridge.calibrate`):
- default: the round trip of the loopback path, output → input, from Backline's own clicks;
- `--daw`: the DAW's metronome against the transport's beat grid — the compensation the capture needs,
  because it also covers how the DAW reports its position.
"""

from __future__ import annotations

import argparse
import time

from backline.bridge import calibrate, devices
from backline.bridge.capture import LoopbackCapture
from backline.bridge.jack_transport import JackTransportSource
from backline.bridge.osc import OscBridge
from backline.bridge.transport import Transport

HELP = "measure loopback latency (click out, click in) and save it for the capture"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default=None, help="input device (name part or index; default: system's)")
    parser.add_argument("--output", default=None, help="output device (name part or index; default: system's)")
    parser.add_argument("--hostapi", default=None, help='e.g. "JACK Audio Connection Kit", "ALSA"')
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--clicks", type=int, default=5, help="clicks to measure (median is kept)")
    parser.add_argument("--jack-loopback", action="store_true",
                        help="wire PortAudio's JACK outputs straight to its inputs (a software loopback)")
    parser.add_argument("--daw", action="store_true",
                        help="measure the DAW's metronome against its beat grid (DAW playing, metronome on)")
    parser.add_argument("--dialect", default="auto", help="--daw: the DAW's OSC dialect")
    parser.add_argument("--host", default="127.0.0.1", help="--daw: address to listen on for OSC")
    parser.add_argument("--port", type=int, default=None, help="--daw: OSC port to listen on")
    parser.add_argument("--jack-transport", action="store_true", help="--daw: follow the JACK transport")
    parser.add_argument("--seconds", type=float, default=6.0, help="--daw: seconds of metronome to measure")
    parser.add_argument("--no-save", action="store_true", help="only print; keep the stored calibration")


def _device(spec: str | None) -> str | int | None:
    return int(spec) if spec is not None and spec.isdigit() else spec


def _daw(args: argparse.Namespace) -> int:
    tr = Transport(args.sample_rate)
    hostapi = args.hostapi or (devices.JACK_HOSTAPI if args.jack_transport else None)
    source = None
    if args.jack_transport:
        source = JackTransportSource(tr).start()
    else:
        source = OscBridge(tr, dialect=args.dialect, host=args.host, port=args.port).start()
    try:
        with LoopbackCapture(tr, device=_device(args.input), hostapi=hostapi, seconds=args.seconds + 30,
                             latency=calibrate.capture_latency(),
                             jack=source if args.jack_transport else None) as cap:
            print(f"capturing {args.seconds:g} s of the DAW's metronome from {cap.device_name!r}; press play "
                  "with the metronome on", flush=True)
            time.sleep(0.5)
            cal = calibrate.measure_grid(cap, args.seconds)
    finally:
        source.stop()
    print(f"metronome vs beat grid: {cal.offset_frames:+.0f} frames ({1000 * cal.offset_frames / cal.sample_rate:+.2f}"
          f" ms) over {cal.clicks} clicks, spread {cal.spread_frames:.0f} frames; capture compensation "
          f"{1000 * cal.capture_latency:+.2f} ms")
    if not args.no_save:
        print(f"saved to {calibrate.save_grid(cal)}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.daw:
        return _daw(args)
    hostapi = args.hostapi or (devices.JACK_HOSTAPI if args.jack_loopback else None)
    cal = calibrate.measure(input_device=_device(args.input), output_device=_device(args.output),
                            hostapi=hostapi, sample_rate=args.sample_rate, clicks=args.clicks,
                            on_start=calibrate.jack_loopback if args.jack_loopback else None)
    print(f"round trip {cal.roundtrip_frames} frames = {cal.roundtrip_ms:.2f} ms at {cal.sample_rate} Hz "
          f"({cal.clicks_found}/{args.clicks} clicks, spread {cal.spread_frames} frames); "
          f"reported in {cal.reported_input * 1000:.2f} ms + out {cal.reported_output * 1000:.2f} ms; "
          f"unreported {cal.unreported_frames} frames; {cal.device_out} -> {cal.device_in}")
    if not args.no_save:
        print(f"saved to {calibrate.save(cal)}")
    return 0
