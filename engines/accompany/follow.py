"""Follow mode for the accompaniment: listen → plan → voice → render, the bass engine's pattern
(`engines/bass/follow.py`, whose grid from the listening this reuses).

- `INSTRUMENTS` (`instruments.py`) names what can be asked for: a General MIDI program in the shipped soundfonts, a pedalboard chain,
  a planner family and style, a register and a level against the band. `instrument_for` maps free prompt text to
  one: a name or alias first, else the shipped text encoder (all-MiniLM-L6-v2, offline) against each instrument's
  description ("warm rhodes" → electric piano); too far from all of them → one line naming the nearest.
- `band_activity` is what the band already plays per 16th step (attacks from the band's MIDI, else the mix's onset
  strength; the lead from the band's MIDI): the planner leaves room where it is busy.
- `Voicer` picks the pitches: chord tones of the heard chord, voice-led (common tones kept, smallest total motion),
  inside the instrument's register and above the bass's room, no close intervals or parallel fifths low down;
  block and ballad keys add the root in the left hand just above the bass's room (`LEFT_HAND_STYLES`).
- `plan_part` → notes in seconds on the heard grid; `render_part` plays them through the instrument's program and
  chain (`engines/core/render.py`, `engines/core/effects.py`) at a level relative to the band.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backline.engines.accompany.instruments import (  # noqa: F401 - the instrument table, re-exported
    INSTRUMENTS,
    MATCH_MIN,
    Instrument,
    instrument_for,
    list_instruments,
    split_prompt,
)
from backline.engines.accompany.planner import FAMILY_STYLES, CompEvent, Planner, band_features
from backline.engines.bass.follow import PICKUP_TOLERANCE_S, grid_from_listening
from backline.engines.bass.planner import QUALITIES, QUALITY_INTERVALS, Grid
from backline.engines.core.audio import Audio
from backline.engines.core.effects import render
from backline.engines.core.errors import ConfigError
from backline.engines.core.frontend import onset_envelope
from backline.engines.core.render import SAMPLE_RATE, render_take
from backline.engines.core.timeline import Timeline
from backline.engines.core.transcribe import Note, notes_to_midi
from backline.engines.listen import Listening
from backline.engines.listen.tempo import ENVELOPE_LAG_S

#: Below this MIDI pitch is the bass's room (C3): comping stays out of it.
BASS_ROOM = 48
#: How busy a band usually is (mean attack strength per 16th step): from audio, 0.24-0.39 on the 6 held-out renders
#: (0.30 typical); from MIDI (attacks / 3, the planner's training scale) 0.44-0.53 on the composer's songs.
BUSY_TYPICAL = {"audio": 0.30, "midi": 0.48}
#: Complexity given up per unit of band busyness above the typical (and taken up below it): leave room.
BUSY_WEIGHT = 0.75


# --- what the band plays --------------------------------------------------------------------------------------
def band_activity(mix: Audio | None, origin: float, step_s: float, steps: int, band_midi: str | Path | None = None,
                  skip_programs: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(attacks per step 0-1, lead sounding per step or None, info: the band's registers). From the band's MIDI when
    given (exact: attacks counted like the planner's training data), else from the mix's onset strength.

    It only says how busy the band is: the part's timing is the listener's grid, as for the bass, and its attacks
    are put on the band's by the one take renderer (`render_take`: the instrument's attack latency, half taken
    off, like the band's own parts sounding behind their note-ons). A second shift here onto the band's measured
    onset peaks put the take 14-20 ms behind the band's attacks (the peaks lag the attacks, and the listener's
    beats already have the onset envelope's lag taken off)."""
    attacks = np.zeros(steps, np.float32)
    lead = None
    info: dict = {"source": "midi" if band_midi else "audio"}
    if band_midi:
        import pretty_midi

        pm = pretty_midi.PrettyMIDI(str(band_midi))
        pitched = [i for i in pm.instruments if not i.is_drum and i.notes and i.program not in skip_programs]
        for inst in pm.instruments:
            for n in inst.notes:
                s = int(round((n.start - origin) / step_s))
                if 0 <= s < steps:
                    attacks[s] += 1.0 / 3.0
        if pitched:
            means = {id(i): float(np.mean([n.pitch for n in i.notes])) for i in pitched}
            low = min(pitched, key=lambda i: means[id(i)])
            info["bass_top"] = int(np.percentile([n.pitch for n in low.notes], 95)) if means[id(low)] < 52 else None
            top = max(pitched, key=lambda i: means[id(i)])
            if len(pitched) > 1 and means[id(top)] >= 64:
                lead = np.zeros(steps, np.float32)
                for n in top.notes:
                    a, b = int(round((n.start - origin) / step_s)), int(round((n.end - origin) / step_s))
                    lead[max(0, a):max(0, min(steps, b))] = 1.0
                info["lead_low"] = int(np.percentile([n.pitch for n in top.notes], 10))
        return np.clip(attacks, 0, 1), lead, info
    if mix is not None:
        sr, hop = 22050, 128
        y = mix.with_channels(1).resampled(sr).samples[0].astype(np.float32)
        env = onset_envelope(y, sr, hop)
        if env.size and env.max() > 0:
            t = origin + np.arange(steps) * step_s
            # each step's window is centred where its attack peaks in the envelope: the envelope's own lag after
            # the grid line (the listener's constant; the busyness scale BUSY_TYPICAL was measured there)
            idx = np.clip(np.rint((t + ENVELOPE_LAG_S) * sr / hop).astype(int), 0, len(env) - 1)
            lo, hi = np.clip(idx - 4, 0, None), np.clip(idx + 5, None, len(env))
            vals = np.array([env[a:b].max() if b > a else 0.0 for a, b in zip(lo, hi)], np.float32)
            ref = float(np.percentile(vals, 90)) or 1.0
            attacks = np.clip(vals / ref, 0, 1)
            attacks = np.where(attacks < 0.3, 0.0, attacks).astype(np.float32)
            attacks[t < 0] = 0.0
    return attacks, lead, info


