"""`backline generate bass`: a mix file (or bars of it) → a bass stem WAV + MIDI + a JSON report."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate a bass line for a mix: listen to its tempo, bars and chords, plan a line, play it (or paper 000)"


def configure(parser: argparse.ArgumentParser) -> None:
    from backline.engines.bass.common import CONTROLS, FOLLOW_CONTROLS
    from backline.engines.core.protocol import add_control_flags, add_device_flag

    parser.add_argument("--mix", type=Path, help="the mix to play along to (wav/flac/...); required to generate")
    parser.add_argument("--out", type=Path, help="folder for bass_seedN.wav/.mid/.json; required to generate")
    parser.add_argument("--bars", help="bars to generate, e.g. 9-24 (1-based, inclusive; the whole file is heard "
                                       "for its tempo, bars and chords, then these are cut from it)")
    parser.add_argument("--bpm", type=float, help="tempo of the mix (default: listen for it)")
    parser.add_argument("--meter", help="time signature, e.g. 4/4 or 6/8 (default: listen for it)")
    parser.add_argument("--band-midi", type=Path, help="the band's MIDI: exact tempo, bars and chords to follow")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--preset", help="bass style preset (default finger); --list-presets shows them")
    style.add_argument("--reference", type=Path, help="a solo bass recording whose sound to copy")
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit (needs nothing else)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (variation k uses seed + k)")
    parser.add_argument("--variations", type=int, default=1, help="how many takes to generate")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier take of the same seed in --out")
    parser.add_argument("--config", default="shipped", choices=("shipped", "debug"), help="model weights")
    add_device_flag(parser)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: on a shared 2-core machine 2 threads can be 20x slower)")
    parser.add_argument("--weights", type=Path, help="bass weights from `backline train bass --export` (default: shipped)")
    parser.add_argument("--codec-weights", type=Path, help="folder with mix/stem codec weights (default: shipped)")
    # the controls come from the engine's own declaration (the host's panel uses the same one)
    add_control_flags(parser, FOLLOW_CONTROLS, skip=("bpm", "meter", "tempo_from"),
                      title="follow mode (listen → plan → play; defaults: the preset's style)")
    add_control_flags(parser, CONTROLS, skip=("preset", "reference"), title="sampler, free mode (defaults: the preset's)")


def run(args: argparse.Namespace) -> int:

    from backline.engines.bass.common import ALL_CONTROLS
    from backline.engines.bass.presets import list_presets, load_preset
    from backline.engines.core.audio import audio_info, read_audio
    from backline.engines.core.errors import ConfigError
    from backline.engines.core.protocol import (
        GenerationRequest,
        check_seed_and_variations,
        control_values,
        generate_in_terminal,
        resolve_device,
    )
    from backline.engines.core.timeline import Timeline, check_bpm, region_of_bars

    if args.list_presets:
        for name in list_presets():
            print(f"{name:<10} {load_preset(name).title}")
        return 0
    if args.mix is None or args.out is None:
        missing = " and ".join(f for f, v in (("--mix", args.mix), ("--out", args.out)) if v is None)
        raise ConfigError(f"{missing} {'is' if ' and ' not in missing else 'are'} needed to generate",
                          fix="e.g. backline generate bass --mix MIX.wav --out takes/ (or --list-presets)")
    if args.preset:
        load_preset(args.preset)  # unknown names fail now, listing the known ones
    check_seed_and_variations(args.seed, args.variations)
    if args.band_midi is not None:
        from backline.engines.core.midi import check_band_midi

        check_band_midi(args.band_midi, "--band-midi")
    if args.reference is not None:  # a text file or /etc/passwd: one line, from its header, before any work
        from backline.engines.core.audio import require_audio_file

        require_audio_file(args.reference, "--reference")
    from backline.engines.listen import parse_chart, parse_key, parse_meter

    controls = control_values(args, ALL_CONTROLS, skip=("preset", "reference", "bpm", "meter", "tempo_from"))
    num, den = parse_meter(args.meter) if args.meter else (4, 4)
    if args.meter and controls.get("mode", "follow") == "follow":
        from backline.engines.bass.grid import steps_per_bar

        steps_per_bar(num, den)  # a meter the planner cannot play fails now, not after listening (64/4)
    if controls.get("chords"):
        parse_chart(controls["chords"], num)  # a typo fails now, in one line naming the chord
    if controls.get("key"):
        parse_key(controls["key"])
    if controls.get("midi_in") and not Path(controls["midi_in"]).is_file():
        raise ConfigError("the --midi-in file does not exist", path=controls["midi_in"], fix="give a .mid file")
    bpm = check_bpm(args.bpm) if args.bpm is not None else 120.0  # a placeholder until the mix is heard
    controls |= {"bpm": float(args.bpm or 0.0), "meter": args.meter or ""}
    rate, _, total = audio_info(args.mix)
    timeline = Timeline.constant(bpm, rate, num, den)
    device = resolve_device(args.device)
    from backline.engines.bass.engine import check_memory

    if args.bpm is not None:
        region_of_bars(timeline, args.bars, total, path=args.mix)  # bars past the end: refused now
    if device == "cpu" and not args.bars:  # before reading a long file or loading any weights
        check_memory(total / rate, args.variations)
    if args.bars:
        # the one region path (engines.region, as the host's selection): hear the whole file (or take --bpm),
        # then cut the bars from it, with the whole file's chords and key
        from backline.engines.listen.region import cut_file

        region = cut_file(args.mix, args.bars, timeline if args.bpm is not None else None,
                          meter=(num, den) if args.meter else None, controls=controls,
                          control_names={c.name for c in ALL_CONTROLS})
        timeline, start, stop, mix, controls = region.timeline, region.start, region.stop, region.mix, region.controls
        if device == "cpu":  # the engine works on the region alone: before any weights are loaded
            check_memory((stop - start) / rate, args.variations)
    else:
        start, stop = 0, total
        mix = read_audio(args.mix)

    if args.reference:  # issue 22: a reference that is not audio, or silent, fails before any weights load
        from backline.engines.bass.reference import load_reference_audio

        load_reference_audio(args.reference)
    import torch

    from backline.engines.bass.follow_engine import build  # mode=free: it builds the bass-latent engine

    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be >= 1")
    torch.set_num_threads(args.threads)

    engine = build(args.config, device, weights=args.weights, codec_weights=args.codec_weights)
    request = GenerationRequest("bass", args.out, timeline, region_start=start, region_stop=stop, mix=mix,
                                midi=args.band_midi, reference=args.reference, preset=None if args.reference else (args.preset or "finger"),
                                controls=controls, seed=args.seed, variations=args.variations)
    result = generate_in_terminal(engine, request, overwrite=args.overwrite)
    rep = result.report
    if "listening" in rep:
        heard = rep["listening"]
        print(f"heard  {heard['bpm']:g} BPM {heard['meter']}, bar one at {heard['bar_one_s']:.3f} s, {heard['key']}"
              f"  ({', '.join(f'{k} from {v}' for k, v in heard['sources'].items())})")
        print(f"chords {heard['chords']}")
    if "reference" in rep:  # issue 22: what the reference taught, in words
        print(f"style  {rep['reference']['learned']}  (learned from {rep['reference']['reference']}"
              f"{', cached' if rep['reference'].get('cached') else ''})")
    for take in result.takes:
        print(f"audio  {take.stems['bass']}  (seed {take.seed}, starts at sample {take.start_sample})")
        print(f"midi   {take.midi}  ({take.report['notes']} notes)")
        print(f"report {take.report['files']['report']}")
    print(f"done in {rep['timings_s']['total_s']:.1f} s on {rep['device']}")
    for note in rep.get("fallbacks", []) + rep.get("warnings", []):
        print(f"note: {note}")
    return 0
