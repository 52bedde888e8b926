"""`backline` — the command line.

Commands live in their own modules and are imported only when run, so `backline --help` is instant and
does not load torch. Each command module provides:

    HELP: str                                   one line for the listing
    configure(parser: argparse.ArgumentParser)  add its arguments
    run(args: argparse.Namespace) -> int        do the work, return an exit code

or, for an engine command (`generate X`, `separate`, `analyze`), `ENGINE = "name"`: its flags then come from the
engine's description and it runs through the one run path (`backline.engines.runner`), the module adding only
what it prints and any flags of its own.

Adding a command is one line in `COMMANDS`; commands whose module is not in this install are not listed.
Errors the user can fix (`BacklineError`) are printed as one line and exit with status 2. Ctrl+C and SIGTERM
cancel from the very first instruction (before torch is imported): one line, exit status 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from backline.engines.core.errors import BacklineError, BacklineWarning

# (group, name) -> module; name "" means the group is itself the command.
COMMANDS: dict[tuple[str, str], str] = {
    ("demo", ""): "backline.engines.data.demo",
    ("data", "synth"): "backline.engines.data.synth_cli",
    ("data", "encode"): "backline.engines.codec.encode_cli",
    ("train", "codec"): "backline.engines.codec.train",
    ("train", "bass"): "backline.engines.bass.train",
    ("train", "bass-planner"): "backline.engines.bass.planner_train",
    ("train", "drums"): "backline.engines.drums.train",
    ("train", "musicoder"): "backline.engines.analysis.train_musicoder",
    ("train", "simclr"): "backline.engines.analysis.train_simclr",
    ("train", "tagger"): "backline.engines.analysis.train_tagger",
    ("train", "presence"): "backline.engines.analysis.train_presence",
    ("train", "gmsdi"): "backline.engines.accompany.train",
    ("train", "comp-planner"): "backline.engines.accompany.planner_train",
    ("train", "separate"): "backline.engines.separate.train",
    ("train", "separate-gmsdi"): "backline.engines.separate.diffusion_train",
    ("codec", "roundtrip"): "backline.engines.codec.roundtrip_cli",
    ("generate", "bass"): "backline.engines.bass.cli",
    ("generate", "drums"): "backline.engines.drums.cli",
    ("generate", "accompaniment"): "backline.engines.accompany.cli",
    ("separate", ""): "backline.engines.separate.cli",
    ("analyze", ""): "backline.engines.analysis.analyze_cli",
    ("score", ""): "backline.engines.analysis.score_cli",
    ("bridge", ""): "backline.bridge.cli",
    ("bridge", "calibrate"): "backline.bridge.calibrate_cli",
    ("host", ""): "backline.host.app",
}

GROUP_HELP = {
    "demo": "render the bundled demo song into stems and a mix (the default job)",
    "data": "build and encode training corpora (Slakh2100 layout)",
    "train": "train a model (runs unchanged under torchrun)",
    "codec": "hear what the models hear: a file through the codec and back",
    "generate": "generate a part for a mix or a MIDI session",
    "analyze": "say which instruments a mix holds and which parts are missing",
    "score": "how well a stem fits a mix",
    "separate": "split a mix into parts (bass, drums, other, the band without the bass) and their MIDI",
    "bridge": "connect to the DAW: live transport, capture, calibration",
    "host": "start the desktop app",
}

DESCRIPTION = """Backline listens to your DAW session and plays the rest of the band.

It generates a bass line grounded in a reference style, accompaniment stems and drum patterns with
fills, and hands them back as stems and MIDI you drag onto your timeline."""


def _module_file(module: str) -> Path | None:
    """The source file of `backline.<folder>.<...>` found without importing any package on the way.

    `find_spec` of the module itself would import its parent packages (and so torch, through `engines.codec`
    etc.), which makes every CLI call slow; only the top-level folder is looked up, and not imported either
    (`bridge/__init__` imports the capture, OSC and playback modules: 0.1–0.2 CPU-s on every command).
    """
    from importlib.util import find_spec

    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "backline":
        return None
    try:
        spec = find_spec(".".join(parts[:2]))
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)))
    for candidate in (base.joinpath(*parts[2:]).with_suffix(".py"), base.joinpath(*parts[2:], "__init__.py")):
        if len(parts) > 2 and candidate.is_file():
            return candidate
    return base / "__init__.py" if len(parts) == 2 else None


def _present(module: str) -> bool:
    return _module_file(module) is not None


def _available() -> dict[tuple[str, str], str]:
    return {key: mod for key, mod in COMMANDS.items() if _present(mod)}


def _module_help(module: str) -> str:
    """Read HELP without importing the module (it may import torch): look for the HELP assignment."""
    path = _module_file(module)
    if path is None:
        return ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("HELP = "):
                return line.split("=", 1)[1].strip().strip("\"'")
    return ""


def _top_parser(available: dict[tuple[str, str], str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backline", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="backline 0.1.0")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for group in dict.fromkeys(g for g, _ in available):
        names = [n for g, n in available if g == group and n]
        listing = "".join(f"\n  {n:<12} {_module_help(available[(group, n)])}" for n in names)
        epilog = f"commands:{listing}" if names else None
        sub.add_parser(group, help=GROUP_HELP.get(group, ""), description=GROUP_HELP.get(group, ""),
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl+C / SIGTERM at any moment (a heavy import included) end it in one line, status 130."""
    previous = _signals_cancel()
    try:
        return _main(argv)
    except KeyboardInterrupt as err:
        written = getattr(err, "written", None)
        if written:  # the signal landed during the final links: they were finished first
            folder = Path(written[0]).parent
            print(f"backline: cancelled, but only after the take was complete: {len(written)} files were written "
                  f"to {folder}", file=sys.stderr)
        else:
            print("backline: cancelled; nothing partial was written", file=sys.stderr)
        if argv is None:  # the `backline` process itself: leave now, exit status 130
            # A signal that lands inside an import (torch's first seconds) can leave a half-imported module whose
            # teardown raises a second KeyboardInterrupt after this one was handled, and the process then dies of
            # SIGINT (-2) instead of 130. Everything the run made is already cleaned up by the unwinding above.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    finally:
        _restore_signals(previous)


