"""Writing takes: the one place where an engine's output reaches the disk.

`Engine.generate()` is pure: it returns stems as `Audio`, MIDI as bytes (or a mido / pretty_midi object) and a
report, and writes nothing. The caller (CLI, job worker, demo) then:

    with preflight(out_dir, need_bytes=estimate_bytes(request)) as lock:   # lock + writable + free space, first
        result = engine.generate(request, progress=..., cancel=...)
        written = write_takes(result, out_dir, lock=lock)                  # all files or none

Why this shape (audiocraft splits generation from writing the same way): a cancel, a crash, SIGTERM, a full
disk or a second run into the same folder can then never leave half a take behind, and every engine gets the
same file names:

    {engine}_seed{N}.wav            the take's main stem (a stem named like the engine)
    {engine}_{stem}_seed{N}.wav     any other stem of the take
    {engine}_seed{N}.mid            its MIDI
    {engine}_seed{N}.json           its report (the run's report merged with the take's, plus file names),
                                    opening with the `daw` block the DAW helper scripts read (see `daw_manifest`)
    {engine}_seed{N}_{suffix}       an attachment (e.g. analysis_seed0_attention.png)

All-or-nothing: every file is first written into a hidden staging folder inside `out_dir` (same disk), then
hard-linked into place (a link fails atomically if the name exists, so nothing is ever overwritten by a race);
if any step fails the files already placed are removed again, and Ctrl+C / SIGTERM are held back for the few
microseconds the links take. The lock is an `flock` on `out_dir/.backline.lock`, taken without waiting: a
second run fails at once with one line. The lock file, the staging folder and any folder `preflight` created
are removed again when the run ends, so a cancelled run leaves `out_dir` exactly as it was.

A run killed outright (SIGKILL, power loss) cannot clean up after itself, so the next run into the folder does,
as soon as it holds the lock (nobody else can be writing then): a staging folder without a journal is a take
that was never complete and is deleted; one with a journal (`.commit.json`, written, fsynced, only once every
file of the take is staged) was killed while linking, and the commit is finished from it (old files of an
`--overwrite` that were moved aside are dropped, the new take is placed whole). Either way the folder ends with
the old take or the new one, never a mix.

The DAW helpers (packaging/reaper/backline.lua, packaging/ardour/backline_import.lua,
packaging/ableton/backline_take.py) import a take from its report alone: the report's first key, `daw`, is a
flat block (`DAW_MANIFEST_VERSION`) naming the take's files relative to the report and where the take starts
on the timeline it was generated on, in samples, seconds, bars and quarter notes, with the tempo and meter
there. Flat and first, so a ten-line reader without a JSON library (REAPER's and Ardour's Lua) finds it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import AudioFileError, BacklineError, FileExistsRefusal, warn
from backline.engines.core.hooks import role_warning
from backline.engines.core.midi import midi_bytes
from backline.engines.core.protocol import GenerationResult, Take, check_cancel, check_seed_and_variations

LOCK_NAME = ".backline.lock"
STAGING_PREFIX = ".backline-staging-"
JOURNAL_NAME = ".commit.json"
#: Free space kept on top of the estimate (filesystems misbehave when they are full to the last block).
SPARE_BYTES = 16 * 2**20
#: Version of the report's `daw` block (what the DAW helper scripts read); bump when a key changes meaning.
DAW_MANIFEST_VERSION = 1


class OutputError(BacklineError):
    """The output folder cannot take the take (read-only, full, locked by another run)."""


class InterruptedAfterWrite(KeyboardInterrupt):
    """Ctrl+C / SIGTERM that arrived while the finished take was being linked into place: it was held until
    the take was complete, so the take *is* written (`written` names its files) — callers must not say
    "nothing was written"."""

    def __init__(self, written: list[Path]) -> None:
        super().__init__()
        self.written = list(written)


def take_names(engine: str, seed: int, stems: list[str], attachments: list[str] = ()) -> dict[str, str]:
    """The one naming rule: file name per part of a take ('stem:NAME', 'midi', 'report', 'attachment:SUFFIX')."""
    names = {f"stem:{s}": f"{engine}_seed{seed}.wav" if s == engine else f"{engine}_{_safe(s)}_seed{seed}.wav"
             for s in stems}
    for suffix in attachments:
        stem, dot, ext = str(suffix).rpartition(".")
        names[f"attachment:{suffix}"] = f"{engine}_seed{seed}_{_safe(stem)}{dot}{_safe(ext)}" if dot else \
            f"{engine}_seed{seed}_{_safe(suffix)}"
    names["midi"] = f"{engine}_seed{seed}.mid"
    names["report"] = f"{engine}_seed{seed}.json"
    return names


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)) or "stem"


# --- the lock ------------------------------------------------------------------------------------------------

_HELD: dict[Path, OutputLock] = {}
_HELD_GUARD = threading.Lock()


@dataclass
class OutputLock:
    """An exclusive hold on `folder` for one run (see `preflight`). Use as a context manager."""

    folder: Path
    created: list[Path] = field(default_factory=list)  # folders preflight made, deepest last
    _fd: int | None = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock and remove what the run added besides the takes (lock file, empty folders it made)."""
        if self._fd is None:
            return
        with _HELD_GUARD:
            _HELD.pop(self.folder, None)
        with contextlib.suppress(OSError):
            (self.folder / LOCK_NAME).unlink()
        os.close(self._fd)
        self._fd = None
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty: a finished take keeps its folder
        self.created = []


