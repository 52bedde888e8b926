"""`backline generate bass`: a mix file (or bars of it) → a bass stem WAV + MIDI + a JSON report.

The flags come from the bass engine's description and the shared vocabulary (`backline.engines.runner`);
this module adds what is the bass's alone: its preset listing, the checks of a meter the planner cannot
play and of a line MIDI file, the memory bound, and the summary it prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from backline.engines.bass import common, presets
from backline.engines.bass.grid import steps_per_bar
from backline.engines.core.errors import ConfigError
from backline.engines.core.protocol import resolve_device

HELP = "generate a bass line for a mix: listen to its tempo, bars and chords, plan a line, play it (or paper 000)"
ENGINE = "bass"
MIX_POSITIONAL = True  # `backline generate bass SONG.wav` as a new user types it (`--mix` works too)


def list_presets() -> int:
    for name in presets.list_presets():
        print(f"{name:<10} {presets.load_preset(name).title}")
    return 0


def check(args: argparse.Namespace, controls: dict, meter: tuple[int, int]) -> dict:
    if args.meter and controls.get("mode", "follow") == "follow":
        steps_per_bar(*meter)  # a meter the planner cannot play fails now, not after listening (64/4)
    if controls.get("midi_in") and not Path(controls["midi_in"]).is_file():
        raise ConfigError("the --midi-in file does not exist", path=controls["midi_in"], fix="give a .mid file")
    if args.reference is not None:  # issue 22: a reference that is not audio, or silent, fails before any work
        # lazy: the reference sampler pulls torch and mido; keeps `backline generate bass --help` light
        from backline.engines.bass.reference import load_reference_audio

        load_reference_audio(args.reference)
    return controls


def listens(controls: dict) -> bool:
    return True  # --bars without --bpm: the whole file is heard for its tempo, bars and chords, then cut


def check_memory(args: argparse.Namespace, seconds: float, rate: int, channels: int, controls: dict) -> None:
    if resolve_device(args.device) == "cpu":  # before reading a long file or loading any weights
        common.check_memory(seconds, args.variations)


def summary(result, args: argparse.Namespace) -> None:
    rep = result.report
    if "listening" in rep:
        heard = rep["listening"]
        from backline.engines.listen.listening import heard_line  # lazy: --help stays light

        print(heard_line(heard))
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
