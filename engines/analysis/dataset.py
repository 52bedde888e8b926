"""Corpus → training data for the listening models, with a feature cache so the shared CPU decodes once.

Tracks and stems are listed with the project's Slakh reader (`backline.engines.data.slakh`), so the rendered
corpus and the real Slakh2100 (stems without audio, no extras.json) are read the same way.

Stage 1, `cache_waves`: every track of a Slakh-layout corpus is decoded once, stems resampled to 16 kHz mono
(the project's one resampler, through `read_audio`) and stored as float16 `.npy` with a small JSON (fine tag
and role per stem), plus the full mix's 96-bin SimCLR log-mel (for SimCLR pretraining, 100 frames/s).
Stage 2, `build_crops`: 5 s crops with a *random subset* of stems mixed (each stem kept with p = 0.5, at
least one; a quarter of crops keep every stem). The corpus songs always hold bass, drums, piano, guitar
and strings, so full mixes alone would give nearly constant labels; subsets are what teach the tagger to
say which parts are *missing*. Labels come from the stems actually audible in the crop:
* present: the stem is in the subset and ≥ 10 % of its 100 ms frames are above −50 dBFS;
* absent: not in the subset, or no frame above −70 dBFS;
* unknown (masked out of loss and metrics, paper 001's masked BCE): anything in between.
Stored per crop: MusiCoder frames [251, 324] and SimCLR log-mel [96, 501] (float16), fine labels and mask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backline.engines.analysis.features import FEATURE_SR, MusiCoderFeatures, SimCLRLogMel
from backline.engines.analysis.tagger import FINE_TAGS, fine_index
from backline.engines.core.errors import DatasetError
from backline.engines.data import slakh

CROP_SECONDS = 5.0
PRESENT_DB, ABSENT_DB, PRESENT_FRACTION = -50.0, -70.0, 0.10


@dataclass
class StemInfo:
    sid: str
    fine: int
    role: str
    program: int
    is_drum: bool


def track_stems(track: slakh.Track) -> list[StemInfo]:
    """Stems with audio, their GM-derived fine tag and their role (from the project's Slakh reader)."""
    return [StemInfo(s.id, fine_index(s.program_num, s.is_drum), s.role, s.program_num, s.is_drum)
            for s in track.audio_stems()]


def cache_waves(root: str | Path, out: str | Path, *, limit: int | None = None, progress=None) -> list[Path]:
    """Decode every track once to `out/<Track>.npy` (float16 [stems, N] at 16 kHz) + `.json` + mix log-mel."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logmel = SimCLRLogMel()
    done = []
    tracks = slakh.list_tracks(root)[:limit]
    for i, track in enumerate(tracks):
        npy, js, mel = out / f"{track.name}.npy", out / f"{track.name}.json", out / f"{track.name}.mel.npy"
        if not (npy.exists() and js.exists() and mel.exists()):
            stems = track_stems(track)
            waves = [track.stem_audio(s.sid, sample_rate=FEATURE_SR, channels=1).samples[0] for s in stems]
            n = min(len(w) for w in waves)
            arr = np.stack([w[:n] for w in waves]).astype(np.float16)
            mix = torch.from_numpy(arr.astype(np.float32).sum(0))
            np.save(mel.with_suffix(".tmp.npy"), logmel(mix).numpy().astype(np.float16))
            np.save(npy.with_suffix(".tmp.npy"), arr)
            js.write_text(json.dumps({"track": track.name, "stems": [s.__dict__ for s in stems]}))
            mel.with_suffix(".tmp.npy").rename(mel)
            npy.with_suffix(".tmp.npy").rename(npy)
        done.append(npy)
        if progress:
            progress((i + 1) / len(tracks), track.name)
    return done


@dataclass
class WaveTrack:
    name: str
    waves: np.ndarray  # float16 [stems, N] (memory-mapped)
    mel: np.ndarray  # float16 [96, frames] of the full mix
    stems: list[dict]


def load_wave_cache(folder: str | Path) -> list[WaveTrack]:
    folder = Path(folder)
    tracks = []
    for js in sorted(folder.glob("Track*.json")):
        meta = json.loads(js.read_text())
        tracks.append(WaveTrack(meta["track"], np.load(folder / f"{meta['track']}.npy", mmap_mode="r"),
                                np.load(folder / f"{meta['track']}.mel.npy", mmap_mode="r"), meta["stems"]))
    if not tracks:
        raise DatasetError("no cached tracks", path=folder, fix="run `backline train tagger --prepare` first")
    return tracks


def frame_db(x: np.ndarray, frame: int = 1600) -> np.ndarray:
    n = max(1, len(x) // frame)
    f = x[: n * frame].astype(np.float32).reshape(n, -1)
    return 20 * np.log10(np.sqrt((f**2).mean(1)) + 1e-10)


def crop_labels(stem_waves: np.ndarray, included: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-stem (present, known) for a crop; see module doc for the thresholds."""
    present = np.zeros(len(stem_waves), bool)
    known = np.ones(len(stem_waves), bool)
    for i, w in enumerate(stem_waves):
        if not included[i]:
            continue
        db = frame_db(w)
        if (db > PRESENT_DB).mean() >= PRESENT_FRACTION:
            present[i] = True
        elif (db > ABSENT_DB).any():
            known[i] = False
    return present, known, included


def fine_targets(stems: list[dict], present: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stem-level (present, known) → fine labels and mask; a tag is present if any stem of it is."""
    y = np.zeros(len(FINE_TAGS), np.float32)
    m = np.ones(len(FINE_TAGS), np.float32)
    for s, p in zip(stems, present):
        if p:
            y[s["fine"]] = 1.0
    for s, k in zip(stems, known):
        if not k and y[s["fine"]] == 0:
            m[s["fine"]] = 0.0
    return y, m


def build_crops(tracks: list[WaveTrack], crops_per_track: int, seed: int, out: str | Path,
                seconds: float = CROP_SECONDS, progress=None) -> Path:
    """Random-subset crops with features and labels → one `.npz` (see module doc)."""
    rng = np.random.default_rng(seed)
    feats_fn, mel_fn = MusiCoderFeatures(), SimCLRLogMel()
    n = int(seconds * FEATURE_SR)
    frames, mels, ys, ms, tids, subsets = [], [], [], [], [], []
    for ti, tr in enumerate(tracks):
        total = tr.waves.shape[1]
        for _ in range(crops_per_track):
            start = int(rng.integers(0, max(1, total - n)))
            seg = np.asarray(tr.waves[:, start : start + n], np.float32)
            if seg.shape[1] < n:
                seg = np.pad(seg, ((0, 0), (0, n - seg.shape[1])))
            k = len(tr.stems)
            inc = np.ones(k, bool) if rng.random() < 0.25 else rng.random(k) < 0.5
            if not inc.any():
                inc[rng.integers(k)] = True
            present, known, _ = crop_labels(seg, inc)
            y, m = fine_targets(tr.stems, present, known)
            mix = torch.from_numpy(seg[inc].sum(0))
            frames.append(feats_fn(mix).numpy().astype(np.float16))
            mels.append(mel_fn(mix).numpy().astype(np.float16))
            ys.append(y)
            ms.append(m)
            tids.append(ti)
            subsets.append(np.packbits(np.pad(inc, (0, 16 - k))) if k <= 16 else np.packbits(inc[:16]))
        if progress:
            progress((ti + 1) / len(tracks), tr.name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial.npz")
    np.savez(tmp, frames=np.stack(frames), mels=np.stack(mels), y=np.stack(ys), mask=np.stack(ms),
             track=np.array(tids), names=np.array([t.name for t in tracks]))
    tmp.rename(out)
    return out


@dataclass
class Crops:
    frames: torch.Tensor  # [N, T, 324] float16
    mels: torch.Tensor  # [N, 96, 501] float16
    y: torch.Tensor  # [N, 17]
    mask: torch.Tensor  # [N, 17]
    track: torch.Tensor  # [N]

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> Crops:
        return Crops(self.frames[idx], self.mels[idx], self.y[idx], self.mask[idx], self.track[idx])


def load_crops(path: str | Path) -> Crops:
    path = Path(path)
    if not path.exists():
        raise DatasetError("crop cache not found", path=path, fix="run the trainer's --prepare step first")
    z = np.load(path)
    return Crops(torch.from_numpy(z["frames"]), torch.from_numpy(z["mels"]), torch.from_numpy(z["y"]),
                 torch.from_numpy(z["mask"]), torch.from_numpy(z["track"]))


def split_by_track(crops: Crops, val_fraction: float = 0.15, seed: int = 0) -> tuple[Crops, Crops]:
    """Train/validation split by track (no song on both sides), as the paper's 15 % validation split."""
    tracks = torch.unique(crops.track)
    g = torch.Generator().manual_seed(seed)
    perm = tracks[torch.randperm(len(tracks), generator=g)]
    n_val = max(1, int(round(val_fraction * len(tracks))))
    val = torch.isin(crops.track, perm[:n_val])
    return crops.subset(torch.nonzero(~val)[:, 0]), crops.subset(torch.nonzero(val)[:, 0])


# --- on-the-fly pairs for SimCLR and matching --------------------------------------------------------------

SNIPPET = 300  # frames of the 100 fps log-mel = 3 s
MAX_CENTRE_GAP = 500  # < 5 s between positive centres


def simclr_pairs(tracks: list[WaveTrack], batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 3 s log-mel snippets per sampled track, centres < 5 s apart. Tracks are drawn without replacement
    when the corpus is larger than the batch (the paper draws with replacement from 1.8M songs, where
    repeats are rare; on a small corpus a repeat would be a false negative)."""
    a, b = [], []
    for ti in rng.choice(len(tracks), batch, replace=len(tracks) < batch):
        mel = tracks[ti].mel
        total = mel.shape[1]
        s1 = int(rng.integers(0, total - SNIPPET))
        lo, hi = max(0, s1 - MAX_CENTRE_GAP + 1), min(total - SNIPPET, s1 + MAX_CENTRE_GAP - 1)
        s2 = int(rng.integers(lo, hi + 1))
        a.append(np.asarray(mel[:, s1 : s1 + SNIPPET], np.float32))
        b.append(np.asarray(mel[:, s2 : s2 + SNIPPET], np.float32))
    return torch.from_numpy(np.stack(a)), torch.from_numpy(np.stack(b))


MATCH_TARGETS = ("bass", "drums", "other")


def pick_stem(tr: WaveTrack, target: str, rng: np.random.Generator) -> int | None:
    fine_bass = FINE_TAGS.index("Bass")
    if target == "bass":
        idx = [i for i, s in enumerate(tr.stems) if s["role"] == "bass" or s["fine"] == fine_bass]
    elif target == "drums":
        idx = [i for i, s in enumerate(tr.stems) if s["is_drum"]]
    else:
        idx = [i for i, s in enumerate(tr.stems) if not s["is_drum"] and s["fine"] != fine_bass and s["role"] != "bass"]
    return int(idx[rng.integers(len(idx))]) if idx else None


def matching_pair(tr: WaveTrack, stem_index: int, start: int, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(mix without the stem, the stem) 16 kHz waveforms of one aligned window."""
    n = int(seconds * FEATURE_SR)
    seg = np.asarray(tr.waves[:, start : start + n], np.float32)
    keep = np.ones(len(seg), bool)
    keep[stem_index] = False
    return seg[keep].sum(0), seg[stem_index]


def matching_batch(tracks: list[WaveTrack], batch: int, rng: np.random.Generator, mel_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """One (mix, stem) pair from each of `batch` distinct tracks, the stem audible in the window."""
    order = rng.permutation(len(tracks))
    mixes, stems = [], []
    n = 3 * FEATURE_SR
    for ti in order:
        tr = tracks[ti]
        si = pick_stem(tr, MATCH_TARGETS[int(rng.integers(3))], rng)
        if si is None or tr.waves.shape[1] <= n:
            continue
        for _ in range(4):  # look for a window where the stem plays
            start = int(rng.integers(0, tr.waves.shape[1] - n))
            mix, stem = matching_pair(tr, si, start)
            if (frame_db(stem) > PRESENT_DB).mean() >= 0.3:
                break
        mixes.append(mix)
        stems.append(stem)
        if len(mixes) == batch:
            break
    m = mel_fn(torch.from_numpy(np.stack(mixes)))[..., :SNIPPET]
    s = mel_fn(torch.from_numpy(np.stack(stems)))[..., :SNIPPET]
    return m, s
