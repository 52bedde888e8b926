"""Custom-painted widgets: the capture timeline, take waveforms, piano roll, level meter, drag chips, style well
and the message bar.

Waveforms are drawn from a peak summary computed once per audio buffer (max |x| over blocks of
`PEAK_BLOCK` frames), so repainting a ten-minute capture at any width costs a few thousand numbers, not
millions of samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QMimeData, QPoint, QRectF, Qt, QTimer, QUrl, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QDrag, QFont, QLinearGradient, QPainter, QPen
from PyQt6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from backline.engines.core.audio import READ_EXTENSIONS, Audio, audio_info
from backline.engines.core.errors import BacklineError
from backline.engines.core.timeline import Timeline
from backline.host import theme

PEAK_BLOCK = 256


def peak_summary(audio: Audio, block: int = PEAK_BLOCK) -> np.ndarray:
    """Max |sample| over all channels per block of frames."""
    mono = np.abs(audio.samples).max(axis=0) if audio.frames else np.zeros(0, np.float32)
    pad = (-len(mono)) % block
    if pad:
        mono = np.concatenate([mono, np.zeros(pad, np.float32)])
    return mono.reshape(-1, block).max(axis=1) if len(mono) else mono


def columns(peaks: np.ndarray, first_block: float, last_block: float, width: int) -> np.ndarray:
    """Peaks resampled to `width` pixel columns covering blocks [first, last)."""
    if width <= 0 or len(peaks) == 0 or last_block <= first_block:
        return np.zeros(max(width, 0), np.float32)
    edges = np.linspace(first_block, last_block, width + 1)
    idx = np.clip(edges[:-1].astype(int), 0, len(peaks) - 1)
    stop = np.clip(np.maximum(edges[1:].astype(int), idx + 1), 1, len(peaks))
    out = np.maximum.reduceat(peaks, idx) if len(idx) else np.zeros(0)
    # reduceat runs to the next index (the last one to the end of the data): exact where columns are
    # adjacent and span several blocks; a single block where zoomed in; the last column on its own
    out = np.where(stop - idx <= 1, peaks[idx], out)
    out[-1] = peaks[idx[-1]:max(stop[-1], idx[-1] + 1)].max()
    out[(edges[:-1] < 0) | (edges[:-1] >= len(peaks))] = 0.0
    return out.astype(np.float32)


def paint_wave(painter: QPainter, rect: QRectF, cols: np.ndarray, colour: QColor) -> None:
    """Symmetric peak waveform, with a soft scale so quiet passages stay visible."""
    mid = rect.center().y()
    half = rect.height() / 2 - 1
    scaled = np.sqrt(np.clip(cols, 0, 1))  # perceptual-ish: -12 dBFS shows at half height
    painter.setPen(QPen(colour, 1))
    x0 = rect.left()
    for i, v in enumerate(scaled):
        h = max(0.5, float(v) * half)
        painter.drawLine(int(x0 + i), int(mid - h), int(x0 + i), int(mid + h))


class CaptureView(QWidget):
    """The captured mix on a bar grid; drag across it to select whole bars.

    Positions are DAW samples: `origin` is the DAW position of the first captured frame.
    """

    selectionChanged = pyqtSignal(int, int)  # first bar, last bar (inclusive)
    fileDropped = pyqtSignal(str)
    RULER = 20
    #: a capture longer than this many bars opens on its newest AUTO_BARS bars (a 10-minute live history
    #: would otherwise give each bar a few pixels); Ctrl+wheel zooms, the wheel scrolls
    FIT_ALL_BARS = 48
    AUTO_BARS = 32

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.IBeamCursor)
        self.audio: Audio | None = None
        self.origin = 0
        self.timeline: Timeline | None = None
        self.peaks = np.zeros(0, np.float32)
        self.selection: tuple[int, int] | None = None
        self.playhead: int | None = None
        self._anchor: int | None = None
        self.view_range: tuple[float, float] | None = None  # the musician's zoom (DAW samples); None = automatic
        self.setToolTip("Drag across bars to select them · wheel: scroll · Ctrl+wheel: zoom")
        self.empty_text = ("No audio captured yet\n\nPress play in your DAW, or drop an audio file here "
                           "(File ▸ Load audio as capture, Ctrl+O)")

    # -- data ---------------------------------------------------------------------------------------------
    def set_capture(self, audio: Audio | None, origin: int, timeline: Timeline | None,
                    peaks: np.ndarray | None = None) -> None:
        """Show `audio` from DAW sample `origin`; pass `peaks` when they were computed off the UI thread."""
        self.audio, self.origin, self.timeline = audio, int(origin), timeline
        if peaks is None:
            peaks = peak_summary(audio) if audio is not None else np.zeros(0, np.float32)
        self.peaks = peaks
        self.update()

    def set_timeline(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.update()

    def reset_view(self) -> None:
        """Back to the automatic view (a new capture source)."""
        self.view_range = None
        self.update()

    def reveal(self, first: int, last: int) -> None:
        """Scroll (and zoom out if needed) so bars first..last are on screen."""
        if self.audio is None or self.timeline is None:
            return
        a, b = self.timeline.bar_range_to_samples(first, last)
        start, stop = self._span()
        if start <= a and b <= stop:
            return
        width = max(stop - start, (b - a) * 1.25)
        centre = (a + b) / 2
        self.view_range = (centre - width / 2, centre + width / 2)

    def set_selection(self, first: int, last: int, emit: bool = True) -> None:
        first, last = sorted((int(first), int(last)))
        first = max(first, 1)
        last = max(last, first)
        if self.selection != (first, last):
            self.selection = (first, last)
            if self._anchor is None:  # set from outside (DAW region, bar fields, recall): show it
                self.reveal(first, last)
            self.update()
            if emit:
                self.selectionChanged.emit(first, last)

    def set_playhead(self, position: int | None) -> None:
        self.playhead = position
        self.update()

    # -- geometry -----------------------------------------------------------------------------------------
    def _full(self) -> tuple[int, int]:
        if self.audio is None:
            return self.origin, self.origin + 1
        return self.origin, self.origin + max(self.audio.frames, 1)

    def _span(self) -> tuple[int, int]:
        """The DAW samples on screen: the musician's zoom, all of a short capture, or the newest bars."""
        full = self._full()
        if self.view_range is not None:
            start, stop = self.view_range
            width = min(stop - start, full[1] - full[0])
            start = min(max(start, full[0]), full[1] - width)
            return int(start), int(start + width)
        tl = self.timeline
        if self.audio is None or tl is None or tl.bars_in(full[1]) - tl.bars_in(max(full[0], 0)) <= self.FIT_ALL_BARS:
            return full
        first = max(1, math.floor(tl.samples_to_bar(full[1])) - self.AUTO_BARS)
        return max(full[0], tl.bar_to_samples(first)), full[1]

    def wheelEvent(self, event) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()
        if not delta or self.audio is None or self.timeline is None:
            return
        start, stop = self._span()
        full = self._full()
        width = stop - start
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            anchor = self.x_to_sample(event.position().x())
            one_bar = self.timeline.bar_to_samples(2)
            new_width = min(max(width * 0.8 ** (delta / 120), one_bar), full[1] - full[0])
            new_start = anchor - (anchor - start) * new_width / max(width, 1)
        else:
            new_width, new_start = width, start - width * 0.1 * delta / 120
        new_start = min(max(new_start, full[0]), full[1] - new_width)
        self.view_range = (new_start, new_start + new_width)
        self.update()
        event.accept()

    def _wave_rect(self) -> QRectF:
        return QRectF(8, self.RULER + 4, self.width() - 16, self.height() - self.RULER - 12)

    def sample_to_x(self, sample: float) -> float:
        start, stop = self._span()
        rect = self._wave_rect()
        return rect.left() + (sample - start) / (stop - start) * rect.width()

    def x_to_sample(self, x: float) -> float:
        start, stop = self._span()
        rect = self._wave_rect()
        return start + (x - rect.left()) / max(rect.width(), 1) * (stop - start)

    def bar_at(self, x: float) -> int | None:
        if self.audio is None or self.timeline is None:
            return None
        start, stop = self._span()
        sample = min(max(self.x_to_sample(x), start), stop - 1)
        return max(1, int(math.floor(self.timeline.samples_to_bar(max(sample, 0)) + 1e-9)))

    def bar_x(self, bar: int) -> float:
        return self.sample_to_x(self.timeline.bar_to_samples(bar))

    def bars_visible(self) -> tuple[int, int]:
        """(first, last) whole bars that start inside the capture."""
        start, stop = self._span()
        first = max(1, math.ceil(self.timeline.samples_to_bar(max(start, 0)) - 1e-6))
        last = max(first, int(math.floor(self.timeline.samples_to_bar(stop) + 1e-6)) - 1)
        return first, last

    # -- painting -----------------------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.fillRect(self.rect(), QColor(theme.INSET))
        rect = self._wave_rect()
        if self.audio is None or self.timeline is None:
            p.setPen(QColor(theme.TEXT_DIM))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.empty_text)
            p.end()
            return
        start, stop = self._span()
        first_bar, last_bar = self.bars_visible()
        px_per_bar = rect.width() / max(self.timeline.bars_in(stop) - self.timeline.bars_in(max(start, 0)), 1e-9)
        label_every = max(1, 2 ** math.ceil(math.log2(max(1.0, 36.0 / max(px_per_bar, 1e-3)))))
        # selection
        if self.selection:
            a, b = self.selection
            x0, x1 = self.bar_x(a), self.bar_x(b + 1)
            p.fillRect(QRectF(x0, 0, x1 - x0, self.height()), QColor(242, 163, 58, 38))
        # beat and bar grid
        beats = self.timeline.numerator
        for bar in range(first_bar, last_bar + 2):
            x = self.bar_x(bar)
            if px_per_bar / beats > 6:
                p.setPen(QColor(theme.GRID_BEAT))
                for beat in range(1, beats):
                    xb = self.sample_to_x(self.timeline.bar_to_samples(bar + beat / beats))
                    p.drawLine(int(xb), int(rect.top()), int(xb), int(rect.bottom()))
            p.setPen(QColor(theme.GRID_BAR))
            p.drawLine(int(x), self.RULER, int(x), int(rect.bottom()))
            if (bar - 1) % label_every == 0:
                p.setPen(QColor(theme.TEXT_DIM))
                p.drawText(QRectF(x + 3, 2, 40, self.RULER - 4), Qt.AlignmentFlag.AlignVCenter, str(bar))
        # waveform
        first_block = (start - self.origin) / PEAK_BLOCK
        last_block = (stop - self.origin) / PEAK_BLOCK
        cols = columns(self.peaks, first_block, last_block, int(rect.width()))
        p.setClipRect(rect)
        paint_wave(p, rect, cols, QColor(theme.WAVE))
        if self.selection:  # brighter wave inside the selection
            a, b = self.selection
            x0, x1 = self.bar_x(a), self.bar_x(b + 1)
            p.setClipRect(QRectF(x0, rect.top(), x1 - x0, rect.height()).intersected(rect))
            paint_wave(p, rect, cols, QColor("#9fdcf5"))
        p.setClipping(False)
        if self.selection:
            a, b = self.selection
            x0, x1 = self.bar_x(a), self.bar_x(b + 1)
            p.setPen(QPen(QColor(theme.ACCENT), 2))
            p.drawLine(int(x0), 0, int(x0), self.height())
            p.drawLine(int(x1), 0, int(x1), self.height())
            p.fillRect(QRectF(x0, 0, x1 - x0, 3), QColor(theme.ACCENT))
            text = f"Bars {a}–{b}" if b > a else f"Bar {a}"
            secs = self.timeline.samples_to_seconds(self.timeline.bar_to_samples(b + 1) - self.timeline.bar_to_samples(a))
            font = QFont(p.font())
            font.setBold(True)
            p.setFont(font)
            label = f"{text}  ·  {secs:.1f} s"
            w = p.fontMetrics().horizontalAdvance(label) + 14
            lx = min(max(x0 + 4, rect.left()), rect.right() - w)
            p.fillRect(QRectF(lx, rect.bottom() - 22, w, 20), QColor(theme.ACCENT))
            p.setPen(QColor("#1a1308"))
            p.drawText(QRectF(lx, rect.bottom() - 22, w, 20), Qt.AlignmentFlag.AlignCenter, label)
        if self.playhead is not None and start <= self.playhead < stop:
            x = self.sample_to_x(self.playhead)
            p.setPen(QPen(QColor(theme.TEXT), 1))
            p.drawLine(int(x), 0, int(x), self.height())
        p.end()

    # -- mouse: select whole bars -------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        bar = self.bar_at(event.position().x())
        if bar is not None and event.button() == Qt.MouseButton.LeftButton:
            self._anchor = bar
            self.set_selection(bar, bar, emit=False)

    def mouseMoveEvent(self, event) -> None:
        bar = self.bar_at(event.position().x())
        if self._anchor is not None and bar is not None and event.buttons() & Qt.MouseButton.LeftButton:
            self.set_selection(self._anchor, bar, emit=False)

    def mouseReleaseEvent(self, event) -> None:
        bar = self.bar_at(event.position().x())
        if self._anchor is not None and bar is not None:
            anchor, self._anchor = self._anchor, None
            first, last = sorted((anchor, bar))
            self.selection = None  # force the emit even if the drag already showed this range
            self.set_selection(first, last)

    # -- drop an audio file to use it as the capture ------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.fileDropped.emit(url.toLocalFile())
                event.acceptProposedAction()
                return


