"""The timeline, re-exported: it lives in `backline.engines.timeline` with the other core types (Audio, errors,
MIDI), so that engines do not import the bridge; bridge code and older imports keep using this name."""

from backline.engines.timeline import (  # noqa: F401
    BBT,
    DEFAULT_PPQ,
    MAX_BPM,
    MIN_BPM,
    TempoMap,
    Timeline,
    check_bpm,
    parse_bar_range,
)

__all__ = ["BBT", "DEFAULT_PPQ", "MAX_BPM", "MIN_BPM", "TempoMap", "Timeline", "check_bpm", "parse_bar_range"]
