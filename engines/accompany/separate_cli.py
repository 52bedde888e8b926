"""`backline separate MIX --prompt bass --out DIR`: pull prompted instruments out of a mix (GMSDI extractor);
`--all` runs the separator for every role (stems that sum to the mix); `--mode ensemble` picks per role."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "split a mix into instrument stems from a text prompt (GMSDI extractor / separator)"


def configure(parser: argparse.ArgumentParser) -> None:
    from backline.engines.accompany.cli import add_common

    parser.add_argument("mix", type=Path, help="the mix to separate (wav/flac/...)")
    parser.add_argument("--prompt", help="instruments to extract, e.g. \"bass\" or \"bass, piano\"")
    parser.add_argument("--all", action="store_true", help="separate every role (separator; stems sum to the mix)")
    parser.add_argument("--mode", choices=("extract", "separate", "ensemble"),
                        help="extract (default with --prompt), separate (default with --all) or ensemble")
    parser.add_argument("--out", required=True, type=Path, help="output folder (a WAV per stem, MIDI, report)")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from backline.engines.accompany.cli import build_request, print_result
    from backline.engines.accompany.roles import ROLES
    from backline.engines.errors import ConfigError
    from backline.engines.protocol import generate_in_terminal

    if bool(args.prompt) == bool(args.all):
        raise ConfigError("say what to separate", fix="give --prompt \"bass\" or --all (not both)")
    prompt = ", ".join(ROLES) if args.all else args.prompt
    mode = args.mode or ("separate" if args.all else "extract")
    engine, request = build_request(args, mode, prompt, {})
    result = generate_in_terminal(engine, request, desc=f"separate ({mode})", overwrite=args.overwrite)
    print_result(result)
    return 0
