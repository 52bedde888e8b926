"""The drum engine's three input paths, all ending in a `SongGrid` plus a `Timeline`.

1. MIDI files (mido): one multitrack file or one file per track. Each track (and, in type-0 files, each
   channel) gets an MA role, in this order of precedence: the user's override (`--role NAME=ROLE`, NAME a
   track name or a 0-based track index), then the track name (bass / guitar / piano, keys, organ / strings,
   pad, violin / drums, kit), then the GM program as LPD-5 groups them: 0–23 piano (pianos, chromatic
   percussion, organs), 24–31 guitar, 32–39 bass, 40–127 strings (LPD-5 folds every other family into its
   Strings track). Channel 10 (mido 9) is always drums. A role 'ignore' drops a track.
2. Notes received live on a JACK MIDI port (python-rtmidi's JACK backend; ALSA sequencer is not used), timed
   against a tempo and meter the caller gives (`JackMidiInput`).
3. Audio, transcribed with basic-pitch (`backline.engines.core.transcribe`): notes below MIDI 48 (C3) become the
   bass role, the rest piano, since a mix transcription has no instrument labels.

Tempo maps are kept (the grid is in quarters, so tempo changes do not move notes); meter changes are refused.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

from backline.engines.core.errors import (
    ConfigError,
    DeviceError,
    MissingDependencyError,
    TimelineError,
    warn,
)
from backline.engines.core.midi import read_midi
from backline.engines.core.timeline import TempoMap, Timeline
from backline.engines.core.transcribe import transcribe_polyphonic
from backline.engines.drums.representation import (
    GM_TO_CLASS,
    MA_ROLES,
    N_CLASSES,
    N_ROLES,
    STEPS_PER_QUARTER,
    SongGrid,
    quarters_per_bar,
)

ROLE_CHOICES = (*MA_ROLES, "drums", "ignore")
_NAME_RULES = (
    ("drums", re.compile(r"drum|kit|perc|beat", re.I)),
    ("bass", re.compile(r"bass", re.I)),
    ("guitar", re.compile(r"guit|gtr", re.I)),
    ("piano", re.compile(r"piano|keys|rhodes|organ|wurl|clav|epiano", re.I)),
    ("strings", re.compile(r"string|violin|viola|cello|pad|ens", re.I)),
)
MAX_BARS = 2048


def role_for_program(program: int) -> str:
    """LPD-5's grouping of GM programs (0-based, as mido counts)."""
    if program < 24:
        return "piano"
    if program < 32:
        return "guitar"
    if program < 40:
        return "bass"
    return "strings"


def role_for_name(name: str) -> str | None:
    for role, pattern in _NAME_RULES:
        if pattern.search(name or ""):
            return role
    return None


@dataclass
class TrackInfo:
    """What the reader made of one input track: shown to the user in the JSON report."""

    index: int
    name: str
    program: int | None
    channel: int | None
    role: str
    notes: int
    source: str = ""  # "override" | "name" | "program" | "channel 10"


@dataclass
class BandInput:
    grid: SongGrid
    timeline: Timeline
    tracks: list[TrackInfo] = field(default_factory=list)
    source: str = ""


@dataclass
class _Notes:
    """Notes of one role in quarters: (start, end, pitch, velocity)."""

    items: list[tuple[float, float, int, int]] = field(default_factory=list)


def parse_role_overrides(items: Sequence[str] | None) -> dict[str, str]:
    """['Keys=piano', '3=bass'] → {'keys': 'piano', '3': 'bass'} (names lower-cased)."""
    out: dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"role override {item!r} is not NAME=ROLE", fix="e.g. --role 'Rhodes=piano' or --role 2=bass")
        name, role = (s.strip() for s in item.rsplit("=", 1))
        if role not in ROLE_CHOICES:
            raise ConfigError(f"role {role!r} in {item!r} is unknown", fix=f"use one of {', '.join(ROLE_CHOICES)}")
        out[name.lower()] = role
    return out


def _load_midi(path: Path) -> mido.MidiFile:
    return read_midi(path)


