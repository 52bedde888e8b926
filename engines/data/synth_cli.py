"""`backline data synth`: render a seeded multitrack corpus in the Slakh2100 layout."""

from __future__ import annotations

import argparse
import os
import time

from backline.engines.data.synth import synthesize

HELP = "render a seeded multitrack corpus (Slakh2100 layout) with fluidsynth and the GM soundfonts"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compose N songs (sections, chords, bass/drums/piano/guitar/strings/lead with playing styles and "
        "labelled drum fills) and render every part through fluidsynth into TrackNNNNN/{mix.flac, "
        "stems/SNN.flac, MIDI/SNN.mid, all_src.mid, metadata.yaml, extras.json}. The same seed gives the same "
        "MIDI; rerunning an interrupted command resumes it.")
    parser.add_argument("--songs", type=int, required=True, help="number of songs (tracks) to make")
    parser.add_argument("--out", required=True, help="corpus folder (created; existing complete tracks are kept)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"parallel render processes (default: all {os.cpu_count()} cores)")
    parser.add_argument("--min-bars", type=int, default=24, help="shortest song in bars (default 24, at least 8)")
    parser.add_argument("--max-bars", type=int, default=48, help="longest song in bars (default 48)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    report = synthesize(args.out, args.songs, args.seed, jobs=args.jobs, min_bars=args.min_bars,
                        max_bars=args.max_bars, progress=not args.quiet)
    wall = time.perf_counter() - t0
    print(f"{args.out}: {len(report.built)} tracks built, {len(report.kept)} already complete"
          + (f", {len(report.rebuilt)} half-written rebuilt" if report.rebuilt else "")
          + (f"; {report.seconds_rendered:.0f} s of music in {wall:.0f} s" if report.built else ""))
    return 0
