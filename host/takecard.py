"""Take cards: one per generated take (and one per job while it runs or after it failed).

A finished card shows the waveform, a piano roll when there is MIDI, the seed and the fit score, and offers
audition (alone or soloed against the captured mix), drag chips for WAV and MIDI, recall and regenerate.
A pending card shows the job's progress and a Cancel button; a failed card says what went wrong and offers
Regenerate — no take is ever silently dropped.
"""

from __future__ import annotations

import time

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.errors import BacklineError
from backline.host import theme
from backline.host.history import SessionStore, TakeRecord
from backline.host.widgets import DragChip, DrumLanes, PianoRoll, WaveStrip, read_midi_notes


def fit_words(fit: float) -> str:
    """The fit score in a musician's words. The matching model is calibrated so that 0.5 separates a part's own
    stem from another song's stem (own stems score ~0.9, other songs' ~0.12 on held-out songs)."""
    if fit >= 0.75:
        return "locks to the band like its own part"
    if fit >= 0.5:
        return "fits the band"
    if fit >= 0.25:
        return "fits loosely — listen with the mix, or try a new seed"
    return "does not lock to the band — try a new seed"


def _badge(text: str, name: str = "Badge") -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    return label


class PendingCard(QFrame):
    """A job in flight: progress and Cancel."""

    cancelRequested = pyqtSignal(str)

    def __init__(self, job_id: str, title: str, bars: tuple[int, int], seed: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.setObjectName("Card")
        self.setProperty("status", "pending")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        top = QHBoxLayout()
        head = QLabel(f"<b>{title}</b> &nbsp;<span style='color:{theme.TEXT_DIM}'>bars {bars[0]}–{bars[1]}</span>")
        top.addWidget(head, 1)
        top.addWidget(_badge(f"seed {seed}"))
        layout.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFormat("Waiting for the engine…")
        layout.addWidget(self.bar)
        row = QHBoxLayout()
        self.status = QLabel("queued")
        self.status.setObjectName("Dim")
        row.addWidget(self.status, 1)
        self.cancel = QPushButton("Cancel")
        self.cancel.setObjectName("Danger")
        self.cancel.clicked.connect(lambda: self.cancelRequested.emit(self.job_id))
        row.addWidget(self.cancel)
        layout.addLayout(row)
        self.started = time.monotonic()

    def set_progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(int(fraction * 1000))
        self.bar.setFormat(f"{fraction * 100:.0f} %")
        self.status.setText(message or "working…")

    def set_cancelling(self) -> None:
        self.cancel.setEnabled(False)
        self.status.setText("cancelling…")


class TakeCard(QFrame):
    """A finished (or failed) take from the history."""

    playRequested = pyqtSignal(str, bool)  # take id, with the mix
    recallRequested = pyqtSignal(str)
    regenerateRequested = pyqtSignal(str)
    rerenderRequested = pyqtSignal(str)  # take id: play its (edited) MIDI again in its sound
    previewMidiRequested = pyqtSignal(str)  # take id: hear its MIDI file in the take's (reference's) sound
    selected = pyqtSignal(str)
    message = pyqtSignal(str, str)
    dragStarted = pyqtSignal(object)  # QMimeData

    def __init__(self, take: TakeRecord, store: SessionStore) -> None:
        super().__init__()
        self.take = take
        self.store = store
        self.chips: dict[str, DragChip] = {}
        self.setObjectName("Card")
        self.setProperty("status", take.status)
        colour = theme.engine_colour(take.engine)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        top = QHBoxLayout()
        dot = QLabel("●")
        dot.setStyleSheet(f"color: {colour.name()}; font-size: 12pt;")
        top.addWidget(dot)
        head = QLabel(f"<b>{take.label}</b> &nbsp;<span style='color:{theme.TEXT_DIM}'>bars {take.bars[0]}–"
                      f"{take.bars[1]} · {time.strftime('%H:%M', time.localtime(take.created))}</span>")
        top.addWidget(head, 1)
        if take.fit is not None:
            fit = _badge(f"fit {take.fit:.0%}" if take.fit <= 1 else f"fit {take.fit:.2f}", "Fit")
            fit.setToolTip(f"{fit_words(take.fit)} (how well this take sits with the captured mix: "
                           "50 % is the line between a part written for this band and one from another song)"
                           if take.fit <= 1 else "how well this take fits the captured mix")
            top.addWidget(fit)
        elif take.report.get("fit_unavailable"):
            fit = _badge("fit n/a")
            fit.setToolTip(f"no fit score: {take.report['fit_unavailable']}")
            top.addWidget(fit)
        seed = _badge(f"seed {take.seed}")
        seed.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(seed)
        layout.addLayout(top)
        notes = []
        if take.fit is not None and take.fit <= 1:
            notes.append(f"fit {take.fit:.0%}: {fit_words(take.fit)}")
        notes += [f"⚠ {w}" for w in take.report.get("warnings", [])[:2]]
        if notes and take.status == "ok":
            self.notes = QLabel("\n".join(notes))
            self.notes.setObjectName("Dim")
            self.notes.setWordWrap(True)
            layout.addWidget(self.notes)
        if take.status != "ok":
            self._build_error(layout)
        else:
            self._build_take(layout, colour)

    def _build_error(self, layout: QVBoxLayout) -> None:
        text = QLabel(f"⛔ {self.take.error}")
        text.setObjectName("Error")
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(text)
        row = QHBoxLayout()
        row.addStretch(1)
        again = QPushButton("⟳ Regenerate")
        again.clicked.connect(lambda: self.regenerateRequested.emit(self.take.id))
        row.addWidget(again)
        recall = QPushButton("Recall settings")
        recall.clicked.connect(lambda: self.recallRequested.emit(self.take.id))
        row.addWidget(recall)
        layout.addLayout(row)

    def _build_take(self, layout: QVBoxLayout, colour) -> None:
        take, store = self.take, self.store
        timeline = take.timeline()
        audio = None
        parts = []
        for rel in take.stems.values():  # several stems (accompaniment) show as their sum
            try:
                parts.append(read_audio(store.absolute(rel)).with_channels(2))
            except BacklineError as err:
                self._missing(layout, str(err))
        if parts:
            frames = max(p.frames for p in parts)
            audio = Audio(sum(p.slice(0, frames).samples for p in parts), parts[0].sample_rate)
        if audio is not None:
            layout.addWidget(WaveStrip(audio, colour, timeline, take.start_sample))
        midi = store.absolute(take.midi)
        if midi is not None:
            try:
                notes, seconds = read_midi_notes(midi)
                if audio is not None:
                    seconds = max(seconds, audio.seconds)
                if take.engine == "drums":
                    layout.addWidget(DrumLanes(notes, seconds, colour, timeline, take.start_sample))
                else:
                    layout.addWidget(PianoRoll(notes, seconds, colour))
            except (OSError, ValueError, EOFError) as err:
                self._missing(layout, f"{midi.name}: MIDI cannot be read ({err})")
        row = QHBoxLayout()
        row.setSpacing(6)
        self.play = QToolButton()
        self.play.setText("▶ Play")
        self.play.setToolTip("Audition this take (Space): in sync with the DAW's transport when it is connected, "
                             "else on its own")
        self.play.clicked.connect(lambda: self.playRequested.emit(take.id, False))
        row.addWidget(self.play)
        self.solo = QToolButton()
        self.solo.setText("▶ With mix")
        self.solo.setToolTip("Audition this take against the captured mix, in place")
        self.solo.clicked.connect(lambda: self.playRequested.emit(take.id, True))
        row.addWidget(self.solo)
        row.addStretch(1)
        if len(take.stems) == 1:
            self.chips["wav"] = self._chip("WAV ⇲", "wav")
            row.addWidget(self.chips["wav"])
        else:  # several stems (accompaniment): one chip each, named after the part
            for name in take.stems:
                self.chips[f"wav:{name}"] = self._chip(f"{name} ⇲", "wav", name)
                row.addWidget(self.chips[f"wav:{name}"])
        if take.midi:
            self.chips["midi"] = self._chip("MIDI ⇲", "midi")
            row.addWidget(self.chips["midi"])
        recall = QToolButton()
        recall.setText("Recall")
        recall.setToolTip("Put this take's settings back into the panel")
        recall.clicked.connect(lambda: self.recallRequested.emit(take.id))
        row.addWidget(recall)
        again = QToolButton()
        again.setText("⟳ New seed")
        again.setToolTip("Regenerate with these settings and a new seed")
        again.clicked.connect(lambda: self.regenerateRequested.emit(take.id))
        row.addWidget(again)
        if take.midi and take.engine == "bass":
            self.preview_midi = QToolButton()
            self.preview_midi.setText("▶ MIDI")
            self.preview_midi.setToolTip("Hear the MIDI file you drag out (as it is now on disk, edits included) in "
                                         "this take's sound: its reference's, or its preset's")
            self.preview_midi.clicked.connect(lambda: self.previewMidiRequested.emit(take.id))
            row.addWidget(self.preview_midi)
            rerender = QToolButton()
            rerender.setText("♪ From MIDI")
            rerender.setToolTip("Re-render this take from its MIDI after you edited it in the DAW (pick the file)")
            rerender.clicked.connect(lambda: self.rerenderRequested.emit(take.id))
            row.addWidget(rerender)
        layout.addLayout(row)

    def _missing(self, layout: QVBoxLayout, text: str) -> None:
        label = QLabel(f"⚠ {text}")
        label.setObjectName("Error")
        label.setWordWrap(True)
        layout.addWidget(label)

    def _chip(self, text: str, kind: str, stem: str | None = None) -> DragChip:
        chip = DragChip(text, lambda: self.store.drag_file(self.take, kind, stem))
        chip.failed.connect(lambda msg: self.message.emit("error", msg))
        chip.dragStarted.connect(self.dragStarted)
        return chip

    def set_selected(self, on: bool) -> None:
        self.setProperty("selected", "true" if on else "false")
        self.style().unpolish(self)
        self.style().polish(self)

    def mousePressEvent(self, event) -> None:
        self.selected.emit(self.take.id)
        super().mousePressEvent(event)


def empty_takes_hint() -> QWidget:
    label = QLabel("Takes appear here.\n\nSelect some bars above, pick an engine and press Generate (Ctrl+Return).")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setObjectName("Dim")
    label.setWordWrap(True)
    label.setMinimumHeight(120)
    return label
