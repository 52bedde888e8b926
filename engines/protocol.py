"""The Engine protocol: the one small surface every engine (bass, accompaniment, drums, analysis) exposes.

The host builds its panels from `describe()`, the job worker calls `generate()`, and the CLI does both, so a
new engine needs no new UI or CLI code. Engines are registered by name with a lazy import path so that
listing them does not load torch.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from backline.bridge.timeline import Timeline
from backline.engines.audio import Audio
from backline.engines.errors import Cancelled, ConfigError

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
    advanced: bool = False  # drawn under "Advanced" (sampler settings, overrides), after the musician's controls

    def validate(self, value: Any) -> Any:
        """Coerce and range-check a value; raise ConfigError with the allowed range."""
        if self.kind in ("int", "float"):
            try:
                value = int(value) if self.kind == "int" else float(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{self.name} must be a number, got {value!r}") from err
            if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
                raise ConfigError(f"{self.name}={value} is out of range", fix=f"use {self.minimum:g}–{self.maximum:g}")
        elif self.kind == "bool":
            value = bool(value)
        elif self.kind == "choice" and value not in self.choices:
            raise ConfigError(f"{self.name}={value!r} is not one of {', '.join(self.choices)}")
        return value


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
        known = {c.name: c for c in self.controls}
        unknown = set(controls) - set(known)
        if unknown:
            raise ConfigError(f"unknown control(s) {', '.join(sorted(unknown))} for {self.name}",
                              fix=f"known: {', '.join(known)}")
        merged = self.defaults() | controls
        return {name: known[name].validate(value) for name, value in merged.items()}

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
    """One generated variation: files written (atomically) under the request's out_dir."""

    seed: int
    stems: dict[str, Path] = field(default_factory=dict)
    midi: Path | None = None
    start_sample: int = 0
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationResult:
    takes: list[Take]
    report: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    name: str

    def describe(self) -> EngineDescription: ...

    def generate(self, request: GenerationRequest, *, progress: ProgressFn, cancel: threading.Event) -> GenerationResult: ...


def check_cancel(cancel: threading.Event | None) -> None:
    """Call between steps: raises `Cancelled` so callers unwind before writing anything."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


# name -> "module:builder"; builder(config: str = 'shipped', device: str = 'cpu') -> Engine
ENGINE_REGISTRY: dict[str, str] = {
    "bass": "backline.engines.bass.engine:build",
    "accompany": "backline.engines.accompany.engine:build",
    "drums": "backline.engines.drums.engine:build",
    "analysis": "backline.engines.analysis.engine:build",
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


def build_engine(name: str, config: str = "shipped", device: str = "cpu") -> Engine:
    if name not in ENGINE_REGISTRY or name not in available_engines():
        raise ConfigError(f"unknown engine {name!r}", fix=f"available: {', '.join(available_engines()) or 'none'}")
    module_name, builder = ENGINE_REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), builder)(config=config, device=device)


def generate_in_terminal(engine: Engine, request: GenerationRequest, *, desc: str | None = None) -> GenerationResult:
    """Run `engine.generate` from a command line: a progress bar fed by the engine's progress callback, and
    Ctrl+C cancels the engine (it stops within one step and writes nothing partial) before re-raising."""
    from tqdm import tqdm

    cancel = threading.Event()
    with tqdm(total=1000, desc=desc or request.engine, unit="‰", dynamic_ncols=True,
              bar_format="{l_bar}{bar}| {postfix}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
            bar.set_postfix_str(message)
            bar.refresh()

        try:
            return engine.generate(request, progress=progress, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
