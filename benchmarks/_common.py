"""What every benchmark script shares: the hardware line it prints first, and timing helpers.

Scripts are run as `python benchmarks/NAME.py`, so this folder is on `sys.path` and they `from _common import
...`. Numbers are printed, never asserted (tests prove behaviour; benchmarks measure it).
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


__all__ = ["cpu_name", "hardware", "percentiles", "repeat", "timed"]
