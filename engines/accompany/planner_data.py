"""Training examples for the comping planner: (grid, band activity, comping part, family, style) from the corpus
composer, run in memory like the bass planner's (`bass.planner_data`: its `song_example` gives the grid of chords,
kick and sections). Every composed song has a piano, a guitar and a strings part; each is an example of its family
(the strings' sustained styles are also examples of the pads family). The band around a part is every other part
of the song (drums, bass, lead, the other comping parts): its attacks per 16th step and whether the lead sounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backline.engines.accompany.planner import (
    FAMILY_STYLES,
    STYLES,
    CompEvent,
    band_features,
    part_attributes,
    tokens_of,
)
from backline.engines.bass.planner import Grid
from backline.engines.bass.planner_data import _len_steps, crop_window, drop_labels, song_example
from backline.engines.data.song import PPQ, make_song
from backline.engines.data.synth import song_rng

#: Corpus role → planner family. Notes below C3 are the composer's left-hand bass notes (the bass's room): not comping.
ROLE_FAMILY = {"piano": "keys", "guitar": "guitar", "strings": "strings"}
LOWEST = 48


@dataclass
class Example:
    grid: Grid
    events: list[CompEvent]
    attacks: np.ndarray  # band attacks per step (0-1)
    lead: np.ndarray  # lead sounding per step (0/1)
    family: str
    style: str
    mean_pitch: float | None
    name: str = ""


def part_events(notes, step_ticks: int, n: int, bar: int) -> tuple[list[CompEvent], float | None]:
    """A part's notes (corpus ticks) → attacks grouped per 16th step, and the part's mean pitch."""
    groups: dict[int, list] = {}
    for x in notes:
        if x.pitch < LOWEST:
            continue
        s = int(round(x.start / step_ticks))
        if 0 <= s < n:
            groups.setdefault(s, []).append(x)
    by_bar: dict[int, list[int]] = {}
    for s, xs in groups.items():
        by_bar.setdefault(s // bar, []).extend(x.pitch for x in xs)
    events = []
    for s in sorted(groups):
        xs = groups[s]
        pitches = sorted({x.pitch for x in xs})
        voice = -1
        if len(pitches) == 1:
            pool = sorted(set(by_bar[s // bar]))
            rank = pool.index(pitches[0])
            voice = int(round(rank / (len(pool) - 1) * 3)) if len(pool) > 1 else 0
        length = max(_len_steps(x.duration, step_ticks) for x in xs)
        events.append(CompEvent(s, length, len(pitches), voice, int(max(x.velocity for x in xs))))
    pitches = [x.pitch for x in notes if x.pitch >= LOWEST]
    return events, (float(np.mean(pitches)) if pitches else None)


def song_examples(song, name: str = "") -> list[Example]:
    """One composed `Song` → an example per comping part (and a pads example for sustained strings)."""
    grid = song_example(song, name).grid
    step = PPQ // 4
    n, bar = grid.steps, grid.bar_steps
    onsets = {p.role: np.zeros(n, np.float32) for p in song.parts}
    lead = np.zeros(n, np.float32)
    for p in song.parts:
        for x in p.notes:
            s = int(round(x.start / step))
            if 0 <= s < n:
                onsets[p.role][s] += 1.0
            if p.role == "lead":
                lead[max(0, s):min(n, int(round((x.start + x.duration) / step)))] = 1.0
    out = []
    for p in song.parts:
        family = ROLE_FAMILY.get(p.role)
        if family is None:
            continue
        events, mean_pitch = part_events(p.notes, step, n, bar)
        attacks = np.clip(sum(v for r, v in onsets.items() if r != p.role) / 3.0, 0.0, 1.0)
        style = p.style if p.style in STYLES else "unknown"
        out.append(Example(grid, events, attacks, lead, family, style, mean_pitch, name))
        if family == "strings" and style in FAMILY_STYLES["pads"]:
            out.append(Example(grid, events, attacks, lead, "pads", style, mean_pitch, name))
    return out


def composed_examples(n_songs: int, seed: int, *, min_bars: int = 16, max_bars: int = 48) -> list[Example]:
    out = []
    for i in range(n_songs):
        out += song_examples(make_song(song_rng(seed, i), min_bars=min_bars, max_bars=max_bars), f"song{seed}-{i}")
    return out


def sample_crop(ex: Example, steps: int, rng: np.random.Generator, *, augment: bool = True):
    """A bar-aligned crop, transposed to a random key (-5..+6), with style/section/lead dropout and band noise
    → (grid, band [steps, 3], tokens, voice indices, velocities, family, style, attrs)."""
    bar = ex.grid.bar_steps
    a, b = crop_window(ex.grid, steps, rng)
    grid = ex.grid.crop(a, b)
    events = [CompEvent(e.step - a, e.length, e.voices, e.voice, e.velocity) for e in ex.events if a <= e.step < b]
    attacks, lead = ex.attacks[a:b].copy(), ex.lead[a:b].copy()
    style = ex.style
    if augment:
        grid = grid.transposed(int(rng.integers(-5, 7)))
        style = drop_labels(grid, style, rng)
        if rng.random() < 0.5:  # heard from audio, the lead is unknown
            lead[:] = 0.0
        attacks = np.clip(attacks * rng.uniform(0.6, 1.4) + rng.normal(0, 0.08, len(attacks)), 0, 1)
        drop = rng.random(grid.steps) < 0.08
        grid.kick = np.where(drop, 0, grid.kick)
    tok, vidx, vel = tokens_of(events, grid.steps)
    return (grid, band_features(attacks, bar, lead), tok, vidx, vel, ex.family, style,
            part_attributes(events, grid, ex.mean_pitch))
