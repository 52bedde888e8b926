"""What the three listening-model trainers share: corpus/cache arguments, the feature cache, threads, and
where shipped weights live. Caches are derived data: deleting `runs/analysis/cache` only costs time."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from backline.engines.analysis import dataset
from backline.engines.errors import DatasetError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CORPUS = Path(os.environ.get("BACKLINE_CORPUS", "/work/corpus"))
DEFAULT_CACHE = Path("runs/analysis/cache")
CROPS_PER_TRACK = {"train": 40, "test": 12}


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="Slakh-layout corpus root holding train/ and test/ (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder (default: %(default)s)")
    parser.add_argument("--limit-tracks", type=int, default=None, help="use only the first N tracks per split")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")


def setup_threads(n: int) -> None:
    torch.set_num_threads(max(1, n))


def ensure_cache(args: argparse.Namespace, split: str, *, crops: bool = True, quiet: bool = False) -> Path:
    """Decode `corpus/split` once to the wave cache and build its crop cache; returns the split's cache folder."""
    from tqdm import tqdm

    root = Path(args.corpus) / split
    if not root.is_dir():
        raise DatasetError(f"corpus split '{split}' not found", path=root,
                           fix="render the corpus (backline data synth) or pass --corpus")
    folder = Path(args.cache) / split
    waves = folder / "waves"
    bar = tqdm(desc=f"decode {split}", total=100, disable=quiet, leave=False)
    dataset.cache_waves(root, waves, limit=args.limit_tracks,
                        progress=lambda f, name: (bar.update(int(f * 100) - bar.n), bar.set_postfix_str(name)))
    bar.close()
    crops_path = folder / f"crops_{args.limit_tracks or 'all'}.npz"
    if crops and not crops_path.exists():
        tracks = dataset.load_wave_cache(waves)[: args.limit_tracks]
        bar = tqdm(desc=f"crops {split}", total=100, disable=quiet, leave=False)
        dataset.build_crops(tracks, CROPS_PER_TRACK[split], seed=1 if split == "train" else 2, out=crops_path,
                            progress=lambda f, name: bar.update(int(f * 100) - bar.n))
        bar.close()
    return folder


def crops_path(args: argparse.Namespace, split: str) -> Path:
    return Path(args.cache) / split / f"crops_{args.limit_tracks or 'all'}.npz"


def waves_path(args: argparse.Namespace, split: str) -> Path:
    return Path(args.cache) / split / "waves"
