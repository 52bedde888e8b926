"""MIDI to and from bytes and files: the one place Backline turns a MIDI object into bytes or reads a file.

Engines hand MIDI around as bytes, a `mido.MidiFile` or a `pretty_midi.PrettyMIDI`; `midi_bytes` accepts all
three so the take writer, the corpus generator and the CLIs share one serialiser. `read_midi` is the one
reader: it turns a missing file, a folder, a non-MIDI file and a corrupt file into one-line errors.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from backline.engines.core.audio import write_bytes_atomic
from backline.engines.core.errors import AudioFileError
from backline.engines.core.timeline import MAX_BPM, MIN_BPM, Timeline, TimelineError


class MidiFileError(AudioFileError):
    """A MIDI file that cannot be read (missing, a folder, not MIDI, corrupt)."""


def midi_bytes(mid: Any) -> bytes:
    """bytes | mido.MidiFile | pretty_midi.PrettyMIDI → Standard MIDI File bytes."""
    if isinstance(mid, (bytes, bytearray, memoryview)):
        return bytes(mid)
    buf = io.BytesIO()
    if hasattr(mid, "tracks") and hasattr(mid, "ticks_per_beat"):  # mido.MidiFile
        mid.save(file=buf)
    elif hasattr(mid, "write") and hasattr(mid, "instruments"):  # pretty_midi.PrettyMIDI
        mid.write(buf)
    else:
        raise TypeError(f"not a MIDI object: {type(mid).__name__}")
    return buf.getvalue()


def write_midi(path: str | Path, mid: Any, *, overwrite: bool = False) -> Path:
    """Write MIDI atomically with the one never-overwrite rule (engines.audio.write_bytes_atomic)."""
    return write_bytes_atomic(path, midi_bytes(mid), overwrite=overwrite)


def read_midi(path: str | Path, *, clip: bool = True):
    """A `mido.MidiFile`, or a MidiFileError that says what is wrong with the file."""
    import mido

    path = Path(path)
    if not path.exists():
        raise MidiFileError("MIDI file not found", path=path, fix="check the path")
    if path.is_dir():
        raise MidiFileError("is a folder, not a MIDI file", path=path, fix="give the .mid file inside it")
    if path.stat().st_size == 0:
        raise MidiFileError("file is empty (0 bytes)", path=path, fix="export the MIDI again from your DAW")
    try:
        return mido.MidiFile(str(path), clip=clip)
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as err:
        raise MidiFileError(f"is not a readable MIDI file ({err})", path=path,
                            fix="export it again as a Standard MIDI File (.mid)") from err


def check_band_midi(path: str | Path, what: str = "the band MIDI") -> Any:
    """Read `path` and refuse, in one line and before any work, the tempos and time signatures no timeline
    holds (a 1 µs tempo is 60,000,000 BPM; a 1000/4 or x/2^40 bar): every engine sizes arrays by them.
    Returns the `mido.MidiFile`."""
    import mido

    mid = read_midi(path)
    for track in mid.tracks:
        for msg in track:
            if msg.type == "set_tempo":
                bpm = mido.tempo2bpm(msg.tempo) if msg.tempo > 0 else float("inf")
                if not MIN_BPM <= bpm <= MAX_BPM:
                    raise MidiFileError(f"{what} sets a tempo of {bpm:,.0f} BPM ({msg.tempo} µs per quarter note)",
                                        path=path, fix=f"fix the tempo in the DAW ({MIN_BPM:g}–{MAX_BPM:g} BPM) "
                                                       "and export the MIDI again")
            elif msg.type == "time_signature":
                try:
                    Timeline.constant(120.0, 48000, int(msg.numerator), int(msg.denominator))
                except TimelineError as err:
                    raise MidiFileError(f"{what} is in {msg.numerator}/{msg.denominator}, a time signature Backline "
                                        "cannot follow", path=path, fix=err.fix) from err
    return mid


__all__ = ["MidiFileError", "check_band_midi", "midi_bytes", "read_midi", "write_midi"]
