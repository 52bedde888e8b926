"""The one reader for the Slakh2100 layout: our rendered corpus and the real Slakh2100 alike.

Layout (per track): `TrackNNNNN/{mix.flac, stems/SNN.flac, MIDI/SNN.mid, all_src.mid, metadata.yaml}` plus our
optional `extras.json` (key, tempo, meter, sections, chords, fills, styles, roles). Real Slakh2100 quirks it
handles: stems listed in metadata.yaml whose audio was never rendered (`audio_rendered: false`) or is missing,
drum stems (`is_drum`), mono stems, tracks without extras.json (roles are then inferred from `inst_class`),
and split folders (`train/`, `validation/`, `test/`) under the root.

Two layers:
- a listing API (`list_tracks`, `read_track`, `Track.stem_audio`, `Track.extras`, ...) for any code that wants
  to look at tracks and stems;
- crop datasets for training: each item is `(mix, target, labels)` where `mix` is the sum of a random
  non-empty subset of the *other* stems and `target` is the wanted stem, both `[channels, frames]` float32
  tensors cut from the same sample range (sample-exact alignment; when resampling, each stem's crop is
  resampled with the one resampler and the mix is summed afterwards, so mix == sum of what it contains).
  `SlakhCrops` is an IterableDataset sharded by rank/world_size and DataLoader worker;
  `SlakhCropDataset` is a map-style Dataset (item i is deterministic for a seed) for `DistributedSampler`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from backline.engines.core.audio import Audio, audio_info, read_audio
from backline.engines.core.errors import DatasetError

#: Slakh inst_class → our role names (used when a track has no extras.json, e.g. real Slakh2100).
ROLE_OF_CLASS = {
    "bass": "bass", "drums": "drums", "piano": "piano", "chromatic percussion": "piano", "organ": "piano",
    "guitar": "guitar", "strings": "strings", "strings (continued)": "strings", "synth pad": "strings",
    "brass": "lead", "reed": "lead", "pipe": "lead", "synth lead": "lead",
}
SILENT_RMS = 10 ** (-55 / 20)


@dataclass(frozen=True)
class Stem:
    id: str
    inst_class: str
    program_num: int
    is_drum: bool
    midi_program_name: str
    role: str
    audio: Path | None  # None when the stem has no audio (not rendered, or missing)
    midi: Path | None
    meta: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Track:
    path: Path
    stems: dict[str, Stem]
    metadata: dict = field(compare=False, repr=False)
    extras: dict | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def mix_path(self) -> Path:
        return self.path / "mix.flac"

    def audio_stems(self) -> list[Stem]:
        return [s for s in self.stems.values() if s.audio is not None]

    def find(self, target: str) -> list[Stem]:
        """Stems (with audio) whose role or inst_class equals `target` (case-insensitive), drums by 'drums'."""
        t = target.lower()
        return [s for s in self.audio_stems() if s.role == t or s.inst_class.lower() == t]

    def stem_audio(self, stem_id: str, *, sample_rate: int | None = None, channels: int | None = 2,
                   start: int = 0, frames: int | None = None) -> Audio:
        """One stem's audio (frames counted at the file's rate), optionally converted."""
        stem = self.stems.get(stem_id)
        if stem is None or stem.audio is None:
            raise DatasetError(f"stem {stem_id} has no audio in this track", path=self.path,
                               fix="pick a stem listed by Track.audio_stems()")
        return read_audio(stem.audio, sample_rate=sample_rate, channels=channels, start=start, frames=frames)

    def mix_audio(self, **kwargs: Any) -> Audio:
        return read_audio(self.mix_path, **kwargs)

    def info(self) -> tuple[int, int]:
        """(sample_rate, frames) of the track, from its first stem with audio (or the mix)."""
        first = next(iter(self.audio_stems()), None)
        rate, _, frames = audio_info(first.audio if first is not None else self.mix_path)
        return rate, frames


def read_metadata(track_dir: str | Path) -> dict:
    path = Path(track_dir) / "metadata.yaml"
    try:
        meta = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError("no metadata.yaml", path=Path(track_dir), fix="is this a Slakh2100-layout track folder?") from err
    except (OSError, yaml.YAMLError) as err:
        raise DatasetError(f"metadata.yaml is unreadable ({err.__class__.__name__})", path=path,
                           fix="rebuild the track with backline data synth") from err
    if not isinstance(meta, dict) or not isinstance(meta.get("stems"), dict):
        raise DatasetError("metadata.yaml has no 'stems' table", path=path, fix="rebuild the track")
    return meta


def read_extras(track_dir: str | Path) -> dict | None:
    """Our labels (see HELPERS_COMMON.md), or None for tracks without them (real Slakh2100)."""
    path = Path(track_dir) / "extras.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError("extras.json is unreadable", path=path, fix="rebuild the track") from err


def read_track(track_dir: str | Path) -> Track:
    track_dir = Path(track_dir)
    meta = read_metadata(track_dir)
    extras = read_extras(track_dir)
    roles = (extras or {}).get("roles", {})
    audio_dir = track_dir / str(meta.get("audio_dir") or "stems")
    midi_dir = track_dir / str(meta.get("midi_dir") or "MIDI")
    stems = {}
    for sid, s in sorted(meta["stems"].items()):
        s = s or {}
        is_drum = bool(s.get("is_drum", False))
        inst = str(s.get("inst_class") or ("Drums" if is_drum else "Unknown"))
        role = roles.get(sid) or ("drums" if is_drum else ROLE_OF_CLASS.get(inst.lower(), "other"))
        audio = audio_dir / f"{sid}.flac"
        has_audio = s.get("audio_rendered", True) is not False and audio.is_file() and audio.stat().st_size > 0
        midi = midi_dir / f"{sid}.mid"
        stems[sid] = Stem(sid, inst, int(s.get("program_num") or 0), is_drum, str(s.get("midi_program_name") or ""),
                          role, audio if has_audio else None, midi if midi.is_file() else None, s)
    return Track(track_dir, stems, meta, extras)


def list_tracks(root: str | Path, *, require_audio: bool = True) -> list[Track]:
    """Every track folder under `root` (or its split folders), sorted by name.

    Folders being written by `backline data synth` (hidden `.TrackNNNNN.partial-*`) are skipped; a track
    folder without a readable metadata.yaml raises, naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("corpus folder not found", path=root, fix="build one with: backline data synth --songs N --out DIR")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("Track"))
    if not folders:  # real Slakh2100: root/{train,validation,test}/TrackNNNNN
        folders = sorted(p for sub in root.iterdir() if sub.is_dir() and not sub.name.startswith(".")
                         for p in sub.iterdir() if p.is_dir() and p.name.startswith("Track"))
    tracks = [read_track(f) for f in folders]
    if require_audio:
        tracks = [t for t in tracks if t.audio_stems()]
    return tracks


