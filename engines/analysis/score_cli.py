"""`backline score --mix MIX --stem STEM`: how well a stem fits a mix (the (mix, stem) matching model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backline.engines.core.audio import read_audio

HELP = "how well a stem fits a mix (0..1, from the mix/stem matching model)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mix", type=Path, required=True, help="the mix *without* the stem (what it plays against)")
    parser.add_argument("--stem", type=Path, required=True, help="the stem to score (bass, drums or another part)")
    parser.add_argument("--config", default="shipped", choices=["shipped", "debug"])


def run(args: argparse.Namespace) -> int:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.api import Analyzer
    mix, stem = read_audio(args.mix), read_audio(args.stem)
    notes = []
    if mix.sample_rate != stem.sample_rate:
        notes.append(f"the stem is {stem.sample_rate} Hz and the mix {mix.sample_rate} Hz: both are compared at 16 kHz")
    if abs(mix.seconds - stem.seconds) > 0.05:
        shorter = min(mix.seconds, stem.seconds)
        notes.append(f"lengths differ ({mix.seconds:.2f} s vs {stem.seconds:.2f} s): the first {shorter:.2f} s are compared")
        mix = mix.slice(0, int(shorter * mix.sample_rate))
        stem = stem.slice(0, int(shorter * stem.sample_rate))
    analyzer = Analyzer(args.config)
    score = analyzer.fit_score(mix, stem)
    for n in notes:
        print(f"note: {n}")
    verdict = "fits" if score >= 0.5 else "does not fit well"
    print(f"fit score: {score:.3f} ({verdict}; 0.5 separates a song's own stem from a stem of another song)")
    return 0
