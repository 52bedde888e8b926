"""`backline host` (and the `backline-host` launcher): the desktop app beside your DAW.

`--screenshot DIR` drives the real window through its main states with the demo song and the debug engines
and writes one PNG per state (empty, captured waveform with a selection, generating with progress, finished
take), then exits — how reviewers and CI see the app without a display.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from backline.engines.errors import BacklineError, ConfigError, MissingDependencyError

HELP = "start the desktop app (or write screenshots of it with --screenshot DIR)"

SCREENSHOTS = ("01-empty.png", "02-capture-selection.png", "03-generating.png", "04-take.png")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", type=Path, help="session folder for takes and history (default: from Settings)")
    parser.add_argument("--audio", type=Path, help="load this audio file as the captured mix at start")
    parser.add_argument("--demo", action="store_true", help="load the bundled demo song as the captured mix")
    parser.add_argument("--engine-config", choices=("shipped", "debug"), help="engine weights (default: Settings)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="engine device (default: Settings)")
    parser.add_argument("--no-daw", action="store_true", help="do not listen for the DAW over OSC")
    parser.add_argument("--screenshot", type=Path, metavar="DIR",
                        help="write PNGs of the main states into DIR and exit (uses the demo song, debug engines)")
    parser.add_argument("--engine", help="engine to generate with for --screenshot (default: bass, else drums)")
    parser.add_argument("--bars", default="", help="--screenshot: bars to select, e.g. 3-6 (default: four bars "
                                                   "from bar 3 of the capture)")
    parser.add_argument("--control", action="append", default=[], metavar="NAME=VALUE",
                        help="--screenshot: set an engine control before generating (e.g. steps=8); repeatable")
    parser.add_argument("--size", default="1280x800", help="window size WxH (default 1280x800)")
    parser.add_argument("--timeout", type=float, default=240.0, help="--screenshot: seconds to wait per step")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"--size {text!r} is not WxH", fix="e.g. --size 1280x800") from err
    return w, h


def demo_mix() -> Path:
    """The demo song's mix.flac (rendered on first use by the corpus helper)."""
    try:
        from backline.engines.data.demo import demo_song
    except ImportError as err:
        raise MissingDependencyError("the demo song is not part of this install",
                                     fix="load your own audio with --audio FILE") from err
    song = Path(demo_song())
    mix = song / "mix.flac" if song.is_dir() else song
    if not mix.exists():
        raise MissingDependencyError("the demo song has no mix.flac", path=mix)
    return mix


def _app(screenshot: bool):
    if screenshot and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") \
            and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if not screenshot and not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")) \
            and sys.platform.startswith("linux"):
        raise BacklineError("no display found", fix="run Backline from your desktop session, or write screenshots "
                                                    "with: backline host --screenshot DIR")
    from PyQt6.QtWidgets import QApplication

    from backline.host import theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Backline")
    app.setOrganizationName("Backline")
    theme.apply(app)
    return app


