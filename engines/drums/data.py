"""Training data for the drum engine: songs as `SongGrid`s with fill labels, and 11-bar training windows.

Sources:
- a Slakh2100-layout corpus (`TrackNNNNN/{MIDI/SNN.mid, metadata.yaml, extras.json}`); only the MIDI and the
  labels are read, so tracks whose audio is still being rendered elsewhere are usable. Roles come from
  `extras.json` ("lead" is folded into strings, as LPD-5 folds melody instruments); real Slakh2100 tracks
  without extras.json are mapped by program through `metadata.yaml`;
- LPD-5 through `backline.engines.data.lpd5` (its reader yields per-track pianorolls at 24 steps per beat).

Fill labels for training come from the novelty function (the paper's method; it works on LPD-5 too, which
has no labels); the corpus's own labels (`extras.json` "fills") are kept beside them for evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from backline.engines.core.errors import BacklineError, DatasetError
from backline.engines.drums import novelty as nov
from backline.engines.drums.inputs import read_midi_files, role_for_program
from backline.engines.drums.representation import (
    CONTEXT_BARS,
    GM_TO_CLASS,
    MA_ROLES,
    N_CLASSES,
    N_ROLES,
    STEPS_PER_QUARTER,
    SongGrid,
    drum_tokens,
    ma_tokens,
    meter_id,
)


@dataclass
class LabelledSong:
    name: str
    grid: SongGrid
    novelty: np.ndarray  # per bar
    novelty_fills: np.ndarray  # bool per bar (novelty > threshold)
    true_fills: np.ndarray | None  # bool per bar from extras.json, None when the source has no labels
    sections: list[dict]


def corpus_tracks(root: str | Path) -> list[Path]:
    """Complete track folders (hidden `.TrackNNNNN.partial-*` folders being written are skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("corpus folder not found", path=root, fix="build it with `backline data synth` or point to Slakh2100")
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("Track")
                  and (p / "metadata.yaml").is_file() and (p / "MIDI").is_dir())


def read_track(track: Path, threshold: float = nov.DEFAULT_THRESHOLD) -> LabelledSong | None:
    """One corpus track → LabelledSong, or None when it has no drums or no MA (nothing to learn)."""
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    extras_path = track / "extras.json"
    extras = json.loads(extras_path.read_text()) if extras_path.is_file() else {}
    roles = dict(extras.get("roles", {}))
    files, overrides = [], {}
    for sid, stem in sorted(meta.get("stems", {}).items()):
        path = track / "MIDI" / f"{sid}.mid"
        if not path.is_file():
            continue
        role = roles.get(sid) or ("drums" if stem.get("is_drum") else role_for_program(int(stem.get("program_num", 0))))
        overrides[sid.lower()] = "strings" if role == "lead" else role
        files.append(path)
    if not files:
        return None
    band = read_midi_files(files, role_overrides=overrides)
    grid = band.grid
    if "bars" in extras and extras["bars"] < grid.n_bars:  # drop the release tail past the last bar
        grid = grid.bars(0, int(extras["bars"]) - 1)
    if grid.drums is None or not grid.drums.any() or not grid.has_ma():
        return None
    curve = nov.novelty(grid.drums, grid.steps_per_bar)
    true = None
    if "fills" in extras:
        true = np.zeros(grid.n_bars, bool)
        for f in extras["fills"]:
            if 1 <= f["bar"] <= grid.n_bars:
                true[f["bar"] - 1] = True
    return LabelledSong(track.name, grid, curve, curve > threshold, true, extras.get("sections", []))


def read_corpus(root: str | Path, *, limit: int | None = None, threshold: float = nov.DEFAULT_THRESHOLD,
                progress=None) -> list[LabelledSong]:
    songs = []
    tracks = corpus_tracks(root)[: limit or None]
    for i, track in enumerate(tracks):
        try:
            song = read_track(track, threshold)
        except (BacklineError, OSError, yaml.YAMLError, json.JSONDecodeError, KeyError) as err:
            print(f"skipping {track.name}: {err}")
            song = None
        if song is not None:
            songs.append(song)
        if progress:
            progress(i + 1, len(tracks))
    return songs


