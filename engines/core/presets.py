"""Style presets: one class, one TOML reader, one lookup — shared by the engines, the CLIs and the host.

A preset is `presets/<engine>/<name>.toml` in the install, or a TOML in a folder the user chose::

    name = "finger"                     # the id engines know it by (letters, digits, - _ . +)
    title = "Finger bass"               # what the browser and --list-presets show
    engine = "bass"
    description = "round, fingerstyle"
    reference = "finger.flac"           # a recording in the same folder as the TOML (or below it)
    gm_program = 34                     # optional: 1-based General MIDI program for the MIDI output
    loudness_lufs = -18.0               # optional: output loudness
    [controls]                          # optional: the engine's control defaults for this style
    steps = 64
    [[chain]]                           # optional: a pedalboard chain (backline.engines.core.effects)
    type = "Compressor"

Path safety (a preset is data someone may have sent you): the name must be a plain identifier (it ends up in
cache file names), a preset looked up by name is only ever read from inside the preset folders, and its
reference must lie inside the preset's own folder or one of the folders the caller allows — never `../..` or
an arbitrary absolute path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from backline.engines.core.errors import ConfigError

#: Preset ids: what may appear in a cache file name.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
READ_REFERENCE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
KNOWN_KEYS = {"name", "title", "engine", "description", "reference", "gm_program", "loudness_lufs", "controls",
              "chain", "render"}


@dataclass(frozen=True)
class Preset:
    """One preset file, checked. Engine-specific keys the reader does not know are kept in `extra`."""

    name: str
    engine: str
    path: Path
    title: str = ""
    description: str = ""
    reference: Path | None = None
    controls: dict[str, Any] = field(default_factory=dict)
    gm_program: int | None = None
    loudness_lufs: float = -18.0
    chain: tuple[dict[str, Any], ...] = ()
    render: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def builtin_preset_dir() -> Path | None:
    """The install's `presets/` folder (the `backline.presets` data package)."""
    try:
        # lazy: the presets data package is optional in an install (ImportError → None)
        import backline.presets as pkg
    except ImportError:
        return None
    paths = list(getattr(pkg, "__path__", []))
    return Path(paths[0]) if paths else None


def engine_preset_dir(engine: str) -> Path:
    base = builtin_preset_dir() or Path(__file__).resolve().parents[2] / "presets"
    return base / engine


