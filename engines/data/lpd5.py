"""Reader (and writer, for tests) of LPD-5 pianorolls: the pypianoroll `.npz` format the drum paper trained on.

Format (pypianoroll 0.5 `Multitrack.save`, which the Lakh Pianoroll Dataset uses): a zip holding
- `pianoroll_N_csc_{data,indices,indptr,shape}.npy`: track N's `[time_steps, 128]` pianoroll as a sparse
  CSC matrix (columns are pitches, `indices` are time steps);
- `tempo.npy` (BPM per time step), optionally `downbeat.npy` (bool per time step);
- `info.json` (a plain zip member): `{"beat_resolution": 24, "name": ..., "N": {"program", "is_drum", "name"}}`.
LPD-5 merges instruments into five tracks: Drums, Piano, Guitar, Bass, Strings.

We read it with numpy and zipfile only (no scipy/pypianoroll dependency) and return uint8 velocity rolls
(`bool` LPD files become 0/100). Other beat resolutions are converted to `beat_resolution` (24 by default)
by max-pooling or repeating time steps.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backline.engines.core.audio import write_bytes_atomic
from backline.engines.core.errors import DatasetError

LPD5_TRACKS = ("Drums", "Piano", "Guitar", "Bass", "Strings")
BEAT_RESOLUTION = 24
BOOL_VELOCITY = 100


@dataclass
class LPDSong:
    name: str
    path: Path | None
    tracks: dict[str, np.ndarray]  # name -> [steps, 128] uint8 velocities
    programs: dict[str, int]
    is_drum: dict[str, bool]
    tempo: np.ndarray  # BPM per step
    downbeat: np.ndarray | None  # bool per step
    beat_resolution: int = BEAT_RESOLUTION

    @property
    def steps(self) -> int:
        return max((r.shape[0] for r in self.tracks.values()), default=0)

    def stack(self, order: tuple[str, ...] = LPD5_TRACKS) -> np.ndarray:
        """`[len(order), steps, 128]` uint8; a track the file lacks is all zeros."""
        out = np.zeros((len(order), self.steps, 128), np.uint8)
        for i, name in enumerate(order):
            roll = self.tracks.get(name)
            if roll is not None:
                out[i, : roll.shape[0]] = roll
        return out


def _dense_from_csc(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape) -> np.ndarray:
    rows, cols = int(shape[0]), int(shape[1])
    if cols != 128:
        raise DatasetError(f"pianoroll has {cols} pitch columns, expected 128")
    counts = np.diff(indptr)
    col_idx = np.repeat(np.arange(cols), counts)
    dense = np.zeros((rows, cols), np.uint8)
    values = np.asarray(data)
    if values.dtype == bool:
        values = values.astype(np.uint8) * BOOL_VELOCITY
    dense[np.asarray(indices, np.int64), col_idx] = np.clip(values, 0, 127).astype(np.uint8)
    return dense


def _convert_resolution(roll: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst or roll.shape[0] == 0:
        return roll
    steps = int(round(roll.shape[0] * dst / src))
    idx = np.minimum((np.arange(roll.shape[0]) * dst) // src, steps - 1)
    out = np.zeros((steps, roll.shape[1]), roll.dtype)
    np.maximum.at(out, idx, roll)  # downsampling keeps every onset
    if dst > src:  # upsampling: hold each source step over the target steps it covers
        src_of = np.minimum((np.arange(steps) * src) // dst, roll.shape[0] - 1)
        out = roll[src_of]
    return out


def read_npz(path: str | Path, *, beat_resolution: int = BEAT_RESOLUTION) -> LPDSong:
    """One LPD-5 (pypianoroll) `.npz` file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError("pianoroll file not found", path=path, fix="check the path")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            info = json.loads(z.read("info.json")) if "info.json" in names else {}
        arrays = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, json.JSONDecodeError) as err:
        raise DatasetError(f"not a readable pypianoroll .npz ({err.__class__.__name__})", path=path,
                           fix="LPD-5 files come from the Lakh Pianoroll Dataset (lpd_5_cleansed)") from err
    with arrays:
        src_res = int(info.get("beat_resolution", BEAT_RESOLUTION))
        ids = sorted({int(k.split("_")[1]) for k in arrays.files if k.startswith("pianoroll_") and k.endswith("_csc_shape")})
        if not ids:
            raise DatasetError("holds no pianoroll_N_csc_* arrays", path=path, fix="is this a pypianoroll file?")
        tracks, programs, drums = {}, {}, {}
        for i in ids:
            key = f"pianoroll_{i}_csc"
            roll = _dense_from_csc(arrays[f"{key}_data"], arrays[f"{key}_indices"], arrays[f"{key}_indptr"],
                                   arrays[f"{key}_shape"])
            meta = info.get(str(i), {})
            name = str(meta.get("name") or (LPD5_TRACKS[i] if i < len(LPD5_TRACKS) else f"Track{i}"))
            tracks[name] = _convert_resolution(roll, src_res, beat_resolution)
            programs[name] = int(meta.get("program", 0))
            drums[name] = bool(meta.get("is_drum", name == "Drums"))
        tempo = np.asarray(arrays["tempo"], np.float64) if "tempo" in arrays.files else np.full(1, 120.0)
        downbeat = np.asarray(arrays["downbeat"], bool) if "downbeat" in arrays.files else None
    if src_res != beat_resolution:
        tempo = _convert_resolution(tempo[:, None], src_res, beat_resolution)[:, 0] if len(tempo) > 1 else tempo
        if downbeat is not None:
            downbeat = _convert_resolution(downbeat[:, None].astype(np.uint8), src_res, beat_resolution)[:, 0].astype(bool)
    return LPDSong(str(info.get("name") or path.stem), path, tracks, programs, drums, tempo, downbeat, beat_resolution)


