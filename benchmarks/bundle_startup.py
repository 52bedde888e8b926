"""Desktop bundle: its size and the time from double-click to the first screen.

    python benchmarks/bundle_startup.py [--bundle dist/Backline] [--runs 5]

Builds the bundle (hard-linked) when `--bundle` does not exist, then starts `Backline --first-screen` in an
empty environment, headless, `--runs` times, and prints the size on disk and the start-up times.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=ROOT / "dist" / "Backline")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    if not args.bundle.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "packaging" / "bundle.py"), "--out", str(args.bundle), "--link"],
                       check=True)
        print(f"built in {time.perf_counter() - t0:.1f} s (hard links)")
    size = sum(f.stat().st_size for f in args.bundle.rglob("*") if f.is_file() and not f.is_symlink())
    parts = {d.name: sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink())
             for d in args.bundle.iterdir() if d.is_dir()}
    print(f"hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"bundle size: {size / 2**30:.2f} GiB (" + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in parts.items()) + ")")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HOME": tmp, "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "BACKLINE_CONFIG": tmp}
        for i in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([str(args.bundle / "Backline"), "--first-screen", f"{tmp}/shot{i}.png"], env=env, cwd=tmp,
                           check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    print(f"start-up to the first screen: median {statistics.median(times):.2f} s, first {times[0]:.2f} s, "
          f"min {min(times):.2f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
