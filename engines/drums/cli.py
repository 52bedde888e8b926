"""`backline generate drums`: a drum part with fills for the band's MIDI (or audio, or live JACK MIDI).

    backline generate drums --midi BAND.mid --out DIR [--drums MYDRUMS.mid] [--bars 9-24]
                            [--mode full|fills|regenerate] [--fill-bars 8,16] [--seed N] [--variation X]

Writes DIR/drums_seedN.mid (channel 10, GM drum map, bar-aligned to the region), DIR/drums_seedN.wav and
DIR/drums_seedN.json (fill bars, fill probabilities, novelty per bar, timing, track roles).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "generate a drum part with fills (and its MIDI, WAV and report) for the band's MIDI, audio or live JACK input"


def configure(parser: argparse.ArgumentParser) -> None:
    from backline.engines.core.protocol import add_control_flags, add_device_flag
    from backline.engines.drums.engine import CONTROLS

    src = parser.add_argument_group("input (one of)")
    src.add_argument("--midi", help="the band's MIDI file (multitrack; tracks mapped to piano/guitar/bass/strings)")
    src.add_argument("--audio", help="the band's audio (transcribed with basic-pitch); needs --bpm")
    src.add_argument("--jack", type=float, metavar="SECONDS",
                     help="record this long from a JACK MIDI port (backline-drums:band-in), then generate; needs --bpm")
    parser.add_argument("--band-audio", type=Path, metavar="WAV",
                        help="with --midi: the band's audio from bar 1 (without drums); the drums are balanced "
                             "against it the way a real drummer sits in a mix (default: left as rendered)")
    parser.add_argument("--out", help="output folder; required to generate")
    parser.add_argument("--list-presets", action="store_true", help="list the drum style presets and exit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--takes", type=int, default=1, help="how many takes (seeds seed, seed+1, ...)")
    parser.add_argument("--role", action="append", default=[], metavar="NAME=ROLE",
                        help="override a track's role (NAME = track name or 0-based index; ROLE = piano, guitar, "
                             "bass, strings, drums, ignore); repeatable")
    parser.add_argument("--bpm", type=float, default=None, help="tempo for --audio / --jack")
    parser.add_argument("--meter", default="4/4", help="meter for --audio / --jack, e.g. 3/4")
    parser.add_argument("--sample-rate", type=int, default=48000, help="sample rate of the WAV")
    parser.add_argument("--config", choices=("shipped", "debug"), default="shipped",
                        help="model weights: shipped (trained) or debug (tiny random init, for testing)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier take of the same seed in --out")
    add_device_flag(parser)
    parser.add_argument("--preset", default=None, help="drum style preset (--list-presets shows them); the control "
                                                        "flags below override it")
    # the engine's controls, from its own declaration (the host's panel is built from the same one)
    add_control_flags(parser, CONTROLS, title="drum controls")


def _list_presets() -> int:
    from backline.engines.core.presets import load_presets

    presets, problems = load_presets("drums")
    for preset in sorted(presets, key=lambda p: p.name):
        print(f"{preset.name:<12} {preset.title}")
    for line in problems:
        print(f"note: {line}")
    if not presets:
        print("no drum style presets are installed (presets/drums/*.toml)")
    return 0


def _timeline(args):
    from backline.engines.core.errors import ConfigError
    from backline.engines.core.timeline import Timeline, check_bpm

    if args.bpm is None:
        raise ConfigError("--audio and --jack need the tempo", fix="pass --bpm, e.g. --bpm 120")
    try:
        num, den = (int(x) for x in args.meter.split("/"))
    except ValueError as err:
        raise ConfigError(f"meter {args.meter!r} is not N/D", fix="e.g. --meter 4/4") from err
    from backline.engines.drums.representation import quarters_per_bar

    timeline = Timeline.constant(check_bpm(args.bpm), args.sample_rate, num, den)
    quarters_per_bar(num, den)  # a meter the drum models cannot play fails now, before any audio is read (64/4)
    return timeline


def run(args: argparse.Namespace) -> int:
    import tempfile

    from backline.engines.core.errors import ConfigError
    from backline.engines.core.protocol import (
        GenerationRequest,
        build_engine,
        check_seed_and_variations,
        control_values,
        generate_in_terminal,
        resolve_device,
    )
    from backline.engines.core.timeline import Timeline
    from backline.engines.drums.engine import CONTROLS

    if args.list_presets:
        return _list_presets()
    sources = [s for s in (args.midi, args.audio, args.jack) if s]
    if len(sources) != 1:
        raise ConfigError("give exactly one input", fix="--midi BAND.mid, --audio MIX.wav or --jack SECONDS")
    if args.out is None:
        raise ConfigError("--out is needed to generate", fix="e.g. --out takes/ (or --list-presets)")
    check_seed_and_variations(args.seed, args.takes, "--takes")
    controls = control_values(args, CONTROLS)
    if args.role:
        controls["roles"] = ",".join(filter(None, [controls.get("roles", ""), *args.role]))
    midi, mix = None, None
    timeline = Timeline.constant(120.0, args.sample_rate)
    tmp_dir = None
    if args.midi:
        midi = Path(args.midi)
    elif args.audio:
        from backline.engines.core.audio import read_audio

        timeline = _timeline(args)
        mix = read_audio(args.audio)
    else:
        from backline.engines.core.transcribe import events_to_track
        from backline.engines.drums.inputs import JackMidiInput

        timeline = _timeline(args)
        port = JackMidiInput()
        print(f"recording {args.jack:g} s from JACK port {port.port_name}; play now ...")
        port.start()
        time.sleep(args.jack)
        band = port.band(timeline)
        port.close()
        # hand the recording to the engine as a MIDI file, the same path every other input takes
        import mido

        tmp_dir = tempfile.TemporaryDirectory(prefix="backline-jack-")
        midi = Path(tmp_dir.name) / "jack.mid"
        mf = mido.MidiFile(type=1, ticks_per_beat=timeline.ppq)
        events = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(timeline.bpm))),
                  (0, mido.MetaMessage("time_signature", numerator=timeline.numerator, denominator=timeline.denominator))]
        mf.tracks.append(events_to_track(events, "tempo"))
        by_track: dict[str, list] = {}
        for t0, t1, pitch, vel, ch, name in band_notes(band):
            by_track.setdefault(name, []).extend([
                (int(t0 * timeline.ppq), mido.Message("note_on", note=pitch, velocity=vel, channel=ch)),
                (int(t1 * timeline.ppq), mido.Message("note_off", note=pitch, velocity=0, channel=ch))])
        for name, notes in by_track.items():  # one track per role, named so the reader maps it back
            mf.tracks.append(events_to_track(notes, name))
        mf.save(midi)

    if args.band_audio is not None:
        if not args.midi:
            raise ConfigError("--band-audio goes with --midi", fix="with --audio the band's audio is already there")
        from backline.engines.core.audio import read_audio

        mix = read_audio(args.band_audio, sample_rate=args.sample_rate)  # a bad file: one line, before any work
    engine = build_engine("drums", args.config, resolve_device(args.device))
    request = GenerationRequest(engine="drums", out_dir=Path(args.out), timeline=timeline, midi=midi, mix=mix,
                                controls=controls, seed=args.seed, variations=args.takes, preset=args.preset)
    try:
        result = generate_in_terminal(engine, request, overwrite=args.overwrite)
    finally:
        if tmp_dir is not None:
            tmp_dir.cleanup()
    for take in result.takes:
        r = take.report
        print(f"seed {take.seed}: bars {r['bars'][0]}-{r['bars'][1]}, fills at {r['fill_bars'] or 'none'}, "
              f"{r['notes']} notes, generated in {r['generation_seconds'] * 1000:.0f} ms")
        print(f"  MIDI   {take.midi}" + (f"\n  audio  {take.stems['drums']}" if "drums" in take.stems else ""))
        print(f"  report {r['files']['report']}")
    print("band tracks: " + "; ".join(_track_line(t) for t in result.report["tracks"]))
    return 0


def _track_line(track) -> str:
    """One band track for the summary line: 'Piano (piano, 212 notes)'."""
    info = track if isinstance(track, dict) else vars(track)
    name = info.get("name") or f"track {info.get('index', '?')}"
    return f"{name} ({info.get('role', '?')}, {info.get('notes', 0)} notes)"


def band_notes(band):
    """(start_q, end_q, pitch, velocity, channel, track name) from a JACK recording's grid, for the hand-off
    MIDI file (track names are the roles, which the MIDI reader maps back)."""
    import numpy as np

    from backline.engines.drums.representation import CLASS_PITCH, MA_ROLES, STEPS_PER_QUARTER

    out = []
    g = band.grid
    for r in range(len(MA_ROLES)):
        on = g.ma_onset[r]
        act = g.ma_active[r]
        for step, pitch in zip(*np.nonzero(on)):
            end = step + 1
            while end < act.shape[0] and act[end, pitch] and not on[end, pitch]:
                end += 1
            out.append((step / STEPS_PER_QUARTER, end / STEPS_PER_QUARTER, int(pitch), 90, r, MA_ROLES[r]))
    if g.drums is not None:
        for step, cls in zip(*np.nonzero(g.drums)):
            vel = int(g.drum_vel[step, cls]) or 90
            out.append((step / STEPS_PER_QUARTER, step / STEPS_PER_QUARTER + 0.125, CLASS_PITCH[cls], vel, 9, "drums"))
    return out