# --- voicing --------------------------------------------------------------------------------------------------
def chord_tones(root: int, quality: str) -> list[int]:
    """Pitch classes to voice, 4 voices: a seventh chord's four tones, a triad with its root doubled."""
    ivs = list(QUALITY_INTERVALS[quality])
    pcs = [(root + i) % 12 for i in ivs]
    return pcs if len(pcs) >= 4 else pcs + [root % 12]


class Voicer:
    """Voice-led chord voicings in [low, high]: among every placement of the chord's tones, the one with the
    smallest total motion from the last voicing (common tones stay), near the register's centre, with no
    intervals under a minor third below C4 (mud), no parallel fifths or octaves in the lowest voices below C4."""

    def __init__(self, low: int, high: int) -> None:
        if high - low < 12:
            raise ConfigError(f"register {low}-{high} is narrower than an octave")
        self.low, self.high = low, high
        self.center = (low + high) / 2.0
        self.prev: list[int] | None = None

    def voice(self, root: int, quality: str) -> list[int]:
        pcs = chord_tones(root, quality)
        cands = [[p for p in range(self.low, self.high + 1) if p % 12 == pc] for pc in pcs]
        best, best_cost = None, math.inf
        for combo in itertools.product(*cands):
            v = sorted(combo)
            if len(set(v)) < len(v) or v[-1] - v[0] > 19:
                continue
            cost = self._cost(v)
            if cost < best_cost:
                best, best_cost = v, cost
        if best is None:  # a register too narrow for the span: the closest placement of each tone
            best = sorted({min(c, key=lambda p: abs(p - self.center)) for c in cands if c})
        self.prev = best
        return best

    def _cost(self, v: list[int]) -> float:
        cost = 0.15 * abs(float(np.mean(v)) - self.center)
        for a, b in zip(v, v[1:]):
            if b - a < 3 and a < 60:
                cost += 4.0
            if b - a == 1:
                cost += 1.5  # a minor second inside the voicing is a rub, not a colour, in plain comping
        if self.prev is not None:
            p = self.prev
            cost += sum(abs(a - b) for a, b in zip(v, p)) / len(v)
            cost -= 1.0 * len(set(v) & set(p))  # common tones kept
            lo_now, lo_prev = v[1] - v[0], p[1] - p[0]
            if v[0] < 60 and lo_now == lo_prev and lo_now in (7, 12) and v[0] != p[0]:
                cost += 3.0  # parallel fifth/octave in the low voices
        return cost