def read_stem(track_dir: str | Path, stem_id: str, **kwargs: Any) -> Audio:
    return read_track(track_dir).stem_audio(stem_id, **kwargs)


# ------------------------------------------------------------------------------------------------ crops
def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]))


class _CropMaker:
    """Shared crop logic of the two dataset flavours."""

    def __init__(self, root: str | Path | list[Track], target: str, crop_frames: int, sample_rate: int,
                 channels: int, seed: int, min_others: int, max_tries: int) -> None:
        if crop_frames <= 0:
            raise DatasetError(f"crop length must be positive, got {crop_frames} samples")
        tracks = list_tracks(root) if not isinstance(root, list) else root
        self.items: list[tuple[Track, Stem, list[Stem]]] = []
        for tr in tracks:
            for stem in tr.find(target):
                others = [s for s in tr.audio_stems() if s.id != stem.id]
                if len(others) >= min_others:
                    self.items.append((tr, stem, others))
        if not self.items:
            where = root if not isinstance(root, list) else "the given tracks"
            raise DatasetError(f"no track has a '{target}' stem with audio and {min_others}+ other stems",
                               path=where if not isinstance(where, str) else None,
                               fix="check the target (a role like 'bass' or a Slakh inst_class like 'Bass')")
        self.target, self.crop_frames, self.sample_rate = target, int(crop_frames), int(sample_rate)
        self.channels, self.seed, self.max_tries = channels, int(seed), max_tries
        self._info: dict[Path, tuple[int, int]] = {}

    def info(self, track: Track) -> tuple[int, int]:
        if track.path not in self._info:
            self._info[track.path] = track.info()
        return self._info[track.path]

    def make(self, rng: np.random.Generator) -> tuple[Any, Any, dict]:
        import torch

        track, stem, others = self.items[int(rng.integers(len(self.items)))]
        file_rate, total = self.info(track)
        # crop length in the file's own samples; resampled afterwards to exactly crop_frames
        src_frames = int(math.ceil(self.crop_frames * file_rate / self.sample_rate))
        # starts on a grid where file-rate and output-rate sample positions coincide (441 samples for
        # 44.1 kHz → 16 kHz), so a resampled crop lines up exactly with the whole stem resampled
        grid = file_rate // math.gcd(file_rate, self.sample_rate)
        for attempt in range(self.max_tries):
            start = grid * int(rng.integers(0, max(total - src_frames, 0) // grid + 1))
            target = track.stem_audio(stem.id, channels=self.channels, start=start, frames=src_frames)
            if target.rms() > SILENT_RMS or attempt == self.max_tries - 1:
                break
        k = int(rng.integers(1, len(others) + 1))
        chosen = sorted((others[i] for i in rng.choice(len(others), size=k, replace=False)), key=lambda s: s.id)
        parts = [track.stem_audio(s.id, channels=self.channels, start=start, frames=src_frames).samples for s in chosen]
        target_x = target.samples
        if file_rate != self.sample_rate:
            target_x = Audio(target_x, file_rate).resampled(self.sample_rate).samples
            parts = [Audio(p, file_rate).resampled(self.sample_rate).samples for p in parts]
        target_x = _fit(target_x, self.crop_frames)
        mix = _fit(np.sum(parts, axis=0), self.crop_frames)
        ex = track.extras or {}
        labels = {
            "track": track.name, "target_stem": stem.id, "target_role": stem.role,
            "target_inst_class": stem.inst_class, "target_program": stem.program_num,
            "target_is_drum": stem.is_drum, "mix_stems": ",".join(s.id for s in chosen),
            "mix_roles": ",".join(s.role for s in chosen),
            "start": start * self.sample_rate // file_rate, "start_seconds": start / file_rate,
            "sample_rate": self.sample_rate, "target_silent": bool(target.rms() <= SILENT_RMS),
            "tempo_bpm": float(ex.get("tempo_bpm", float("nan"))), "key": str(ex.get("key", "")),
            "mode": str(ex.get("mode", "")), "beats_per_bar": int((ex.get("time_signature") or [0, 0])[0]),
            "style": str((ex.get("styles") or {}).get(stem.id, "")),
        }
        return torch.from_numpy(mix), torch.from_numpy(target_x), labels


def _fit(x: np.ndarray, frames: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.shape[1] >= frames:
        return np.ascontiguousarray(x[:, :frames])
    return np.pad(x, ((0, 0), (0, frames - x.shape[1])))


def _torch_data():
    import torch.utils.data as tud

    return tud


class SlakhCrops(_torch_data().IterableDataset):
    """Endless (or `items_per_epoch`-long) stream of `(mix, target, labels)` crops.

    Each (rank, DataLoader worker) draws from its own seeded stream `[seed, epoch, rank, worker]`, so shards never
    repeat each other's crops and a run is reproducible. rank/world_size default to torch.distributed's when it is
    initialised. Call `set_epoch(e)` between epochs as with DistributedSampler.
    """

    def __init__(self, root: str | Path | list[Track], *, target: str = "bass", crop_frames: int = 44100 * 4,
                 sample_rate: int = 44100, channels: int = 2, seed: int = 0, items_per_epoch: int | None = None,
                 rank: int | None = None, world_size: int | None = None, min_others: int = 1, max_tries: int = 8) -> None:
        super().__init__()
        self.maker = _CropMaker(root, target, crop_frames, sample_rate, channels, seed, min_others, max_tries)
        self.items_per_epoch, self.epoch = items_per_epoch, 0
        self.rank, self.world_size = _dist(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        import torch.utils.data as tud

        info = tud.get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        shard, nshards = self.rank * nworkers + wid, self.world_size * nworkers
        rng = _rng(self.maker.seed, self.epoch, shard, nshards)
        if self.items_per_epoch is None:
            while True:
                yield self.maker.make(rng)
        count = len(range(shard, self.items_per_epoch, nshards))
        for _ in range(count):
            yield self.maker.make(rng)


class SlakhCropDataset(_torch_data().Dataset):
    """Map-style crops: item `i` is a deterministic function of (seed, epoch, i). Use with DistributedSampler."""

    def __init__(self, root: str | Path | list[Track], *, target: str = "bass", crop_frames: int = 44100 * 4,
                 sample_rate: int = 44100, channels: int = 2, seed: int = 0, length: int = 1000,
                 min_others: int = 1, max_tries: int = 8) -> None:
        self.maker = _CropMaker(root, target, crop_frames, sample_rate, channels, seed, min_others, max_tries)
        self.length, self.epoch = int(length), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.maker.make(_rng(self.maker.seed, self.epoch, 1_000_003, index))


def _dist(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world_size = dist.get_world_size() if world_size is None else world_size
        except ImportError:  # pragma: no cover
            pass
    rank, world_size = int(rank or 0), int(world_size or 1)
    if not 0 <= rank < world_size:
        raise DatasetError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size
