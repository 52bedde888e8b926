"""The take-list seam: the cards of the session's takes and what a musician does with a take."""

from __future__ import annotations

import random
import time
from pathlib import Path

from PyQt6.QtWidgets import QFileDialog, QWidget

from backline.engines.core.audio import read_audio
from backline.engines.core.errors import BacklineError
from backline.host.controllers.base import Controller
from backline.host.history import SessionStore, TakeRecord
from backline.host.player import mix_against
from backline.host.takecard import TakeCard

#: the take list shows the newest this many takes (the session's history keeps them all)
MAX_CARDS = 40


class TakeListController(Controller):
    """Fills the take list from the session's history (`SessionStore`) and new takes, and plays, recalls,
    regenerates, re-renders and exports them."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.cards: dict[str, TakeCard] = {}
        self.selected_take: str | None = None

    # -- the list -----------------------------------------------------------------------------------------
    def load_history(self) -> None:
        w = self.window
        for record in w.store.takes[-MAX_CARDS:]:
            self.add_card(record)
        w.session_label.setText(f"session: {w.store.root}")
        self.update_take_count()

    def insert_card(self, card: QWidget) -> None:
        w = self.window
        w.takes_hint.hide()
        w.takes_layout.insertWidget(0, card)
        w.takes_scroll.verticalScrollBar().setValue(0)

    def add_card(self, record: TakeRecord) -> TakeCard:
        card = TakeCard(record, self.window.store)
        card.playRequested.connect(self.play_take)
        card.recallRequested.connect(self.recall_take)
        card.regenerateRequested.connect(self.regenerate_take)
        card.rerenderRequested.connect(self.choose_rerender)
        card.previewMidiRequested.connect(self.preview_take_midi)
        card.selected.connect(self.select_take)
        card.message.connect(self.show_message)
        card.dragStarted.connect(lambda mime: self.status(
            f"Drop {Path(mime.urls()[0].toLocalFile()).name} on a DAW track", 5000))
        self.cards[record.id] = card
        self.insert_card(card)
        while len(self.cards) > MAX_CARDS:  # the history keeps all; the list shows the newest
            oldest = next(iter(self.cards))
            self.cards.pop(oldest).deleteLater()
        return card

    def add_take(self, record: TakeRecord) -> TakeRecord:
        try:
            self.window.store.add(record)
        except BacklineError as err:  # e.g. disk full: keep the take on screen, say the history is behind
            self.show_message("error", f"{record.label} is on screen but could not be saved to the history: {err}")
        self.add_card(record)
        self.update_take_count()
        self.window.takeAdded.emit(record)
        return record

    def update_take_count(self) -> None:
        ok = sum(t.status == "ok" for t in self.window.store.takes)
        self.window.take_count.setText(f"{ok} take{'s' if ok != 1 else ''}" if ok else "")

    def switch_session(self, folder: str) -> None:
        store = SessionStore(folder)
        try:
            store.load()
        except BacklineError as err:
            self.show_message("error", str(err))
            return
        self.window.store = store
        for card in self.cards.values():
            card.deleteLater()
        self.cards.clear()
        self.window.takes_hint.show()
        self.load_history()

    def select_take(self, take_id: str) -> None:
        self.selected_take = take_id
        for tid, card in self.cards.items():
            card.set_selected(tid == take_id)

    # -- listening ----------------------------------------------------------------------------------------
    def play_take(self, take_id: str, with_mix: bool = False) -> None:
        w = self.window
        try:
            take = w.store.get(take_id)
            path = w.store.stem_path(take)
            if path is None:
                raise BacklineError(f"{take.label} has no audio")
            audio = read_audio(path)
            if not with_mix and w.daw.connected:  # in sync with the DAW: it plays the rest of the song
                daw_rate = w.daw.transport.sample_rate  # a file capture's positions are in the file's rate
                start = round(take.start_sample * daw_rate / take.sample_rate)
                w.player.play_synced(w.daw.transport, audio, start, take_id)
                self.select_take(take_id)
                self.status(f"{take.label} follows the DAW: play bars {take.bars[0]}–"
                            f"{take.bars[1]} there to hear it in place", 6000)
                return
            if with_mix:
                if w.capture.empty:
                    raise BacklineError("there is no captured mix to play against",
                                        fix="load or capture the mix first, or use Play")
                if w.capture.live:  # read exactly the take's bars from the capture, not the display copy
                    stop = take.start_sample + round(audio.frames * take.sample_rate / audio.sample_rate)
                    under = w.capture.extractor(take.start_sample, stop).audio
                    audio = mix_against(audio, take.start_sample, under, take.start_sample)
                else:
                    audio = mix_against(audio, take.start_sample, w.capture.audio, w.capture.origin)
            w.player.play(audio, take_id)
        except BacklineError as err:
            self.show_message("error", str(err))
            return
        self.select_take(take_id)
        self.status(f"Playing {take.label}" + (" with the mix" if with_mix else ""), 4000)

    def preview_take_midi(self, take_id: str) -> None:
        """Play a bass take's MIDI file (what the MIDI chip drags out, edits included) in the take's sound."""
        w = self.window
        try:
            take = w.store.get(take_id)
            midi = w.store.absolute(take.midi)
            if midi is None or not Path(midi).is_file():
                raise BacklineError(f"{take.label} has no MIDI file to preview")
            # lazy: the bass package pulls torch; keeps the host's first paint light
            from backline.engines.bass.common import ALL_CONTROLS
            from backline.engines.bass.reference import preview_midi

            sound = take.controls.get("sound") or next(c.default for c in ALL_CONTROLS if c.name == "sound")
            audio = preview_midi(midi, reference=take.reference, preset=take.preset, sound=sound)
            w.player.play(audio, f"midi:{take_id}")
            self.status(f"Previewing the MIDI of {take.label} in its sound", 4000)
        except BacklineError as err:
            self.show_message("error", str(err))

    def toggle_play_selected(self, with_mix: bool = False) -> None:
        if self.window.player.playing:
            self.window.player.stop()
        elif self.selected_take:
            self.play_take(self.selected_take, with_mix)

    def audition_preset(self, preset) -> None:
        try:
            audio = read_audio(preset.reference)
            audio = audio.slice(0, min(audio.frames, audio.sample_rate * 8))
            self.window.player.play(audio, f"preset:{preset.name}")
            self.status(f"Auditioning preset {preset.name}", 4000)
        except BacklineError as err:
            self.show_message("error", str(err))

    # -- again, differently -------------------------------------------------------------------------------
    def _take(self, take_id: str) -> TakeRecord | None:
        """The take from the session's history, or None with the reason shown (it may have been deleted)."""
        try:
            return self.window.store.get(take_id)
        except BacklineError as err:
            self.show_message("error", str(err))
            return None

    def recall_take(self, take_id: str) -> None:
        w = self.window
        take = self._take(take_id)
        if take is None:
            return
        panel = w.panels.get(take.engine)
        if panel is None or not panel.ready:
            self.show_message("warning", f"The {take.engine} engine is not available to recall this take.")
            return
        w.job_control.show_engine(take.engine)
        panel.set_values({"controls": take.controls, "preset": take.preset, "reference": take.reference})
        w.seed.setValue(take.seed)
        w.variations.setValue(max(1, take.variations))
        if not w.capture.empty and take.bars[1] <= w.capture.last_bar():
            w.capture_control.select_bars(*take.bars)
        self.show_message("info", f"Recalled the settings of {take.label} (seed {take.seed}).")

    def regenerate_take(self, take_id: str) -> str | None:
        """Same engine, settings and bars as the take, with a new seed."""
        w = self.window
        take = self._take(take_id)
        if take is None:
            return None
        if take.engine not in w.panels:
            self.show_message("error", f"engine {take.engine!r} is not available")
            return None
        new_seed = random.randrange(1, 100000)
        while new_seed == take.seed:
            new_seed = random.randrange(1, 100000)
        values = {"controls": take.controls, "preset": take.preset, "reference": take.reference}
        return w.job_control.generate(engine=take.engine, values=values, seed=new_seed, variations=1,
                                      bars=take.bars)

    def rerender_take(self, take_id: str, midi: str | Path | None = None) -> str | None:
        """Play a take's (edited) MIDI again in the take's sound: same engine, preset, bars and seed, the line
        from `midi` (default: the take's own MIDI file) instead of a newly planned one."""
        w = self.window
        take = self._take(take_id)
        if take is None:
            return None
        panel = w.panels.get(take.engine)
        if panel is None or not panel.ready or "midi_in" not in {c.name for c in panel.description.controls}:
            self.show_message("warning", f"The {take.engine} engine cannot play a MIDI line.")
            return None
        source = Path(midi) if midi else w.store.absolute(take.midi)
        if source is None or not Path(source).is_file():
            self.show_message("error", f"No MIDI file to re-render from ({source or 'the take has none'})")
            return None
        controls = dict(take.controls) | {"midi_in": str(source)}
        values = {"controls": controls, "preset": take.preset, "reference": take.reference}
        return w.job_control.generate(engine=take.engine, values=values, seed=take.seed, variations=1,
                                      bars=take.bars)

    def choose_rerender(self, take_id: str) -> None:
        take = self.window.store.get(take_id)
        start = self.window.store.absolute(take.midi)
        path, _ = QFileDialog.getOpenFileName(self.window, "Re-render the take from this MIDI (edited in the DAW)",
                                              str(start.parent if start else Path.home()), "MIDI (*.mid *.midi)")
        if path:
            self.rerender_take(take_id, path)

    def regenerate_selected(self) -> None:
        if self.selected_take:
            self.regenerate_take(self.selected_take)

    # -- export -------------------------------------------------------------------------------------------
    def choose_export(self) -> None:
        store = self.window.store
        parent = QFileDialog.getExistingDirectory(self.window, "Export takes into…", str(store.root))
        if parent:
            self.export_takes(Path(parent) / f"Backline takes {time.strftime('%Y-%m-%d %H%M%S')}")

    def export_takes(self, dest: Path) -> Path | None:
        store = self.window.store
        try:
            out = store.export(store.takes, dest)
        except BacklineError as err:
            self.show_message("error", str(err))
            return None
        self.show_message("info", f"Exported {sum(t.status == 'ok' for t in store.takes)} takes to {out}")
        return out