def wait_for(app, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the event loop until `predicate()`; raise a clear error after `timeout` seconds."""
    from PyQt6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BacklineError(f"timed out after {timeout:.0f} s waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def build_window(args: argparse.Namespace, *, screenshot: bool = False):
    from backline.host.mainwindow import MainWindow
    from backline.host.settings import HostSettings

    settings, warning = HostSettings.load()
    if args.session is not None:
        settings.session_dir = str(args.session)
    config = args.engine_config or ("debug" if screenshot else None)
    window = MainWindow(settings, engine_config=config, engine_device=args.device,
                        connect_daw=not (args.no_daw or screenshot))
    if warning:
        window.show_message("warning", warning)
    window.resize(*_size(args.size))
    return window


def parse_controls(items: list[str]) -> dict[str, str]:
    controls = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--control {item!r} is not NAME=VALUE", fix="e.g. --control steps=8")
        controls[name.strip()] = value.strip()
    return controls


def take_screenshots(app, window, out: Path, engine: str | None, timeout: float, *, audio: Path | None = None,
                     bars: str = "", controls: dict[str, str] | None = None) -> list[Path]:
    """Drive the window through its states and write SCREENSHOTS into `out`."""
    from backline.bridge.timeline import parse_bar_range
    from backline.engines.protocol import available_engines

    out.mkdir(parents=True, exist_ok=True)
    candidates = [engine] if engine else [e for e in ("bass", "drums", "accompany") if e in available_engines()]
    if not candidates or candidates[0] not in window.panels:
        raise ConfigError(f"no engine to generate with (asked {engine or 'bass/drums'})",
                          fix=f"available: {', '.join(available_engines()) or 'none'}")
    name = candidates[0]
    panel = window.panels[name]
    window.show_engine(name)
    wait_for(app, lambda: panel.ready or "could not" in panel.state_text, timeout, f"the {name} engine to load")
    if not panel.ready:
        raise BacklineError(f"the {name} engine did not load: {' '.join(panel.state_text.split())}")
    written: list[Path] = []

    def grab(file: str) -> None:
        window.centralWidget().layout().activate()
        app.processEvents()
        path = out / file
        if not window.grab().save(str(path)):
            raise BacklineError("could not write the screenshot", path=path, fix="check the folder is writable")
        written.append(path)

    values = panel.values()
    for name, value in (controls or {}).items():
        if name not in values["controls"]:
            raise ConfigError(f"the {name!r} control does not exist for {panel.title}",
                              fix=f"known: {', '.join(values['controls'])}")
        values["controls"][name] = value
    panel.set_values(values)
    grab(SCREENSHOTS[0])
    if not window.load_capture_file(audio or demo_mix()):
        raise BacklineError(f"could not load the capture: {window.message_bar.text()}")
    if bars:
        first, last = parse_bar_range(bars)
    else:
        first = 3 if window.capture.last_bar() >= 6 else 1
        first, last = first, min(window.capture.last_bar(), first + 3)
    if last > window.capture.last_bar():
        raise ConfigError(f"--bars {bars} runs past the captured audio ({window.capture.last_bar()} bars)")
    window.select_bars(first, last)
    window.message_bar.hide()
    grab(SCREENSHOTS[1])
    state: dict[str, object] = {}

    def on_progress(job_id: str, fraction: float) -> None:
        if "generating" not in state and 0.25 <= fraction < 1.0:  # a run well under way
            state["generating"] = True
            grab(SCREENSHOTS[2])

    window.jobProgress.connect(on_progress)
    window.takeAdded.connect(lambda record: state.setdefault("take", record))
    job = window.generate()
    if job is None:
        raise BacklineError(f"generate did not start: {window.message_bar.text()}")
    wait_for(app, lambda: "take" in state, timeout, "the take")
    record = state["take"]
    if record.status != "ok":
        raise BacklineError(f"the take failed: {record.error}")
    if "generating" not in state:  # the engine reported no intermediate progress: show the last state anyway
        grab(SCREENSHOTS[2])
    window.message_bar.hide()
    grab(SCREENSHOTS[3])
    return written


def run(args: argparse.Namespace) -> int:
    screenshot = args.screenshot is not None
    if screenshot and args.session is None:
        args.session = Path(tempfile.mkdtemp(prefix="backline-screenshot-session-"))
    app = _app(screenshot)
    window = build_window(args, screenshot=screenshot)
    window.show()
    try:
        if screenshot:
            print(f"Qt platform: {app.platformName()}", flush=True)
            written = take_screenshots(app, window, args.screenshot, args.engine, args.timeout, audio=args.audio,
                                       bars=args.bars, controls=parse_controls(args.control))
            for path in written:
                print(path)
            return 0
        if args.audio is not None:
            window.load_capture_file(args.audio)
        elif args.demo:
            window.load_capture_file(demo_mix())
        return int(app.exec())
    finally:
        window.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `backline-host` launcher (same options as `backline host`)."""
    parser = argparse.ArgumentParser(prog="backline-host", description=HELP)
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BacklineError as err:
        print(f"backline-host: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
