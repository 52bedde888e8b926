"""Corpus render speed: seconds of audio rendered per wall-clock second, and the cores used.

    python benchmarks/corpus_render.py [--songs 4] [--jobs N] [--min-bars 16] [--max-bars 24]

Runs `backline data synth` end to end (compose, write MIDI, fluidsynth per stem, levelling, FLAC writing,
loudness) into a temporary folder and reports two rates: *song* seconds (length of the mixes) and *stem*
seconds (every rendered stem counted, i.e. what fluidsynth actually produced) per wall second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml
from _common import cpu_name

from backline.engines.core.audio import audio_info
from backline.engines.data.synth import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--min-bars", type=int, default=16)
    parser.add_argument("--max-bars", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="backline-bench-") as tmp:
        t0 = time.perf_counter()
        synthesize(tmp, args.songs, args.seed, jobs=args.jobs, min_bars=args.min_bars, max_bars=args.max_bars,
                   progress=False, log=lambda m: None)
        wall = time.perf_counter() - t0
        song_s = stem_s = 0.0
        n_stems = 0
        for track in sorted(Path(tmp).glob("Track*")):
            rate, _, frames = audio_info(track / "mix.flac")
            stems = yaml.safe_load((track / "metadata.yaml").read_text())["stems"]
            song_s += frames / rate
            stem_s += len(stems) * frames / rate
            n_stems += len(stems)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"hardware: {cpu_name()}, {os.cpu_count()} logical cores, load average {load:.1f} at the end")
    print(f"cores used: {args.jobs} render processes (fluidsynth single-threaded per stem)")
    print(f"rendered {args.songs} songs / {n_stems} stems: {song_s:.1f} s of music, {stem_s:.1f} s of stems "
          f"in {wall:.1f} s wall")
    print(f"speed: {song_s / wall:.2f} s of mixed song per wall second, {stem_s / wall:.2f} s of stem audio per "
          f"wall second ({stem_s / wall / max(args.jobs, 1):.2f} per core)")


if __name__ == "__main__":
    main()
