"""Training data for the GMSDI score model: mixtures and sub-mixtures of corpus stems, made on the fly.

Magnitude spectra *are* (nearly) additive but sub-mixture magnitudes are not the sum of the stems'
magnitudes, so the cache stores audio, not spectra: one `TrackNNNNN.safetensors` per corpus track holding
`stems` float16 [6, T] — each role's stems summed, mono, 16 kHz (zeros where the track lacks the role) —
with the roles present in its metadata. A training example is then a random crop, random per-stem gains,
a random non-empty subset of the present roles summed *as audio* and taken through the STFT, and the
concatenated labels of that subset as its text ("Bass, Drums"). One gain per example, from the full
mixture's magnitude, scales the sub-mixture (spec.py), so the model learns the level of a sub-mixture
relative to its mix, which is what separation asks of it. Crops are read lazily (safetensors slices).

Held-out songs: the last `holdout` tracks of the corpus (sorted by name) are never cached for training;
`benchmarks/gmsdi_eval.py` evaluates on exactly those.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from backline.engines.accompany.roles import CORPUS_ROLES, ROLES
from backline.engines.accompany.spec import HOP, SAMPLE_RATE, complex_spec, mix_scale
from backline.engines.core.errors import DatasetError
from backline.engines.data.slakh import Track, list_tracks


def split_tracks(corpus: str | Path, holdout: int) -> tuple[list[Track], list[Track]]:
    """(train, held-out) tracks: the held-out ones are the last `holdout` by name."""
    tracks = list_tracks(corpus)
    if holdout < 0 or holdout >= len(tracks):
        raise DatasetError(f"cannot hold out {holdout} of {len(tracks)} tracks", path=Path(corpus),
                           fix="render more songs (backline data synth) or lower --holdout")
    return (tracks[:-holdout], tracks[-holdout:]) if holdout else (tracks, [])


def role_waves(track: Track) -> dict[str, np.ndarray]:
    """{role: mono 16 kHz float32} with a track's stems of one role summed (roles outside ROLES dropped)."""
    out: dict[str, np.ndarray] = {}
    for stem in track.audio_stems():
        role = CORPUS_ROLES.get(stem.role)
        if role is None:
            continue
        wave = track.stem_audio(stem.id, sample_rate=SAMPLE_RATE, channels=1).samples[0]
        if role in out:
            n = max(len(out[role]), len(wave))
            out[role] = np.pad(out[role], (0, n - len(out[role]))) + np.pad(wave, (0, n - len(wave)))
        else:
            out[role] = wave
    return out


def build_cache(tracks: Sequence[Track], cache: str | Path,
                progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write one safetensors file per track (skipping those already there); returns every file."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for i, track in enumerate(tracks):
        path = cache / f"{track.name}.safetensors"
        files.append(path)
        if progress:
            progress(i, len(tracks), track.name)
        if path.exists():
            continue
        waves = role_waves(track)
        if not waves:
            continue
        n = max(len(w) for w in waves.values())
        stems = np.zeros((len(ROLES), n), dtype=np.float32)
        for role, wave in waves.items():
            stems[ROLES.index(role), : len(wave)] = wave
        meta = {"roles": json.dumps(sorted(waves, key=ROLES.index)), "track": track.name}
        from safetensors.torch import save_file

        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"stems": torch.from_numpy(stems).half()}, str(tmp), metadata=meta)
        tmp.replace(path)
    return [p for p in files if p.exists()]


def subset_index(roles: Sequence[str]) -> int:
    """Index of a non-empty role set in the 63-row label table: its bitmask over ROLES, minus one."""
    mask = sum(1 << ROLES.index(r) for r in set(roles))
    if mask == 0:
        raise ValueError("empty role set")
    return mask - 1


def all_subsets() -> list[tuple[str, ...]]:
    """Every non-empty role set, in label-table order."""
    return [tuple(r for j, r in enumerate(ROLES) if (m + 1) >> j & 1) for m in range(2 ** len(ROLES) - 1)]


class StemCache:
    """Random (sub-mixture magnitude, label index) examples from cached tracks."""

    def __init__(self, files: Sequence[Path]) -> None:
        if not files:
            raise DatasetError("the stem cache is empty", fix="point --corpus at a rendered corpus")
        self.files = list(files)
        self.roles: list[list[str]] = []
        self.lengths: list[int] = []
        for f in self.files:
            with safe_open(str(f), "pt") as h:
                self.roles.append(json.loads(h.metadata()["roles"]))
                self.lengths.append(h.get_slice("stems").get_shape()[1])

    def __len__(self) -> int:
        return len(self.files)

    def crop(self, i: int, start: int, samples: int) -> torch.Tensor:
        with safe_open(str(self.files[i]), "pt") as h:
            x = h.get_slice("stems")[:, start:start + samples].float()
        if x.shape[1] < samples:
            x = torch.nn.functional.pad(x, (0, samples - x.shape[1]))
        return x

    def example(self, frames: int, rng: np.random.Generator, gain_range: float = 0.4) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(scaled magnitude [BINS, frames] of a sub-mixture, its label index, the scale) for one draw."""
        samples = (frames - 1) * HOP
        for _attempt in range(4):
            i = int(rng.integers(len(self.files)))
            start = int(rng.integers(max(1, self.lengths[i] - samples)))
            stems = self.crop(i, start, samples)
            present = [r for r in self.roles[i] if float(stems[ROLES.index(r)].abs().max()) > 1e-3]
            if present:
                break
        if not present:
            present = list(self.roles[i]) or [ROLES[0]]
        gains = torch.from_numpy(rng.uniform(1 - gain_range, 1 + gain_range, len(ROLES)).astype(np.float32))
        stems = stems * gains[:, None]
        k = int(rng.integers(1, len(present) + 1))
        chosen = list(rng.choice(present, size=k, replace=False))
        idx = [ROLES.index(r) for r in chosen]
        specs = complex_spec(torch.stack([stems[[ROLES.index(r) for r in present]].sum(0), stems[idx].sum(0)]))
        mags = specs.abs()
        scale = mix_scale(mags[0])
        return mags[1] * scale, subset_index(chosen), scale

    def mixture_profile(self, n: int, frames: int, rng: np.random.Generator) -> torch.Tensor:
        """Per-bin RMS [BINS] of full-mixture magnitudes (after the per-mixture scale) over n random crops: the
        model's `bin_scale`."""
        samples = (frames - 1) * HOP
        acc = torch.zeros(complex_spec(torch.zeros(samples)).shape[0])
        for _ in range(n):
            i = int(rng.integers(len(self.files)))
            start = int(rng.integers(max(1, self.lengths[i] - samples)))
            mag = complex_spec(self.crop(i, start, samples).sum(0)).abs()
            acc += (mag * mix_scale(mag)).pow(2).mean(-1)
        rms = (acc / n).sqrt()
        return rms.clamp_min(0.01 * float(rms.median()))

    def batch(self, n: int, frames: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs, labels = [], []
        for _ in range(n):
            x, label, _ = self.example(frames, rng)
            xs.append(x)
            labels.append(label)
        return torch.stack(xs), torch.tensor(labels)
