"""What every benchmark script shares: the hardware line it prints first, timing helpers, the one speed
convention, and the corpus a script measures on.

Scripts are run as `python benchmarks/NAME.py`, so this folder is on `sys.path` and they `from _common import
...`. Numbers are printed, never asserted (tests prove behaviour; benchmarks measure it).

Speed: **processing seconds ÷ audio seconds, printed as "× real time"** (0.1× = ten times faster than the music
plays; above 1× cannot keep up). `x_real_time` computes it; no script prints the inverse under that name.

Corpus: every script that measures on songs takes the folder as an argument; without one it renders a small
synthetic corpus itself (`corpus_or_render`: `backline data synth`, a seed no training run uses, cached under
runs/bench-corpus/) and says so in its output, so a fresh clone runs every benchmark. The README's figures name the
corpus they were measured on (benchmarks/README.md).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(device: str | None = None, *, torch_info: bool = True) -> str:
    """One line: CPU, cores, load (the machine is often shared), Python, and torch/GPU when asked."""
    parts = [cpu_name(), f"{os.cpu_count()} logical cores"]
    try:
        parts.append(f"load average {os.getloadavg()[0]:.1f} at start (shared machine: timings are noisy)")
    except (OSError, AttributeError):
        pass
    parts.append(f"Python {platform.python_version()} on {platform.system()} {platform.release()}")
    if torch_info:
        try:
            import torch

            text = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
            if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
                text += f", GPU {torch.cuda.get_device_name(0)}"
            elif device is None:
                text += ", CPU only"
            parts.append(text)
        except ImportError:
            pass
    return ", ".join(parts)


def percentiles(values_s: Sequence[float], unit: str = "ms") -> str:
    """'p50 …, p99 …, max … (n)' for durations given in seconds."""
    import numpy as np

    if len(values_s) == 0:
        return "no samples"
    scale = {"ms": 1e3, "us": 1e6, "s": 1.0}[unit]
    a = np.asarray(values_s, dtype=np.float64) * scale
    return (f"p50 {np.percentile(a, 50):.3g} {unit}, p99 {np.percentile(a, 99):.3g} {unit}, "
            f"max {a.max():.3g} {unit} ({len(a)} samples)")


@contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Wall and CPU time of a block: `into[key]` (s) and `into[key + '_cpu']` (s)."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        into[key] = time.perf_counter() - t0
        into[key + "_cpu"] = time.process_time() - c0


def repeat(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def x_real_time(processing_s: float, audio_s: float) -> float:
    """The one speed figure: processing seconds per second of audio ("× real time"; below 1 is faster)."""
    return float(processing_s) / max(float(audio_s), 1e-9)


#: the synthetic corpus seed of the benchmarks: none of the documented training corpora uses it
BENCH_SEED = 9001
BENCH_CACHE = Path(__file__).resolve().parents[1] / "runs" / "bench-corpus"


def corpus_or_render(path: str | Path | None, *, flag: str = "--corpus", songs: int = 4, min_bars: int = 16,
                     max_bars: int = 24, seed: int = BENCH_SEED, split: str | None = None) -> tuple[Path, str]:
    """(corpus folder, a label saying what it is) for a benchmark.

    Given a folder, it must exist (else one line, exit 2). Without one, `songs` synthetic songs are rendered
    once (resumable, cached) — labelled as synthetic, never as the held-out corpus the README figures used.
    With `split` ('test', 'train') the rendered songs go into that sub-folder (the analysis layout)."""
    import sys

    if path is not None:
        folder = Path(path)
        if not folder.is_dir():
            print(f"{Path(sys.argv[0]).name}: error: {folder}: corpus folder not found — give an existing "
                  f"Slakh-layout folder, or leave out {flag} to render a small synthetic one", file=sys.stderr)
            raise SystemExit(2)
        return folder, f"corpus {folder}"
    from backline.engines.data.synth import synthesize

    root = BENCH_CACHE / f"seed{seed}-{songs}songs-{min_bars}-{max_bars}bars"
    out = root / split if split else root
    print(f"(no {flag}: rendering {songs} synthetic songs of {min_bars}-{max_bars} bars, seed {seed}, into {out}; "
          "cached for the next run)", flush=True)
    synthesize(out, songs, seed + (0 if split in (None, "test") else 1), jobs=os.cpu_count() or 1,
               min_bars=min_bars, max_bars=max_bars, progress=False, log=lambda message: None)
    return root if split else out, (f"{songs} synthetic songs rendered by this script (seed {seed}) — not the "
                                    "held-out corpus of the README's figures")


__all__ = ["BENCH_SEED", "corpus_or_render", "cpu_name", "hardware", "percentiles", "repeat", "timed", "x_real_time"]