class WaveStrip(QWidget):
    """A take's waveform (read once), optionally with the bar grid of the region it covers."""

    def __init__(self, audio: Audio | None, colour: QColor, timeline: Timeline | None = None, start_sample: int = 0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(46)
        self.colour = colour
        self.timeline = timeline
        self.start_sample = start_sample
        self.frames = audio.frames if audio is not None else 0
        self.sample_rate = audio.sample_rate if audio is not None else 1
        self.peaks = peak_summary(audio) if audio is not None else np.zeros(0, np.float32)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(theme.INSET))
        rect = QRectF(2, 2, self.width() - 4, self.height() - 4)
        if self.timeline is not None and self.frames:
            tl = self.timeline
            secs = self.frames / self.sample_rate
            start = tl.samples_to_bar(self.start_sample)
            stop = tl.samples_to_bar(self.start_sample + secs * tl.sample_rate)
            p.setPen(QColor(theme.GRID_BAR))
            for bar in range(math.ceil(start), int(stop) + 1):
                x = rect.left() + (bar - start) / max(stop - start, 1e-9) * rect.width()
                p.drawLine(int(x), 0, int(x), self.height())
        paint_wave(p, rect, columns(self.peaks, 0, self.frames / PEAK_BLOCK, int(rect.width())), self.colour)
        p.end()