def read_lpd5(root: str | Path, *, limit: int | None = None, threshold: float = nov.DEFAULT_THRESHOLD) -> list[LabelledSong]:
    """LPD-5 songs via the foundation's reader (`backline.engines.data.lpd5`); labels from novelty only."""
    try:
        # lazy: the LPD-5 reader is optional in an install (ImportError → DatasetError)
        from backline.engines.data import lpd5
    except ImportError as err:
        raise DatasetError("the LPD-5 reader (backline.engines.data.lpd5) is not in this install",
                           fix="update Backline, or train on a Slakh-layout corpus with --data") from err
    songs = []
    for i, item in enumerate(lpd5.iter_songs(root, limit=limit)):
        grid = lpd5_to_grid(item)
        if grid is None:
            continue
        curve = nov.novelty(grid.drums, grid.steps_per_bar)
        songs.append(LabelledSong(str(getattr(item, "name", i)), grid, curve, curve > threshold, None, []))
    return songs


def lpd5_to_grid(item) -> SongGrid | None:
    """An LPD-5 song (pianorolls `[steps, 128]` per track at 24 per beat, 4/4) → SongGrid.

    Accepts the reader's object with `tracks: dict[name, roll]` (names Drums, Piano, Guitar, Bass, Strings).
    """
    tracks = {str(k).lower(): np.asarray(v) for k, v in getattr(item, "tracks", item).items()}
    if "drums" not in tracks:
        return None
    steps = max(v.shape[0] for v in tracks.values())
    steps -= steps % (4 * STEPS_PER_QUARTER)
    if steps == 0:
        return None
    onset = np.zeros((N_ROLES, steps, 128), bool)
    active = np.zeros((N_ROLES, steps, 128), bool)
    for r, role in enumerate(MA_ROLES):
        roll = tracks.get(role)
        if roll is None:
            continue
        on = roll[:steps] > 0
        active[r, : on.shape[0]] = on
        onset[r, : on.shape[0]] = on & ~np.vstack([np.zeros((1, 128), bool), on[:-1]])
    vroll = tracks["drums"][:steps]
    droll = vroll > 0
    dstart = droll & ~np.vstack([np.zeros((1, 128), bool), droll[:-1]])
    drums = np.zeros((steps, N_CLASSES), bool)
    vel = np.zeros((steps, N_CLASSES), np.uint8)
    for pitch, cls in GM_TO_CLASS.items():
        drums[: dstart.shape[0], cls] |= dstart[:, pitch]
        vel[: dstart.shape[0], cls] = np.maximum(vel[: dstart.shape[0], cls], np.where(dstart[:, pitch], vroll[:, pitch], 0))
    if not drums.any() or not onset.any():
        return None
    present = tuple(role for r, role in enumerate(MA_ROLES) if onset[r].any())
    return SongGrid(4, 4, steps // (4 * STEPS_PER_QUARTER), onset, active, drums, vel, roles_present=present)


# --- windows ---------------------------------------------------------------------------------------------

@dataclass
class Window:
    """An 11-bar (or shorter, for short songs) training window, as model-ready arrays."""

    ma: np.ndarray  # [T, 148]
    drums: np.ndarray  # [T, 216]
    fills: np.ndarray  # [bars] float (training labels)
    qpb: int
    meter: int
    first_bar: int  # song bar number of the window's bar 0 (1-based)


def song_windows(song: LabelledSong, *, bars: int = CONTEXT_BARS, stride: int = 1,
                 labels: str = "novelty") -> Iterator[Window]:
    grid = song.grid
    ma = ma_tokens(grid)
    dr = drum_tokens(grid.drums)
    fills = (song.true_fills if labels == "extras" and song.true_fills is not None else song.novelty_fills)
    qpb = grid.qpb
    n = min(bars, grid.n_bars)
    for b0 in range(0, grid.n_bars - n + 1, stride):
        t0, t1 = b0 * qpb, (b0 + n) * qpb
        yield Window(ma[t0:t1], dr[t0:t1], fills[b0:b0 + n].astype(np.float32), qpb,
                     meter_id(grid.numerator, grid.denominator), grid.first_bar + b0)