def _lock(folder: Path) -> OutputLock:
    folder = folder.resolve()
    with _HELD_GUARD:
        if folder in _HELD:
            raise OutputError("another take is being written into this folder by this program", path=folder,
                              fix="wait for it to finish, or choose another output folder")
    path = folder / LOCK_NAME
    import fcntl

    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                owner = ""
                with contextlib.suppress(OSError, ValueError):
                    pid = int(path.read_text().strip())
                    owner = f" (process {pid})" if _alive(pid) else \
                        f" (started by process {pid}, which has ended; a program it started still holds the lock)"
                raise OutputError(f"another Backline run{owner} is writing into this folder", path=folder,
                                  fix="wait for it to finish, or choose another output folder") from None
            raise
        # the holder before us may have unlinked the file between our open and our flock: lock the live one
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            lock = OutputLock(folder, _fd=fd)
            with _HELD_GUARD:
                _HELD[folder] = lock
            return lock
        os.close(fd)
    raise OutputError("could not lock the folder (it keeps changing)", path=folder, fix="try again")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# --- recovery after a killed run ---------------------------------------------------------------------------

def recover(folder: Path) -> list[str]:
    """Clean up after runs that were killed in `folder` (call only while holding its lock): finish a commit
    that has its journal, delete staging that has none. Returns the file names a finished commit placed."""
    placed: list[str] = []
    try:
        leftovers = sorted(p for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir())
    except OSError:
        return placed
    for staging in leftovers:
        journal = staging / JOURNAL_NAME
        plan = None
        if journal.is_file():
            with contextlib.suppress(OSError, ValueError):
                plan = json.loads(journal.read_text(encoding="utf-8"))
        # every file staged (or, without hard links, already renamed into place): the take can be finished
        if isinstance(plan, dict) and all((staging / n).is_file() or (folder / n).is_file()
                                          for n in plan.get("names", [])):
            try:
                _roll_forward(staging, folder, [str(n) for n in plan["names"]],
                              [str(n) for n in plan.get("stale", [])])
            except OSError as err:  # keep every file (old and new) where the user can see them
                warn(f"could not finish a take an interrupted run left half linked ({err.strerror or err}); its "
                     f"files are kept in {staging.name}", path=folder)
                continue
            placed += [str(n) for n in plan["names"]]
        shutil.rmtree(staging, ignore_errors=True)  # no journal: the commit never began, the old take is whole
    if placed:
        warn(f"finished a take that an interrupted run had left half linked: {', '.join(placed)}", path=folder)
    return placed


def _roll_forward(staging: Path, folder: Path, names: list[str], stale: list[str]) -> None:
    """Idempotently finish a journalled commit: stale old files go, every staged file ends up in place."""
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.replace(folder / name, staging / f".old-{name}")
    for name in names:
        src, dst = staging / name, folder / name
        if not src.exists():
            continue  # renamed into place (a filesystem without hard links) before the crash
        try:
            if os.stat(dst).st_ino == os.stat(src).st_ino:
                continue  # linked before the crash
            os.replace(dst, staging / f".old-{name}")  # the old take's file, moved aside by the commit
        except FileNotFoundError:
            pass
        _place(src, dst)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- preflight -----------------------------------------------------------------------------------------------

