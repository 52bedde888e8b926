"""`backline host` (and the `backline-host` launcher): the desktop app beside your DAW.

`--screenshot DIR` drives the real window through its main states with the demo song and the **shipped**
engines (`--engine-config debug` for the tiny random ones) and writes one PNG per state — empty; the loaded mix
on its bar grid with a selection; the bass panel; the drums panel with the band's MIDI dropped on it; a bass
take; a drum take — plus a close-up of the bass take's card (waveform and piano roll), then exits: how
reviewers, the README and CI see the app without a display.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import backline
from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import BacklineError, ConfigError, MissingDependencyError
from backline.engines.core.timeline import parse_bar_range
from backline.engines.registry import available_engines

HELP = "start the desktop app (or write screenshots of it with --screenshot DIR)"

SCREENSHOTS = ("01-empty.png", "02-mix-bar-grid.png", "03-bass-panel.png", "04-drums-panel.png", "05-bass-take.png",
               "06-drum-take.png", "07-bass-take-card.png")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", type=Path, help="session folder for takes and history (default: from Settings)")
    parser.add_argument("--audio", type=Path, help="load this audio file as the captured mix at start")
    parser.add_argument("--demo", action="store_true", help="load the bundled demo song as the captured mix")
    parser.add_argument("--engine-config", choices=("shipped", "debug"), help="engine weights (default: Settings)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="engine device (default: Settings)")
    parser.add_argument("--no-daw", action="store_true", help="do not listen for the DAW over OSC")
    parser.add_argument("--screenshot", type=Path, metavar="DIR",
                        help="write PNGs of the main states into DIR and exit (the demo song, the shipped engines)")
    parser.add_argument("--bars", default="", help="--screenshot: bars to select, e.g. 3-6 (default: four bars "
                                                   "from bar 3 of the capture)")
    parser.add_argument("--control", action="append", default=[], metavar="[ENGINE.]NAME=VALUE",
                        help="--screenshot: set an engine control before generating (e.g. bass.steps=8); repeatable")
    parser.add_argument("--first-screen", type=Path, metavar="PNG",
                        help="start, write the first screen as a PNG and exit (how the desktop bundle is smoke-tested)")
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
        # lazy: optional part of an install; its ImportError becomes the one-line message below
        from backline.engines.data.demo import demo_song
    except ImportError as err:
        raise MissingDependencyError("the demo song is not part of this install",
                                     fix="load your own audio with --audio FILE") from err
    song = Path(demo_song())
    mix = song / "mix.flac" if song.is_dir() else song
    if not mix.exists():
        raise MissingDependencyError("the demo song has no mix.flac", path=mix)
    return mix


def demo_band_without(roles: tuple[str, ...], folder: Path) -> Path:
    """The demo song summed from its stems without `roles`, written as a WAV into `folder` (the screenshots'
    capture: keys, guitar, strings and lead waiting for a bass player and a drummer)."""
    import numpy as np

    # lazy: pulls torch; keeps the host's first paint and `backline-host --help` light
    from backline.engines.data.slakh import read_track

    track = read_track(demo_mix().parent)
    stems = [read_audio(st.audio) for st in track.audio_stems() if st.role not in roles]
    n = min(a.frames for a in stems)
    mix = Audio(np.sum([a.samples[:, :n] for a in stems], axis=0).astype(np.float32), stems[0].sample_rate)
    folder = Path(folder) / "demo"  # with the demo's extras.json beside it: the capture reads tempo and meter
    folder.mkdir(parents=True, exist_ok=True)
    extras = folder / "extras.json"
    if not extras.exists():
        shutil.copyfile(track.path / "extras.json", extras)
    path = folder / f"band_without_{'_and_'.join(roles)}.wav"
    return path if path.exists() else write_audio(path, mix)


def _app(screenshot: bool):
    if screenshot and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") \
            and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if not screenshot and not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")) \
            and sys.platform.startswith("linux"):
        raise BacklineError("no display found", fix="run Backline from your desktop session, or write screenshots "
                                                    "with: backline host --screenshot DIR")
    from PyQt6.QtWidgets import QApplication

    # lazy: pulls PyQt6; keeps `backline-host --help` and the headless paths light
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
    # lazy: pulls PyQt6; keeps `backline-host --help` and the headless paths light
    from backline.host.mainwindow import MainWindow

    # lazy: pulls PyQt6; keeps `backline-host --help` and the headless paths light
    from backline.host.settings import HostSettings

    settings, warning = HostSettings.load()
    if args.session is not None:
        settings.session_dir = str(args.session)
    config = args.engine_config or ("shipped" if screenshot else None)  # screenshots show what a musician gets
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
            raise ConfigError(f"--control {item!r} is not NAME=VALUE", fix="e.g. --control bass.steps=8")
        controls[name.strip()] = value.strip()
    return controls


def take_screenshots(app, window, out: Path, timeout: float, *, audio: Path | None = None, bars: str = "",
                     controls: dict[str, str] | None = None, band_midi: Path | None = None) -> list[Path]:
    """Drive the window through its states and write SCREENSHOTS into `out`: bass first, then drums (the
    band's MIDI dropped on its panel when there is one: the demo's, without its drums)."""
    out.mkdir(parents=True, exist_ok=True)
    engines = [e for e in ("bass", "drums") if e in available_engines() and e in window.panels]
    if engines != ["bass", "drums"]:
        raise ConfigError("the screenshots need the bass and the drum engine",
                          fix=f"available: {', '.join(available_engines()) or 'none'}")
    written: list[Path] = []

    def grab(file: str, widget=None) -> None:
        window.message_bar.hide()
        for _ in range(5):  # let every layout settle: a card just inserted into the take list resizes its holder
            window.centralWidget().layout().activate()
            window.takes_layout.activate()
            app.processEvents()
            time.sleep(0.02)
        path = out / file
        if not (widget or window).grab().save(str(path)):
            raise BacklineError("could not write the screenshot", path=path, fix="check the folder is writable")
        written.append(path)

    def ready(name: str):
        panel = window.panels[name]
        window.show_engine(name)
        wait_for(app, lambda: panel.ready or "could not" in panel.state_text, timeout, f"the {name} engine to load")
        if not panel.ready:
            raise BacklineError(f"the {name} engine did not load: {' '.join(panel.state_text.split())}")
        return panel

    def apply(panel, name: str) -> None:
        values = panel.values()
        for key, value in (controls or {}).items():
            engine, _, control = key.rpartition(".")
            if engine and engine != name or control not in values["controls"]:
                continue
            values["controls"][control] = value
        panel.set_values(values)

    def take(name: str):
        state: dict[str, object] = {}
        window.takeAdded.connect(lambda record: state.setdefault("take", record))
        window.show_engine(name)
        if window.generate() is None:
            raise BacklineError(f"generate did not start: {window.message_bar.text()}")
        wait_for(app, lambda: "take" in state, timeout, f"the {name} take")
        record = state["take"]
        if record.status != "ok":
            raise BacklineError(f"the {name} take failed: {record.error}")
        window.select_take(record.id)
        return record

    window.show_engine("bass")
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
    grab(SCREENSHOTS[1])
    bass = ready("bass")
    apply(bass, "bass")
    grab(SCREENSHOTS[2])
    drums = ready("drums")
    apply(drums, "drums")
    if band_midi is not None and drums.midi_well is not None and not drums.midi_well.offer(band_midi):
        raise BacklineError(f"the drums panel refused the band MIDI: {window.message_bar.text()}")
    grab(SCREENSHOTS[3])
    unknown = [k for k in (controls or {}) if not any(k.rpartition(".")[2] in window.panels[e].values()["controls"]
                                                      for e in engines)]
    if unknown:
        raise ConfigError(f"no engine has the control(s) {', '.join(unknown)}",
                          fix=f"bass: {', '.join(bass.values()['controls'])}; drums: {', '.join(drums.values()['controls'])}")
    bass_take = take("bass")
    grab(SCREENSHOTS[4])
    take("drums")
    grab(SCREENSHOTS[5])
    grab(SCREENSHOTS[6], window.cards[bass_take.id])
    return written


def first_screen(app, window, path: Path) -> Path:
    """Write the window as it first appears (menus, DAW strip, capture and engine areas laid out) and report
    where Backline was loaded from — the bundle's smoke test checks that it is the bundle's own copy."""
    wait_for(app, lambda: window.isVisible() and window.width() > 0, 30.0, "the window")
    window.centralWidget().layout().activate()
    app.processEvents()
    if not window.grab().save(str(path)):
        raise BacklineError("could not write the first screen", path=path, fix="check the folder is writable")
    print(f"first screen: {path}")
    print(f"backline loaded from: {Path(backline.__path__[0]).resolve()}")
    print(f"python: {sys.executable}")
    return path


def run(args: argparse.Namespace) -> int:
    screenshot = args.screenshot is not None or args.first_screen is not None
    scratch = None  # a session made only for the screenshots is removed again (it held ~14 MB of takes)
    if screenshot and args.session is None:
        args.session = scratch = Path(tempfile.mkdtemp(prefix="backline-screenshot-session-"))
    try:
        return _run(args, screenshot)
    finally:
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, screenshot: bool) -> int:
    app = _app(screenshot)
    window = build_window(args, screenshot=screenshot)
    window.show()
    try:
        if args.first_screen is not None:
            print(f"Qt platform: {app.platformName()}", flush=True)
            first_screen(app, window, args.first_screen)
            return 0
        if screenshot:
            print(f"Qt platform: {app.platformName()}", flush=True)
            band, audio = None, args.audio
            if audio is None:  # the demo: a band that needs bass and drums, and its MIDI for the drums panel
                # lazy: optional demo data (see demo_mix); only the screenshot path needs it
                from backline.engines.data.demo import demo_midi_without_drums

                audio = demo_band_without(("bass", "drums"), args.session)
                band = demo_midi_without_drums(args.session)
            written = take_screenshots(app, window, args.screenshot, args.timeout, audio=audio, bars=args.bars,
                                       controls=parse_controls(args.control), band_midi=band)
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
