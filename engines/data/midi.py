"""Song → Standard MIDI Files with mido, in Slakh2100's arrangement (one file per stem plus `all_src.mid`).

Every file is type 1 at `PPQ` ticks per quarter: track 0 holds tempo, meter and key, later tracks hold
one instrument each (program change at tick 0, then notes). The conductor track ends at `song.end_tick`,
so fluidsynth keeps rendering through the release tail. Events at the same tick are ordered note-offs
first, then note-ons, so a repeated pitch is re-struck rather than cut. Same song → same bytes.
"""

from __future__ import annotations

from pathlib import Path

import mido

from backline.engines.core.midi import midi_bytes
from backline.engines.data.gm import program_name
from backline.engines.data.song import NOTE_NAMES, PPQ, Part, Song

# mido's key_signature names for each major / minor key (pitch class of the tonic).
_MIDO_MAJOR = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MIDO_MINOR = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")


def tempo_us(bpm: float) -> int:
    """Microseconds per quarter note as stored in the file (an integer, so rendering uses this value)."""
    return int(round(mido.bpm2tempo(bpm)))


def _conductor(song: Song, name: str) -> mido.MidiTrack:
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("track_name", name=name, time=0))
    tr.append(mido.MetaMessage("set_tempo", tempo=tempo_us(song.bpm), time=0))
    clocks = 36 if song.denominator == 8 else 24
    tr.append(mido.MetaMessage("time_signature", numerator=song.numerator, denominator=song.denominator,
                               clocks_per_click=clocks, notated_32nd_notes_per_beat=8, time=0))
    key = (_MIDO_MAJOR if song.mode == "major" else _MIDO_MINOR)[song.key_pc]
    tr.append(mido.MetaMessage("key_signature", key=key, time=0))
    tr.append(mido.MetaMessage("end_of_track", time=song.end_tick))
    return tr


def _part_track(part: Part) -> mido.MidiTrack:
    events: list[tuple[int, int, mido.Message]] = []
    for n in part.notes:
        events.append((n.start, 1, mido.Message("note_on", channel=part.channel, note=n.pitch,
                                                velocity=n.velocity)))
        events.append((n.start + n.duration, 0, mido.Message("note_off", channel=part.channel, note=n.pitch,
                                                             velocity=0)))
    events.sort(key=lambda e: (e[0], e[1], e[2].note))
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("track_name", name=program_name(part.program, part.is_drum), time=0))
    tr.append(mido.Message("program_change", channel=part.channel, program=part.program, time=0))
    now = 0
    for tick, _, msg in events:
        tr.append(msg.copy(time=tick - now))
        now = tick
    tr.append(mido.MetaMessage("end_of_track", time=0))
    return tr


def _to_bytes(mid: mido.MidiFile) -> bytes:
    return midi_bytes(mid)


def part_midi_bytes(song: Song, part: Part) -> bytes:
    mid = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    mid.tracks.append(_conductor(song, f"{NOTE_NAMES[song.key_pc]} {song.mode} {song.bpm:g} BPM"))
    mid.tracks.append(_part_track(part))
    return _to_bytes(mid)


def song_midi_bytes(song: Song, parts: list[Part] | None = None) -> bytes:
    """All parts (or the given ones) in one file: Slakh's all_src.mid."""
    mid = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    mid.tracks.append(_conductor(song, f"{NOTE_NAMES[song.key_pc]} {song.mode} {song.bpm:g} BPM"))
    for part in song.parts if parts is None else parts:
        mid.tracks.append(_part_track(part))
    return _to_bytes(mid)


def note_on_seconds(path: str | Path) -> list[float]:
    """Times (s) of every note-on with velocity > 0 in a MIDI file, tempo changes included (mido's clock)."""
    out, now = [], 0.0
    for msg in mido.MidiFile(str(path)):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append(now)
    return out


def midi_seconds(path: str | Path) -> float:
    """Length of a MIDI file in seconds, up to its last event (end_of_track included)."""
    return float(mido.MidiFile(str(path)).length)
