"""The core types in one import, for `bridge/`, `host/` and `engines/` alike (none of them imports the bridge
or torch to get these): audio, the timeline, errors, MIDI bytes, take writing.

    from backline.engines.core import Audio, Timeline, BacklineError, midi_bytes, write_takes
"""

from backline.engines.audio import Audio, audio_info, read_audio, resample, write_audio, write_bytes_atomic
from backline.engines.errors import (
    AudioFileError,
    AudioFormatError,
    BacklineError,
    BacklineWarning,
    Cancelled,
    ConfigError,
    DeviceError,
    FileExistsRefusal,
    TimelineError,
    WeightsError,
    warn,
)
from backline.engines.midi import MidiFileError, midi_bytes, read_midi, write_midi
from backline.engines.takes import generate_and_write, preflight, write_takes
from backline.engines.timeline import BBT, TempoMap, Timeline, check_bpm, parse_bar_range

__all__ = ["Audio", "AudioFileError", "AudioFormatError", "BBT", "BacklineError", "BacklineWarning", "Cancelled",
           "ConfigError", "DeviceError", "FileExistsRefusal", "MidiFileError", "TempoMap", "Timeline",
           "TimelineError", "WeightsError", "audio_info", "check_bpm", "generate_and_write", "midi_bytes",
           "parse_bar_range", "preflight", "read_audio", "read_midi", "resample", "warn", "write_audio",
           "write_bytes_atomic", "write_midi", "write_takes"]
