"""The Engine protocol: the one small surface every engine (bass, accompaniment, drums, analysis) exposes.

The host builds its panels from `describe()`, the job worker calls `generate()`, and the CLI does both, so a
new engine needs no new UI or CLI code. Engines are registered by name with a lazy import path in
`backline.engines.registry` (this module names no engine).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from backline.engines.core.audio import Audio
from backline.engines.core.errors import Cancelled, ConfigError, DeviceError
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


def cache_dir(name: str) -> Path:
    """The one place Backline caches derived data (safe to delete): `$BACKLINE_CACHE/<name>`, else
    `$XDG_CACHE_HOME/backline/<name>`, else `~/.cache/backline/<name>`; read from the environment at each call.
    Engines list the ones they write in `EngineDescription.caches`."""
    import os

    root = os.environ.get("BACKLINE_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backline"
    return Path(root) / name


@dataclass(frozen=True)
class EngineDescription:
    name: str
    title: str
    controls: tuple[Control, ...]
    inputs: tuple[str, ...] = ("mix",)  # what the request must carry: 'mix', 'midi', 'prompt', ...
    #: what the request may carry besides (e.g. the band's MIDI beside the mix: exact tempo, bars and chords)
    extra_inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("audio", "midi")
    weights: str = ""  # human description of the loaded weights (path, training summary)
    device: str = "cpu"
    #: control values for a quick run (few sampler steps): what the contract tests and smoke runs use, never a
    #: quality setting. Declared here so no caller special-cases an engine by name.
    fast: dict[str, Any] = field(default_factory=dict)
    #: folders generate() may write to: caches of derived data only (safe to delete), resolved from the
    #: environment ($XDG_CACHE_HOME) when describe() is called. Any other write breaks the contract (tested).
    caches: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        return {c.name: c.default for c in self.controls}

    def modes(self) -> tuple[str, ...]:
        """What one run can do: the choices of the engine's `mode` control, or ("",) when it has none."""
        mode = next((c for c in self.controls if c.name == "mode"), None)
        return tuple(mode.choices) if mode is not None and mode.choices else ("",)

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


#: The memory limit every engine checks a request against before any work: BACKLINE_MEMORY_GB (default 2 GB, what
#: a laptop can spare beside a DAW). Lives in the core so engines share one reader without importing each other.
DEFAULT_MEMORY_GB = 2.0


def memory_limit_bytes() -> float:
    """BACKLINE_MEMORY_GB in bytes; a value that is not a number is a ConfigError with the fix."""
    raw = os.environ.get("BACKLINE_MEMORY_GB", "")
    try:
        gb = float(raw) if raw.strip() else DEFAULT_MEMORY_GB
    except ValueError as err:
        raise ConfigError(f"BACKLINE_MEMORY_GB={raw!r} is not a number", fix="e.g. BACKLINE_MEMORY_GB=4") from err
    return gb * 1e9