@dataclass
class PlannedPart:
    instrument: Instrument
    style: str
    notes: list[Note]
    events: list[CompEvent]
    attributes: dict
    register: tuple[int, int]


def plan_part(planner: Planner, lst: Listening, kicks: np.ndarray, instrument: Instrument, *, style: str | None = None,
              complexity: float = 0.5, intensity: float = 0.5, register: int = 0, mix: Audio | None = None,
              band_midi: str | Path | None = None, seed: int = 0, lane: tuple[int, int] | None = None,
              band: tuple[np.ndarray, np.ndarray | None, dict] | None = None) -> PlannedPart:
    """Plan one instrument's part on what was heard → notes in seconds from the mix's first sample.

    `lane` is the register this instrument gets when several play together (`register_lanes`)."""
    if style is not None and style not in FAMILY_STYLES[instrument.family]:
        raise ConfigError(f"{instrument.name} does not play {style!r}",
                          fix=f"styles for {instrument.family}: {', '.join(FAMILY_STYLES[instrument.family])}")
    grid, origin, step_s = grid_from_listening(lst, kicks)
    attacks, lead, info = band if band is not None else band_activity(mix, origin, step_s, grid.steps, band_midi)
    busy = float(np.mean(attacks)) if len(attacks) else 0.0
    asked = complexity
    if style is None:  # Style auto: leave room where the band is busy, fill in where it is sparse
        complexity = float(np.clip(complexity - BUSY_WEIGHT * (busy - BUSY_TYPICAL[info.get("source", "audio")]), 0, 1))
    style = style or auto_style(planner, instrument, complexity)
    low, high = lane or (instrument.low, instrument.high)
    low, high = low + 12 * register, high + 12 * register
    low = max(low, BASS_ROOM, (info.get("bass_top") or 0) + 1)
    if info.get("lead_low") and info["lead_low"] - 1 - low >= 15:
        high = min(high, info["lead_low"] - 1)
    high = max(high, low + 14)
    attrs = planner.attributes(instrument.family, style, complexity, intensity, register)
    attrs["register"] = ((low + high) / 2.0 - 64.0) / 12.0
    planned = planner.plan(grid, instrument.family, style, attrs, band_features(attacks, grid.bar_steps, lead),
                           seed=seed)
    # the left hand's root (block and ballad keys), above the bass's room; not when several instruments share the
    # registers in lanes: the lane below holds that register
    left = max(BASS_ROOM, (info.get("bass_top") or 0) + 1)
    left_hand = left if instrument.family == "keys" and style in LEFT_HAND_STYLES and lane is None else None
    notes = events_to_notes(planned, grid, origin, step_s, lst.duration, Voicer(low, high),
                            sustained=instrument.family in ("strings", "pads"), left_hand=left_hand)
    info_attrs = {k: round(v, 3) for k, v in attrs.items()} | {
        "band_busy": round(busy, 3), "complexity_asked": round(asked, 3), "complexity_used": round(complexity, 3)}
    return PlannedPart(instrument, style, notes, planned, info_attrs, (low, high))


#: Lower to higher when several instruments play together: guitar and keys in the middle, pads and strings above.
LANE_ORDER = {"guitar": 0, "keys": 1, "pads": 2, "strings": 3}