def iter_songs(root: str | Path, *, limit: int | None = None, beat_resolution: int = BEAT_RESOLUTION) -> Iterator[LPDSong]:
    """Every `.npz` under `root` (LPD's nested A/B/C/... folders included), in sorted order."""
    root = Path(root)
    if root.is_file():
        yield read_npz(root, beat_resolution=beat_resolution)
        return
    if not root.is_dir():
        raise DatasetError("LPD-5 folder not found", path=root, fix="download lpd_5_cleansed and point at its folder")
    for k, path in enumerate(sorted(root.rglob("*.npz"))):
        if limit is not None and k >= limit:
            return
        yield read_npz(path, beat_resolution=beat_resolution)


def write_npz(path: str | Path, song: LPDSong, *, overwrite: bool = False) -> Path:
    """Write `song` exactly as pypianoroll 0.5 does (compressed npz + info.json member)."""
    arrays: dict[str, np.ndarray] = {"tempo": np.asarray(song.tempo, np.float64)}
    if song.downbeat is not None:
        arrays["downbeat"] = np.asarray(song.downbeat, bool)
    info: dict = {"beat_resolution": int(song.beat_resolution), "name": song.name}
    for i, (name, roll) in enumerate(song.tracks.items()):
        roll = np.asarray(roll)
        cols, rows = np.nonzero(roll.T)  # column-major order = CSC
        arrays[f"pianoroll_{i}_csc_data"] = roll[rows, cols]
        arrays[f"pianoroll_{i}_csc_indices"] = rows.astype(np.int32)
        arrays[f"pianoroll_{i}_csc_indptr"] = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=roll.shape[1]))]).astype(np.int32)
        arrays[f"pianoroll_{i}_csc_shape"] = np.asarray(roll.shape, np.int64)
        info[str(i)] = {"program": int(song.programs.get(name, 0)), "is_drum": bool(song.is_drum.get(name, False)),
                        "name": name}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("info.json", json.dumps(info))
    return write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)
