"""The session folder and its take history: what survives a restart.

Layout of a session folder::

    history.json          every take (ok, failed) with the settings that made it — the source of truth
    takes/<job>/          what the engine wrote for one job (stems, MIDI, report), never touched again
    drag/                 nicely named copies handed to the DAW by drag and drop; they outlive the drop
    exports/              (default) folders written by "Export takes"

history.json is rewritten atomically after each change, so a crash or a full disk leaves the previous
version in place. Paths inside it are relative to the session folder, so a session can be moved.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backline.engines.core.audio import write_bytes_atomic
from backline.engines.core.errors import BacklineError
from backline.engines.core.protocol import Take
from backline.engines.core.takes import daw_manifest
from backline.engines.core.timeline import Timeline

HISTORY_VERSION = 1


@dataclass
class TakeRecord:
    """One take and everything needed to recall or regenerate it."""

    id: str
    number: int
    engine: str
    engine_title: str = ""
    created: float = field(default_factory=time.time)
    status: str = "ok"  # 'ok' | 'error'
    error: str = ""
    seed: int = 0
    controls: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    reference: str | None = None
    prompt: str = ""
    variations: int = 1
    bars: tuple[int, int] = (1, 1)
    region_start: int = 0
    region_stop: int = 0
    sample_rate: int = 48000
    bpm: float = 120.0
    meter: tuple[int, int] = (4, 4)
    origin: int = 0  # where bar 1 sat on the capture (a heard file's first bar line: `Timeline.origin`)
    stems: dict[str, str] = field(default_factory=dict)  # name -> path relative to the session folder
    midi: str | None = None
    start_sample: int = 0
    fit: float | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TakeRecord:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("bars", "meter"):
            if key in data and data[key] is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def timeline(self) -> Timeline:
        """The grid the take was generated on (its bars, where it sits, the DAW block's start bar)."""
        return Timeline.constant(self.bpm, self.sample_rate, *self.meter, origin=self.origin)

    @property
    def label(self) -> str:
        return f"{self.engine_title or self.engine.title()} #{self.number}"


def _daw_block(take: TakeRecord, files: dict[str, str]) -> dict[str, Any]:
    """The `daw` block of the take writer's report (`engines.core.takes.daw_manifest`) for an exported copy."""
    timeline = take.timeline()
    stems = {name: None for name in take.stems}
    return _jsonable(daw_manifest(Take(seed=take.seed, stems=stems, midi=take.midi, start_sample=take.start_sample),
                                  files, take.engine, timeline))


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w\- .#()]+", "_", text).strip() or "take"


def _jsonable(value: Any) -> Any:
    """Reports from engines may hold numpy scalars or paths; keep what JSON can say."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class SessionStore:
    """Take history for one session folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.takes: list[TakeRecord] = []
        self.warning = ""

    @property
    def history_path(self) -> Path:
        return self.root / "history.json"

    def load(self) -> SessionStore:
        """Read history.json. A file that cannot be read is kept aside (renamed) and a new history starts."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BacklineError(f"cannot create the session folder ({err.strerror})", path=self.root,
                                fix="choose another session folder in Settings") from err
        if not self.history_path.exists():
            self.takes = []
            return self
        try:
            data = json.loads(self.history_path.read_text(encoding="utf-8"))
            self.takes = [TakeRecord.from_dict(t) for t in data.get("takes", [])]
        except (OSError, ValueError, TypeError, AttributeError) as err:
            aside = self.history_path.with_name(f"history.broken-{time.strftime('%Y%m%d-%H%M%S')}.json")
            os.replace(self.history_path, aside)
            self.takes = []
            self.warning = (f"{self.history_path} could not be read ({err}); kept it as {aside.name} "
                            "and started a new history — your take files are untouched in takes/")
        return self

    def save(self) -> None:
        data = {"version": HISTORY_VERSION, "takes": [_jsonable(asdict(t)) for t in self.takes]}
        write_bytes_atomic(self.history_path, json.dumps(data, indent=1).encode(), overwrite=True)

    # -- takes --------------------------------------------------------------------------------------------
    def next_number(self) -> int:
        return max((t.number for t in self.takes), default=0) + 1

    def job_dir(self, job_name: str) -> Path:
        """Where a job's takes go. Not created here: the job worker's preflight makes it (and removes it again
        when the job is cancelled or fails), so a session folder never fills with empty take folders."""
        return self.root / "takes" / _safe_name(job_name)

    def add(self, record: TakeRecord) -> TakeRecord:
        self.takes.append(record)
        self.save()
        return record

    def get(self, take_id: str) -> TakeRecord:
        for take in self.takes:
            if take.id == take_id:
                return take
        raise BacklineError(f"take {take_id!r} is not in this session's history")

    def relative(self, path: str | Path) -> str:
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def absolute(self, rel: str | None) -> Path | None:
        if not rel:
            return None
        path = Path(rel)
        return path if path.is_absolute() else self.root / path

    def stem_path(self, take: TakeRecord) -> Path | None:
        """The take's main audio file (first stem)."""
        for rel in take.stems.values():
            return self.absolute(rel)
        return None

    # -- handing files out --------------------------------------------------------------------------------
    def drag_file(self, take: TakeRecord, kind: str, stem: str | None = None) -> Path:
        """A nicely named copy of the take's WAV (one stem) or MIDI in drag/, written atomically before a drag.

        The DAW imports the file by reference, so it must exist before the drop and stay afterwards; it is
        never overwritten (a second drag of the same take reuses the file that is already there).
        """
        if kind == "wav":
            rel = take.stems.get(stem) if stem else next(iter(take.stems.values()), None)
            source = self.absolute(rel)
        else:
            source = self.absolute(take.midi)
        if source is None or not source.exists():
            raise BacklineError(f"{take.label} has no {kind.upper()} file", path=source,
                                fix="regenerate the take" if source else None)
        bars = f"bars {take.bars[0]}-{take.bars[1]}"
        suffix = source.suffix if kind == "wav" else ".mid"
        part = f" {stem}" if stem and len(take.stems) > 1 else ""
        target = self.root / "drag" / _safe_name(f"{take.label}{part} {bars} seed {take.seed}{suffix}")
        if target.exists() and target.stat().st_size == source.stat().st_size:
            return target
        if target.exists():  # same name, different content: never overwrite, pick a fresh name
            target = target.with_name(f"{target.stem} ({int(time.time())}){suffix}")
        write_bytes_atomic(target, source.read_bytes())
        return target

    def export(self, takes: list[TakeRecord], dest: str | Path) -> Path:
        """Copy takes (audio, MIDI, settings) into a new folder `dest`. Nothing is lost if it fails.

        The folder is built under a temporary name and renamed at the end; on any error (disk full,
        permissions) the partial folder is removed and the session folder is untouched.
        """
        dest = Path(dest)
        if dest.exists():
            raise BacklineError("already exists; Backline never overwrites your files", path=dest,
                                fix="choose a new folder name")
        ok = [t for t in takes if t.status == "ok"]
        if not ok:
            raise BacklineError("there are no finished takes to export", fix="generate a take first")
        partial = dest.with_name(f".{dest.name}.partial")
        try:
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            for take in ok:
                folder = partial / _safe_name(f"{take.label} seed {take.seed}")
                folder.mkdir()
                files: dict[str, str] = {}
                for name, rel in take.stems.items():
                    src = self.absolute(rel)
                    files[name] = f"{_safe_name(name)}{src.suffix}"
                    shutil.copyfile(src, folder / files[name])
                if take.midi:
                    files["midi"] = f"{_safe_name(take.engine)}.mid"
                    shutil.copyfile(self.absolute(take.midi), folder / files["midi"])
                # the take writer's `daw` block first, naming the copies: the DAW helpers import an export too
                record = {"daw": _daw_block(take, files)} | _jsonable(asdict(take))
                (folder / "take.json").write_text(json.dumps(record, indent=1))
            os.replace(partial, dest)
        except OSError as err:
            shutil.rmtree(partial, ignore_errors=True)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise BacklineError("export failed: the disk is full", path=dest,
                                    fix="free some space or export to another drive; your takes are safe "
                                        "in the session folder") from err
            raise BacklineError(f"export failed ({err.strerror or err})", path=dest,
                                fix="check the folder's permissions; your takes are safe in the session folder"
                                ) from err
        return dest