def estimate_bytes(request: Any) -> int:
    """A generous size of what a request will write: float32 stereo stems for the region, per variation."""
    rate = int(getattr(getattr(request, "timeline", None), "sample_rate", 48000) or 48000)
    start, stop = int(getattr(request, "region_start", 0) or 0), getattr(request, "region_stop", None)
    frames = (int(stop) - start) if stop is not None else _midi_frames(getattr(request, "midi", None), rate)
    mix = getattr(request, "mix", None)
    if isinstance(mix, Audio):
        frames = max(frames, mix.frames)
    variations = max(1, int(getattr(request, "variations", 1) or 1))
    return variations * (frames * 2 * 4 + 2**20)


def _midi_frames(midi: Any, rate: int) -> int:
    """Frames a take rendered from a band MIDI file lasts (its length plus a bar of ring-out at the slowest
    tempo); 10 minutes when there is no readable MIDI to tell."""
    if midi is not None:
        with contextlib.suppress(Exception):
            import mido

            seconds = float(mido.MidiFile(str(midi), clip=True).length)
            if seconds == seconds:  # not NaN
                return int((min(seconds, 3 * 3600) + 8.0) * rate)
    return 10 * 60 * rate


def preflight(out_dir: str | Path, *, need_bytes: int = 0, engine: str | None = None,
              seeds: list[int] | tuple[int, ...] = (), overwrite: bool = False) -> OutputLock:
    """Check, before any work, that `out_dir` can take the output: lock it (a second run fails at once), make
    sure it is writable and has `need_bytes` (+ a margin) free and, given the engine and seeds, that no take of
    those seeds is there already (unless `overwrite`). Creates the folder if needed (removed again on release
    when nothing was written into it). Returns the held `OutputLock`."""
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError("is a file, not a folder", path=folder, fix="choose a folder for the output")
    existing = folder
    missing: list[Path] = []
    while not existing.exists():
        missing.append(existing)
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError("is a file, not a folder", path=existing, fix="choose a folder for the output")
    _check_writable(existing)
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = None
    if free is not None and free < need_bytes + SPARE_BYTES:
        raise OutputError(f"has only {free / 2**20:.0f} MB free, the take needs about "
                          f"{(need_bytes + SPARE_BYTES) / 2**20:.0f} MB", path=existing,
                          fix="free some disk space or choose a folder on another disk")
    created: list[Path] = []
    lock = None
    try:
        with _signals_held():  # a cancel between a mkdir and the lock would leave a folder no one removes
            for path in reversed(missing):
                path.mkdir()
                created.append(path.resolve())
            lock = _lock(folder)
            lock.created = created
    except BaseException as err:
        if lock is not None:
            lock.release()  # removes the folders it made, still empty
        else:
            for path in reversed(created):
                with contextlib.suppress(OSError):
                    path.rmdir()
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(f"cannot be written ({err.strerror or err})", path=folder,
                              fix="check its permissions or choose another output folder") from err
        raise
    try:
        recover(lock.folder)
    except BaseException:
        lock.release()
        raise
    if engine and not overwrite:
        try:
            _check_free_names(folder, engine, seeds)
        except BaseException:
            lock.release()
            raise
    return lock


def take_files(folder: Path, engine: str, seed: int) -> list[Path]:
    """The files of an earlier take of `engine` with `seed` in `folder` (by the naming rule)."""
    prefix = f"{engine}_seed{int(seed)}"
    out = []
    for path in sorted(folder.glob(f"{engine}_*seed{int(seed)}*")):
        rest = path.name[len(prefix):] if path.name.startswith(prefix) else None
        other_stem = path.name.startswith(f"{engine}_") and path.stem.endswith(f"_seed{int(seed)}")
        if path.is_file() and ((rest is not None and rest[:1] in (".", "_")) or other_stem):
            out.append(path)
    return out


