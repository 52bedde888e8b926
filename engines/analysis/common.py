"""What the three listening-model trainers share: corpus/cache arguments, the feature cache, threads, and
where shipped weights live. Caches are derived data: deleting `runs/analysis/cache` only costs time."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from backline.engines.analysis import dataset
from backline.engines.core.errors import DatasetError

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The corpus when --corpus is not given: $BACKLINE_CORPUS, else ./corpus (no machine-specific default path).
DEFAULT_CORPUS = Path(os.environ.get("BACKLINE_CORPUS", "corpus"))
DEFAULT_CACHE = Path("runs/analysis/cache")
CROPS_PER_TRACK = {"train": 40, "test": 12}


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", nargs="+", default=[str(DEFAULT_CORPUS)], metavar="ROOT[:N]",
                        help="Slakh-layout corpus root(s) holding train/ and test/, optionally ':N' to use the first "
                             "N training songs of that root (default: $BACKLINE_CORPUS or ./corpus)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder (default: %(default)s)")
    parser.add_argument("--limit-tracks", type=int, default=None, help="default N for roots given without ':N'")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")
    parser.add_argument("--crops-per-track", type=int, default=None,
                        help=f"5 s crops cached per song (default {CROPS_PER_TRACK['train']} train, "
                             f"{CROPS_PER_TRACK['test']} test)")


def setup_threads(n: int) -> None:
    torch.set_num_threads(max(1, n))


def corpora(args: argparse.Namespace) -> list[tuple[Path, int | None, Path]]:
    """(root, training-song limit, cache folder) per `--corpus` entry; the cache is `cache/<root name>/`."""
    entries = args.corpus if isinstance(args.corpus, (list, tuple)) else [args.corpus]
    out = []
    for entry in entries:
        text = str(entry)
        root, limit = text, args.limit_tracks
        if ":" in text and text.rsplit(":", 1)[1].isdigit():
            root, n = text.rsplit(":", 1)
            limit = int(n)
        root_path = Path(root)
        out.append((root_path, limit, Path(args.cache) / root_path.resolve().name))
    return out


def ensure_cache(args: argparse.Namespace, split: str, *, crops: bool = True, quiet: bool = False) -> list[Path]:
    """Decode `root/split` of every corpus once to the wave cache and build its crop cache (limits apply to
    the training split only). Returns the per-corpus cache folders of the split."""
    from tqdm import tqdm

    folders = []
    for root, limit, cache in corpora(args):
        limit = limit if split == "train" else None
        split_root = root / split
        if not split_root.is_dir():
            raise DatasetError(f"corpus split '{split}' not found", path=split_root,
                               fix="render the corpus (backline data synth) or pass --corpus")
        folder = cache / split
        waves = folder / "waves"
        bar = tqdm(desc=f"decode {root.name}/{split}", total=100, disable=quiet, leave=False)
        dataset.cache_waves(split_root, waves, limit=limit,
                            progress=lambda f, name, bar=bar: (bar.update(int(f * 100) - bar.n), bar.set_postfix_str(name)))
        bar.close()
        path = folder / f"crops_{limit or 'all'}.npz"
        if crops and not path.exists():
            tracks = dataset.load_wave_cache(waves)[:limit]
            bar = tqdm(desc=f"crops {root.name}/{split}", total=100, disable=quiet, leave=False)
            per_track = getattr(args, "crops_per_track", None) or CROPS_PER_TRACK[split]
            dataset.build_crops(tracks, per_track, seed=1 if split == "train" else 2, out=path,
                                progress=lambda f, name, bar=bar: bar.update(int(f * 100) - bar.n))
            bar.close()
        folders.append(folder)
    return folders


def load_crops(args: argparse.Namespace, split: str) -> dataset.Crops:
    """The crops of every corpus, concatenated (track ids kept distinct across corpora)."""
    parts = []
    offset = 0
    for _root, limit, cache in corpora(args):
        limit = limit if split == "train" else None
        c = dataset.load_crops(cache / split / f"crops_{limit or 'all'}.npz")
        c.track = c.track + offset
        offset = int(c.track.max()) + 1
        parts.append(c)
    return dataset.Crops(*(torch.cat([getattr(p, f) for p in parts]) for f in ("frames", "mels", "y", "mask", "track")))


def load_waves(args: argparse.Namespace, split: str) -> list[dataset.WaveTrack]:
    tracks = []
    for _root, limit, cache in corpora(args):
        limit = limit if split == "train" else None
        tracks += dataset.load_wave_cache(cache / split / "waves")[:limit]
    return tracks
