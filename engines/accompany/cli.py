"""`backline generate accompaniment`: a mix (or bars of it) and a prompt ("piano", "warm rhodes, strings") → per
instrument a stem WAV sample-aligned to the region, its MIDI at the song's tempo and meter, and a report.

Default `--mode follow`: listen (tempo, bars, key, chords), plan with the learned comping planner, voice-lead, play
with the instrument. `--mode free` is GMSDI partial generation (paper 003), experimental."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "play an accompaniment (e.g. --prompt \"piano\" or \"warm rhodes, strings\") that follows a mix's chords"


def configure(parser: argparse.ArgumentParser) -> None:
    from backline.engines.accompany.engine import FOLLOW_CONTROLS
    from backline.engines.core.protocol import add_control_flags

    parser.add_argument("--mix", type=Path, help="the mix to play along to (wav/flac/...); without it (--mode free "
                        "only) the parts are generated from nothing (total generation, needs --bars and --bpm)")
    parser.add_argument("--prompt", help="instruments, e.g. \"piano\", \"warm rhodes\", \"piano, strings\" "
                        "(one part each; --list-instruments shows them; free mode knows bass, drums, guitar, "
                        "piano, strings, lead)")
    parser.add_argument("--out", type=Path, help="output folder (WAV, MIDI and report per take)")
    parser.add_argument("--list-instruments", action="store_true", help="list the instruments and exit")
    parser.add_argument("--band-midi", type=Path, help="the band's MIDI: exact tempo, bars and chords to follow")
    add_common(parser)
    add_control_flags(parser, FOLLOW_CONTROLS, skip=("prompt", "bpm", "meter", "tempo_from"),
                      title="follow mode (listen → plan → play; defaults: the instrument's style)")
    parser.add_argument("--given", help="what the mix holds, e.g. \"bass, drums\" (default: every role not prompted)")
    parser.add_argument("--alpha", type=float, help="weight of the given mix in the coupling (default 1)")
    parser.add_argument("--beta", type=float, help="weight of the generated parts in the coupling (default 1)")
    parser.add_argument("--gamma", type=float, help="coupling width γ (default 1; smaller = tighter)")
    parser.add_argument("--variations", type=int, default=1, help="how many takes to generate")


def add_common(parser: argparse.ArgumentParser) -> None:
    from backline.engines.core.protocol import add_device_flag

    parser.add_argument("--bars", help="bars to use, e.g. 9-24 (1-based, inclusive; follow mode hears the tempo, other modes need --bpm)")
    parser.add_argument("--bpm", type=float, help="tempo of the mix (default: listen for it; --bars needs it)")
    parser.add_argument("--meter", help="time signature, e.g. 4/4 or 6/8 (default: listen for it)")
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
    from backline.engines.core.audio import audio_info, read_audio
    from backline.engines.core.errors import ConfigError
    from backline.engines.core.protocol import GenerationRequest, check_seed_and_variations, resolve_device
    from backline.engines.core.timeline import Timeline, check_bpm, region_of_bars
    from backline.engines.listen import parse_meter

    if mode != "follow":
        parse_prompt(prompt)  # unknown labels fail before any loading
    check_seed_and_variations(args.seed, getattr(args, "variations", 1))
    num, den = parse_meter(args.meter) if args.meter else (4, 4)
    if args.bars and args.bpm is None and (mode != "follow" or args.mix is None):
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
        if args.bpm is not None:
            region_of_bars(timeline, args.bars, total, path=args.mix)  # bars past the end: refused now
        if args.bars and mode == "follow":
            # the one region path (engines.region, as the host's selection and bass --bars): hear the whole file
            # (or take --bpm), then cut the bars, with the whole file's grid, chords and key
            from backline.engines.accompany.engine import FOLLOW_CONTROLS
            from backline.engines.listen.region import cut_file

            region = cut_file(args.mix, args.bars, timeline if args.bpm is not None else None,
                              meter=(num, den) if args.meter else None, controls=controls,
                              control_names={c.name for c in FOLLOW_CONTROLS})
            timeline, start, stop, mix, controls = region.timeline, region.start, region.stop, region.mix, \
                region.controls
        else:
            start, stop = region_of_bars(timeline, args.bars, total, path=args.mix)
            mix = read_audio(args.mix, start=start, frames=stop - start)
    else:
        if not args.bars:
            raise ConfigError("without --mix there is nothing to set the length", fix="give --mix, or --bars and --bpm")
        timeline = Timeline.constant(bpm, 44100, num, den)
        start, stop = region_of_bars(timeline, args.bars, None)  # bounded: no recording sets the length
    torch.set_num_threads(args.threads)
    controls = {"mode": mode} | {k: v for k, v in controls.items() if v is not None}
    controls |= {"bpm": float(args.bpm or 0.0), "meter": args.meter or ""}
    if args.steps is not None:
        controls["steps"] = args.steps
    if args.cfg is not None:
        controls["cfg"] = args.cfg
    engine = build(args.config, resolve_device(args.device), weights=args.weights)
    request = GenerationRequest("accompany", args.out, timeline, region_start=start, region_stop=stop, mix=mix,
                                midi=getattr(args, "band_midi", None), prompt=prompt, controls=controls, seed=args.seed,
                                variations=getattr(args, "variations", 1))
    return engine, request


def print_result(result) -> None:
    rep = result.report
    if "listening" in rep:  # follow mode: what was heard and what was played, as the bass engine reports
        heard = rep["listening"]
        print(f"heard  {heard['bpm']:g} BPM {heard['meter']}, bar one at {heard['bar_one_s']:.3f} s, {heard['key']}"
              f"  ({', '.join(f'{k} from {v}' for k, v in heard['sources'].items())})")
        print(f"chords {heard['chords']}")
        for take in result.takes[:1]:
            for part in take.report.get("parts", {}).values():
                print(f"played {part['instrument']} (GM {part['gm_program']}, {part['family']}), style {part['style']}, "
                      f"{part['notes']} notes in MIDI {part['register'][0]}-{part['register'][1]}, "
                      f"{part['level']['vs_band_db']:+g} dB against the band")
    for take in result.takes:
        for name, path in take.stems.items():
            print(f"{name:<8} {path}  (seed {take.seed}, starts at sample {take.start_sample})")
        for suffix, path in (getattr(take, "attachments", {}) or {}).items():
            print(f"{'midi':<8} {path}  ({take.report.get('notes', {}).get(suffix.split('.')[0], 0)} notes)")
        print(f"{'report':<8} {take.report['files']['report']}")
    print(f"done in {rep['timings_s']['total_s']:.1f} s on {rep['device']} ({rep['x_real_time']:.3f}× real time)")
    for note in rep.get("warnings", []):
        print(f"note: {note}")
    if rep.get("quality"):
        q = rep["quality"]
        print(f"note: free mode (GMSDI) is {q['label']}: measured centred-chroma cosine with the real part "
              f"{q['chroma_cosine_with_real_part']}, chord tones {q['chord_tone_share']} of its note-time, "
              f"{q['x_real_time']}x real time (--mode follow plays the chords)")


def run(args: argparse.Namespace) -> int:
    from backline.engines.accompany.engine import FOLLOW_CONTROLS
    from backline.engines.core.errors import ConfigError
    from backline.engines.core.protocol import control_values, generate_in_terminal

    if args.list_instruments:
        from backline.engines.accompany.follow import list_instruments

        print("\n".join(list_instruments()))
        return 0
    if not args.prompt or args.out is None:
        missing = " and ".join(f for f, v in (("--prompt", args.prompt), ("--out", args.out)) if not v)
        raise ConfigError(f"{missing} {'is' if ' and ' not in missing else 'are'} needed to generate",
                          fix="e.g. backline generate accompaniment --mix BAND.wav --prompt piano --out takes/ "
                              "(or --list-instruments)")
    controls = control_values(args, FOLLOW_CONTROLS, skip=("prompt", "bpm", "meter", "tempo_from"))
    mode = controls.pop("mode", None) or "follow"
    if args.mix is None:
        if mode not in ("free", "total"):
            raise ConfigError("--mix is needed to play along", fix="give --mix BAND.wav (or --mode free --bars ... "
                              "--bpm ... to generate from nothing)")
        mode = "total"
    if mode == "follow":
        from backline.engines.accompany.follow import instrument_for, split_prompt
        from backline.engines.accompany.planner import FAMILY_STYLES

        for text in split_prompt(args.prompt):  # an unknown instrument or style fails now, in one line
            inst, _ = instrument_for(text)
            if controls.get("style", "auto") != "auto" and controls["style"] not in FAMILY_STYLES[inst.family]:
                raise ConfigError(f"{inst.name} does not play {controls['style']!r}",
                                  fix=f"{inst.family} styles: {', '.join(FAMILY_STYLES[inst.family])} (or auto)")
        if controls.get("chords"):
            from backline.engines.listen import parse_chart, parse_meter

            parse_chart(controls["chords"], parse_meter(args.meter)[0] if args.meter else 4)
        if controls.get("key"):
            from backline.engines.listen import parse_key

            parse_key(controls["key"])
    if args.band_midi is not None and not args.band_midi.is_file():
        raise ConfigError("the --band-midi file does not exist", path=args.band_midi, fix="give a .mid file")
    controls |= {"alpha": args.alpha, "beta": args.beta, "gamma": args.gamma, "given": args.given}
    engine, request = build_request(args, mode, args.prompt, controls)
    result = generate_in_terminal(engine, request, desc=f"accompany ({mode})", overwrite=args.overwrite)
    print_result(result)
    return 0
