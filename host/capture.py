"""What the engines listen to: the captured mix, where it sits on the DAW timeline, and at what tempo.

The capture comes from the bridge's loopback recorder when a DAW is connected, or from an audio file the
musician loads (or drops) — handy without a DAW, and how the screenshots and tests run. A file starts at DAW
sample 0 (bar 1). Its tempo and meter come from an `extras.json` beside it (the corpus/demo layout) or from
the transport.
"""

from __future__ import annotations

import json
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal

from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.errors import BacklineError, TimelineError
from backline.engines.core.timeline import Timeline
from backline.engines.listen.region import Heard, chords_for_bars, cut, file_chart, hear
from backline.host.widgets import peak_summary


class CaptureModel(QObject):
    changed = pyqtSignal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.audio: Audio | None = None
        self.origin = 0  # DAW sample position of the first frame
        self.timeline: Timeline | None = None
        self.source = ""
        self.path: Path | None = None
        self.tempo_from_file = False
        self.extractor = None  # live capture: (start, stop) -> bridge Extract, exact and with gaps
        self.span: tuple[int, int] | None = None  # live: all DAW samples the capture holds (the display may show less)
        self.peaks = None  # waveform peaks of `audio`, when computed off the UI thread
        self.listening = None  # what was heard in a loaded file (tempo, bar one, key, chords): engines.listen
        self.chart = ""  # the chord lane as the musician edited it ("" = as heard)
        self.last_coverage = 1.0

    @property
    def empty(self) -> bool:
        return self.audio is None or self.audio.frames == 0

    def load_file(self, path: str | Path, fallback: Timeline) -> None:
        """Use an audio file as the capture (raises AudioFileError with the file's name if it cannot)."""
        self.apply_file(*self.read_file(path, fallback))

    @classmethod
    def read_file(cls, path: str | Path, fallback: Timeline) -> tuple:
        """The slow half of `load_file` (decode + peaks); safe to run on a worker thread."""
        path = Path(path)
        audio = read_audio(path)
        timeline, from_file = cls._timeline_beside(path, audio.sample_rate, fallback)
        heard = cls.listen_to(audio, timeline if from_file else None)  # the whole file, once (engines.region)
        if heard.listening is not None and not from_file:  # a plain file: its bars are where the music's are
            timeline = heard.timeline
        return path, audio, timeline, from_file, peak_summary(audio), heard.listening

    @staticmethod
    def listen_to(audio: Audio, known: Timeline | None = None):
        """The whole file heard (`backline.engines.listen.region.hear`: tempo, bar one, key, chords; `listening` None
        when nothing steady is heard — a click, silence — and the file still loads with the default grid)."""
        return hear(audio, known)

    def heard(self):
        """What the engines are told about the loaded file (`engines.region.Heard`)."""
        return Heard(self.timeline, self.listening, "known" if self.tempo_from_file else "listen")

    def apply_file(self, path: Path, audio: Audio, timeline: Timeline, from_file: bool, peaks,
                   listening=None) -> None:
        self.audio, self.origin, self.timeline, self.peaks, self.span = audio, 0, timeline, peaks, None
        self.path, self.tempo_from_file, self.extractor = path, from_file, None
        self.listening, self.chart = listening, ""
        rate = f"{audio.sample_rate / 1000:g} kHz"
        tempo = " · tempo from extras.json" if from_file else " · tempo heard" if listening is not None else ""
        self.source = f"{path.name} · {audio.seconds:.1f} s · {rate}" + tempo
        self.changed.emit()

    def set_live(self, audio: Audio, origin: int, timeline: Timeline, source: str, extractor=None,
                 span: tuple[int, int] | None = None, peaks=None) -> None:
        """The loopback capture: `audio` (shown, from DAW sample `origin`) is the newest part of `span`, all
        of which `extractor` can read exactly."""
        self.audio, self.origin, self.timeline, self.source = audio, int(origin), timeline, source
        self.path, self.tempo_from_file, self.extractor = None, False, extractor
        self.span, self.peaks = span, peaks
        self.listening = None
        self.changed.emit()

    @property
    def live(self) -> bool:
        return self.extractor is not None

    def set_tempo(self, bpm: float, numerator: int, denominator: int, *, keep_bar_one: bool = False) -> None:
        """The musician (or the DAW) says the file's tempo; bars are re-laid on the same audio. The DAW's tempo
        counts them from the file's first sample (its bar 1); the musician's (`keep_bar_one`) from the same first
        bar line (a heard file's `origin`: typing double time keeps bar 1 where the music's is)."""
        if self.audio is None:
            return
        origin = self.timeline.origin if keep_bar_one and self.timeline is not None else 0
        self.timeline = Timeline.constant(bpm, self.audio.sample_rate, numerator, denominator, origin=origin)
        self.changed.emit()

    @staticmethod
    def _timeline_beside(path: Path, sample_rate: int, fallback: Timeline) -> tuple[Timeline, bool]:
        extras = path.parent / "extras.json"
        if extras.is_file():
            try:
                data = json.loads(extras.read_text(encoding="utf-8"))
                num, den = data.get("time_signature", [4, 4])
                return Timeline.constant(float(data["tempo_bpm"]), sample_rate, int(num), int(den)), True
            except (OSError, ValueError, KeyError, TypeError, TimelineError):
                pass
        return Timeline.constant(fallback.bpm, sample_rate, fallback.numerator, fallback.denominator), False

    def chord_chart(self) -> str:
        """The chord lane: the musician's edit, else the chords heard in the file on its bars (one bar per |)."""
        return self.chart or self.heard_chart()

    def heard_chart(self) -> str:
        """The chords heard in the file, on its bars (`engines.region.file_chart`), '' when none were heard."""
        if self.listening is None or self.audio is None or self.timeline is None or self.origin:
            return ""
        return file_chart(self.heard(), self.audio.frames)

    def chords_for_bars(self, first: int, last: int) -> str:
        """The chord lane's bars first..last (1-based) as a chart for an engine, '' when there is none."""
        return chords_for_bars(self.chord_chart(), first, last, self.timeline.numerator if self.timeline else 4)

    def _extent(self) -> tuple[int, int]:
        if self.span is not None:
            return self.span
        return self.origin, self.origin + (self.audio.frames if self.audio is not None else 0)

    def last_bar(self) -> int:
        """The last whole bar inside the capture."""
        if self.empty or self.timeline is None:
            return 0
        return max(0, int(self.timeline.samples_to_bar(self._extent()[1]) + 1e-6) - 1)

    def first_bar(self) -> int:
        if self.timeline is None:
            return 1
        import math

        return max(1, math.ceil(self.timeline.samples_to_bar(max(self._extent()[0], 0)) - 1e-6))

    def region(self, first: int, last: int, *, controls: dict | None = None,
               control_names: set[str] | frozenset[str] = frozenset()):
        """The request's region for bars first..last: `engines.region.cut` (the one path the CLI takes too), so
        the engine gets the whole file's grid, chords and key. Returns an `engines.region.Region`."""
        if self.empty or self.timeline is None:
            raise BacklineError("no audio has been captured yet",
                                fix="press play in your DAW, or load an audio file as the capture (Ctrl+O)")
        if first < self.first_bar() or last > self.last_bar():
            raise TimelineError(f"bars {first}–{last} are outside the captured audio "
                                f"(bars {self.first_bar()}–{self.last_bar()})",
                                fix="select bars on the waveform, or let the DAW play them first")
        extractor = None
        if self.extractor is not None:
            def extractor(start: int, stop: int):
                extract = self.extractor(start, stop)
                self.last_coverage = extract.coverage
                return extract
        else:
            self.last_coverage = 1.0
        return cut(self.audio, self.heard(), (first, last), origin=self.origin, chart=self.chart or None,
                   controls=controls, control_names=control_names, extractor=extractor)
