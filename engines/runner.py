"""The one run path of the command line: `backline generate <engine>`, `backline separate` and `backline analyze`.

Every flag comes from the engine's own description (`describe()` of its module: no weights load to build the
parser) plus one vocabulary every engine shares:

    --mix FILE  --band-midi FILE  --prompt TEXT  --out DIR  --bars 9-24  --bpm X  --meter 4/4
    --seed N  --variations N  --preset NAME  --reference FILE  --overwrite
    --config shipped|debug  --device auto|cpu|cuda  --threads N  --weights PATH

A control the engine declares is one flag (`--complexity 0.7`, `--lock-to-kick`), checked by the engine's own
`Control` before any file is read or weights load. The per-engine modules (`engines/<name>/cli.py`) keep only
what they print and what is theirs alone (`--jack` for the drums, `--list-instruments`, ...), through the
optional hooks below. Then the request goes through `generate_in_terminal`: a progress bar, Ctrl+C / SIGTERM
cancelling cleanly, and the takes written all-or-nothing (`core.takes.generate_and_write`).

Hooks a command module may define (all optional but ENGINE and HELP):

    ENGINE = "bass"                    the registered engine it runs
    MIX_POSITIONAL = True              also take the mix as the first argument (`backline separate MIX`)
    SKIP = ("roles",)                  controls the command does not offer as flags
    configure(parser)                  its own extra flags
    listing(args) -> int | None        --list-presets and the like: print, return the exit status
    check(args, controls, meter)       engine-specific checks that need no file read (a typo in a chord chart)
    listens(controls) -> bool          --bars without --bpm: hear the whole file, then cut (follow modes)
    check_memory(args, seconds, rate, channels, controls)   refuse a region too long before it is read
    inputs(args, controls, meter)      -> (timeline, start, stop, mix, midi, cleanup) for inputs of its own
    summary(result, args)              print the result
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from backline.engines import registry
from backline.engines.core import audio
from backline.engines.core.audio import require_audio_file
from backline.engines.core.errors import ConfigError
from backline.engines.core.midi import check_band_midi
from backline.engines.core.protocol import (
    Engine,
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    add_control_flags,
    add_device_flag,
    check_seed_and_variations,
    control_values,
    resolve_device,
)
from backline.engines.core.takes import generate_and_write, preflight
from backline.engines.core.timeline import Timeline, check_bpm, region_of_bars
from backline.engines.listen import parse_chart, parse_key, parse_meter
from backline.engines.listen.region import cut_file

#: controls the shared vocabulary already carries (the request's preset/reference, the timeline's tempo/meter)
SHARED = ("preset", "reference", "bpm", "meter", "tempo_from")


class _Deprecated(argparse.Action):
    """An old spelling kept for one release: works, hidden from --help, and says the new one in one line."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"backline: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: Any, flag: str, dest: str, new: str, **kwargs: Any) -> None:
    """`flag` as a hidden old spelling of `new` (same `dest`), printing a one-line deprecation when used."""
    parser.add_argument(flag, dest=dest, action=_Deprecated, new=new, default=argparse.SUPPRESS, **kwargs)


def engine_command(name: str) -> ModuleType:
    """The command of a registered engine that has no command module of its own: its flags from its
    description, and a summary naming the files written."""
    desc = registry.describe_engine(name)
    command = ModuleType(f"backline generate {name}", desc.title)
    command.ENGINE, command.HELP, command.summary = name, desc.title, _print_files
    return command


def _print_files(result: GenerationResult, args: argparse.Namespace) -> None:
    if result.report.get("summary"):
        print(result.report["summary"])
    for take in result.takes:
        for kind, path in (take.report.get("files") or {}).items():
            print(f"{kind:<9} {path}  (seed {take.seed})")


def description(command: ModuleType) -> EngineDescription:
    return registry.describe_engine(command.ENGINE)


