"""`backline analyze MIX`: which instruments the mix holds (fine GM families and coarse tone classes, with
probabilities), which parts are missing, and which engine to run next."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "say which instruments a mix holds, which parts are missing and which engine to run"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mix", type=Path, help="audio file (wav, flac, mp3, ...) at any sample rate")
    parser.add_argument("--all", action="store_true", help="list every tag's probability, not only those present")
    parser.add_argument("--sensitivity", type=float, default=0.0,
                        help="-0.3..0.3: positive lists quieter instruments (lowers every threshold)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here (never overwrites)")
    parser.add_argument("--attention-png", type=Path, default=None, help="write the ResAtt attention map as PNG")
    parser.add_argument("--config", default="shipped", choices=["shipped", "debug"])
    from backline.engines.core.protocol import add_device_flag

    add_device_flag(parser)


def format_report(report, show_all: bool = False) -> str:
    from backline.engines.analysis.tagger import COARSE_TAGS, FINE_TAGS, PARENT

    lines = [f"analysed {report.seconds:.1f} s ({report.windows} window(s), {report.analysis_seconds:.2f} s)"]
    lines += [f"note: {n}" for n in report.notes]
    if report.silent or not report.present_fine:
        lines.append(report.message if report.silent else "no instruments detected")
    else:
        lines.append("instruments present (fine):")
        lines += [f"  {t:<22} {report.fine[t]:6.1%}   ({PARENT[t]})" for t in report.present_fine]
        lines.append("instrument classes (coarse): " + ", ".join(f"{t} {report.coarse[t]:.0%}" for t in report.present_coarse))
    if show_all and report.fine:
        lines.append("all fine tags: " + ", ".join(f"{t} {report.fine[t]:.0%}" for t in FINE_TAGS))
        lines.append("all coarse tags: " + ", ".join(f"{t} {report.coarse[t]:.0%}" for t in COARSE_TAGS))
    if report.parts:
        lines.append("parts playing: " + ", ".join(f"{p} {v:.0%}" for p, v in report.parts.items()))
    if report.missing_parts:
        lines.append("missing parts: " + ", ".join(report.missing_parts))
        lines.append(f"suggestion: run the {report.suggestion} engine (backline generate {report.suggestion} ...)"
                     if report.suggestion != "accompany" else "suggestion: run the accompany engine")
    else:
        lines.append("missing parts: none (bass, drums and accompaniment all play)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backline.engines.analysis.api import Analyzer
    from backline.engines.core.audio import atomic_output, read_audio, write_bytes_atomic
    from backline.engines.core.errors import ConfigError
    from backline.engines.core.protocol import resolve_device

    if not -0.3 <= args.sensitivity <= 0.3:
        raise ConfigError(f"--sensitivity {args.sensitivity} is out of range", fix="use -0.3..0.3")
    for out in (args.json, args.attention_png):
        if out is not None:  # exists, read-only, full or under a file: refused now, not after the analysis
            _, probe = atomic_output(out, need_bytes=2**20)
            probe.unlink(missing_ok=True)
    audio = read_audio(args.mix)
    analyzer = Analyzer(args.config, resolve_device(args.device))
    with tqdm(total=100, desc="analyse", leave=False, disable=audio.seconds < 60) as bar:
        report = analyzer.analyze(audio, sensitivity=args.sensitivity,
                                  progress=lambda f, m: bar.update(int(100 * f) - bar.n))
    print(format_report(report, args.all))
    if args.json is not None:
        write_bytes_atomic(args.json, json.dumps(report.to_dict(), indent=2).encode())
    if args.attention_png is not None and report.attention is not None:
        write_bytes_atomic(args.attention_png, report.attention_png())
    return 0