def _tempo_and_meter(mids: Sequence[tuple[Path, mido.MidiFile]]) -> tuple[list[tuple[float, float]], tuple[int, int]]:
    """Tempo points (quarter, bpm) and the one meter from all files' meta events."""
    tempos: dict[float, float] = {}
    meters: list[tuple[float, int, int, Path]] = []
    for path, mid in mids:
        tpq = mid.ticks_per_beat
        for track in mid.tracks:
            tick = 0
            for msg in track:
                tick += msg.time
                if msg.type == "set_tempo":
                    tempos[tick / tpq] = mido.tempo2bpm(msg.tempo)
                elif msg.type == "time_signature":
                    meters.append((tick / tpq, msg.numerator, msg.denominator, path))
    meter = (4, 4)
    if meters:
        meters.sort()
        meter = (meters[0][1], meters[0][2])
        for q, num, den, path in meters:
            if (num, den) != meter:
                raise TimelineError(f"the meter changes from {meter[0]}/{meter[1]} to {num}/{den} at quarter {q:g}",
                                    path=path, fix="generate each meter's section separately with --bars")
    points = sorted(tempos.items())
    if not points or points[0][0] > 0:
        points.insert(0, (0.0, points[0][1] if points else 120.0))
    merged: list[tuple[float, float]] = []
    for q, bpm in points:
        if not 10.0 <= bpm <= 999.0:
            used = min(max(bpm, 10.0), 999.0)
            warn(f"the MIDI tempo {bpm:.2f} BPM at quarter {q:g} is outside 10–999 BPM; using {used:g} BPM",
                 path=mids[0][0] if mids else None)
            bpm = used
        if merged and abs(merged[-1][0] - q) < 1e-9:
            merged[-1] = (q, bpm)
        elif not merged or abs(merged[-1][1] - bpm) > 1e-6:
            merged.append((q, bpm))
    return merged, meter


def read_midi_files(paths: Sequence[str | Path], *, role_overrides: dict[str, str] | None = None,
                    sample_rate: int = 48000, drums_allowed: bool = True) -> BandInput:
    """Band MIDI (one multitrack file or several single-track files) → grid + timeline + track report."""
    if not paths:
        raise ConfigError("no MIDI file given", fix="pass --midi BAND.mid")
    overrides = {k.lower(): v for k, v in (role_overrides or {}).items()}
    mids = [(Path(p), _load_midi(Path(p))) for p in paths]
    points, (num, den) = _tempo_and_meter(mids)
    quarters_per_bar(num, den)  # refuse unsupported meters before reading notes
    timeline = Timeline(sample_rate, TempoMap(tuple(points)), num, den)
    by_role: dict[str, _Notes] = {r: _Notes() for r in (*MA_ROLES, "drums")}
    tracks: list[TrackInfo] = []
    index = 0
    for path, mid in mids:
        tpq = mid.ticks_per_beat
        for track in mid.tracks:
            # split a track by channel (type-0 files hold the whole band in one track)
            per_channel: dict[int, list[tuple[float, float, int, int]]] = {}
            program: dict[int, int] = {}
            name = track.name or ""
            active: dict[tuple[int, int], list[tuple[float, int]]] = {}
            tick = 0
            for msg in track:
                tick += msg.time
                q = tick / tpq
                if msg.type == "program_change":
                    program.setdefault(msg.channel, msg.program)
                elif msg.type == "note_on" and msg.velocity > 0:
                    active.setdefault((msg.channel, msg.note), []).append((q, msg.velocity))
                elif msg.type in ("note_off", "note_on"):
                    starts = active.get((msg.channel, msg.note))
                    if starts:
                        q0, vel = starts.pop(0)
                        per_channel.setdefault(msg.channel, []).append((q0, max(q, q0), msg.note, vel))
            for (ch, pitch), starts in active.items():  # notes never released: end at their start + a 16th
                for q0, vel in starts:
                    per_channel.setdefault(ch, []).append((q0, q0 + 0.25, pitch, vel))
            for ch, notes in sorted(per_channel.items()):
                label = (name or f"track {index}") if len(per_channel) == 1 else f"{name or path.stem} ch{ch + 1}"
                keys = [str(index), label.lower(), name.lower(), path.stem.lower()]
                forced = next((overrides[k] for k in keys if k and k in overrides), None)
                if forced:
                    role, source = forced, "override"
                elif ch == 9:
                    role, source = "drums", "channel 10"
                elif role_for_name(label) or role_for_name(path.stem if len(mids) > 1 else ""):
                    role = role_for_name(label) or role_for_name(path.stem)
                    source = "name"
                else:
                    role, source = role_for_program(program.get(ch, 0)), "program"
                tracks.append(TrackInfo(index, label or path.stem, program.get(ch), ch, role, len(notes), source))
                index += 1
                if role != "ignore":
                    by_role[role].items.extend(notes)
    if not any(t.notes for t in tracks):
        raise ConfigError("the MIDI input has no notes", path=paths[0],
                          fix="export the band's parts (piano, guitar, bass, strings) with their notes")
    if by_role["drums"].items and not drums_allowed:
        by_role["drums"].items.clear()
    grid = grid_from_notes({r: by_role[r].items for r in MA_ROLES}, by_role["drums"].items, num, den)
    return BandInput(grid, timeline, tracks, source=", ".join(str(p) for p, _ in mids))