def register_lanes(instruments: list[Instrument]) -> dict[str, tuple[int, int]]:
    """Registers for several instruments at once, so their voicings do not collide: ordered by family (a guitar or
    keys part under pads and strings), each lane an octave and a fourth wide, an octave above the one below (they
    overlap by a fifth: neighbouring top and bottom voices may meet, whole chords do not)."""
    if len(instruments) < 2:
        return {}
    order = sorted(instruments, key=lambda i: (LANE_ORDER[i.family], i.low))
    return {inst.name: (52 + 12 * k, 69 + 12 * k) for k, inst in enumerate(order)}


def auto_style(planner: Planner, instrument: Instrument, complexity: float) -> str:
    """The style for Style = auto: the instrument's usual one, or, when Complexity asks for clearly fewer or more
    attacks, the family's style whose measured attacks per bar (the planner's stored style means) come nearest to
    what it asks for (keys: ballad/block ↔ comp ↔ arpeggio; strings: pad ↔ half ↔ pulse). Why: the corpus plays each
    style as a fixed pattern, so within a style the planner holds its pattern whatever the complexity."""
    fam, style = instrument.family, instrument.style
    means = {s: planner.style_attrs.get(f"{fam}/{s}", {}).get("complexity") for s in FAMILY_STYLES[fam]}
    if abs(complexity - 0.5) <= 0.1 or means.get(style) is None:
        return style
    target = means[style] + (complexity - 0.5) * 0.8
    return min((s for s, m in means.items() if m is not None), key=lambda s: (abs(means[s] - target), s != style))


#: Keys styles whose part carries a left-hand root under the right-hand chord: the corpus composer's block and
#: ballad piano hold the chord's root in the left hand each bar (`engines/data/song.py`), which the planner's
#: texture (attacks, voices) was learned with; comp and arpeggio parts have no left hand.
LEFT_HAND_STYLES = ("block", "ballad")


def left_hand_root(root: int, right_low: int, low: int = BASS_ROOM) -> int | None:
    """The left hand's root: the lowest placement of the root in the octave just above the bass's room
    (C3-B3), at least a minor third under the right hand's lowest note (no mud); None where there is no room."""
    for p in range(low, low + 12):
        if p % 12 == root % 12:
            return p if right_low - p >= 3 else None
    return None


#: A chord held through a change is played again on the change this much softer (a re-attack, not a new accent).
CHANGE_REATTACK = 0.85


def through_changes(events: list[CompEvent], change: np.ndarray, steps: int) -> list[CompEvent]:
    """The planned attacks, plus a re-attack on each chord change that a held chord (two voices or more) was meant
    to sound through before the part's next attack. Why: notes are cut at a change so no chord rings into the next
    harmony, and a bar-long chord with a change on beat 3 left a beat or more of silence there (heard on the demo:
    a 0.6 s hole in bar 2); a pianist holding a chord moves to the new one on the change. Keys and guitar only
    (`events_to_notes`): on the held-out strings the re-attacks' slow onsets moved the part 3-47 ms off the band."""
    starts = np.array(sorted(e.step for e in events), dtype=int)
    out = list(events)
    for e in events:
        if e.voices < 2:
            continue
        following = starts[starts > e.step]
        stop = min(e.step + e.length, int(following[0]) if len(following) else steps, steps)
        k = int(np.searchsorted(change, e.step, side="right"))
        while k < len(change) and change[k] < stop:
            t = int(change[k])
            t_next = int(change[k + 1]) if k + 1 < len(change) else steps
            out.append(CompEvent(t, min(stop, t_next) - t, e.voices, e.voice,
                                 max(1, int(round(e.velocity * CHANGE_REATTACK)))))
            k += 1
    return sorted(out, key=lambda ev: ev.step)


