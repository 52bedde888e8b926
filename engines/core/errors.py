"""One error hierarchy for all of Backline.

Every message is written for a musician: it names the file or setting at fault and says what to do
next, in one line. Code that catches errors to show them (CLI, host) catches `BacklineError` and prints
`str(err)`; anything else is a bug and gets a traceback.
"""

from __future__ import annotations

from pathlib import Path


class BacklineError(Exception):
    """Base class: a problem the user can fix. `str()` is the one-line message to show."""

    def __init__(self, message: str, *, fix: str | None = None, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.fix = fix
        parts = [f"{self.path}: {message}" if self.path is not None else message]
        if fix:
            parts.append(fix)
        super().__init__(" — ".join(parts))


class AudioFileError(BacklineError):
    """An audio file that cannot be read or written (missing, empty, corrupt, wrong extension)."""


class AudioFormatError(BacklineError):
    """Audio whose sample rate or channel count does not fit what is asked of it."""


class FileExistsRefusal(BacklineError):
    """A write that would silently overwrite a user's file."""


class MissingDependencyError(BacklineError):
    """A system program or data file (fluidsynth, a soundfont, jackd ...) is not installed."""


class DatasetError(BacklineError):
    """A corpus folder that is missing, half written or not in the expected layout."""


class TimelineError(BacklineError):
    """Positions, bars or tempos that make no sense (bar 0, negative tempo, range past the end)."""


class ConfigError(BacklineError):
    """A bad setting or argument value (N <= 0, unknown preset, steps <= 0 ...)."""


class WeightsError(BacklineError):
    """Model weights that are missing or do not match the code's config."""


class DeviceError(BacklineError):
    """An audio or compute device that is missing, vanished, or ran out of memory."""


class BacklineWarning(UserWarning):
    """Something the user should know about that does not stop the work (a truncated file, a clamped tempo).
    The CLI prints each as one `backline: warning: ...` line."""


def warn(message: str, *, path: str | Path | None = None) -> None:
    """Issue a one-line BacklineWarning (shown by the CLI; collected by tests with pytest.warns)."""
    import warnings

    warnings.warn(f"{path}: {message}" if path is not None else message, BacklineWarning, stacklevel=2)


class Cancelled(BacklineError):
    """The user cancelled a long job; nothing partial was written."""

    def __init__(self, message: str = "cancelled by the user; nothing was written") -> None:
        super().__init__(message)