def grid_from_notes(ma: dict[str, Iterable[tuple[float, float, int, int]]],
                    drums: Iterable[tuple[float, float, int, int]], numerator: int, denominator: int,
                    n_bars: int | None = None) -> SongGrid:
    """Notes in quarters → a `SongGrid`. Drum notes outside the nine classes are dropped."""
    qpb = quarters_per_bar(numerator, denominator)
    ma = {r: list(v) for r, v in ma.items()}
    drums = list(drums)
    last_q = max([n[1] for v in ma.values() for n in v] + [n[0] + 0.01 for n in drums] + [0.0])
    if n_bars is None:
        n_bars = max(1, math.ceil(last_q / qpb - 1e-6))
    if n_bars > MAX_BARS:
        raise ConfigError(f"the input is {n_bars} bars long", fix=f"use at most {MAX_BARS} bars (pick a region with --bars)")
    steps = n_bars * qpb * STEPS_PER_QUARTER
    onset = np.zeros((N_ROLES, steps, 128), bool)
    active = np.zeros((N_ROLES, steps, 128), bool)
    for r, role in enumerate(MA_ROLES):
        for q0, q1, pitch, _vel in ma.get(role, ()):
            s0 = int(round(q0 * STEPS_PER_QUARTER))
            s1 = max(s0 + 1, int(round(q1 * STEPS_PER_QUARTER)))
            if 0 <= s0 < steps:
                onset[r, s0, pitch] = True
                active[r, s0:min(s1, steps), pitch] = True
    drum_grid = np.zeros((steps, N_CLASSES), bool)
    drum_vel = np.zeros((steps, N_CLASSES), np.uint8)
    for q0, _q1, pitch, vel in drums:
        cls = GM_TO_CLASS.get(int(pitch))
        s = int(round(q0 * STEPS_PER_QUARTER))
        if cls is not None and 0 <= s < steps:
            drum_grid[s, cls] = True
            drum_vel[s, cls] = max(drum_vel[s, cls], int(vel))
    present = tuple(role for r, role in enumerate(MA_ROLES) if onset[r].any())
    return SongGrid(numerator, denominator, n_bars, onset, active, drum_grid if drums else None,
                    drum_vel if drums else None, roles_present=present)