def read_toml(path: str | Path) -> dict[str, Any]:
    """The one TOML reader: a dict, or a ConfigError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError("file not found", path=path, fix="check the path") from err
    except IsADirectoryError as err:
        raise ConfigError("is a folder, not a TOML file", path=path) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot be read ({err})", path=path) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"is not valid TOML ({err})", path=path) from err


def check_name(name: Any, *, what: str = "preset name", path: Path | None = None) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise ConfigError(f"{what} {name!r} is not a plain name", path=path,
                          fix="use letters, digits, '-', '_', '.' or '+' (no folders, no '..')")
    return name


def _inside(path: Path, roots: list[Path]) -> bool:
    for root in roots:
        try:
            path.relative_to(root)
            return True
        except ValueError:
            continue
    return False


def read_preset(path: str | Path, *, engine: str | None = None, allowed_dirs: list[Path] | tuple = (),
                require_reference: bool = False) -> Preset:
    """Parse and check one preset file. `allowed_dirs`: folders (besides the preset's own) its reference may
    be in. Raises ConfigError in one line."""
    path = Path(path)
    data = read_toml(path)
    name = check_name(data.get("name"), path=path)
    kind = str(data.get("engine") or path.parent.name)
    if engine is not None and kind != engine:
        raise ConfigError(f"preset is for engine {kind!r}, not {engine!r}", path=path)
    controls = data.get("controls", {})
    if not isinstance(controls, dict):
        raise ConfigError("[controls] must be a table", path=path)
    chain = data.get("chain", [])
    if not isinstance(chain, list) or not all(isinstance(c, dict) for c in chain):
        raise ConfigError("[[chain]] must be a list of tables", path=path)
    reference = None
    if data.get("reference"):
        raw = str(data["reference"])
        reference = (path.parent / raw).resolve()
        roots = [path.parent.resolve(), *(Path(d).resolve() for d in allowed_dirs)]
        if not _inside(reference, roots):
            raise ConfigError(f"reference {raw!r} lies outside the preset's folder", path=path,
                              fix="put the recording beside the preset and name it without folders")
        if reference.suffix.lower() not in READ_REFERENCE_EXTENSIONS:
            raise ConfigError(f"reference {reference.name} is not an audio file", path=path)
        if not reference.is_file():
            raise ConfigError(f"reference {reference.name} is missing", path=path)
    elif require_reference:
        raise ConfigError("preset lacks 'reference'", path=path)
    gm = data.get("gm_program")
    if gm is not None and (not isinstance(gm, int) or isinstance(gm, bool) or not 1 <= gm <= 128):
        raise ConfigError(f"gm_program {gm!r} is not a General MIDI program (1–128)", path=path)
    lufs = data.get("loudness_lufs", -18.0)
    if not isinstance(lufs, (int, float)) or isinstance(lufs, bool) or not -60 <= lufs <= 0:
        raise ConfigError(f"loudness_lufs {lufs!r} must be a number within -60–0", path=path)
    render = data.get("render", {})
    return Preset(name=name, engine=kind, path=path, title=str(data.get("title") or name).strip(),
                  description=str(data.get("description", "")), reference=reference, controls=dict(controls),
                  gm_program=gm, loudness_lufs=float(lufs), chain=tuple(dict(c) for c in chain),
                  render=dict(render) if isinstance(render, dict) else {},
                  extra={k: v for k, v in data.items() if k not in KNOWN_KEYS})


def preset_files(engine: str, folders: list[Path] | tuple = ()) -> list[Path]:
    """Preset TOMLs for `engine`: the install's `presets/<engine>/` and, for each user folder, `<folder>/<engine>/`
    and `<folder>/` itself."""
    out: list[Path] = []
    seen: set[Path] = set()
    candidates = [engine_preset_dir(engine)]
    for folder in folders:
        if folder is not None:
            candidates += [Path(folder) / engine, Path(folder)]
    for folder in candidates:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                out.append(path)
    return out


def list_presets(engine: str, folders: list[Path] | tuple = ()) -> list[str]:
    """Names of the readable presets for `engine` (broken files are left out; `load_presets` says why)."""
    presets, _ = load_presets(engine, folders)
    return sorted(dict.fromkeys(p.name for p in presets))


def load_presets(engine: str, folders: list[Path] | tuple = ()) -> tuple[list[Preset], list[str]]:
    """Every preset for `engine` plus one line per file that was skipped (so one broken file hides nothing)."""
    presets: list[Preset] = []
    problems: list[str] = []
    for path in preset_files(engine, folders):
        try:
            data_engine = None
            preset = read_preset(path, allowed_dirs=[Path(f) for f in folders if f is not None])
            data_engine = preset.engine
        except ConfigError as err:
            problems.append(f"preset {path.name} skipped: {_strip_path(str(err), path)}")
            continue
        if data_engine == engine:
            presets.append(preset)
    return presets, problems


def _strip_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def find_preset(engine: str, name: str, folders: list[Path] | tuple = ()) -> Preset:
    """The preset called `name` for `engine`, looked up only inside the preset folders (a name like
    '../../x' is refused, never resolved). Unknown names list the known ones."""
    check_name(name, what=f"{engine} preset")
    for path in preset_files(engine, folders):
        if path.stem == name:
            return read_preset(path, engine=engine, allowed_dirs=[Path(f) for f in folders if f is not None])
    presets, _ = load_presets(engine, folders)
    for preset in presets:
        if preset.name == name:
            return preset
    known = sorted({p.name for p in presets})
    raise ConfigError(f"unknown {engine} preset {name!r}", fix=f"known presets: {', '.join(known) or 'none installed'}")


__all__ = ["Preset", "builtin_preset_dir", "check_name", "engine_preset_dir", "find_preset", "list_presets",
           "load_presets", "preset_files", "read_preset", "read_toml"]
