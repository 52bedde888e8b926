"""Preset files for the browser: `presets/<engine>/*.toml` in the install plus the user's preset folder.

A preset is a TOML file::

    name = "motown"                     # the id engines know it by
    title = "Motown walk"               # what the browser shows
    engine = "bass"
    description = "busy walking line, round tone"
    reference = "motown_walk.flac"      # relative to the preset file
    [controls]
    guidance = 3.0

A file that cannot be read (bad TOML, no name, unknown engine, missing reference) is skipped and reported
in one line each, so one broken file never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from backline.engines.audio import READ_EXTENSIONS


@dataclass(frozen=True)
class Preset:
    name: str  # the id engines know it by (request.preset)
    engine: str
    path: Path
    title: str = ""  # what the browser shows
    description: str = ""
    reference: Path | None = None
    controls: dict[str, Any] = field(default_factory=dict)


def builtin_preset_dir() -> Path | None:
    try:
        import backline.presets as pkg
    except ImportError:
        return None
    paths = list(getattr(pkg, "__path__", []))
    return Path(paths[0]) if paths else None


def read_preset(path: Path) -> Preset:
    """Parse one preset file; raises ValueError with a one-line reason."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot be read ({err})") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"is not valid TOML ({err})") from err
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("has no name = \"...\"")
    engine = data.get("engine") or path.parent.name
    controls = data.get("controls", {})
    if not isinstance(controls, dict):
        raise ValueError("[controls] must be a table")
    reference = None
    if data.get("reference"):
        reference = (path.parent / str(data["reference"])).resolve()
        if reference.suffix.lower() not in READ_EXTENSIONS:
            raise ValueError(f"reference {reference.name} is not an audio file")
        if not reference.exists():
            raise ValueError(f"reference {reference.name} is missing")
    return Preset(name.strip(), str(engine), path, str(data.get("title") or name).strip(),
                  str(data.get("description", "")), reference, dict(controls))


def load_presets(engine: str, folders: list[Path]) -> tuple[list[Preset], list[str]]:
    """Presets for `engine` from every folder (`<folder>/<engine>/*.toml` and `<folder>/*.toml`)."""
    presets: list[Preset] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for path in sorted({*folder.glob(f"{engine}/*.toml"), *folder.glob("*.toml")}):
            if path in seen:
                continue
            seen.add(path)
            try:
                preset = read_preset(path)
            except ValueError as err:
                problems.append(f"preset {path.name} skipped: it {err}")
                continue
            if preset.engine == engine:
                presets.append(preset)
    return presets, problems