def read_drum_midi(path: str | Path, numerator: int, denominator: int, n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """A user's drum part (any channel: a drum file may not use channel 10) → `[steps, 9]` grid + velocities."""
    band = read_midi_files([path], role_overrides={str(Path(path).stem).lower(): "drums"})
    if band.grid.drums is None or not band.grid.drums.any():
        raise ConfigError("the drum MIDI has no notes on the GM drum keys", path=path,
                          fix="use a GM drum map (kick 36, snare 38, hats 42/46 ...)")
    if (band.grid.numerator, band.grid.denominator) != (numerator, denominator):
        raise TimelineError(f"the drum MIDI is in {band.grid.numerator}/{band.grid.denominator}, the band in "
                            f"{numerator}/{denominator}", path=path, fix="export both with the same meter")
    steps = n_bars * quarters_per_bar(numerator, denominator) * STEPS_PER_QUARTER
    drums = np.zeros((steps, N_CLASSES), bool)
    vel = np.zeros((steps, N_CLASSES), np.uint8)
    n = min(steps, band.grid.drums.shape[0])
    drums[:n], vel[:n] = band.grid.drums[:n], band.grid.drum_vel[:n]
    return drums, vel


# --- audio ----------------------------------------------------------------------------------------------

def grid_from_audio(audio, timeline: Timeline, *, start: int = 0, bass_split: int = 48) -> BandInput:
    """A mix (or any band audio) → notes with basic-pitch → bass (< `bass_split`) and piano roles. The audio sits
    at DAW sample `start` of `timeline` (a bar line); the grid counts quarters from there."""
    notes = transcribe_polyphonic(audio)
    if not notes:
        raise ConfigError("no notes were heard in the audio", fix="give audio with the band playing, or the band's MIDI")
    t0, q_start = timeline.samples_to_seconds(start), timeline.samples_to_quarters(start)
    ma: dict[str, list[tuple[float, float, int, int]]] = {r: [] for r in MA_ROLES}
    for n in notes:
        q0, q1 = (timeline.seconds_to_quarters(t0 + n.start) - q_start,
                  timeline.seconds_to_quarters(t0 + n.end) - q_start)
        ma["bass" if n.pitch < bass_split else "piano"].append((q0, q1, n.pitch, n.velocity))
    stop = start + audio.frames * timeline.sample_rate / audio.sample_rate
    n_bars = max(1, math.ceil((timeline.samples_to_quarters(stop) - q_start) / timeline.quarters_per_bar - 1e-6))
    grid = grid_from_notes(ma, [], timeline.numerator, timeline.denominator, n_bars)
    tracks = [TrackInfo(0, "transcribed bass", None, None, "bass", len(ma["bass"]), "audio"),
              TrackInfo(1, "transcribed other", None, None, "piano", len(ma["piano"]), "audio")]
    return BandInput(grid, timeline, tracks, source="audio")


# --- JACK live input ------------------------------------------------------------------------------------

class JackMidiInput:
    """A JACK MIDI input port that records notes with their arrival times.

    python-rtmidi's JACK backend creates the port `<client>:<port>`; connect the DAW's MIDI out to it (or pass
    `connect_to` to connect to an existing output port by name). Times are seconds from `start()`; `band()`
    turns what was played into a `BandInput` with the tempo and meter the user plays to.
    """

    def __init__(self, client: str = "backline-drums", port: str = "band-in", *, connect_to: str | None = None,
                 role: str = "piano") -> None:
        try:
            import rtmidi
        except ImportError as err:
            raise MissingDependencyError("python-rtmidi is not installed", fix="pip install python-rtmidi==1.5.8") from err
        if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
            raise MissingDependencyError("this python-rtmidi build has no JACK support", fix="pip install python-rtmidi")
        if role not in MA_ROLES:
            raise ConfigError(f"role {role!r} is not an MA role", fix=f"use one of {', '.join(MA_ROLES)}")
        self.role = role
        self._lock = threading.Lock()
        self._events: list[tuple[float, list[int]]] = []
        self._t0 = time.monotonic()
        try:
            self._midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client)
            self._midi.ignore_types(sysex=True, timing=True, active_sense=True)
            if connect_to:
                ports = self._midi.get_ports()
                match = [i for i, p in enumerate(ports) if connect_to in p]
                if not match:
                    raise DeviceError(f"no JACK MIDI output port matches {connect_to!r}",
                                      fix=f"available: {', '.join(ports) or 'none'}")
                self._midi.open_port(match[0], port)
            else:
                self._midi.open_virtual_port(port)
        except rtmidi.SystemError as err:
            raise DeviceError(f"cannot open a JACK MIDI port ({err})",
                              fix="start the JACK server (jackd or your DAW's JACK) first") from err
        self._midi.set_callback(self._on_message)
        self.port_name = f"{client}:{port}"

    def _on_message(self, event, _data=None) -> None:
        message, _delta = event
        with self._lock:
            self._events.append((time.monotonic() - self._t0, list(message)))

    def start(self) -> None:
        """Start (or restart) the clock and forget what was received before."""
        with self._lock:
            self._t0 = time.monotonic()
            self._events.clear()

    def messages(self) -> list[tuple[float, list[int]]]:
        with self._lock:
            return list(self._events)

    def notes(self) -> list[tuple[float, float, int, int, int]]:
        """(start_s, end_s, pitch, velocity, channel) of every note received so far."""
        active: dict[tuple[int, int], tuple[float, int]] = {}
        out = []
        for t, msg in self.messages():
            if len(msg) < 3:
                continue
            kind, ch = msg[0] & 0xF0, msg[0] & 0x0F
            if kind == 0x90 and msg[2] > 0:
                active[(ch, msg[1])] = (t, msg[2])
            elif kind in (0x80, 0x90) and (ch, msg[1]) in active:
                t0, vel = active.pop((ch, msg[1]))
                out.append((t0, t, msg[1], vel, ch))
        for (ch, pitch), (t0, vel) in active.items():
            out.append((t0, t0 + 0.1, pitch, vel, ch))
        return sorted(out)

    def band(self, timeline: Timeline, n_bars: int | None = None) -> BandInput:
        """What was played → BandInput; channel 10 notes are drums, the rest the role given at construction."""
        ma: dict[str, list] = {r: [] for r in MA_ROLES}
        drums = []
        for t0, t1, pitch, vel, ch in self.notes():
            item = (timeline.seconds_to_quarters(t0), timeline.seconds_to_quarters(t1), pitch, vel)
            (drums if ch == 9 else ma[self.role]).append(item)
        if not drums and not any(ma.values()):
            raise ConfigError(f"no notes arrived on {self.port_name}",
                              fix="connect your DAW's MIDI output to that port and play")
        grid = grid_from_notes(ma, drums, timeline.numerator, timeline.denominator, n_bars)
        info = [TrackInfo(0, self.port_name, None, None, self.role, sum(len(v) for v in ma.values()), "jack")]
        return BandInput(grid, timeline, info, source=f"jack:{self.port_name}")

    def close(self) -> None:
        try:
            self._midi.cancel_callback()
            self._midi.close_port()
        finally:
            del self._midi