def read_midi_notes(path: str | Path) -> tuple[list[tuple[float, float, int, int]], float]:
    """[(start_s, end_s, pitch, velocity)], length_s — with mido, honouring tempo changes."""
    import mido

    notes: list[tuple[float, float, int, int]] = []
    open_notes: dict[tuple[int, int], tuple[float, int]] = {}
    now = 0.0
    for msg in mido.MidiFile(str(path)):  # iterating a MidiFile yields messages with delta seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[(msg.channel, msg.note)] = (now, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            start = open_notes.pop((msg.channel, msg.note), None)
            if start is not None:
                notes.append((start[0], max(now, start[0] + 0.01), msg.note, start[1]))
    for (_, pitch), (start, vel) in open_notes.items():
        notes.append((start, max(now, start + 0.1), pitch, vel))
    return notes, now


class PianoRoll(QWidget):
    """Notes of a take's MIDI over time; velocity shows as brightness."""

    def __init__(self, notes: list[tuple[float, float, int, int]], seconds: float, colour: QColor,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(52)
        self.notes, self.seconds, self.colour = notes, max(seconds, 1e-3), colour

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(theme.INSET))
        if not self.notes:
            p.setPen(QColor(theme.TEXT_DIM))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no notes")
            p.end()
            return
        lo = min(n[2] for n in self.notes) - 1
        hi = max(n[2] for n in self.notes) + 1
        rows = hi - lo + 1
        h = (self.height() - 4) / rows
        w = self.width() - 4
        for octave_c in range(lo - lo % 12, hi + 1, 12):  # faint line at every C
            if lo <= octave_c <= hi:
                y = 2 + (hi - octave_c) * h
                p.fillRect(QRectF(2, y, w, max(h, 1)), QColor(theme.GRID_BEAT))
        for start, end, pitch, vel in self.notes:
            colour = QColor(self.colour)
            colour.setAlphaF(0.45 + 0.55 * vel / 127)
            x0 = 2 + start / self.seconds * w
            x1 = 2 + end / self.seconds * w
            p.fillRect(QRectF(x0, 2 + (hi - pitch) * h, max(x1 - x0, 2), max(h - 1, 1.5)), colour)
        p.end()