def _check_free_names(folder: Path, engine: str, seeds) -> None:
    for seed in seeds:
        existing = take_files(folder, engine, seed)
        if existing:
            raise FileExistsRefusal("already exists; Backline never overwrites your files", path=existing[0],
                                    fix="choose another output folder or seed, or pass --overwrite")


def _check_writable(folder: Path) -> None:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise OutputError("is on a read-only disk", path=folder, fix="choose another output folder")
    except OSError:
        pass
    mode = folder.stat().st_mode
    # root may write anywhere; a folder the user marked read-only (no write bit for anyone) is still refused
    if not os.access(folder, os.W_OK | os.X_OK) or not mode & 0o222:
        raise OutputError("is read-only", path=folder, fix="make it writable or choose another output folder")


# --- signals -------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _signals_held(written: list[Path] | None = None) -> Iterator[None]:
    """Hold Ctrl+C and SIGTERM back for a short critical section (main thread only), then deliver them. When
    the section filled `written` (the take is complete), an interrupt is raised as `InterruptedAfterWrite`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda s, _f: pending.append(s))
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending[:1]:
            try:
                handler = previous.get(sig)
                if callable(handler):
                    handler(sig, None)
                elif handler == signal.SIG_DFL:
                    if sig == signal.SIGINT:
                        raise KeyboardInterrupt
                    os.kill(os.getpid(), sig)
            except KeyboardInterrupt as err:
                if written:
                    raise InterruptedAfterWrite(written) from err
                raise


# --- the one run path ----------------------------------------------------------------------------------------

def generate_and_write(engine: Any, request: Any, *, progress=None, cancel: threading.Event | None = None,
                       overwrite: bool = False, before_write=None, role_check: str | None = None,
                       on_warning=None) -> Any:
    """preflight → `engine.generate` (pure) → `before_write(result)` (e.g. a fit score) → `write_takes`.

    The one sequence the CLIs, the job worker, the demo and the contract tests run: the folder is locked and
    checked before any work, and a cancel or an error anywhere leaves it exactly as it was. With `role_check`
    (the analysis config, e.g. 'shipped') the request is first checked for its part already playing in the
    mix or band MIDI: the warning goes to `on_warning` at once and into the result's and takes' reports."""
    progress = progress or (lambda f, m: None)
    cancel = cancel or threading.Event()
    seed, variations = check_seed_and_variations(request.seed, request.variations)
    seeds = [seed + k for k in range(variations)]
    with preflight(request.out_dir, need_bytes=estimate_bytes(request), engine=request.engine, seeds=seeds,
                   overwrite=overwrite) as lock:
        warning = role_warning(request, config=role_check) if role_check else None
        if warning and on_warning is not None:
            on_warning(warning)
        try:
            result = engine.generate(request, progress=progress, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
        check_cancel(cancel)
        if warning:
            for report in [result.report, *(t.report for t in result.takes)]:
                report.setdefault("warnings", []).insert(0, warning)
        if before_write is not None:
            before_write(result)
            check_cancel(cancel)
        result.report.setdefault("engine", request.engine)
        return write_takes(result, request.out_dir, overwrite=overwrite, lock=lock,
                           timeline=getattr(request, "timeline", None))


# --- writing -------------------------------------------------------------------------------------------------

def daw_manifest(take: Any, files: dict[str, str], engine: str, timeline: Any = None) -> dict[str, Any]:
    """The `daw` block of a take's report: what a DAW helper needs to import the take where it belongs.

    `files` maps the take's parts to their file names (as in the report's `files`); names are relative to the
    report's folder. Positions are on the timeline the take was generated on (the DAW's when the mix was
    captured live, the file's own for a loaded file: sample 0 = its first frame). Without a `timeline` the
    start is given in samples and seconds at the main stem's rate only; bars, quarters and tempo are null."""
    stems = {stem: files[stem] for stem in take.stems}
    main = engine if engine in stems else next(iter(stems), None)
    audio = take.stems.get(main) if main is not None else None
    start = int(take.start_sample)
    rate = int(timeline.sample_rate) if timeline is not None else \
        (int(audio.sample_rate) if isinstance(audio, Audio) else None)
    block: dict[str, Any] = {
        "version": DAW_MANIFEST_VERSION,
        "engine": engine,
        "seed": int(take.seed),
        "audio": stems.get(main) if main is not None else None,
        "midi": files.get("midi"),
        "sample_rate": rate,
        "start_sample": start,
        "start_seconds": start / rate if rate else None,
        "start_bar": None,
        "start_quarters": None,
        "bpm": None,
        "meter": None,
        "length_seconds": round(audio.frames / audio.sample_rate, 6) if isinstance(audio, Audio) else None,
        "written": round(time.time(), 3),
    }
    if timeline is not None:
        quarters = timeline.samples_to_quarters(start)
        block.update(start_bar=round(timeline.samples_to_bar(start), 6), start_quarters=round(quarters, 6),
                     bpm=float(timeline.tempo.bpm_at_quarter(quarters)),
                     meter=[int(timeline.numerator), int(timeline.denominator)])
    block["stems"] = stems  # last: the flat keys above come first for the helpers' pattern readers
    return block