def events_to_notes(events: list[CompEvent], grid: Grid, origin: float, step_s: float, duration: float,
                    voicer: Voicer, *, sustained: bool = False, left_hand: int | None = None) -> list[Note]:
    """Planned attacks → notes: each attack voices the chord sounding at its step (voice-led), and is cut at the
    next chord change, so a held chord never rings into the next harmony.

    `left_hand` (the lowest pitch it may take, None = no left hand): the first chord attack of each bar under a
    chord also plays the root in the left hand (`left_hand_root`), held to the bar line or the next change. Why: a block or ballad pianist anchors the
    harmony with the root below the right hand (as the corpus' piano does); placed above the bass's room it
    doubles the bass's root an octave or two up rather than crowding it."""
    change = np.flatnonzero((grid.root[1:] != grid.root[:-1]) | (grid.quality[1:] != grid.quality[:-1])) + 1
    cache: dict[int, list[int]] = {}
    gap = min(0.04 if not sustained else 0.06, step_s * 0.3)
    notes: list[Note] = []
    rooted: set[tuple[int, int]] = set()  # (chord segment, bar) that has its left-hand root
    # strings and pads keep the plain cut: a re-attack of a slow bowed attack on the change reads 3-47 ms off the band
    for e in (events if sustained else through_changes(events, change, grid.steps)):
        s = min(e.step, grid.steps - 1)
        if grid.root[s] >= 12:
            continue
        seg = int(np.searchsorted(change, s, side="right"))  # which chord segment
        if seg not in cache:
            cache[seg] = voicer.voice(int(grid.root[s]), QUALITIES[int(grid.quality[s])])
        voicing = cache[seg]
        nxt = change[seg] if seg < len(change) else grid.steps
        length = min(e.length, nxt - e.step)
        if e.voices == 1:
            k = max(0, e.voice)
            pitches = [voicing[int(round(k / 3 * (len(voicing) - 1)))]]
        else:
            pitches = voicing[-e.voices:] if e.voices < len(voicing) else voicing
        start = origin + e.step * step_s
        end = min(duration, start + length * step_s - gap)
        if start < -PICKUP_TOLERANCE_S or end - start < 0.03:
            continue
        start = max(start, 0.0)  # a few ms before the first sample: the listener's pickup beat, played on it
        notes += [Note(int(p), float(start), float(end), int(e.velocity)) for p in pitches]
        bar = e.step // grid.bar_steps
        if left_hand is not None and len(pitches) >= 2 and (seg, bar) not in rooted:
            rooted.add((seg, bar))
            lh = left_hand_root(int(grid.root[s]), min(pitches), left_hand)
            stop = min(nxt, (bar + 1) * grid.bar_steps)
            lh_end = min(duration, origin + stop * step_s - gap)
            if lh is not None and lh_end - start >= 0.03:
                notes.append(Note(lh, float(start), float(lh_end), int(e.velocity)))
    return notes


def render_part(notes: list[Note], instrument: Instrument, frames: int, sample_rate: int, bpm: float, *,
                numerator: int = 4, denominator: int = 4, target_lufs: float = -20.0) -> tuple[Audio, Audio, dict]:
    """Notes → (dry, wet, level report) through the instrument's GM program, soundfont and chain."""
    mid = notes_to_midi(notes, Timeline.constant(bpm, SAMPLE_RATE, numerator, denominator),
                        program=instrument.program, name=f"Backline {instrument.name}")
    with tempfile.TemporaryDirectory(prefix="backline-accompany-") as tmp:
        path = Path(tmp) / "part.mid"
        mid.save(str(path))
        # the one take renderer: attacks on the note-ons (the instrument's measured latency taken off), the tail
        # faded rather than cut at the region's end
        dry, timing = render_take(path, instrument.font, frames=int(math.ceil(frames * SAMPLE_RATE / sample_rate)) + 1,
                                  sample_rate=SAMPLE_RATE, program=instrument.program, role="other")
    dry = dry.resampled(sample_rate).slice(0, frames) if sample_rate != SAMPLE_RATE else dry.slice(0, frames)
    wet, level = render(dry, instrument.chain, target_lufs=target_lufs, where=f"{instrument.name} chain")
    return dry, wet, level | timing
