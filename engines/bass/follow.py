"""Follow mode: listen → plan → render. The planned MIDI *is* the take's MIDI (no transcription step).

- `grid_from_listening` lays the listened chords, kick hits and bar lines on the planner's 16th-step grid, starting
  at a bar line at or before the mix's first sample (so a pickup before bar one is covered).
- `plan_line` runs the planner and turns its steps into seconds (with swing) on that grid.
- `render_line` plays the notes through the preset's General MIDI program in the preset's soundfont (fluidsynth,
  `engines/core/render.py`) and its pedalboard chain (`engines/core/effects.py`): the instant preview, and the default
  render of follow mode (`sound=reference` plays the instrument sampled from the preset's reference instead,
  `reference.render_preset`; see the README for the measurements behind that choice).
- `read_line_midi` reads a line the user edited in the DAW (`--midi-in`): the lowest-pitched non-drum track.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from backline.engines.bass.grid import SECTIONS, Grid, quality_index, steps_per_bar
from backline.engines.bass.planner import Planner, apply_swing, register_floor
from backline.engines.core.audio import Audio
from backline.engines.core.effects import render
from backline.engines.core.errors import ConfigError
from backline.engines.core.render import SAMPLE_RATE, fit_to_region, render_take
from backline.engines.core.timeline import Timeline
from backline.engines.core.transcribe import Note, notes_to_midi
from backline.engines.listen import Listening

#: A bar one heard this close to the mix's first sample is the mix starting on its bar line (a DAW export, a
#: region cut on the grid): the offset is the listener's onset latency, not music, so the grid starts at sample 0.
ON_BAR_TOLERANCE_S = 0.06
#: The listener's beats sit on the band's note-ons within a few ms (`listen.phase`), so the first beat of a pickup
#: that starts with the mix can be heard a few ms before its first sample (and is clipped to it): a bar one this
#: little short of a whole beat is still a one-beat pickup, and a note due this little before the first sample
#: starts on it rather than being dropped.
PICKUP_TOLERANCE_S = 0.01



def grid_origin(lst: Listening) -> float:
    """Seconds of the planner's step 0: a bar line at or before the mix's first sample, so a pickup before bar
    one is played too. A heard bar one within ON_BAR_TOLERANCE_S of the first sample *is* the first sample (a
    grid from the DAW or the band's MIDI is exact and is taken as it is): notes then sit on the MIDI's grid
    ticks (tick 0 = the region's first sample) instead of the listener's latency after them."""
    step_s = 60.0 / lst.bpm / 4.0
    bar_s = steps_per_bar(lst.numerator, lst.denominator) * step_s
    exact = lst.sources.get("bar_one") in ("daw", "midi")
    if lst.bar_one < (1e-4 if exact else ON_BAR_TOLERANCE_S):
        return 0.0
    if lst.bar_one < lst.beat_seconds - PICKUP_TOLERANCE_S:  # shorter than a beat: an offset, not a pickup
        return lst.bar_one
    return lst.bar_one - math.ceil(lst.bar_one / bar_s - 1e-6) * bar_s


def grid_from_listening(lst: Listening, kicks: np.ndarray) -> tuple[Grid, float, float]:
    """(grid, origin seconds of step 0, seconds per 16th step)."""
    step_s = 60.0 / lst.bpm / 4.0
    origin = grid_origin(lst)
    n = int(math.ceil((lst.duration - origin) / step_s))
    times = origin + (np.arange(n) + 0.5) * step_s
    first = next((c for c in lst.chords if c.root >= 0), None)
    chords = [lst.chord_at(t) if t >= lst.beats[0] or first is None else first for t in times]  # before the
    # first heard beat the music is already in its first chord
    root = np.array([c.root if c.root >= 0 else 12 for c in chords], np.int64)
    qual = np.array([quality_index(c.quality if c.root >= 0 else "N") for c in chords], np.int64)
    kick = np.zeros(n, np.int64)
    if len(kicks):
        idx = np.rint((np.asarray(kicks) - origin) / step_s).astype(int)
        kick[idx[(idx >= 0) & (idx < n)]] = 1
    section = np.full(n, SECTIONS.index("unknown"), np.int64)
    return Grid(lst.numerator, lst.denominator, lst.key_pc, lst.mode, root, qual, kick, section), origin, step_s


def plan_line(planner: Planner, lst: Listening, kicks: np.ndarray, *, style: str, complexity: float = 0.5,
              intensity: float = 0.5, register: float = 0.0, swing: float = 0.0, lock_to_kick: bool = False,
              seed: int = 0, octave: int = 0) -> tuple[list[Note], Grid, dict]:
    """Plan a bass line on what was heard → notes in seconds from the mix's first sample."""
    grid, origin, step_s = grid_from_listening(lst, kicks)
    attrs = planner.attributes(style, complexity, intensity, register, lock_to_kick)
    planned = planner.plan(grid, style, attrs, seed=seed, lock_to_kick=lock_to_kick,
                           floor=register_floor(lst.band_low, octave, register))  # not far under the band's lowest voice
    gap = min(0.06, step_s * 0.35)  # a player's damping before the next note keeps every attack clean
    notes = []
    for on, length, pitch, vel in apply_swing(planned, swing):
        if grid.root[min(int(on), grid.steps - 1)] >= 12:
            continue  # nothing heard there (a rest, the release tail): the planner never trained on silence
        start = origin + on * step_s
        end = min(lst.duration, start + length * step_s - gap)
        if start < -PICKUP_TOLERANCE_S or end - start < 0.03:
            continue
        start = max(start, 0.0)
        notes.append(Note(int(pitch + 12 * octave), float(start), float(end), int(vel)))
    return notes, grid, attrs


def render_line(notes: list[Note], preset, frames: int, sample_rate: int, bpm: float) -> tuple[Audio, Audio, dict]:
    """Notes (seconds from sample 0) → (dry, wet, level report) through the preset's GM program and chain.

    Rendered by `engines.render.render_take` (audible onsets on the note-ons, the release faded at the region's
    end, not cut); the level against the band is set afterwards by `engines.balance` (the engine's job)."""
    font = (preset.render or {}).get("soundfont", "FluidR3_GM") if preset else "FluidR3_GM"
    program = (preset.gm_program if preset else 34) - 1
    mid = notes_to_midi(notes, Timeline.constant(bpm, SAMPLE_RATE), program=program, name="Backline bass")
    with tempfile.TemporaryDirectory(prefix="backline-bass-") as tmp:
        path = Path(tmp) / "line.mid"
        mid.save(str(path))
        dry, timing = render_take(path, font, frames=None, sample_rate=SAMPLE_RATE, program=program, role="bass")
    if sample_rate != SAMPLE_RATE:
        dry = dry.resampled(sample_rate)
    dry = dry.slice(0, max(frames, dry.frames))  # the chain hears the whole release; the region is cut after it
    chain = preset.chain if preset else ()
    wet, level = render(dry, chain, target_lufs=preset.loudness_lufs if preset else -18.0,
                        where=f"{preset.name} chain" if preset else "chain")
    dry, _ = fit_to_region(dry, frames)
    wet, tail = fit_to_region(wet, frames)
    return dry, wet, level | timing | tail


def read_line_midi(path: str | Path) -> tuple[list[Note], float | None]:
    """A bass line MIDI file (`--midi-in`) → (notes in seconds, its tempo). The lowest non-drum track is the line."""
    import pretty_midi  # lazy: only a --midi-in line needs it (a heavy optional import on the follow path)

    path = Path(path)
    if not path.is_file():
        raise ConfigError("the bass line MIDI file does not exist", path=path, fix="give the path of a .mid file")
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # noqa: BLE001 - pretty_midi raises many kinds for a bad file
        raise ConfigError(f"cannot read the bass line MIDI ({err})", path=path, fix="give a standard MIDI file") from err
    insts = [i for i in pm.instruments if not i.is_drum and i.notes]
    if not insts:
        raise ConfigError("the bass line MIDI has no notes", path=path, fix="export the bass track's MIDI from the DAW")
    inst = min(insts, key=lambda i: float(np.mean([n.pitch for n in i.notes])))
    tempos = pm.get_tempo_changes()[1]
    notes = [Note(int(n.pitch), float(n.start), float(n.end), int(n.velocity)) for n in inst.notes]
    return sorted(notes, key=lambda n: n.start), (float(tempos[0]) if len(tempos) else None)
