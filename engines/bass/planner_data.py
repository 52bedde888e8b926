"""Training examples for the bass planner: (grid, bass line, style) from the corpus composer or from MIDI on disk.

Sources:
- the corpus composer (`engines/data/song.py`) run in memory: symbolic songs need no rendering, so thousands of
  songs (every bass style, meter and key) cost seconds;
- a Slakh2100-layout folder (our rendered corpus or real Slakh2100, or your own songs in that layout): the bass
  stem's MIDI is the line; kick hits come from the drum stem (GM 35/36); chords and key from extras.json when it
  exists, else from the other stems' notes with the listener's template matcher (`listen.chords_from_notes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backline.engines.bass.grid import SECTIONS, STYLES, Grid, PlanNote, quality_index, steps_per_bar
from backline.engines.bass.planner import HIGH, LOW, line_attributes, tokens_of
from backline.engines.core.errors import ConfigError
from backline.engines.data.slakh import list_tracks, read_track
from backline.engines.data.song import PPQ, make_song
from backline.engines.data.synth import song_rng
from backline.engines.listen import chords_from_notes, key_from_chroma


@dataclass
class Example:
    grid: Grid
    notes: list[PlanNote]
    style: str
    name: str = ""


def _len_steps(duration_ticks: float, step_ticks: float) -> int:
    """A note's length in 16th steps: a bass player's short gap before the next note does not shorten it a step."""
    return max(1, math.ceil((duration_ticks - 0.2 * step_ticks) / step_ticks))


def song_example(song, name: str = "") -> Example:
    """A composed `Song` → Example (16th steps from bar 1)."""

    step = PPQ // 4
    bar = steps_per_bar(song.numerator, song.denominator)
    n = song.bars * bar
    root = np.full(n, 12, np.int64)
    qual = np.zeros(n, np.int64)
    for ch in song.chords:
        a = (ch.bar - 1) * bar
        root[a:a + bar] = ch.root_pc
        qual[a:a + bar] = quality_index(ch.quality)
    section = np.full(n, SECTIONS.index("unknown"), np.int64)
    for sec in song.sections:
        a = (sec.start_bar - 1) * bar
        section[a:a + sec.bars * bar] = SECTIONS.index(sec.name) if sec.name in SECTIONS else SECTIONS.index("unknown")
    kick = np.zeros(n, np.int64)
    parts = {p.role: p for p in song.parts}
    for note in parts["drums"].notes:
        if note.pitch in (35, 36):
            s = int(round(note.start / step))
            if 0 <= s < n:
                kick[s] = 1
    bass = parts["bass"]
    notes = [PlanNote(int(round(x.start / step)), _len_steps(x.duration, step), x.pitch, x.velocity)
             for x in bass.notes if int(round(x.start / step)) < n]
    grid = Grid(song.numerator, song.denominator, song.key_pc, song.mode, root, qual, kick, section)
    return Example(grid, notes, bass.style if bass.style in STYLES else "unknown", name)


def composed_examples(n_songs: int, seed: int, *, min_bars: int = 16, max_bars: int = 48) -> list[Example]:

    return [song_example(make_song(song_rng(seed, i), min_bars=min_bars, max_bars=max_bars), f"song{seed}-{i}")
            for i in range(n_songs)]


def track_example(track_dir: str | Path) -> Example:
    """A Slakh-layout track folder → Example (the bass stem's MIDI is the line)."""
    import pretty_midi  # lazy: heavy, only for reading a corpus's MIDI


    tr = read_track(track_dir)
    bass_stems = [s for s in tr.stems.values() if s.role == "bass" or s.inst_class.lower() == "bass"]
    if not bass_stems:
        raise ConfigError("this track has no bass stem", path=tr.path, fix="train on tracks with a bass part")
    stems = tr.stems
    pms = {}
    for sid, st in stems.items():
        if st.midi is not None and Path(st.midi).is_file():
            pms[sid] = pretty_midi.PrettyMIDI(str(st.midi))
    bass_id = bass_stems[0].id
    if bass_id not in pms:
        raise ConfigError("the bass stem has no MIDI file", path=tr.path)
    ref = pms[bass_id]
    tempos = ref.get_tempo_changes()[1]
    bpm = float(tempos[0]) if len(tempos) else 120.0
    ts = ref.time_signature_changes
    num, den = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
    if tr.extras:
        num, den = tr.extras["time_signature"]
        bpm = float(tr.extras["tempo_bpm"])
    bar = steps_per_bar(num, den)
    step_s = 60.0 / bpm / 4.0
    end = max(pm.get_end_time() for pm in pms.values())
    n = int(end / step_s) // bar * bar
    if n < bar:
        raise ConfigError("the track is shorter than one bar", path=tr.path)
    bass_notes = [x for inst in pms[bass_id].instruments if not inst.is_drum for x in inst.notes]
    notes = [PlanNote(int(round(x.start / step_s)), _len_steps((x.end - x.start) / step_s, 1.0), x.pitch, x.velocity)
             for x in bass_notes if int(round(x.start / step_s)) < n]
    kick = np.zeros(n, np.int64)
    others = []
    for sid, pm in pms.items():
        for inst in pm.instruments:
            if inst.is_drum:
                for x in inst.notes:
                    s = int(round(x.start / step_s))
                    if x.pitch in (35, 36) and 0 <= s < n:
                        kick[s] = 1
            elif sid != bass_id:
                others += [(x.start, x.end, x.pitch) for x in inst.notes]
    root = np.full(n, 12, np.int64)
    qual = np.zeros(n, np.int64)
    section = np.full(n, SECTIONS.index("unknown"), np.int64)
    if tr.extras:
        key_pc = NOTE_PC[tr.extras["key"]]
        mode = tr.extras["mode"]
        for c in tr.extras["chords"]:
            a = (c["bar"] - 1) * bar
            root[a:a + bar] = c["root_pc"]
            qual[a:a + bar] = quality_index(c["quality"])
        for sec in tr.extras.get("sections", []):
            a = (sec["start_bar"] - 1) * bar
            section[a:a + sec["bars"] * bar] = SECTIONS.index(sec["name"]) if sec["name"] in SECTIONS else 5
        style = (tr.extras.get("styles") or {}).get(bass_id, "unknown")
    else:
        hist = np.zeros(12)
        for s, e, p in others:
            hist[p % 12] += e - s
        key_pc, mode = key_from_chroma(hist) if hist.sum() else (0, "major")
        beat_steps = bar // num
        beats = np.arange(0, n, beat_steps) * step_s
        chords = chords_from_notes(others, beats, np.arange(len(beats)) % num, num, (key_pc, mode), n * step_s) \
            if others else []
        for i, ch in enumerate(chords):
            a = i * beat_steps
            root[a:a + beat_steps] = ch.root if ch.root >= 0 else 12
            qual[a:a + beat_steps] = quality_index(ch.quality if ch.root >= 0 else "N")
        style = "unknown"
    grid = Grid(num, den, key_pc, mode, root, qual, kick, section)
    return Example(grid, notes, style if style in STYLES else "unknown", tr.name)


NOTE_PC = {name: i for i, name in enumerate(("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))}
NOTE_PC |= {"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10}


def folder_examples(root: str | Path) -> list[Example]:
    """Every track with a bass stem in a Slakh-layout folder (tracks without one are skipped)."""

    out = []
    for tr in list_tracks(root, require_audio=False):
        try:
            out.append(track_example(tr.path))
        except ConfigError:
            continue
    if not out:
        raise ConfigError("no track with a bass stem and its MIDI was found", path=root,
                          fix="give a folder in the Slakh2100 layout (TrackNNNNN/MIDI/SNN.mid + metadata.yaml)")
    return out


def transpose_line(notes: list[PlanNote], k: int) -> list[PlanNote]:
    """Transpose by k semitones, then by octaves so the line stays within the planner's range where it can."""

    moved = [PlanNote(n.step, n.length, n.pitch + k, n.velocity) for n in notes]
    if moved:
        lo, hi = min(n.pitch for n in moved), max(n.pitch for n in moved)
        shift = -12 if hi > HIGH and lo - 12 >= LOW else 12 if lo < LOW and hi + 12 <= HIGH else 0
        moved = [PlanNote(n.step, n.length, n.pitch + shift, n.velocity) for n in moved]
    return moved


def crop_window(grid: Grid, steps: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random bar-aligned window of about `steps` steps → (first step, end step). Both planners crop with it."""
    bar = grid.bar_steps
    n_bars = grid.steps // bar
    want = max(1, steps // bar)
    start_bar = int(rng.integers(0, max(1, n_bars - want + 1)))
    return start_bar * bar, min(grid.steps, (start_bar + want) * bar)


def drop_labels(grid: Grid, style: str, rng: np.random.Generator) -> str:
    """The label dropout both planners train with (so either plans without a style or sections): style →
    "unknown" 10 % of the time, the grid's sections (in place) 30 %; returns the style."""
    if rng.random() < 0.1:
        style = "unknown"
    if rng.random() < 0.3:
        grid.section[:] = SECTIONS.index("unknown")
    return style


def sample_crop(ex: Example, steps: int, rng: np.random.Generator, *, augment: bool = True):
    """A bar-aligned crop, transposed to a random key (-5..+6), with style/section dropout and kick noise →
    (grid, tokens, velocities, style, attrs)."""
    a, b = crop_window(ex.grid, steps, rng)
    grid = ex.grid.crop(a, b)
    notes = [PlanNote(n.step - a, n.length, n.pitch, n.velocity) for n in ex.notes if a <= n.step < b]
    style = ex.style
    if augment:
        k = int(rng.integers(-5, 7))
        grid = grid.transposed(k)
        notes = transpose_line(notes, k)
        style = drop_labels(grid, style, rng)
        drop = rng.random(grid.steps) < 0.08
        add = rng.random(grid.steps) < 0.02
        grid.kick = np.where(drop, 0, np.where(add, 1, grid.kick))
    tok, vel = tokens_of(notes, grid.steps)
    return grid, tok, vel, style, line_attributes(notes, grid)
