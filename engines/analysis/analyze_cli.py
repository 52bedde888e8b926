"""`backline analyze MIX`: which instruments the mix holds (fine GM families and coarse tone classes, with
probabilities), which parts are missing, and which engine to run next. The flags come from the analysis
engine's description and the shared vocabulary (`backline.engines.runner`); with `--out DIR` the engine's
report and attention map are written like any take (`analysis_seed0.json`, `analysis_seed0_attention.png`)."""

from __future__ import annotations

import argparse

from backline.engines.core.errors import ConfigError

HELP = "say which instruments a mix holds, which parts are missing and which engine to run"
ENGINE = "analysis"
MIX_POSITIONAL = True


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="list every tag's probability, not only those present")
    for gone in ("--json", "--attention-png"):  # before the one run path: said in one line, not a usage dump
        parser.add_argument(gone, dest="gone_" + gone[2:].replace("-", "_"), help=argparse.SUPPRESS)


def check(args: argparse.Namespace, controls: dict, meter: tuple[int, int]) -> dict:
    for flag in ("json", "attention_png"):
        if getattr(args, "gone_" + flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} is gone: the analysis writes its files like every engine",
                              fix="use --out DIR (analysis_seed0.json and analysis_seed0_attention.png)")
    return controls


def summary(result, args: argparse.Namespace) -> None:
    from dataclasses import fields

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.api import AnalysisReport

    data = result.takes[0].report
    report = AnalysisReport(**{f.name: data[f.name] for f in fields(AnalysisReport) if f.name in data})
    print(format_report(report, args.all))
    for name, path in (data.get("files") or {}).items():
        print(f"{name:<9} {path}")


def format_report(report, show_all: bool = False) -> str:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
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
