"""The drums panel as a musician meets it: style presets and feel controls, sampler settings under Advanced, no
command-line fields; the band's MIDI dropped onto the panel; the region from the waveform selection; the drum
instrument from Settings; a drum take shown as lanes; the fit score in words."""

from __future__ import annotations

import re
import threading

import pytest
from PyQt6.QtWidgets import QLabel, QLineEdit
from test_host import WAIT_MS, capture_file, make_window, wait_ready
from test_host_inputs import drop

from backline.engines.core.timeline import Timeline
from backline.engines.registry import available_engines
from backline.host.history import SessionStore, TakeRecord
from backline.host.takecard import TakeCard, fit_words
from backline.host.widgets import DrumLanes, PianoRoll, read_midi_notes

SHARED_FIXTURES = (capture_file, make_window)
pytestmark = pytest.mark.skipif("drums" not in available_engines(), reason="the drum engine is not installed")
demo = pytest.importorskip("backline.engines.data.demo", reason="the demo song module is not in this install")


def test_drums_panel_shows_musician_controls_only(qtbot, make_window, capture_file, tmp_path):
    window = make_window(engine="drums")
    wait_ready(qtbot, window, "drums")
    panel = window.panels["drums"]
    for name in ("style", "fill_amount", "complexity", "intensity", "swing", "humanise", "mode", "soundfont"):
        assert name in panel.widgets and panel.widgets[name].isVisibleTo(panel), name
    for name in ("bars", "overwrite", "vst3", "roles", "drums_midi", "fill_bars", "render"):
        assert name not in panel.widgets, name
    assert not panel.widgets["sample"].isVisibleTo(panel)  # sampler settings wait under Advanced
    panel.advanced_toggle.click()
    assert panel.widgets["sample"].isVisibleTo(panel) and panel.widgets["variation"].isVisibleTo(panel)
    texts = re.sub("<[^>]+>", " ", " ".join(w.text() for w in panel.widget().findChildren(QLabel)))
    assert "paper" not in texts.lower() and not re.search(r"(^|\s)[~.]?/\w", texts), texts  # no file paths
    assert not [n for n, w in panel.widgets.items() if isinstance(w, QLineEdit)]  # no raw text fields
    wait_ready(qtbot, window, "bass")  # the bass panel too: sampler settings under Advanced, no paper numbers
    bass = window.panels["bass"]
    assert {"steps", "cfg", "rescale"} <= set(bass.widgets) and not bass.widgets["steps"].isVisibleTo(bass)
    bass_texts = re.sub("<[^>]+>", " ", " ".join(w.text() for w in bass.widget().findChildren(QLabel)))
    assert "paper" not in bass_texts.lower() and not re.search(r"(^|\s)[~.]?/\w", bass_texts), bass_texts
    window.show_engine("drums")
    titles = [panel.preset_browser.list.item(i).text() for i in range(panel.preset_browser.list.count())]
    assert {"Rock", "Funk", "Shuffle", "Half-time", "Bossa nova", "Disco", "Ballad"} <= set(titles)
    panel.preset_browser.select("shuffle")
    assert panel.values()["controls"]["swing"] == 1.0 and panel.values()["controls"]["style"] == "shuffle"

    # the band's MIDI arrives by drag and drop anywhere on the panel; a WAV there is refused in one line
    band = demo.demo_midi_without_drums(tmp_path)
    drop(panel.viewport(), capture_file)
    assert panel.midi_well.path is None and "not a MIDI file" in window.message_bar.text()
    drop(panel.viewport(), band)
    assert panel.midi_well.path == band and panel.values()["midi"] == str(band)

    # generate over the selected bars: the request carries the MIDI and the selection's region
    assert window.load_capture_file(capture_file)
    qtbot.waitUntil(lambda: not window.capture.empty, timeout=WAIT_MS)
    window.select_bars(3, 6)
    sent = []
    submit = window.jobs.submit
    window.jobs.submit = lambda request, job_id=None: (sent.append(request), submit(request, job_id))[1]
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        assert window.generate() is not None, window.message_bar.text()
    assert sent[0].midi == band and "vst3" not in sent[0].controls
    record = added.args[0]
    assert record.status == "ok", record.error
    assert tuple(record.report["bars"]) == (3, 6)

    # the drum instrument comes from Settings, not from a panel field
    window.settings.drum_instrument = str(tmp_path / "NoSuchKit.vst3")
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        assert window.generate() is not None
    assert sent[1].controls["vst3"].endswith("NoSuchKit.vst3")
    assert added.args[0].status == "error" and "VST3 plugin not found" in added.args[0].error


def test_a_drum_take_shows_lanes_and_the_fit_in_words(qtbot, tmp_path):
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.takes import generate_and_write
    from backline.engines.registry import build_engine

    session = SessionStore(tmp_path / "session")
    band = demo.demo_midi_without_drums(tmp_path)
    result = generate_and_write(build_engine("drums"), GenerationRequest(
        "drums", session.root / "job", Timeline.constant(100, 44100), midi=band, seed=2, controls={"render": False}),
        cancel=threading.Event())
    take = result.takes[0]
    record = TakeRecord(id="t1", number=1, engine="drums", engine_title="Drums", bars=(1, 8), sample_rate=44100,
                        bpm=100.0, midi=session.relative(take.midi), fit=0.18, report=dict(take.report))
    card = TakeCard(record, session)
    qtbot.addWidget(card)
    lanes = card.findChildren(DrumLanes)
    assert len(lanes) == 1 and not card.findChildren(PianoRoll)
    notes, _ = read_midi_notes(take.midi)
    counts = lanes[0].lane_counts()
    assert counts["kick"] == sum(1 for n in notes if n[2] in (35, 36)) > 0
    assert counts["snare"] > 0 and counts["hats"] + counts["cymbals"] > 0
    assert "does not lock to the band — try a new seed" in card.notes.text()
    assert fit_words(0.9).startswith("locks to the band") and fit_words(0.6) == "fits the band"
    bass = TakeRecord(id="t2", number=2, engine="bass", bars=(1, 8), sample_rate=44100, bpm=100.0,
                      midi=session.relative(take.midi))
    card = TakeCard(bass, session)
    qtbot.addWidget(card)
    assert card.findChildren(PianoRoll) and not card.findChildren(DrumLanes)
