"""Host responsiveness: does the UI thread stay free while an engine generates?

Drives the real main window (offscreen) through a generation with an engine's debug config and measures the
gaps between ticks of a 5 ms timer on the UI thread — idle first, then while the worker process generates —
plus the time from pressing Generate to the first progress on screen and to the finished take card.

    python benchmarks/host.py [--engine bass] [--bars 4] [--control steps=8] [--audio FILE]

Prints numbers with the hardware; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_name, percentiles

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def run_until(predicate, timeout: float) -> None:
    """A real Qt event loop (not a polling loop), so timer gaps measure the UI thread, not our sleeps."""
    from PyQt6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    check = QTimer()
    check.timeout.connect(lambda: loop.quit() if predicate() else None)
    check.start(20)
    QTimer.singleShot(int(timeout * 1000), loop.quit)
    loop.exec()
    check.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="bass")
    parser.add_argument("--bars", default="1-4")
    parser.add_argument("--control", action="append", default=["steps=8"])
    parser.add_argument("--audio", type=Path, help="capture file (default: the demo song, else a synthetic loop)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle measurement")
    args = parser.parse_args()

    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from backline.engines.core.timeline import parse_bar_range
    from backline.host.app import demo_mix, parse_controls, wait_for
    from backline.host.mainwindow import MainWindow
    from backline.host.settings import HostSettings

    tmp = Path(tempfile.mkdtemp(prefix="backline-bench-host-"))
    os.environ["BACKLINE_CONFIG"] = str(tmp / "config")
    audio = args.audio
    if audio is None:
        try:
            audio = demo_mix()
        except Exception:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from test_host import synthetic_mix

            audio = synthetic_mix(tmp / "mix.wav", bars=16)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = HostSettings(session_dir=str(tmp / "session"), engine_config="debug", engine_device="cpu",
                            last_engine=args.engine)
    window = MainWindow(settings, connect_daw=False)
    window.resize(1280, 800)
    window.show()
    panel = window.panels[args.engine]
    t0 = time.perf_counter()
    wait_for(app, lambda: panel.ready, 600, f"the {args.engine} engine")
    load_s = time.perf_counter() - t0
    values = panel.values()
    values["controls"].update(parse_controls(args.control))
    panel.set_values(values)
    window.load_capture_file(audio)
    window.select_bars(*parse_bar_range(args.bars))

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    end = time.perf_counter() + args.idle
    run_until(lambda: time.perf_counter() > end, args.idle + 5)
    idle = [b - a for a, b in zip(ticks, ticks[1:])]
    ticks.clear()
    marks: dict[str, float] = {}
    window.jobProgress.connect(lambda job, f: marks.setdefault("progress", time.perf_counter()) if f > 0 else None)
    window.takeAdded.connect(lambda record: marks.setdefault("take", time.perf_counter()))
    start = time.perf_counter()
    window.generate()
    run_until(lambda: "take" in marks, 900)
    busy = [b - a for a, b in zip(ticks, ticks[1:])]
    worst = sorted(((b - a, a - start) for a, b in zip(ticks, ticks[1:])), reverse=True)[:3]
    timer.stop()
    window.close()

    print(f"hardware: {cpu_name()}, {os.cpu_count()} cores, engine device cpu, Qt offscreen, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"engine: {args.engine} (debug config), bars {args.bars}, controls {parse_controls(args.control)}")
    print(f"engine load (worker start + build + describe): {load_s:.2f} s")
    print(f"UI timer gaps, idle (5 ms timer):            {percentiles(idle)}")
    print(f"UI timer gaps, while the worker generates:   {percentiles(busy)}")
    print("longest UI gaps while generating: " + ", ".join(f"{g * 1000:.0f} ms at +{t:.2f} s" for g, t in worst)
          + f" (take card at +{marks['take'] - start:.2f} s)")
    print(f"Generate → first progress on screen: {marks.get('progress', float('nan')) - start:.2f} s; "
          f"→ take card: {marks['take'] - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