def _signals_cancel():
    """Ctrl+C and SIGTERM raise KeyboardInterrupt (SIGTERM's default is to die silently with 143), main thread only.

    Never inside an import: a KeyboardInterrupt raised while torch's C++ start-up is calling back into Python
    crosses a pybind11 frame that cannot carry it, and the process aborts (SIGABRT, exit −6, no message). A
    signal that lands during an import is re-sent to this process 50 ms later until it lands outside one, so a
    cancel in the first seconds waits at most for the import under way, then ends in the usual one line."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(sig, frame):
        if _inside_import(frame):
            retry = threading.Timer(0.05, os.kill, (os.getpid(), sig))
            retry.daemon = True
            retry.start()
            return
        raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, interrupt)
        except (ValueError, OSError):
            pass
    return previous


def _inside_import(frame) -> bool:
    """Whether the interrupted code runs under an import statement (importlib's frames are on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _restore_signals(previous) -> None:
    import signal

    for sig, handler in (previous or {}).items():
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError, TypeError):
            pass


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    available = _available()
    top = _top_parser(available)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        if not argv:
            top.print_help()
            return 0
        top.parse_args(argv)  # prints help/version and exits
        return 0
    group = argv[0]
    groups = {g for g, _ in available}
    if group not in groups:
        top.error(f"unknown command {group!r}; choose from {', '.join(sorted(groups))}")
    rest = argv[1:]
    name = rest[0] if rest and (group, rest[0]) in available else ""
    if name:
        rest = rest[1:]
    elif group == "generate" and rest and not rest[0].startswith("-"):
        command = _registered_engine(rest[0])  # any registered engine runs through the one run path
        if command is not None:
            return _run(command, f"backline generate {rest[0]}", rest[1:])
    if (group, name) not in available:
        names = sorted(n for g, n in available if g == group and n)
        if rest and rest[0] in ("-h", "--help") or not rest:
            print(f"usage: backline {group} {{{','.join(names)}}} ...\n\n{GROUP_HELP.get(group, '')}\n")
            for n in names:
                print(f"  {n:<12} {_module_help(available[(group, n)])}")
            return 0 if rest else 2
        top.error(f"unknown {group} command {rest[0]!r}; choose from {', '.join(names)}")
    module = importlib.import_module(available[(group, name)])
    return _run(module, f"backline {group}" + (f" {name}" if name else ""), rest, group)


def _registered_engine(name: str):
    """A registered engine without a command module of its own, as a command (None when there is none)."""
    # lazy: the engine registry loads only when a command runs; keeps `backline --help` instant
    from backline.engines import registry

    if name not in registry.available_engines():
        return None
    own = f"backline.engines.{name}.cli"  # the engine's own command module, under another command name
    if own in COMMANDS.values() and _present(own):
        return importlib.import_module(own)
    # lazy: the run path loads only when a command runs; keeps `backline --help` instant
    from backline.engines import runner

    return runner.engine_command(name)


def _run(module, prog: str, rest: list[str], group: str = "generate") -> int:
    """Parse `rest` with the command's flags and run it: a user error is one line and exit status 2."""
    _one_line_warnings()
    parser = argparse.ArgumentParser(prog=prog, description=getattr(module, "HELP", ""))
    if hasattr(module, "ENGINE"):  # an engine command: one run path, its flags from the engine's describe()
        # lazy: the run path loads only when a command runs; keeps `backline --help` instant
        from backline.engines import runner

        runner.configure(parser, module)
        run = lambda args: runner.run(args, module)  # noqa: E731
    else:
        module.configure(parser)
        run = module.run
    args = parser.parse_args(rest)
    if group == "host":  # Qt's event loop runs no Python signal handlers while idle: SIGTERM keeps its default
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        return int(run(args) or 0)
    except BacklineError as err:
        print(f"backline: error: {err}", file=sys.stderr)
        return 2


def _one_line_warnings() -> None:
    """Backline's own warnings (a truncated file, a clamped tempo) print as one line each, like its errors."""
    import warnings

    previous = warnings.showwarning
    if getattr(previous, "_backline", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BacklineWarning):
            print(f"backline: warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    show._backline = True
    warnings.showwarning = show
    warnings.simplefilter("always", BacklineWarning)


if __name__ == "__main__":
    sys.exit(main())
