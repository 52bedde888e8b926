"""`backline separate MIX --prompt bass --out DIR`: the prompted parts of a mix as `separate_{part}_seed0.wav`,
with each part's share of the mix (and a plain line when a part is not there) and, with `--midi`, its MIDI at
the song's heard tempo. `--all` separates bass, drums and other (their stems sum to the mix). The flags come
from the engine's description and the shared vocabulary (`backline.engines.runner`)."""

from __future__ import annotations

import argparse

from backline.engines.core.errors import ConfigError

HELP = "split a mix into parts: bass, drums, other, or the band without the bass (no-bass), with their MIDI"
ENGINE = "separate"
MIX_POSITIONAL = True
SKIP = ("roles",)  # the parts come as --prompt (a panel sets the `roles` control)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="bass, drums and other (stems that sum to the mix)")


def check(args: argparse.Namespace, controls: dict, meter: tuple[int, int]) -> dict:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.separate.engine import parse_roles

    if args.prompt and args.all:
        raise ConfigError("give --prompt or --all, not both")
    args.prompt = ", ".join(parse_roles("bass, drums, other" if args.all else (args.prompt or "bass")))
    return controls  # unknown parts failed above, before anything is read or loaded


def check_memory(args: argparse.Namespace, seconds: float, rate: int, channels: int, controls: dict) -> None:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.separate.engine import check_memory

    check_memory(seconds, rate, channels, len(args.prompt.split(",")))  # before the file is read


def summary(result, args: argparse.Namespace) -> None:
    """One line per written file, the presence of every part, then any warning."""
    rep = result.report
    for take in result.takes:
        for name, path in take.stems.items():
            share = rep["presence"][name]
            flag = "" if rep["present"][name] else "  — hardly there"
            top = rep.get("top_presence", {}).get(name)
            top = f", {top:.0%} of its top end" if top is not None else ""
            print(f"{name:<9} {path}  ({share:.1%} of the mix's energy{top}{flag})")
        if take.midi is not None:
            notes = ", ".join(f"{k} {v}" for k, v in rep.get("notes", {}).items())
            tempo = rep.get("midi_tempo", {})
            print(f"{'midi':<9} {take.midi}  ({notes} notes; {tempo.get('bpm')} BPM {tempo.get('source')})")
        print(f"{'report':<9} {take.report['files']['report']}")
    for w in rep.get("warnings", []):
        print(f"note: {w}")
    print(f"done in {rep['timings_s']['total_s']:.1f} s on {rep['device']} ({rep['x_real_time']:.3f}x real time)")
