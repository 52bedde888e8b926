"""A generated (or recorded) bass stem → its notes and MIDI: basic-pitch, then one voice (`bass_line`).

Used by the latent engine (its takes' MIDI), the reference learner (the reference's feel) and the benchmarks. Kept
apart from `common.py` because it needs the MIDI tooling (mido, basic-pitch), which the latent engine's sampling
does without on a bare GPU machine (`packaging/gpu_lease.py`'s import guard).
"""

from __future__ import annotations

from backline.engines.bass.common import QUANTISE
from backline.engines.core.audio import Audio
from backline.engines.core.effects import normalise_loudness
from backline.engines.core.errors import ConfigError
from backline.engines.core.transcribe import Note, notes_to_midi, transcribe_monophonic, transcribe_polyphonic


def bass_line(notes, *, max_pitch: int = 67, min_dur: float = 0.05, ghost_s: float = 0.1, chord_s: float = 0.03):
    """Polyphonic transcription → one bass voice.

    basic-pitch on a bass stem finds the line plus ghosts: a second note starting a few tens of ms after the
    real onset (often a third or fourth below) and octave doublings. We keep notes up to G4 and ≥ 50 ms, and walk
    them in time: a note starting within `chord_s` of the sounding one is the same onset (keep the lower: the
    fundamental), one starting within `ghost_s` of it is a ghost (dropped), a later one ends the sounding note.
    On corpus bass stems this raised onset+pitch F1 (50 ms) from 0.44 to 0.55–0.66; CREPE (tiny and full) found
    almost none of the notes of these low (E1–C3) lines (F1 ≈ 0), which is why the bass engine does not use it.
    """
    out: list = []
    for n in sorted((n for n in notes if n.pitch <= max_pitch and n.end - n.start >= min_dur),
                    key=lambda n: (n.start, n.pitch)):
        if out and n.start < out[-1].end:
            p = out[-1]
            gap = n.start - p.start
            if gap < chord_s:
                if n.pitch < p.pitch:
                    out[-1] = Note(n.pitch, p.start, max(p.end, n.end), max(p.velocity, n.velocity))
                continue
            if gap < ghost_s:
                continue
            out[-1] = Note(p.pitch, p.start, n.start, p.velocity)
        out.append(n)
    return out


def transcribe_bass(audio: Audio) -> list:
    """A bass stem → its notes (basic-pitch limited to 30–450 Hz, then `bass_line`).

    The stem is first brought to −18 LUFS: basic-pitch's thresholds are absolute, and a decoded stem can come
    out of the codec far quieter than a real one."""
    audio, _ = normalise_loudness(audio, -18.0)
    return bass_line(transcribe_polyphonic(audio, min_hz=30.0, max_hz=450.0))


def bass_notes(audio: Audio) -> list:
    """A recorded or separated bass → its notes: CREPE, unless it lost the pitch, then `transcribe_bass`.

    On a walking line E1–E2 rendered by three GM soundfonts (upright and finger) CREPE gives 16 notes with 13–16
    right and no extras where it hears the bass, but on some timbres its confidence collapses for the whole line:
    0 notes on TimGM6mb's upright and on the real upright of realdev's filosax01 (84 % of that mix).
    `transcribe_bass` finds 14–16 of 16 on every one, with 3–12 extra notes. So CREPE's line is kept unless it
    has under half the notes of basic-pitch's (a lost pitch, not a disagreement about ghosts)."""
    crepe = transcribe_monophonic(audio, fmax=400.0)
    line = transcribe_bass(audio)
    return crepe if 2 * len(crepe) >= len(line) else line


def bass_midi(audio: Audio, timeline, region_start: int, quantise: str = "off", gm_program: int = 34):
    """Transcribe a generated bass → (notes, MIDI file) placed at `region_start` on the DAW timeline."""
    if quantise not in QUANTISE:
        raise ConfigError(f"quantise={quantise!r} is not a grid", fix=f"use one of {', '.join(QUANTISE)}")
    notes = transcribe_bass(audio)
    mid = notes_to_midi(notes, timeline, quantise=QUANTISE[quantise], program=gm_program - 1,
                        offset_seconds=region_start / timeline.sample_rate, name="Backline bass")
    return notes, mid
