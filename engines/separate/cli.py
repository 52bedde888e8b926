"""`backline separate MIX --prompt bass --out DIR`: the prompted parts of a mix as `separate_{part}_seed0.wav`,
with each part's share of the mix (and a plain line when a part is not there) and, with `--midi`, its MIDI at
the song's heard tempo. `--all` separates bass, drums and other (their stems sum to the mix)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "split a mix into parts: bass, drums, other, or the band without the bass (no-bass), with their MIDI"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mix", type=Path, help="the mix to separate (wav/flac/...)")
    parser.add_argument("--prompt", help="parts, comma-separated: bass, drums, other (piano, guitar, ... = other), "
                                         "no-bass, no-drums (default bass)")
    parser.add_argument("--all", action="store_true", help="bass, drums and other (stems that sum to the mix)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (a WAV per part, MIDI, report)")
    parser.add_argument("--midi", action="store_true", help="also each part's MIDI at the song's heard tempo")
    parser.add_argument("--bpm", type=float, help="tempo for the MIDI (default: the tempo heard in the mix)")
    parser.add_argument("--bars", help="bars to use, e.g. 9-24 (1-based, inclusive; needs --bpm)")
    parser.add_argument("--meter", default="4/4", help="time signature for --bars (default 4/4)")
    parser.add_argument("--seed", type=int, default=0, help="take number in the file names (the network is "
                                                             "deterministic)")
    parser.add_argument("--weights", type=Path, help="weights from `backline train separate --export`")
    from backline.engines.core.protocol import add_device_flag

    add_device_flag(parser)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace a take of the same seed in --out")


def run(args: argparse.Namespace) -> int:
    import torch

    from backline.engines.core.audio import audio_info, read_audio
    from backline.engines.core.errors import ConfigError
    from backline.engines.core.protocol import GenerationRequest, generate_in_terminal, resolve_device
    from backline.engines.core.timeline import Timeline, check_bpm, region_of_bars
    from backline.engines.separate.engine import build, check_memory, parse_roles

    if args.prompt and args.all:
        raise ConfigError("give --prompt or --all, not both")
    prompt = "bass, drums, other" if args.all else (args.prompt or "bass")
    labels = parse_roles(prompt)  # unknown parts fail before anything is read or loaded
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be >= 1")
    if args.bars and args.bpm is None:
        raise ConfigError("--bars needs the tempo", fix="add --bpm, e.g. --bpm 120")
    device = resolve_device(args.device)
    from backline.engines.listen import parse_meter

    num, den = parse_meter(args.meter)  # bounded: an absurd meter is one line
    bpm = check_bpm(args.bpm) if args.bpm is not None else 120.0
    rate, channels, total = audio_info(args.mix)
    timeline = Timeline.constant(bpm, rate, num, den)
    start, stop = region_of_bars(timeline, args.bars, total, path=args.mix)
    check_memory((stop - start) / rate, rate, channels, len(labels))  # before the file is read
    mix = read_audio(args.mix, start=start, frames=stop - start)
    torch.set_num_threads(args.threads)
    engine = build("shipped", device, weights=args.weights)
    controls = {"midi": bool(args.midi), "bpm": float(args.bpm or 0.0)}
    request = GenerationRequest("separate", args.out, timeline, region_start=start, region_stop=stop, mix=mix,
                                prompt=", ".join(labels), controls=controls, seed=args.seed)
    result = generate_in_terminal(engine, request, desc="separate", overwrite=args.overwrite)
    print_result(result)
    return 0


def print_result(result) -> None:
    """One line per written file, the presence of every part, then any warning."""
    rep = result.report
    for take in result.takes:
        for name, path in take.stems.items():
            share = rep["presence"][name]
            flag = "" if rep["present"][name] else "  — hardly there"
            print(f"{name:<9} {path}  ({share:.1%} of the mix's energy{flag})")
        if take.midi is not None:
            notes = ", ".join(f"{k} {v}" for k, v in rep.get("notes", {}).items())
            tempo = rep.get("midi_tempo", {})
            print(f"{'midi':<9} {take.midi}  ({notes} notes; {tempo.get('bpm')} BPM {tempo.get('source')})")
        print(f"{'report':<9} {take.report['files']['report']}")
    for w in rep.get("warnings", []):
        print(f"note: {w}")
    print(f"done in {rep['timings_s']['total_s']:.1f} s on {rep['device']} ({rep['x_real_time']:.3f}x real time)")
