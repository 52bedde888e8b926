"""`backline bridge calibrate`: measure the loopback latency (a click out, a click in) and save it."""

from __future__ import annotations

import argparse

HELP = "measure loopback latency (click out, click in) and save it for the capture"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default=None, help="input device (name part or index; default: system's)")
    parser.add_argument("--output", default=None, help="output device (name part or index; default: system's)")
    parser.add_argument("--hostapi", default=None, help='e.g. "JACK Audio Connection Kit", "ALSA"')
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--clicks", type=int, default=5, help="clicks to measure (median is kept)")
    parser.add_argument("--jack-loopback", action="store_true",
                        help="wire PortAudio's JACK outputs straight to its inputs (a software loopback)")
    parser.add_argument("--no-save", action="store_true", help="only print; keep the stored calibration")


def _device(spec: str | None) -> str | int | None:
    return int(spec) if spec is not None and spec.isdigit() else spec


def run(args: argparse.Namespace) -> int:
    from backline.bridge import calibrate, devices

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
