"""The Engine protocol: the one small surface every engine (bass, accompaniment, drums, analysis) exposes.

The host builds its panels from `describe()`, the job worker calls `generate()`, and the CLI does both, so a
new engine needs no new UI or CLI code. Engines are registered by name with a lazy import path so that
listing them does not load torch.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from backline.engines.core.audio import Audio
from backline.engines.core.errors import Cancelled, ConfigError
from backline.engines.core.timeline import Timeline

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class Control:
    """One user control, enough for a UI to draw it and for a CLI to parse it.

    kind: 'int' | 'float' | 'bool' | 'choice' | 'text' | 'audio' (a reference file) | 'preset'.
    """

    name: str
    kind: str
    default: Any
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    flags: tuple[str, ...] = ()  # extra command-line spellings (the first flag is always --name-with-dashes)
    #: where a UI shows it: "" = the panel, "advanced" = the panel's Advanced section (sampler settings and
    #: the like), "cli" = command line only (file paths, output handling, raw overrides: the host supplies
    #: these itself, from the waveform selection, drag and drop or Settings)
    group: str = ""

    def validate(self, value: Any) -> Any:
        """Coerce and range-check a value; raise ConfigError with the allowed range."""
        if self.kind in ("int", "float"):
            try:
                if self.kind == "int" and isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                value = int(value) if self.kind == "int" else float(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{self.name} must be a {'whole ' if self.kind == 'int' else ''}number, "
                                  f"got {value!r}") from err
            if self.kind == "float" and value != value:  # NaN passes every comparison
                raise ConfigError(f"{self.name} must be a number, got NaN")
            if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
                lo = "" if self.minimum is None else f"{self.minimum:g}"
                hi = "" if self.maximum is None else f"{self.maximum:g}"
                rng = f"use {lo}–{hi}" if lo and hi else (f"use at least {lo}" if lo else f"use at most {hi}")
                raise ConfigError(f"{self.name}={value} is out of range", fix=rng)
        elif self.kind == "bool":
            value = bool(value)
        elif self.kind == "choice" and value not in self.choices:
            raise ConfigError(f"{self.name}={value!r} is not one of {', '.join(self.choices)}")
        return value


def validate_controls(controls: tuple[Control, ...], values: dict[str, Any], engine: str = "") -> dict[str, Any]:
    """Defaults merged with `values`, each checked by its Control; unknown names are refused."""
    known = {c.name: c for c in controls}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown control(s) {', '.join(sorted(unknown))}" + (f" for {engine}" if engine else ""),
                          fix=f"known: {', '.join(known)}")
    merged = {c.name: c.default for c in controls} | dict(values)
    return {name: known[name].validate(value) for name, value in merged.items()}


def control_flag(control: Control) -> str:
    return "--" + control.name.replace("_", "-")


def add_control_flags(parser: Any, controls: tuple[Control, ...], *, skip: tuple[str, ...] = (),
                      title: str = "engine controls") -> None:
    """Command-line flags made from an engine's controls — the same declaration the host builds its panels
    from, so the two never disagree. Flags default to None ("not given"): the engine (or a preset) decides."""
    import argparse

    group = parser.add_argument_group(title)
    for c in controls:
        if c.name in skip:
            continue
        names = [control_flag(c), *c.flags]
        text = (c.help or c.label or c.name).rstrip(".")
        shown = "on" if c.default is True else "off" if c.default is False else repr(c.default) \
            if c.default == "" else c.default
        rng = ""
        if c.kind in ("int", "float") and (c.minimum is not None or c.maximum is not None):
            rng = f"; {'' if c.minimum is None else f'{c.minimum:g}'}–{'' if c.maximum is None else f'{c.maximum:g}'}"
        help_text = f"{text} (default {shown}{rng})".replace("%", "%%")
        if c.kind == "bool":
            group.add_argument(*names, dest=c.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        elif c.kind == "choice":
            group.add_argument(*names, dest=c.name, choices=c.choices, default=None, help=help_text)
        elif c.kind == "int":
            group.add_argument(*names, dest=c.name, type=int, default=None, metavar="N", help=help_text)
        elif c.kind == "float":
            group.add_argument(*names, dest=c.name, type=float, default=None, metavar="X", help=help_text)
        else:
            group.add_argument(*names, dest=c.name, default=None, metavar=c.kind.upper(), help=help_text)


def control_values(args: Any, controls: tuple[Control, ...], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The controls given on the command line (flags left out are not in the dict), checked."""
    given = {c.name: getattr(args, c.name) for c in controls
             if c.name not in skip and getattr(args, c.name, None) is not None}
    known = {c.name: c for c in controls}
    return {name: known[name].validate(value) for name, value in given.items()}