def configure(parser: argparse.ArgumentParser, command: ModuleType) -> None:
    """The command's flags: the shared vocabulary for what the engine takes, then its controls, then extras."""
    desc = description(command)
    takes = set(desc.inputs) | set(desc.extra_inputs)
    names = {c.name: c for c in desc.controls}
    io = parser.add_argument_group("input and output")
    if "mix" in takes:
        if getattr(command, "MIX_POSITIONAL", False):
            parser.add_argument("mix_file", nargs="?", type=Path, metavar="MIX", help="the mix (same as --mix)")
        io.add_argument("--mix", type=Path, help="the band's audio (wav/flac/...) to listen to")
    if "midi" in takes:
        io.add_argument("--band-midi", type=Path, metavar="MID",
                        help="the band's MIDI: exact tempo, bars and chords to follow")
        if "midi" not in names:
            deprecated_alias(io, "--midi", "band_midi", "--band-midi", type=Path)
    if "prompt" in takes:
        prompt = names.get("prompt")
        io.add_argument("--prompt", help=(prompt.help if prompt else "") or "what to play or separate, in words")
    optional_out = tuple(desc.outputs) == ("report",)
    io.add_argument("--out", type=Path, metavar="DIR", help=f"folder for {desc.name}_seedN.* (the takes)"
                    + ("; without it the report is only printed" if optional_out else "; required to generate"))
    io.add_argument("--overwrite", action="store_true", help="replace an earlier take of the same seed in --out")
    kinds = {c.kind for c in desc.controls}
    if "preset" in kinds or hasattr(command, "list_presets"):
        style = io.add_mutually_exclusive_group() if "audio" in kinds else io
        style.add_argument("--preset", help="style preset (--list-presets shows them)")
        if "audio" in kinds:
            style.add_argument("--reference", type=Path, help="a solo recording whose sound to copy")
        io.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    if "mix" in takes or "midi" in takes:
        time = parser.add_argument_group("time")
        if "bars" not in names:
            time.add_argument("--bars", help="bars to use, e.g. 9-24 (1-based, inclusive)")
        time.add_argument("--bpm", type=float, help="tempo (default: listen for it, or the band MIDI's)")
        time.add_argument("--meter", help="time signature, e.g. 4/4 or 6/8 (default: listen for it)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="random seed (take k uses seed + k)")
    run.add_argument("--variations", type=int, default=1, help="how many takes to generate")
    deprecated_alias(run, "--takes", "variations", "--variations", type=int)
    run.add_argument("--config", default="shipped", choices=("shipped", "debug"),
                     help="model weights: shipped (trained) or debug (tiny random init, for testing)")
    add_device_flag(run)
    run.add_argument("--threads", type=int, default=1,
                     help="CPU threads for torch (default 1: on a shared 2-core machine 2 threads can be 20x slower)")
    for option in registry.builder_options(desc.name):
        run.add_argument(f"--{option.replace('_', '-')}", dest=f"build_{option}", type=Path, metavar="PATH",
                         help=f"{option.replace('_', ' ')} (default: shipped)")
    add_control_flags(parser, desc.controls, skip=_skip(desc, command), title=f"{desc.title} (the engine's controls)")
    if hasattr(command, "configure"):
        command.configure(parser)


def run(args: argparse.Namespace, command: ModuleType) -> int:
    """Check everything that needs no heavy work, read the inputs, build the engine, generate, write, print."""
    if hasattr(command, "listing"):
        code = command.listing(args)
        if code is not None:
            return code
    if getattr(args, "list_presets", False):
        return _list_presets(command)
    request, cleanup = prepare(args, command)
    try:
        use_threads(args.threads)
        options = {k[len("build_"):]: v for k, v in vars(args).items() if k.startswith("build_") and v is not None}
        engine = registry.build_engine(request.engine, args.config, args.device, **options)
        if request.out_dir is None:  # a report-only engine without --out: print it, write nothing
            result = run_in_terminal(engine, request)
        else:
            result = generate_in_terminal(engine, request, overwrite=args.overwrite)
    finally:
        if cleanup is not None:
            cleanup()
    if hasattr(command, "summary"):
        command.summary(result, args)
    return 0


def use_threads(threads: int) -> None:
    """CPU threads for torch without importing it: a follow take runs in numpy and never loads torch (its import
    alone was 1.6 CPU-s, most of a take's start-up). Torch reads OMP_NUM_THREADS when it is first imported; if it
    is already loaded, it is told directly."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def prepare(args: argparse.Namespace, command: ModuleType) -> tuple[GenerationRequest, Any]:
    """The request, every check that needs no weights done first (each in one line, exit status 2), and
    `args.device` resolved: (request, cleanup or None). Reads the mix (or the region of it) last."""
    desc = description(command)
    if getattr(args, "mix_file", None) is not None:
        if args.mix is not None:
            raise ConfigError("the mix is given twice", fix="give it once, as MIX or --mix")
        args.mix = args.mix_file
    missing = [flag for flag, needed in (("--mix", tuple(desc.inputs) == ("mix",) and args.mix is None),
                                         ("--out", args.out is None and tuple(desc.outputs) != ("report",))) if needed]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} needed to generate",
                          fix=f"see backline ... {command.ENGINE} --help" + (" (or --list-presets)"
                                                                             if hasattr(args, "list_presets") else ""))
    controls = control_values(args, desc.controls, skip=_skip(desc, command))
    preset = getattr(args, "preset", None)
    preset_control = next((c for c in desc.controls if c.name == "preset" and c.choices), None)
    if preset and preset_control is not None and preset not in preset_control.choices:  # no path is ever formed
        raise ConfigError(f"unknown preset {preset!r}", fix=f"known presets: {', '.join(preset_control.choices)}")
    seed, variations = check_seed_and_variations(args.seed, args.variations)
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be >= 1")
    if getattr(args, "band_midi", None) is not None:
        check_band_midi(args.band_midi, "--band-midi")
    if getattr(args, "reference", None) is not None:  # a text file or /etc/passwd: one line, from its header
        require_audio_file(args.reference, "--reference")
    if args.out is not None:  # a file in the way, read-only, full, or takes of these seeds there: one line, now
        with preflight(args.out, engine=desc.name, seeds=range(seed, seed + variations), overwrite=args.overwrite):
            pass
    meter = _meter(args)
    _check_listening_controls(controls, meter)
    if hasattr(command, "check"):
        controls = command.check(args, controls, meter) or controls
    args.device = resolve_device(args.device)
    names = {c.name for c in desc.controls}
    if "bpm" in names:
        controls["bpm"] = float(getattr(args, "bpm", None) or 0.0)
    if "meter" in names:
        controls["meter"] = getattr(args, "meter", None) or ""
    cleanup = None
    if hasattr(command, "inputs"):
        timeline, start, stop, mix, midi, cleanup = command.inputs(args, controls, meter)
    else:
        timeline, start, stop, mix, controls = _region(args, command, controls, meter)
        midi = getattr(args, "band_midi", None)
    request = GenerationRequest(desc.name, args.out, timeline, region_start=start, region_stop=stop, mix=mix,
                                midi=midi, prompt=getattr(args, "prompt", None) or "",
                                reference=getattr(args, "reference", None), preset=preset, controls=controls,
                                seed=seed, variations=variations)
    return request, cleanup


def _skip(desc: EngineDescription, command: ModuleType) -> tuple[str, ...]:
    """Controls that are not flags of their own: the shared vocabulary carries them, or the command says so."""
    prompt = ("prompt",) if "prompt" in set(desc.inputs) | set(desc.extra_inputs) else ()
    return SHARED + prompt + tuple(getattr(command, "SKIP", ()))


def _list_presets(command: ModuleType) -> int:
    if hasattr(command, "list_presets"):
        return command.list_presets()
    desc = description(command)
    for name in next(c.choices for c in desc.controls if c.kind == "choice" and c.name == "preset"):
        print(name)
    return 0


def _meter(args: argparse.Namespace) -> tuple[int, int]:
    text = getattr(args, "meter", None)
    return parse_meter(text) if text else (4, 4)  # bounded: an absurd meter is one line


def _check_listening_controls(controls: dict[str, Any], meter: tuple[int, int]) -> None:
    """A chord chart or key with a typo fails now, in one line naming it, not after listening."""
    if controls.get("chords"):
        parse_chart(controls["chords"], meter[0])
    if controls.get("key"):
        parse_key(controls["key"])


def _region(args: argparse.Namespace, command: ModuleType, controls: dict[str, Any], meter: tuple[int, int]):
    """The timeline, region and mix: `--bars` of `--mix` (heard first, the host's selection path, when the
    engine listens and no --bpm is given), or the whole file; without a mix, --bars at --bpm."""
    bars, bpm_given = getattr(args, "bars", None), getattr(args, "bpm", None)
    listens = bool(getattr(command, "listens", lambda c: False)(controls))
    if bars and bpm_given is None and (args.mix is None or not listens):
        raise ConfigError("--bars needs the tempo", fix="add --bpm, e.g. --bpm 120")
    bpm = check_bpm(bpm_given) if bpm_given is not None else 120.0  # a placeholder until the mix is heard
    memory = getattr(command, "check_memory", None)
    if args.mix is None:
        timeline = Timeline.constant(bpm, 44100, *meter)
        start, stop = region_of_bars(timeline, bars, None)  # needs --bars, and bounded: no recording sets the length
        return timeline, start, stop, None, controls
    rate, channels, total = audio.audio_info(args.mix)
    timeline = Timeline.constant(bpm, rate, *meter)
    if bpm_given is not None:
        region_of_bars(timeline, bars, total, path=args.mix)  # bars past the end: refused now
    if bars and listens:
        region = cut_file(args.mix, bars, timeline if bpm_given is not None else None,
                          meter=meter if getattr(args, "meter", None) else None, controls=controls,
                          control_names={c.name for c in description(command).controls})
        if memory is not None:
            memory(args, (region.stop - region.start) / rate, rate, channels, region.controls)
        return region.timeline, region.start, region.stop, region.mix, region.controls
    start, stop = region_of_bars(timeline, bars, total, path=args.mix)
    if memory is not None:
        memory(args, (stop - start) / rate, rate, channels, controls)  # before the file is read
    return timeline, start, stop, audio.read_audio(args.mix, start=start, frames=stop - start), controls


def run_in_terminal(engine: Engine, request: GenerationRequest, *, desc: str | None = None) -> GenerationResult:
    """`generate()` with the terminal's progress bar and cancel, writing nothing (a report-only engine run
    without --out)."""
    cancel = threading.Event()
    with _sigterm_as_interrupt(), TerminalProgress(desc or request.engine) as bar:
        try:
            return engine.generate(request, progress=bar.update, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise


def generate_in_terminal(engine: Engine, request: GenerationRequest, *, desc: str | None = None,
                         overwrite: bool = False) -> GenerationResult:
    """Run one request from a command line, the way every CLI does it.

    `preflight` locks and checks `request.out_dir` before any work; a progress bar shows the engine's own
    steps and the time left; Ctrl+C and SIGTERM both cancel (the engine stops within one step, nothing is
    written) and re-raise KeyboardInterrupt; `write_takes` then writes the takes all-or-nothing. Returns the
    result with file paths."""
    with _sigterm_as_interrupt(), TerminalProgress(desc or request.engine) as bar:
        return generate_and_write(engine, request, progress=bar.update, overwrite=overwrite, role_check="shipped",
                                  on_warning=lambda text: print(f"warning: {text}", file=sys.stderr, flush=True))


class _sigterm_as_interrupt:
    """SIGTERM raises KeyboardInterrupt in the main thread while a job runs, so it cancels like Ctrl+C."""

    def __enter__(self):
        import signal

        self.previous = None
        if threading.current_thread() is threading.main_thread():
            def raise_interrupt(_sig, _frame):
                raise KeyboardInterrupt

            self.previous = signal.signal(signal.SIGTERM, raise_interrupt)
        return self

    def __exit__(self, *exc):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


class TerminalProgress:
    """A one-line progress bar for engine runs: percent, the engine's own step text ("step 12/64"), and the
    time left (estimated from the progress made so far). Writes to stderr, and only when it is a terminal (logs
    and pipes get the result lines alone)."""

    def __init__(self, desc: str, width: int = 28) -> None:
        import sys

        self.desc, self.width = desc, width
        self.stream = sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = 0.0
        self.first: tuple[float, float] | None = None  # (time, fraction) of the first report
        self.last_draw = 0.0
        self.fraction, self.message = 0.0, ""

    def __enter__(self) -> TerminalProgress:
        import time

        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def eta(self, now: float) -> float | None:
        if self.first is None or self.fraction <= self.first[1] + 1e-6 or self.fraction >= 1.0:
            return None
        t0, f0 = self.first
        rate = (self.fraction - f0) / max(now - t0, 1e-6)
        return (1.0 - self.fraction) / rate if rate > 0 else None

    def line(self, now: float) -> str:
        filled = int(round(self.fraction * self.width))
        bar = "█" * filled + "·" * (self.width - filled)
        parts = [f"{self.desc} {self.fraction * 100:3.0f}% {bar}"]
        if self.message:
            parts.append(self.message)
        eta = self.eta(now)
        elapsed = now - self.started
        parts.append(f"{_clock(elapsed)} elapsed" + (f", ~{_clock(eta)} left" if eta is not None else ""))
        return "  ".join(parts)

    def update(self, fraction: float, message: str = "") -> None:
        import time

        now = time.monotonic()
        self.fraction = max(self.fraction, min(1.0, max(0.0, float(fraction))))
        self.message = str(message).strip().lstrip(",").strip()
        if self.first is None and self.fraction > 0:
            self.first = (now, self.fraction)
        if not self.tty or (now - self.last_draw < 0.1 and self.fraction < 1.0):
            return
        self.last_draw = now
        columns = 100
        try:
            import shutil

            columns = shutil.get_terminal_size().columns
        except (OSError, ValueError):
            pass
        self.stream.write("\r" + self.line(now)[: max(20, columns - 1)].ljust(max(20, columns - 1)))
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
