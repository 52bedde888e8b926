"""`backline generate accompaniment`: a mix (or bars of it) and a prompt ("piano", "warm rhodes, strings") → per
instrument a stem WAV sample-aligned to the region, its MIDI at the song's tempo and meter, and a report.

Default `--mode follow`: listen (tempo, bars, key, chords), plan with the learned comping planner, voice-lead, play
with the instrument. `--mode free` is GMSDI partial generation (paper 003), experimental. The flags come from the
engine's description and the shared vocabulary (`backline.engines.runner`); this module adds the instrument
listing, the checks of a prompt and style before any work, and the summary it prints."""

from __future__ import annotations

import argparse

from backline.engines.accompany.roles import parse_prompt
from backline.engines.core.errors import ConfigError

HELP = "play an accompaniment (e.g. --prompt \"piano\" or \"warm rhodes, strings\") that follows a mix's chords"
ENGINE = "accompany"
MIX_POSITIONAL = True  # `backline generate accompaniment SONG.wav` as a new user types it (`--mix` works too)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list-instruments", action="store_true", help="list the instruments and exit")


def listing(args: argparse.Namespace) -> int | None:
    if not args.list_instruments:
        return None
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.follow import list_instruments

    print("\n".join(list_instruments()))
    return 0


def check(args: argparse.Namespace, controls: dict, meter: tuple[int, int]) -> dict:
    if not args.prompt:
        raise ConfigError("--prompt is needed to generate",
                          fix="e.g. backline generate accompaniment --mix BAND.wav --prompt piano --out takes/ "
                              "(or --list-instruments)")
    mode = controls.get("mode") or "follow"
    if args.mix is None:
        if mode not in ("free", "total"):
            raise ConfigError("--mix is needed to play along", fix="give --mix BAND.wav (or --mode free --bars ... "
                              "--bpm ... to generate from nothing)")
        mode = "total"
    if mode == "follow":
        # lazy: pulls torch; keeps `backline <cmd> --help` light
        from backline.engines.accompany.follow import instrument_for, split_prompt

        # lazy: pulls torch; keeps `backline <cmd> --help` light
        from backline.engines.accompany.planner import FAMILY_STYLES

        for text in split_prompt(args.prompt):  # an unknown instrument or style fails now, in one line
            inst, _ = instrument_for(text)
            if controls.get("style", "auto") != "auto" and controls["style"] not in FAMILY_STYLES[inst.family]:
                raise ConfigError(f"{inst.name} does not play {controls['style']!r}",
                                  fix=f"{inst.family} styles: {', '.join(FAMILY_STYLES[inst.family])} (or auto)")
    else:
        parse_prompt(args.prompt)  # unknown labels fail before any loading
    return controls | {"mode": mode}


def listens(controls: dict) -> bool:
    return controls.get("mode", "follow") == "follow"


def summary(result, args: argparse.Namespace) -> None:
    rep = result.report
    if "listening" in rep:  # follow mode: what was heard and what was played, as the bass engine reports
        heard = rep["listening"]
        from backline.engines.listen.listening import heard_line  # lazy: --help stays light

        print(heard_line(heard))
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
