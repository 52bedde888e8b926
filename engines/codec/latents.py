"""The latent cache the diffusion trainers read: one safetensors file per corpus track.

Layout of `OUT/` written by `backline data encode --data CORPUS --out OUT --codec mix|stem|both`:

    OUT/index.json                  {"format": "backline-latent-cache", "version": 1, "hop": 4096,
                                     "sample_rate": 44100, "codecs": {"mix": {...config, weights}, "stem": {...}},
                                     "minus_roles": ["bass"], "tracks": ["Track00001", ...]}
    OUT/Track00001.safetensors      float32 tensors, all with the same number of frames N = ceil(T / 4096):
        "mix"            [64, N]  mix codec latents of the track's mix.flac              (--codec mix|both)
        "mix_no_bass"    [64, N]  mix codec latents of the sum of every stem whose role is not bass
                                  (one "mix_no_<role>" per --minus role; absent if the track has no such stem)
        "stem_S00" …     [32, N]  stem codec latents of each stems/SNN.flac (mono codec) (--codec stem|both)
      safetensors metadata (strings): "track", "frames", "samples", "sample_rate", "hop",
        "roles" (JSON {"S00": "bass", …}), "stems" (JSON list of stem ids), "mix_codec"/"stem_codec" (weights ids)

Why this cut: the bass trainer conditions on mixes of random stem subsets, which cannot all be cached; the full
mix and the mix without the target role cover the inference-time cases (whole song; song with the part to be
generated removed), and per-stem stem latents give every possible target. Roles are the ones
backline.engines.data.slakh assigns (extras.json "roles", else Slakh's inst_class / is_drum).
Latent frame i covers samples [4096·i, 4096·(i+1)) of the track, the same for every key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from backline.engines.core.audio import atomic_output
from backline.engines.core.errors import DatasetError
from backline.engines.data.slakh import read_track

FORMAT = "backline-latent-cache"
VERSION = 1


def load_latent_cache(path: str | Path) -> dict[str, torch.Tensor]:
    """All latents of one cached track: {"mix": [64, N], "mix_no_bass": [64, N], "stem_S00": [32, N], …}."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise DatasetError("latent file not found", path=path, fix="run `backline data encode` first")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors has its own error types
        raise DatasetError(f"latent file cannot be read ({err})", path=path,
                           fix="delete it and rerun `backline data encode`") from err


def read_latent_meta(path: str | Path) -> dict[str, Any]:
    """The per-track metadata (frames, samples, roles, stems, codec ids) without loading tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:
        raise DatasetError(f"latent file cannot be read ({err})", path=path) from err
    for key in ("frames", "samples", "sample_rate", "hop"):
        if key in meta:
            meta[key] = int(meta[key])
    for key in ("roles", "stems"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


def read_index(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / "index.json"
    if not path.exists():
        raise DatasetError("is not a latent cache (no index.json)", path=cache_dir,
                           fix="run `backline data encode --data CORPUS --out DIR`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DatasetError(f"latent cache format {index.get('format')} v{index.get('version')} is not "
                           f"{FORMAT} v{VERSION}", path=path, fix="re-encode the corpus")
    return index


def latent_cache_tracks(cache_dir: str | Path) -> list[Path]:
    """The per-track latent files listed in the cache's index.json."""
    index = read_index(cache_dir)
    return [Path(cache_dir) / f"{name}.safetensors" for name in index["tracks"]]


def stem_roles(track: Path) -> dict[str, str]:
    """{"S00": "bass", …}: the roles backline.engines.data.slakh assigns (extras.json, else Slakh inst_class)."""
    return {sid: stem.role for sid, stem in read_track(track).stems.items()}


def save_track_latents(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], *,
                       overwrite: bool = False) -> Path:
    """Atomic write (temp file + rename); refuses to replace an existing file unless `overwrite`."""
    from safetensors.torch import save_file

    final, tmp = atomic_output(path, overwrite=overwrite)
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    try:
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=strings)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
