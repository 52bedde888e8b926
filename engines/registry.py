"""Which engines exist: name -> "module:builder" (imported only when built, so listing them loads no torch),
and the modules that hook into every run (`core.hooks`). This is the one place that names engine packages
for the layers above them (the CLI, the host's job worker, the demo); `engines/core/` names none.

    builder(config: str = 'shipped', device: str = 'cpu') -> Engine
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec

from backline.engines.core import hooks
from backline.engines.core.errors import ConfigError
from backline.engines.core.protocol import Engine, EngineDescription, check_device

ENGINE_REGISTRY: dict[str, str] = {
    "bass": "backline.engines.bass.follow_engine:build",  # follow (listen → plan → render); mode=free → bass-latent
    "bass-latent": "backline.engines.bass.engine:build",  # paper 000: codecs + latent diffusion
    "accompany": "backline.engines.accompany.follow_engine:build",
    "drums": "backline.engines.drums.engine:build",
    "analysis": "backline.engines.analysis.engine:build",
    "separate": "backline.engines.separate.engine:build",
}

#: engine -> the module with its `describe()` and `BUILDER_OPTIONS`, which imports no torch: what the command line
#: needs to build its parser and print --help (the engine module itself loads torch and the models' code)
DESCRIPTIONS: dict[str, str] = {
    "bass": "backline.engines.bass.description",
    "accompany": "backline.engines.accompany.description",
    "analysis": "backline.engines.analysis.description",
    "drums": "backline.engines.drums.description",
    "separate": "backline.engines.separate.description",
}

#: engine -> the module that registers its hooks (the "already playing" warning, the fit score)
HOOK_PROVIDERS: dict[str, str] = {"analysis": "backline.engines.analysis.hooks"}

for _module in HOOK_PROVIDERS.values():
    hooks.provide(_module)


def available_engines() -> list[str]:
    """Registered engines whose module is present in this install."""
    names = []
    for name, target in ENGINE_REGISTRY.items():
        try:
            if find_spec(target.split(":")[0]) is not None:
                names.append(name)
        except ModuleNotFoundError:
            continue
    return names


def engine_module(name: str):
    """The module of a registered engine (its builder, CONTROLS, ...), or a one-line ConfigError."""
    if name not in ENGINE_REGISTRY or name not in available_engines():
        raise ConfigError(f"unknown engine {name!r}", fix=f"available: {', '.join(available_engines()) or 'none'}")
    return importlib.import_module(ENGINE_REGISTRY[name].split(":")[0])


def build_engine(name: str, config: str = "shipped", device: str = "cpu", **options) -> Engine:
    """Build a registered engine; `options` (e.g. `weights=`) go to builders that take them."""
    check_device(device)
    module = engine_module(name)
    builder = ENGINE_REGISTRY[name].split(":")[1]
    return getattr(module, builder)(config=config, device=device, **options)


def description_module(name: str):
    """The module holding a registered engine's `describe()`: its light description module (`DESCRIPTIONS`) where
    it has one, else the engine module."""
    if name in DESCRIPTIONS and name in available_engines():
        return importlib.import_module(DESCRIPTIONS[name])
    return engine_module(name)


def describe_engine(name: str, config: str = "shipped", device: str = "cpu") -> EngineDescription:
    """A registered engine's description without building it (no weights load, and no torch where the engine has
    a description module): its `describe()`."""
    return description_module(name).describe(config=config, device=device)


def builder_options(name: str) -> tuple[str, ...]:
    """The keyword options a registered engine's builder takes beside config and device (e.g. `weights`): its
    description module's `BUILDER_OPTIONS`, else read from the builder's signature."""
    import inspect

    options = getattr(description_module(name), "BUILDER_OPTIONS", None)
    if options is not None:
        return tuple(options)
    builder = getattr(engine_module(name), ENGINE_REGISTRY[name].split(":")[1])
    return tuple(p for p in inspect.signature(builder).parameters if p not in ("config", "device"))
