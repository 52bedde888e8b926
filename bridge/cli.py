"""`backline bridge`: listen to the DAW over OSC (or JACK) and print a live transport line."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from backline.bridge.jack_transport import JackTransportSource
from backline.bridge.osc import DIALECTS, OscBridge
from backline.bridge.transport import Event, Transport
from backline.engines.core.errors import ConfigError

HELP = "show the DAW's live transport over OSC (REAPER, Ableton, Ardour, Bitwig) or JACK"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dialect", choices=DIALECTS, default="auto",
                        help="the DAW's OSC dialect; auto = recognise it from its messages (default)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: only this machine can talk to it)")
    parser.add_argument("--port", type=int, default=None,
                        help="UDP port to listen on (default: 9000; 11001 for ableton)")
    parser.add_argument("--daw-host", default="127.0.0.1", help="where the DAW listens (for queries)")
    parser.add_argument("--daw-port", type=int, default=None,
                        help="the DAW's OSC port (default: 8000; 11000 ableton; 3819 ardour)")
    parser.add_argument("--sample-rate", type=int, default=48000, help="the DAW project's sample rate")
    parser.add_argument("--jack-transport", action="store_true", help="also follow the JACK transport")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between transport lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every kind of problem (once each)")


def run(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise ConfigError(f"--interval {args.interval:g} must be more than 0 seconds", fix="e.g. --interval 0.1")
    if args.seconds < 0:
        raise ConfigError(f"--seconds {args.seconds:g} must be 0 (until Ctrl-C) or more")
    if not 8000 <= args.sample_rate <= 384000:
        raise ConfigError(f"--sample-rate {args.sample_rate} is not an audio sample rate", fix="e.g. 48000")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="backline: %(message)s",
                        stream=sys.stderr)
    transport = Transport(args.sample_rate)
    tty = sys.stdout.isatty()

    def event_line(name: str):
        def show(snap, extra=None) -> None:
            detail = f" {extra}" if extra is not None and name in ("region", "generate") else ""
            end = "\n"
            prefix = "\r\033[K" if tty else ""
            sys.stdout.write(f"{prefix}* {name}{detail}: {snap.line()}{end}")
            sys.stdout.flush()
        return show

    for ev in (Event.PLAY, Event.STOP, Event.LOCATE, Event.TEMPO, Event.METER, Event.REGION, Event.GENERATE):
        transport.subscribe(ev, event_line(ev.value))
    jack_source = None
    bridge = OscBridge(transport, dialect=args.dialect, host=args.host, port=args.port, daw_host=args.daw_host,
                       daw_port=args.daw_port)
    with bridge:
        print(f"listening for {args.dialect} OSC on {bridge.host}:{bridge.port} "
              f"(DAW at {bridge.daw[0]}:{bridge.daw[1]}); Ctrl-C to stop", flush=True)
        if args.jack_transport:
            jack_source = JackTransportSource(transport).start()
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
        try:
            while time.monotonic() < deadline:
                line = transport.snapshot().line()
                if tty:
                    sys.stdout.write(f"\r\033[K{line}")
                else:
                    sys.stdout.write(line + "\n")
                sys.stdout.flush()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            if jack_source is not None:
                jack_source.stop()
    if tty:
        sys.stdout.write("\n")
    stats = bridge.stats
    print(f"{stats['messages']} messages ({bridge.dialect or 'no dialect seen'}); ignored: {stats['malformed']} "
          f"malformed, {stats['unknown']} unknown, {stats['bad_args']} with bad arguments", flush=True)
    return 0
