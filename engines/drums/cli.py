"""`backline generate drums`: a drum part with fills for the band's MIDI (or audio, or live JACK MIDI).

    backline generate drums --band-midi BAND.mid --out DIR [--mix BAND.wav] [--drums-midi MYDRUMS.mid]
                            [--bars 9-24] [--mode full|fills|regenerate] [--fill-bars 8,16] [--variations N]

Writes DIR/drums_seedN.mid (channel 10, GM drum map, bar-aligned to the region), DIR/drums_seedN.wav and
DIR/drums_seedN.json (fill bars, fill probabilities, novelty per bar, timing, track roles). The flags come
from the drum engine's description and the shared vocabulary (`backline.engines.runner`); this module adds
what is the drums' alone (`--jack`, `--role`, `--sample-rate`), the inputs they make, and the summary.
`--mix` is the band's audio: with `--band-midi` the drums are balanced against it, alone it is transcribed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backline.engines.core import audio
from backline.engines.core.errors import ConfigError
from backline.engines.core.presets import load_presets
from backline.engines.core.timeline import Timeline, check_bpm
from backline.engines.core.transcribe import events_to_track
from backline.engines.drums.inputs import JackMidiInput
from backline.engines.drums.representation import CLASS_PITCH, MA_ROLES, STEPS_PER_QUARTER, quarters_per_bar
from backline.engines.runner import deprecated_alias

HELP = "generate a drum part with fills (and its MIDI, WAV and report) for the band's MIDI, audio or live JACK input"
ENGINE = "drums"
MIX_POSITIONAL = True  # `backline generate drums SONG.wav` as a new user types it (`--mix` works too)


def configure(parser: argparse.ArgumentParser) -> None:
    extra = parser.add_argument_group("drums")
    extra.add_argument("--jack", type=float, metavar="SECONDS",
                       help="record this long from a JACK MIDI port (backline-drums:band-in), then generate; "
                            "needs --bpm")
    extra.add_argument("--role", action="append", default=[], metavar="NAME=ROLE",
                       help="override a track's role (NAME = track name or 0-based index; ROLE = piano, guitar, "
                            "bass, strings, drums, ignore); repeatable")
    extra.add_argument("--sample-rate", type=int, default=48000, help="sample rate of the WAV")
    deprecated_alias(parser, "--audio", "mix", "--mix", type=Path)
    deprecated_alias(parser, "--band-audio", "mix", "--mix", type=Path)


def list_presets() -> int:
    presets, problems = load_presets("drums")
    for preset in sorted(presets, key=lambda p: p.name):
        print(f"{preset.name:<12} {preset.title}")
    for line in problems:
        print(f"note: {line}")
    if not presets:
        print("no drum style presets are installed (presets/drums/*.toml)")
    return 0


def check(args: argparse.Namespace, controls: dict, meter: tuple[int, int]) -> dict:
    if not (args.band_midi or args.mix or args.jack):
        raise ConfigError("give the band", fix="--band-midi BAND.mid, --mix MIX.wav or --jack SECONDS")
    if args.jack and (args.band_midi or args.mix):
        raise ConfigError("--jack records the band itself", fix="give --jack alone, or --band-midi / --mix")
    if args.jack and args.bpm is None:
        raise ConfigError("--jack needs the tempo you will play to", fix="pass --bpm, e.g. --bpm 120")
    if args.band_midi is None:
        quarters_per_bar(*meter)  # a meter the drum models cannot play fails now, before any audio is read (64/4)
    if args.preset:
        # lazy: pulls torch; keeps `backline <cmd> --help` light
        from backline.engines.drums.engine import preset_controls

        preset_controls(args.preset)  # an unknown name fails now, listing the known ones
    if args.role:
        controls["roles"] = ",".join(filter(None, [controls.get("roles", ""), *args.role]))
    return controls


def inputs(args: argparse.Namespace, controls: dict, meter: tuple[int, int]):
    """(timeline, start, stop, mix, midi, cleanup): band MIDI (with its audio to balance against), audio
    alone (transcribed), or a JACK recording handed over as a MIDI file, the path every other input takes."""
    if args.band_midi is not None:
        mix = audio.read_audio(args.mix, sample_rate=args.sample_rate) if args.mix is not None else None
        return Timeline.constant(120.0, args.sample_rate), 0, None, mix, args.band_midi, None
    if args.mix is not None and args.bpm is None:
        return _heard(args, meter)
    timeline = Timeline.constant(check_bpm(args.bpm), args.sample_rate, *meter)
    if args.mix is not None:
        return timeline, 0, None, audio.read_audio(args.mix), None, None
    import tempfile

    tmp_dir = tempfile.TemporaryDirectory(prefix="backline-jack-")
    try:
        midi = _record_jack(args.jack, timeline, Path(tmp_dir.name) / "jack.mid")
    except BaseException:
        tmp_dir.cleanup()
        raise
    return timeline, 0, None, None, midi, tmp_dir.cleanup


def _heard(args: argparse.Namespace, meter: tuple[int, int]):
    """`--mix` without `--bpm`: hear the whole file (tempo, meter, bar one: `listen.region.hear`, the path the
    bass and accompaniment take) and play from its first bar line: the heard grid's bar 1 (`Timeline.origin`),
    where the take starts (its report's and DAW block's `start_sample`), as a region's take does. The grid is
    the heard tempo held constant: a band that drifts leaves it (give the DAW's tempo map through the host, or
    band MIDI, for that)."""
    from backline.engines.listen.region import hear

    whole = audio.read_audio(args.mix)
    heard = hear(whole, meter=meter if getattr(args, "meter", None) else None)
    if heard.listening is None or heard.source != "listen":
        raise ConfigError("no steady beat was heard in the mix, so its tempo and bars are not known",
                          path=args.mix, fix="give the tempo with --bpm, e.g. --bpm 120")
    timeline = heard.timeline
    quarters_per_bar(timeline.numerator, timeline.denominator)  # a meter the drum models play
    start = timeline.bar_to_samples(1)
    print(f"heard {heard.listening.bpm:.2f} BPM {timeline.numerator}/{timeline.denominator}, the first bar line at "
          f"{start / whole.sample_rate:.3f} s (the drums start there, sample {start}); --bpm sets the tempo and "
          "counts bars from the first sample" + heard.listening.octave_hint())
    return timeline, start, None, whole.slice(start, whole.frames), None, None


def _record_jack(seconds: float, timeline, path: Path) -> Path:
    import mido

    port = JackMidiInput()
    print(f"recording {seconds:g} s from JACK port {port.port_name}; play now ...")
    port.start()
    time.sleep(seconds)
    band = port.band(timeline)
    port.close()
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
    mf.save(path)
    return path


def summary(result, args: argparse.Namespace) -> None:
    for take in result.takes:
        r = take.report
        print(f"seed {take.seed}: bars {r['bars'][0]}-{r['bars'][1]}, fills at {r['fill_bars'] or 'none'}, "
              f"{r['notes']} notes, generated in {r['generation_seconds'] * 1000:.0f} ms, starts at sample "
              f"{take.start_sample}")
        print(f"  MIDI   {take.midi}" + (f"\n  audio  {take.stems['drums']}" if "drums" in take.stems else ""))
        print(f"  report {r['files']['report']}")
    print("band tracks: " + "; ".join(_track_line(t) for t in result.report["tracks"]))


def _track_line(track) -> str:
    """One band track for the summary line: 'Piano (piano, 212 notes)'."""
    info = track if isinstance(track, dict) else vars(track)
    name = info.get("name") or f"track {info.get('index', '?')}"
    return f"{name} ({info.get('role', '?')}, {info.get('notes', 0)} notes)"


def band_notes(band):
    """(start_q, end_q, pitch, velocity, channel, track name) from a JACK recording's grid, for the hand-off
    MIDI file (track names are the roles, which the MIDI reader maps back)."""
    import numpy as np

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
