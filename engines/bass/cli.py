"""`backline generate bass`: a mix file (or bars of it) → a bass stem WAV + MIDI + a JSON report."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate a bass line for a mix (latent diffusion, style presets or a reference)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mix", required=True, type=Path, help="the mix to play along to (wav/flac/...)")
    parser.add_argument("--out", required=True, type=Path, help="folder for bass_seedN.wav/.mid and bass_report.json")
    parser.add_argument("--bars", help="bars to generate, e.g. 9-24 (1-based, inclusive; needs --bpm)")
    parser.add_argument("--bpm", type=float, help="tempo of the mix (default: listen for it; --bars needs it)")
    parser.add_argument("--meter", help="time signature, e.g. 4/4 or 6/8 (default: listen for it)")
    parser.add_argument("--mode", choices=("follow", "free"), default="follow",
                        help="follow (default): listen to tempo, bars and chords, plan a line, play it; "
                             "free: the latent diffusion model alone (paper 000)")
    parser.add_argument("--chords", help='the chords per bar, e.g. "D | G A | Bm | G A7" (default: listen)')
    parser.add_argument("--key", help="the key, e.g. D or Bm (default: listen)")
    parser.add_argument("--band-midi", type=Path, help="the band's MIDI: exact tempo, bars and chords")
    parser.add_argument("--midi-in", type=Path, help="play this bass line MIDI (edited in the DAW) in the preset's sound")
    parser.add_argument("--style", help="root_fifth, walking, syncopated, octave, sustained, funk16, reggae, disco, "
                                        "tumbao, ballad (default: the preset's)")
    parser.add_argument("--complexity", type=float, help="0-1, fewer to more notes (default 0.5: the style's usual)")
    parser.add_argument("--intensity", type=float, help="0-1, softer to harder (default 0.5)")
    parser.add_argument("--register", type=int, choices=(-1, 0, 1), help="octave: -1 low, 0 usual, +1 high")
    parser.add_argument("--swing", type=float, help="0 straight (default) to 1 triplet swing")
    parser.add_argument("--lock-to-kick", action="store_true", help="put the line's notes on the kick drum's hits")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--preset", help="bass style preset (default finger); --list-presets shows them")
    style.add_argument("--reference", type=Path, help="a solo bass recording whose sound to copy")
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.add_argument("--steps", type=int, help="DDIM steps (default 64)")
    parser.add_argument("--cfg", type=float, help="classifier-free guidance λ (default 2.0; 1 = none)")
    parser.add_argument("--rescale", type=float, help="CFG std rescale φ in 0–1 (default 0.7)")
    parser.add_argument("--strength", type=float, help="style grounding strength (1 = paper, 0 = off)")
    parser.add_argument("--quantise", choices=("off", "1/8", "1/16", "1/16T"), help="MIDI grid (default off)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (variation k uses seed + k)")
    parser.add_argument("--variations", type=int, default=1, help="how many takes to generate")
    parser.add_argument("--config", default="shipped", choices=("shipped", "debug"), help="model weights")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: on a shared 2-core machine 2 threads can be 20x slower)")
    parser.add_argument("--weights", type=Path, help="bass weights from `backline train bass --export` (default: shipped)")
    parser.add_argument("--codec-weights", type=Path, help="folder with mix/stem codec weights (default: shipped)")


def run(args: argparse.Namespace) -> int:

    from backline.bridge.timeline import Timeline, check_bpm, parse_bar_range
    from backline.engines.audio import audio_info, read_audio
    from backline.engines.bass.presets import list_presets, load_preset
    from backline.engines.errors import ConfigError, TimelineError
    from backline.engines.protocol import GenerationRequest, generate_in_terminal

    if args.list_presets:
        for name in list_presets():
            print(f"{name:<10} {load_preset(name).title}")
        return 0
    if args.preset:
        load_preset(args.preset)  # unknown names fail now, listing the known ones
    from backline.engines.listen import parse_chart, parse_key, parse_meter

    num, den = parse_meter(args.meter) if args.meter else (4, 4)
    if args.chords:
        parse_chart(args.chords, num)  # a typo fails now, naming the chord
    if args.key:
        parse_key(args.key)
    if args.bars and args.bpm is None:
        raise ConfigError("--bars needs the mix's tempo", fix="add --bpm, e.g. --bpm 120")
    if args.mode == "free" and any(getattr(args, k) is not None for k in ("chords", "key", "midi_in", "style")):
        raise ConfigError("--chords/--key/--midi-in/--style are for follow mode", fix="drop --mode free")
    bpm = check_bpm(args.bpm) if args.bpm is not None else 120.0  # a placeholder until the mix is heard
    if args.steps is not None and args.steps <= 0:
        raise ConfigError(f"--steps {args.steps} must be >= 1", fix="use e.g. --steps 64")
    if args.cfg is not None and args.cfg < 0:
        raise ConfigError(f"--cfg {args.cfg} must be >= 0", fix="use e.g. --cfg 2.0 (1.0 = no guidance)")
    if args.variations < 1:
        raise ConfigError(f"--variations {args.variations} must be >= 1")
    rate, _, total = audio_info(args.mix)
    timeline = Timeline.constant(bpm, rate, num, den)
    start, stop = 0, total
    if args.bars:
        first, last = parse_bar_range(args.bars)
        start, stop = timeline.bar_range_to_samples(first, last)
        if start >= total or stop > total:
            bars_in_mix = timeline.bars_in(total)
            raise TimelineError(f"bars {first}-{last} run past the end of the mix ({bars_in_mix:.1f} bars at "
                                f"{bpm:g} BPM)", path=args.mix, fix=f"pick bars within 1-{int(bars_in_mix)}")
    mix = read_audio(args.mix, start=start, frames=stop - start)

    import torch

    from backline.engines.bass.engine import build

    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be >= 1")
    torch.set_num_threads(args.threads)

    engine = build(args.config, args.device, weights=args.weights, codec_weights=args.codec_weights)
    controls = {k: getattr(args, k) for k in ("steps", "cfg", "rescale", "strength", "quantise", "mode", "style",
                                              "complexity", "intensity", "register", "swing", "chords", "key")
                if getattr(args, k) is not None}
    if args.mode == "follow":
        controls |= {"lock_to_kick": bool(args.lock_to_kick), "bpm": float(args.bpm or 0.0),
                     "meter": args.meter or "", "midi_in": str(args.midi_in) if args.midi_in else ""}
    request = GenerationRequest("bass", args.out, timeline, region_start=start, region_stop=stop, mix=mix,
                                midi=args.band_midi,
                                reference=args.reference, preset=None if args.reference else (args.preset or "finger"),
                                controls=controls, seed=args.seed, variations=args.variations)
    result = generate_in_terminal(engine, request)
    rep = result.report
    if "listening" in rep:
        heard = rep["listening"]
        print(f"heard  {heard['bpm']:g} BPM {heard['meter']}, bar one at {heard['bar_one_s']:.3f} s, {heard['key']}"
              f"  ({', '.join(f'{k} from {v}' for k, v in heard['sources'].items())})")
        print(f"chords {heard['chords']}")
    for take in result.takes:
        print(f"bass   {take.stems['bass']}  (seed {take.seed}, starts at sample {take.start_sample})")
        print(f"midi   {take.midi}  ({take.report['notes']} notes)")
    print(f"report {rep['report_path']}  ({rep['timings_s']['total_s']:.1f} s on {rep['device']})")
    for note in rep.get("fallbacks", []) + rep.get("warnings", []):
        print(f"note: {note}")
    return 0
