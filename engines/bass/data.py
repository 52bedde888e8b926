"""Training pairs for the bass model: (mix latents of a random non-empty subset of a song's other stems, bass latents).

Why a cache of our own: codec latents are not additive (encode(a + b) ≠ encode(a) + encode(b)), so a "random
subset" mix has to be summed as audio and encoded with the mix codec. Encoding on the fly would cost more CPU
than the diffusion step itself, so `encode_pairs` does it once: for every corpus track that has a bass stem it
stores the bass stem's stem-codec latents [32, F] and the mix-codec latents [64, F] of `subsets` mixes:
subset 0 is always *all* the other stems (what a user's mix looks like), the rest are random non-empty subsets
(drawn with a per-track seed, so a rebuild is identical). Training then draws one of those subsets per example:
a fresh random subset every epoch is traded for `subsets` fixed ones per track (default 6).

Layout: `CACHE/<codec fingerprints>/TrackNNNNN.safetensors` with tensors `bass` and `mix_0 … mix_{k−1}` and
metadata {track, bass_stem, subsets (JSON), frames}. Tracks already present are skipped, so an interrupted
run resumes. The bass stem is the stem whose extras.json role is "bass" (else Slakh's inst_class "Bass").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backline.engines.core.audio import Audio, atomic_output, read_audio
from backline.engines.core.errors import DatasetError
from backline.engines.core.protocol import check_cancel


@dataclass(frozen=True)
class BassTrack:
    folder: Path
    bass: str  # stem id, e.g. "S01"
    others: tuple[str, ...]


def _load_yaml(path: Path) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def bass_tracks(root: str | Path) -> list[BassTrack]:
    """Every complete track under `root` (Slakh2100 layout) with a bass stem and at least one other stem."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("corpus folder not found", path=root, fix="build one with: backline data synth")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("Track")):
        meta_path = folder / "metadata.yaml"
        if not meta_path.is_file() or not (folder / "stems").is_dir():
            continue
        stems = (_load_yaml(meta_path).get("stems") or {})
        roles = {}
        extras = folder / "extras.json"
        if extras.is_file():
            roles = json.loads(extras.read_text()).get("roles", {})
        present = [s for s in sorted(stems) if (folder / "stems" / f"{s}.flac").is_file()]
        bass = [s for s in present if roles.get(s) == "bass"] or [
            s for s in present if stems[s].get("inst_class") == "Bass" and not stems[s].get("is_drum")]
        if not bass:
            continue
        others = tuple(s for s in present if s != bass[0])
        if others:
            out.append(BassTrack(folder, bass[0], others))
    return out


def random_subsets(others: tuple[str, ...], k: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Subset 0 = all others; then k − 1 random non-empty subsets (distinct while there are enough)."""
    subsets = [tuple(others)]
    possible = 2 ** len(others) - 1
    tries = 0
    while len(subsets) < k and tries < 100:
        tries += 1
        mask = rng.random(len(others)) < 0.5
        if not mask.any():
            mask[rng.integers(len(others))] = True
        sub = tuple(s for s, m in zip(others, mask) if m)
        if sub not in subsets or len(subsets) >= possible:
            subsets.append(sub)
    return subsets


def cache_dir_for(cache_root: str | Path, mix_fp: str, stem_fp: str) -> Path:
    return Path(cache_root) / f"{mix_fp}__{stem_fp}"


def encode_pairs(root: str | Path, cache: str | Path, mix_codec, stem_codec, *, subsets: int = 6, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None,
                 cancel: threading.Event | None = None) -> list[Path]:
    """Encode every bass track under `root` into `cache` (see the module docstring); returns the files."""
    from safetensors.torch import save_file

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    tracks = bass_tracks(root)
    if not tracks:
        raise DatasetError("no tracks with a bass stem found", path=root, fix="build a corpus with: backline data synth")
    files = []
    for n, track in enumerate(tracks):
        check_cancel(cancel)
        target = cache / f"{track.folder.name}.safetensors"
        files.append(target)
        if target.exists():
            continue
        rng = np.random.default_rng([seed, int("".join(c for c in track.folder.name if c.isdigit()) or 0)])
        audio = {s: read_audio(track.folder / "stems" / f"{s}.flac") for s in (track.bass, *track.others)}
        rate = audio[track.bass].sample_rate
        length = min(a.frames for a in audio.values())
        tensors = {"bass": stem_codec.encode(Audio(audio[track.bass].samples[:, :length], rate)).contiguous()}
        chosen = random_subsets(track.others, subsets, rng)
        for i, sub in enumerate(chosen):
            mix = sum(audio[s].samples[:, :length] for s in sub)
            tensors[f"mix_{i}"] = mix_codec.encode(Audio(mix, rate)).contiguous()
        final, tmp = atomic_output(target, overwrite=False)
        try:
            save_file(tensors, str(tmp), metadata={"track": track.folder.name, "bass_stem": track.bass,
                                                   "subsets": json.dumps(chosen), "frames": str(tensors["bass"].shape[-1])})
            tmp.replace(final)
        finally:
            tmp.unlink(missing_ok=True)
        if progress:
            progress(n + 1, len(tracks), track.folder.name)
    return files


class PairCache:
    """All cached pairs in memory (small: ~0.1 MB per minute of song per subset) with random 256-frame crops."""

    def __init__(self, files: list[Path]) -> None:
        from safetensors.torch import load_file

        if not files:
            raise DatasetError("the bass latent cache is empty", fix="run backline train bass --corpus DIR first")
        self.tracks: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        self.names: list[str] = []
        for f in files:
            t = load_file(str(f))
            mixes = [t[k] for k in sorted((k for k in t if k.startswith("mix_")), key=lambda k: int(k[4:]))]
            self.tracks.append((t["bass"].float(), [m.float() for m in mixes]))
            self.names.append(Path(f).stem)
        self.lengths = np.array([b.shape[-1] for b, _ in self.tracks])

    def __len__(self) -> int:
        return len(self.tracks)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-channel mean/std of bass and of mix latents over the whole cache (for standardisation)."""
        bass = torch.cat([b for b, _ in self.tracks], dim=-1)
        mix = torch.cat([m for _, ms in self.tracks for m in ms], dim=-1)
        return bass.mean(-1), bass.std(-1), mix.mean(-1), mix.std(-1)

    def batch(self, size: int, crop: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(bass [B, 32, crop], mix [B, 64, crop]); tracks drawn in proportion to their length."""
        crop = int(min(crop, self.lengths.min()))
        p = self.lengths / self.lengths.sum()
        bass, mix = [], []
        for i in rng.choice(len(self.tracks), size=size, p=p):
            b, ms = self.tracks[i]
            start = int(rng.integers(0, b.shape[-1] - crop + 1))
            m = ms[int(rng.integers(len(ms)))]
            bass.append(b[:, start:start + crop])
            mix.append(m[:, start:start + crop])
        return torch.stack(bass), torch.stack(mix)