def write_takes(result: Any, out_dir: str | Path, *, overwrite: bool = False, lock: OutputLock | None = None,
                engine: str | None = None, timeline: Any = None) -> Any:
    """Write every take of `result` (a `GenerationResult` from a pure `generate`) into `out_dir`, all or nothing.

    Returns a new `GenerationResult` whose takes name the written files (`stems` → paths, `midi` → path,
    `report['files']`), with `report['report_paths']`. Refuses (before writing anything) to replace an existing
    file unless `overwrite`; with `overwrite` an existing take is replaced whole, never mixed with the new one.
    `timeline` (the request's) places each take in bars, quarters and tempo in its report's `daw` block.
    """
    folder = Path(out_dir).expanduser()
    own = lock is None
    if own:
        lock = preflight(folder, need_bytes=sum(a.samples.nbytes for t in result.takes for a in t.stems.values()
                                                if isinstance(a, Audio)))
    try:
        name = engine or result.report.get("engine") or ""
        if not name:
            raise BacklineError("the result does not say which engine made it (report['engine'])")
        plan: list[tuple[str, Any, str]] = []  # (file name, payload, kind)
        out_takes = []
        seen: set[str] = set()
        for take in result.takes:
            attachments = dict(getattr(take, "attachments", {}) or {})
            names = take_names(name, int(take.seed), list(take.stems), list(attachments))
            files: dict[str, str] = {}
            for stem, audio in take.stems.items():
                files[stem] = names[f"stem:{stem}"]
                plan.append((names[f"stem:{stem}"], audio, "audio"))
            if take.midi is not None:
                files["midi"] = names["midi"]
                plan.append((names["midi"], take.midi, "midi"))
            for suffix, data in attachments.items():
                files[suffix] = names[f"attachment:{suffix}"]
                plan.append((names[f"attachment:{suffix}"], bytes(data), "bytes"))
            files["report"] = names["report"]
            merged = dict(result.report) | dict(take.report)
            merged.pop("daw", None)
            daw = daw_manifest(take, files, name, timeline) if take.stems or take.midi is not None else None
            report = _jsonable(({"daw": daw} if daw else {}) | merged
                               | {"engine": name, "seed": int(take.seed), "start_sample": int(take.start_sample),
                                  "files": dict(files)})
            plan.append((names["report"], json.dumps(report, indent=1).encode(), "bytes"))
            out_takes.append((take, files))
            for fname in files.values():
                if fname in seen:
                    raise BacklineError(f"two takes would both be written as {fname}", fix="use different seeds")
                seen.add(fname)
        clash = [folder / f for f, _, _ in plan if (folder / f).exists()]
        if clash and not overwrite:
            raise FileExistsRefusal("already exists; Backline never overwrites your files", path=clash[0],
                                    fix="choose another output folder or seed, or pass --overwrite")
        try:
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        except OSError as err:
            raise OutputError(f"could not be written ({err.strerror or err})", path=folder,
                              fix="check free disk space and permissions; nothing was written") from err
        try:
            for fname, payload, kind in plan:
                target = staging / fname
                if kind == "audio":
                    write_audio(target, payload if isinstance(payload, Audio) else _audio_from_path(payload))
                else:
                    data = payload if kind == "bytes" else midi_bytes(payload)
                    with open(target, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
            planned = {f for f, _, _ in plan}
            # with overwrite, an earlier take of the same seed is replaced whole: its files that this take does
            # not write again (a WAV when this one has none) go too, so old and new are never mixed
            stale = [p.name for t in result.takes for p in take_files(folder, name, int(t.seed))
                     if p.name not in planned] if overwrite else []
            _commit(staging, folder, [f for f, _, _ in plan], overwrite, stale)
        except InterruptedAfterWrite:
            lock.created = []
            raise
        except (OSError, AudioFileError) as err:
            cause = err.__cause__ if isinstance(err, AudioFileError) and err.__cause__ is not None else err
            reason = getattr(cause, "strerror", None) or cause
            raise OutputError(f"could not be written ({reason})", path=folder,
                              fix="check free disk space and permissions; nothing was written") from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        lock.created = []  # the folder now holds a take: keep it
    finally:
        if own:
            lock.release()
    takes = []
    for take, files in out_takes:
        stems = {stem: folder / files[stem] for stem in take.stems}
        midi = folder / files["midi"] if "midi" in files else None
        attached = {suffix: folder / files[suffix] for suffix in (getattr(take, "attachments", {}) or {})}
        takes.append(Take(seed=take.seed, stems=stems, midi=midi, start_sample=take.start_sample,
                          report=dict(take.report) | {"files": {k: str(folder / v) for k, v in files.items()}},
                          attachments=attached))
    return GenerationResult(takes, dict(result.report) | {
        "report_paths": [str(folder / files["report"]) for _, files in out_takes]})


def _commit(staging: Path, folder: Path, names: list[str], overwrite: bool, stale: list[str] = ()) -> None:
    """Move the staged files into `folder`: all of them, or (after any failure) none, old files restored.
    `stale` names old files to remove with the same all-or-nothing rule (they wait in staging until done).

    A journal written before the first link lets the next run finish the commit if this process is killed
    halfway (`recover`). Ctrl+C / SIGTERM arriving meanwhile are held; once the take is complete they raise
    `InterruptedAfterWrite`, so the caller can say truthfully that the take was written."""
    journal = staging / JOURNAL_NAME
    with open(staging / ".commit.tmp", "w", encoding="utf-8") as f:
        json.dump({"names": list(names), "stale": list(stale)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging / ".commit.tmp", journal)
    _fsync_dir(staging)
    placed: list[Path] = []
    aside: list[tuple[Path, Path]] = []  # (moved-away old file, its name) when overwriting
    written: list[Path] = []
    with _signals_held(written):
        try:
            for name in stale:
                old = staging / f".old-{name}"
                os.replace(folder / name, old)
                aside.append((old, folder / name))
            for name in names:
                src, dst = staging / name, folder / name
                if overwrite and dst.exists():
                    old = staging / f".old-{name}"
                    os.replace(dst, old)
                    aside.append((old, dst))
                _place(src, dst)
                placed.append(dst)
        except BaseException:
            for dst in placed:
                with contextlib.suppress(OSError):
                    dst.unlink()
            for old, dst in aside:
                with contextlib.suppress(OSError):
                    os.replace(old, dst)
            with contextlib.suppress(OSError):
                journal.unlink()
            raise
        with contextlib.suppress(OSError):
            journal.unlink()  # the take is whole: nothing for a later run to finish
        _fsync_dir(folder)
        written += placed


def _place(src: Path, dst: Path) -> None:
    """Hard-link `src` as `dst`: fails if `dst` appeared meanwhile, so it never clobbers a file nobody checked.
    Filesystems without hard links (FAT, some network shares) get a rename after a last existence check."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from err
        os.rename(src, dst)


def _audio_from_path(path: Any) -> Audio:
    return read_audio(path)


def _jsonable(value: Any) -> Any:
    """Reports may carry numpy scalars, Paths and tuples: make them plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        with contextlib.suppress(Exception):
            return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


__all__ = ["DAW_MANIFEST_VERSION", "InterruptedAfterWrite", "OutputError", "OutputLock", "daw_manifest", "estimate_bytes",
           "generate_and_write", "preflight", "recover", "take_names", "write_takes"]