#: GM drum keys grouped into the lanes a drummer reads (top to bottom as on a drum chart).
DRUM_LANES: tuple[tuple[str, frozenset[int]], ...] = (
    ("cymbals", frozenset({49, 51, 52, 53, 55, 57, 59})),
    ("hats", frozenset({42, 44, 46})),
    ("toms", frozenset({41, 43, 45, 47, 48, 50})),
    ("snare", frozenset({37, 38, 39, 40})),
    ("kick", frozenset({35, 36})),
)


def drum_lane(pitch: int) -> int | None:
    """Index into DRUM_LANES for a GM drum key, or None (other percussion)."""
    return next((i for i, (_, keys) in enumerate(DRUM_LANES) if pitch in keys), None)


class DrumLanes(QWidget):
    """A drum take as lanes (cymbals, hats, toms, snare, kick) with one tick per hit; velocity shows as height
    and brightness. Bar lines come from the timeline when given."""

    def __init__(self, notes: list[tuple[float, float, int, int]], seconds: float, colour: QColor,
                 timeline=None, start_sample: int = 0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(84)
        self.hits = [(start, drum_lane(pitch), vel) for start, _end, pitch, vel in notes if drum_lane(pitch) is not None]
        self.seconds, self.colour = max(seconds, 1e-3), colour
        self.timeline, self.start_sample = timeline, start_sample

    def lane_counts(self) -> dict[str, int]:
        return {name: sum(1 for _, lane, _ in self.hits if lane == i) for i, (name, _) in enumerate(DRUM_LANES)}

    def paintEvent(self, _event) -> None:
        """Full width, so bar lines and hits line up with the take's waveform above; lane names sit on top."""
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(theme.INSET))
        n = len(DRUM_LANES)
        h = (self.height() - 4) / n
        x0, w = 2, self.width() - 4
        for i in range(1, n, 2):
            p.fillRect(QRectF(x0, 2 + i * h, w, h), QColor(theme.GRID_BEAT))
        if self.timeline is not None:  # bar lines
            rate = self.timeline.sample_rate
            p.setPen(QColor(theme.GRID_BAR))
            for sample in _bar_starts(self.timeline, self.start_sample, self.seconds):
                x = x0 + (sample - self.start_sample) / rate / self.seconds * w
                p.drawLine(int(x), 2, int(x), self.height() - 2)
        if not self.hits:
            p.setPen(QColor(theme.TEXT_DIM))
            p.drawText(QRectF(x0, 0, w, self.height()), Qt.AlignmentFlag.AlignCenter, "no drum hits")
        for start, lane, vel in self.hits:
            colour = QColor(self.colour)
            colour.setAlphaF(0.4 + 0.6 * vel / 127)
            x = x0 + start / self.seconds * w
            tick = max(h * (0.35 + 0.6 * vel / 127), 2)
            p.fillRect(QRectF(x, 2 + lane * h + (h - tick) / 2, 2, tick), colour)
        font = p.font()
        font.setPointSizeF(max(font.pointSizeF() - 2, 6.5))
        p.setFont(font)
        label_bg = QColor(theme.INSET)
        label_bg.setAlphaF(0.75)
        for i, (name, _) in enumerate(DRUM_LANES):
            box = QRectF(4, 2 + i * h, p.fontMetrics().horizontalAdvance(name) + 6, h)
            p.fillRect(box, label_bg)
            p.setPen(QColor(theme.TEXT_DIM))
            p.drawText(box.adjusted(3, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, name)
        p.end()


def _bar_starts(timeline, start_sample: int, seconds: float) -> list[int]:
    """DAW sample positions of the bar lines inside [start_sample, start_sample + seconds)."""
    stop = start_sample + int(seconds * timeline.sample_rate)
    bar = math.ceil(timeline.samples_to_bar(start_sample) - 1e-9)
    out = []
    while len(out) < 2000 and (sample := timeline.bar_to_samples(bar)) < stop:
        out.append(sample)
        bar += 1
    return out


class LevelMeter(QWidget):
    """Input level in dBFS with a decaying peak hold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(10)
        self.setMinimumWidth(120)
        self.level_db = -90.0
        self.hold_db = -90.0

    def set_level(self, peak: float) -> None:
        db = 20 * math.log10(max(peak, 1e-5))
        self.level_db = db
        self.hold_db = max(db, self.hold_db - 1.5)
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(theme.INSET))
        frac = min(max((self.level_db + 60) / 60, 0), 1)
        grad = QLinearGradient(0, 0, self.width(), 0)
        grad.setColorAt(0.0, QColor(theme.OK))
        grad.setColorAt(0.75, QColor(theme.WARN))
        grad.setColorAt(1.0, QColor(theme.ERROR))
        p.fillRect(QRectF(0, 1, self.width() * frac, self.height() - 2), QBrush(grad))
        hold = min(max((self.hold_db + 60) / 60, 0), 1)
        if hold > 0:
            p.fillRect(QRectF(self.width() * hold - 2, 0, 2, self.height()), QColor(theme.TEXT))
        p.end()


class DragChip(QLabel):
    """A 'WAV' or 'MIDI' chip the musician drags onto a DAW track.

    `provider()` writes the file (if it is not there yet) and returns its path *before* the drag starts, so
    the DAW always finds a complete file at the URL it is given.
    """

    dragStarted = pyqtSignal(object)  # QMimeData
    failed = pyqtSignal(str)

    def __init__(self, text: str, provider: Callable[[], Path], parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setObjectName("Chip")
        self.provider = provider
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self.setToolTip(f"Drag onto a DAW track to import the {text.split()[0]} file")
        self._press: QPoint | None = None

    def mime_data(self) -> QMimeData:
        path = Path(self.provider()).resolve()
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        mime.setText(str(path))
        return mime

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position().toPoint()

    def mouseMoveEvent(self, event) -> None:
        if self._press is None or not event.buttons() & Qt.MouseButton.LeftButton:
            return
        if (event.position().toPoint() - self._press).manhattanLength() < QApplication.startDragDistance():
            return
        self._press = None
        self.start_drag()

    def mouseReleaseEvent(self, _event) -> None:
        self._press = None

    def start_drag(self) -> None:
        try:
            mime = self.mime_data()
        except BacklineError as err:
            self.failed.emit(str(err))
            return
        self.dragStarted.emit(mime)
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.setPixmap(self.grab())
        drag.exec(Qt.DropAction.CopyAction)


class StyleWell(QFrame):
    """Drop a reference recording here to steer the style; anything that is not audio is refused clearly."""

    referenceChanged = pyqtSignal(object)  # Path | None
    rejected = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Well")
        self.setAcceptDrops(True)
        self.setMinimumHeight(46)
        self.path: Path | None = None
        self._hover = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("background: transparent;")
        layout.addWidget(self.label, 1)
        self.clear_button = QToolButton()
        self.clear_button.setText("✕")
        self.clear_button.setToolTip("Clear the reference")
        self.clear_button.clicked.connect(lambda: self.set_reference(None))
        layout.addWidget(self.clear_button)
        self.set_reference(None, emit=False)

    def set_reference(self, path: Path | None, emit: bool = True) -> None:
        self.path = path
        if path is None:
            self.label.setText(f"<span style='color:{theme.TEXT_DIM}'>Drop a reference recording here "
                               "to play in its style (WAV, FLAC, MP3, OGG, AIFF)</span>")
        else:
            self.label.setText(f"<b>Style reference</b><br><span style='color:{theme.TEXT_DIM}'>{path.name}</span>")
        self.clear_button.setVisible(path is not None)
        if emit:
            self.referenceChanged.emit(path)

    def offer(self, path: str | Path) -> bool:
        """Validate and take a file; a non-audio file is refused with a message naming it."""
        path = Path(path)
        if path.suffix.lower() not in READ_EXTENSIONS:
            self.rejected.emit(f"{path.name} is not an audio file — drop a recording "
                               f"({', '.join(e.lstrip('.') for e in READ_EXTENSIONS)}) to use as a style reference")
            return False
        try:
            audio_info(path)
        except BacklineError as err:
            self.rejected.emit(f"cannot use {path.name} as a style reference: {err}")
            return False
        self.set_reference(path)
        return True

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(theme.ACCENT if self._hover or self.path else theme.BORDER), 1.5)
        pen.setStyle(Qt.PenStyle.DashLine if self.path is None else Qt.PenStyle.SolidLine)
        p.setPen(pen)
        p.setBrush(QColor(theme.INSET))
        p.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 6, 6)
        p.end()

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            self._hover = True
            self.update()
            event.acceptProposedAction()

    def dragLeaveEvent(self, _event) -> None:
        self._hover = False
        self.update()

    def dropEvent(self, event) -> None:
        self._hover = False
        self.update()
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if not urls:
            self.rejected.emit("only files can be dropped on the style well")
            return
        if self.offer(urls[0].toLocalFile()):
            event.acceptProposedAction()


class MessageBar(QFrame):
    """One visible line for the message that matters now (errors stay until dismissed; info fades)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 4)
        self.icon = QLabel()
        layout.addWidget(self.icon)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.level = ""
        self.hide()

    def show_message(self, level: str, text: str) -> None:
        self.level = level
        self.setProperty("level", level)
        self.icon.setText({"error": "⛔", "warning": "⚠", "info": "ℹ"}.get(level, ""))
        self.label.setText(text)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()
        if level == "info":
            self._timer.start(8000)
        else:
            self._timer.stop()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MidiWell(StyleWell):
    """Drop the band's MIDI here (or anywhere on the panel): the engine plays along to it."""

    def set_reference(self, path: Path | None, emit: bool = True) -> None:
        self.path = path
        if path is None:
            self.label.setText(f"<span style='color:{theme.TEXT_DIM}'>Drop the band's MIDI here (a .mid exported "
                               "from your DAW, starting at bar 1) — or leave it empty to play along to the "
                               "captured audio</span>")
        else:
            self.label.setText(f"<b>Band MIDI</b><br><span style='color:{theme.TEXT_DIM}'>{path.name}</span>")
        self.clear_button.setToolTip("Forget the band MIDI (play along to the captured audio)")
        self.clear_button.setVisible(path is not None)
        if emit:
            self.referenceChanged.emit(path)

    def offer(self, path: str | Path) -> bool:
        import mido

        path = Path(path)
        if path.suffix.lower() not in (".mid", ".midi", ".smf"):
            self.rejected.emit(f"{path.name} is not a MIDI file — drop the band's .mid here")
            return False
        try:
            mido.MidiFile(str(path))
        except (OSError, ValueError, EOFError) as err:
            self.rejected.emit(f"cannot use {path.name} as the band's MIDI: it cannot be read ({err})")
            return False
        self.set_reference(path)
        return True

