"""Hooks: what an optional engine adds to every other engine's run, without the core importing it.

The analysis engine, when installed, warns that the part about to be generated already plays in the band
(`role_warning`), scores how well a take fits its mix (`fit_score`) and tells the listener whether a drum kit
plays (`drums_playing`). The core only names the hooks; the
engine registry (`backline.engines.registry`) declares which modules provide them, and a provider module
registers its functions when it is imported — the first time a hook is asked for. So the arrows point into
`core`: nothing here imports an engine package, and an install without the analysis engine simply has no hook.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: hook name -> the registered function
_HOOKS: dict[str, Callable[..., Any]] = {}
#: modules that register hooks on import, declared by the engine registry; imported on first use
_PROVIDERS: list[str] = []
_loaded: set[str] = set()


def provide(module: str) -> None:
    """Declare `module` as a hook provider (imported lazily, the first time any hook is looked up)."""
    if module not in _PROVIDERS:
        _PROVIDERS.append(module)


def register(name: str, fn: Callable[..., Any]) -> None:
    """Called by a provider module at import: `name` now runs `fn`."""
    _HOOKS[name] = fn


def hook(name: str) -> Callable[..., Any] | None:
    """The function registered for `name`, else None (its engine is not installed)."""
    for module in _PROVIDERS:
        if module not in _loaded:
            _loaded.add(module)
            try:
                importlib.import_module(module)
            except ImportError:  # an optional engine that is not installed provides nothing
                continue
    return _HOOKS.get(name)


def role_warning(request: Any, config: str = "shipped") -> str | None:
    """A one-line warning when the part `request` generates already plays in its mix or band MIDI, else None.
    Never raises: a warning must not stop a generation."""
    fn = hook("role_warning")
    if fn is None:
        return None
    try:
        return fn(request, config)
    except Exception:  # noqa: BLE001 - a warning must never stop a generation
        return None


def fit_score(mix: Any, stem: Any, *, config: str = "shipped", device: str = "cpu") -> float | None:
    """How well `stem` fits `mix` in [0, 1], or None when no engine provides a fit score. Errors propagate
    (the caller records why the score is missing)."""
    fn = hook("fit_score")
    return None if fn is None else float(fn(mix, stem, config=config, device=device))


def drums_playing(mix: Any) -> float | None:
    """The analysis engine's drums value for `mix` (0.5 = its decision that a kit plays), or None when no engine
    provides it or it cannot run. Never raises: the listener then hears without the drum-kit context."""
    fn = hook("drums_playing")
    if fn is None:
        return None
    try:
        return float(fn(mix))
    except Exception:  # noqa: BLE001 - a context cue must never stop listening
        return None
