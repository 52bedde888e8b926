"""`backline generate accompaniment`: a mix (or bars of it) and a prompt ("piano, strings") → per label a stem
WAV sample-aligned to the region, its MIDI and a report (GMSDI partial generation, paper 003)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate the prompted parts (e.g. \"piano, strings\") for a mix (GMSDI, text-prompted diffusion)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mix", type=Path, help="the mix to play along to (wav/flac/...); without it the parts "
                        "are generated from nothing (total generation, needs --bars and --bpm)")
    parser.add_argument("--prompt", required=True, help="instruments to generate, e.g. \"piano, strings\" "
                        "(known: bass, drums, guitar, piano, strings, lead)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (WAV, MIDI and report per take)")
    add_common(parser)
    parser.add_argument("--given", help="what the mix holds, e.g. \"bass, drums\" (default: every role not prompted)")
    parser.add_argument("--alpha", type=float, help="weight of the given mix in the coupling (default 1)")
    parser.add_argument("--beta", type=float, help="weight of the generated parts in the coupling (default 1)")
    parser.add_argument("--gamma", type=float, help="coupling width γ (default 1; smaller = tighter)")
    parser.add_argument("--variations", type=int, default=1, help="how many takes to generate")


def add_common(parser: argparse.ArgumentParser) -> None:
    from backline.engines.protocol import add_device_flag

    parser.add_argument("--bars", help="bars to use, e.g. 9-24 (1-based, inclusive; needs --bpm)")
    parser.add_argument("--bpm", type=float, help="tempo (for --bars and the MIDI file; default 120)")
    parser.add_argument("--meter", default="4/4", help="time signature (default 4/4)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: 48 generation, 32 separation)")
    parser.add_argument("--cfg", type=float, help="CFG weight w (default: the mode's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (variation k uses seed + k)")
    parser.add_argument("--config", default="shipped", choices=("shipped", "debug"), help="model weights")
    parser.add_argument("--weights", type=Path, help="weights from `backline train gmsdi --export` (default: shipped)")
    add_device_flag(parser)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace takes of the same seed in --out")


def build_request(args: argparse.Namespace, mode: str, prompt: str, controls: dict):
    """Region, timeline and mix from --mix/--bars/--bpm/--meter → (engine, GenerationRequest)."""
    import torch

    from backline.engines.accompany.engine import build
    from backline.engines.accompany.roles import parse_prompt
    from backline.engines.audio import audio_info, read_audio
    from backline.engines.errors import ConfigError
    from backline.engines.protocol import GenerationRequest, check_seed_and_variations, resolve_device
    from backline.engines.timeline import Timeline, check_bpm, region_of_bars

    parse_prompt(prompt)  # unknown labels fail before any loading
    check_seed_and_variations(args.seed, getattr(args, "variations", 1))
    try:
        num, den = (int(x) for x in args.meter.split("/"))
    except ValueError as err:
        raise ConfigError(f"--meter {args.meter!r} is not a time signature", fix="write it like 4/4 or 6/8") from err
    if args.bars and args.bpm is None:
        raise ConfigError("--bars needs the tempo", fix="add --bpm, e.g. --bpm 120")
    if args.steps is not None and args.steps <= 0:
        raise ConfigError(f"--steps {args.steps} must be >= 1", fix="use e.g. --steps 32")
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be >= 1")
    bpm = check_bpm(args.bpm) if args.bpm is not None else 120.0
    mix = None
    if args.mix is not None:
        rate, _, total = audio_info(args.mix)
        timeline = Timeline.constant(bpm, rate, num, den)
        start, stop = region_of_bars(timeline, args.bars, total, path=args.mix)
        mix = read_audio(args.mix, start=start, frames=stop - start)
    else:
        if not args.bars:
            raise ConfigError("without --mix there is nothing to set the length", fix="give --mix, or --bars and --bpm")
        timeline = Timeline.constant(bpm, 44100, num, den)
        start, stop = region_of_bars(timeline, args.bars, None)  # bounded: no recording sets the length
    torch.set_num_threads(args.threads)
    controls = {"mode": mode} | {k: v for k, v in controls.items() if v is not None}
    if args.steps is not None:
        controls["steps"] = args.steps
    if args.cfg is not None:
        controls["cfg"] = args.cfg
    engine = build(args.config, resolve_device(args.device), weights=args.weights)
    request = GenerationRequest("accompany", args.out, timeline, region_start=start, region_stop=stop, mix=mix,
                                prompt=prompt, controls=controls, seed=args.seed,
                                variations=getattr(args, "variations", 1))
    return engine, request


def print_result(result) -> None:
    rep = result.report
    for take in result.takes:
        for name, path in take.stems.items():
            print(f"{name:<8} {path}  (seed {take.seed}, starts at sample {take.start_sample})")
        for suffix, path in (getattr(take, "attachments", {}) or {}).items():
            print(f"{'midi':<8} {path}  ({take.report.get('notes', {}).get(suffix.split('.')[0], 0)} notes)")
        print(f"{'report':<8} {take.report['files']['report']}")
    print(f"done in {rep['timings_s']['total_s']:.1f} s on {rep['device']} ({rep['x_real_time']:.3f}× real time)")


def run(args: argparse.Namespace) -> int:
    from backline.engines.protocol import generate_in_terminal

    mode = "accompaniment" if args.mix is not None else "total"
    controls = {"alpha": args.alpha, "beta": args.beta, "gamma": args.gamma, "given": args.given}
    engine, request = build_request(args, mode, args.prompt, controls)
    result = generate_in_terminal(engine, request, desc=f"accompany ({mode})", overwrite=args.overwrite)
    print_result(result)
    return 0