@dataclass(frozen=True)
class EngineDescription:
    name: str
    title: str
    controls: tuple[Control, ...]
    inputs: tuple[str, ...] = ("mix",)  # what the request must carry: 'mix', 'midi', 'prompt', ...
    outputs: tuple[str, ...] = ("audio", "midi")
    weights: str = ""  # human description of the loaded weights (path, training summary)
    device: str = "cpu"

    def defaults(self) -> dict[str, Any]:
        return {c.name: c.default for c in self.controls}

    def validate(self, controls: dict[str, Any]) -> dict[str, Any]:
        return validate_controls(self.controls, controls, self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationRequest:
    """What to generate. Positions are DAW samples at `timeline.sample_rate`.

    `mix` is the audio the engine listens to, already cut to `[region_start, region_stop)`; `region_start` is
    where it sits on the DAW timeline so outputs can be placed (and MIDI aligned) exactly there.
    """

    engine: str
    out_dir: Path
    timeline: Timeline
    region_start: int = 0
    region_stop: int | None = None
    mix: Audio | None = None
    midi: Path | None = None
    prompt: str = ""
    reference: Path | None = None
    preset: str | None = None
    controls: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    variations: int = 1


@dataclass
class Take:
    """One generated variation.

    From `Engine.generate()` (pure, nothing on disk): `stems` maps a stem name to its `Audio`, `midi` is bytes,
    a `mido.MidiFile` or a `pretty_midi.PrettyMIDI`, `report` is plain data. After
    `backline.engines.core.takes.write_takes` the same fields name the written files (`Path`s).
    """

    seed: int
    stems: dict[str, Any] = field(default_factory=dict)  # name -> Audio (generated) | Path (written)
    midi: Any = None  # bytes | mido.MidiFile | pretty_midi.PrettyMIDI (generated) | Path (written) | None
    start_sample: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    #: other files of the take: {suffix: bytes}, e.g. {"attention.png": b"..."} (generated) → Paths (written)
    attachments: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationResult:
    """The takes of one request. `report` holds what is common to them and must name the `engine`."""

    takes: list[Take]
    report: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    name: str

    def describe(self) -> EngineDescription: ...

    def generate(self, request: GenerationRequest, *, progress: ProgressFn, cancel: threading.Event) -> GenerationResult:
        """Pure: returns the takes in memory and writes nothing (`engines.takes.write_takes` does)."""
        ...


def check_cancel(cancel: threading.Event | None) -> None:
    """Call between steps: raises `Cancelled` so callers unwind before writing anything."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


# name -> "module:builder"; builder(config: str = 'shipped', device: str = 'cpu') -> Engine
ENGINE_REGISTRY: dict[str, str] = {
    "bass": "backline.engines.bass.follow_engine:build",  # follow (listen → plan → render); mode=free → bass-latent
    "bass-latent": "backline.engines.bass.engine:build",  # paper 000: codecs + latent diffusion
    "accompany": "backline.engines.accompany.engine:build",
    "drums": "backline.engines.drums.engine:build",
    "analysis": "backline.engines.analysis.engine:build",
    "separate": "backline.engines.separate.engine:build",
}


def available_engines() -> list[str]:
    """Registered engines whose module is present in this install."""
    from importlib.util import find_spec

    names = []
    for name, target in ENGINE_REGISTRY.items():
        try:
            if find_spec(target.split(":")[0]) is not None:
                names.append(name)
        except ModuleNotFoundError:
            continue
    return names


def check_device(device: str) -> str:
    """'cpu', 'cuda', 'cuda:N' (or 'auto'), else a ConfigError — never a traceback from deep in torch."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"cpu|auto|cuda(:\d+)?", device):
        raise ConfigError(f"device {device!r} is not a compute device", fix="use cpu, cuda or cuda:N")
    return device


def add_device_flag(parser: Any) -> None:
    """The one `--device` flag of every command that runs a model: 'auto' (the default) is CUDA when present."""
    parser.add_argument("--device", default="auto", type=str,
                        help="auto (CUDA when present, else CPU; the default), cpu, cuda or cuda:N")


def resolve_device(device: str) -> str:
    """'auto' → 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without one is a one-line DeviceError.
    'cpu' does not import torch."""
    from backline.engines.core.errors import DeviceError

    check_device(device)
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but no CUDA GPU is visible", fix="use --device auto or cpu")
    return device


#: more takes than this in one run is a typo (each is a full generation); run again with another --seed
MAX_VARIATIONS = 32
#: seeds every random generator accepts (torch, numpy including its legacy 32-bit seeding), variations included
MAX_SEED = 2**32 - 1


def check_seed_and_variations(seed: Any, variations: Any, flag: str = "--variations") -> tuple[int, int]:
    """One-line ConfigErrors for a seed or a take count no generator takes (10^20, -1, 0 or 1000 takes)."""
    try:
        seed, variations = int(seed), int(variations)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"seed {seed!r} and {flag} {variations!r} must be whole numbers") from err
    if not 1 <= variations <= MAX_VARIATIONS:
        raise ConfigError(f"{flag} {variations} is out of range", fix=f"use 1–{MAX_VARIATIONS} (then another --seed)")
    if not 0 <= seed <= MAX_SEED - (variations - 1):
        raise ConfigError(f"--seed {seed} is out of range", fix=f"use 0–{MAX_SEED - (variations - 1)}")
    return seed, variations


def build_engine(name: str, config: str = "shipped", device: str = "cpu") -> Engine:
    check_device(device)
    if name not in ENGINE_REGISTRY or name not in available_engines():
        raise ConfigError(f"unknown engine {name!r}", fix=f"available: {', '.join(available_engines()) or 'none'}")
    module_name, builder = ENGINE_REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), builder)(config=config, device=device)


def role_warning(request: GenerationRequest, config: str = "shipped") -> str | None:
    """A one-line warning when the part this request generates already plays in its mix or band MIDI (the
    analysis engine's presence model; see `analysis.api.role_already_playing`), else None. Never raises."""
    try:
        from backline.engines.analysis.api import role_already_playing
    except ImportError:  # the analysis engine is optional
        return None
    return role_already_playing(request.engine, request.mix, request.midi, config=config)


def generate_in_terminal(engine: Engine, request: GenerationRequest, *, desc: str | None = None,
                         overwrite: bool = False) -> GenerationResult:
    """Run one request from a command line, the way every CLI does it.

    `preflight` locks and checks `request.out_dir` before any work; a progress bar shows the engine's own
    steps and the time left; Ctrl+C and SIGTERM both cancel (the engine stops within one step, nothing is
    written) and re-raise KeyboardInterrupt; `write_takes` then writes the takes all-or-nothing. Returns the
    result with file paths."""
    from backline.engines.core.takes import generate_and_write

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
