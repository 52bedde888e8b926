"""The host follows the song: a loaded mix shows the heard tempo, bar one and key and an editable chord lane; the
bass panel puts the musician's controls first; a take re-renders from its (edited) MIDI."""

from pathlib import Path

import mido
import numpy as np
import pytest
from test_host import WAIT_MS, make_window, wait_ready  # noqa: F401 - fixtures

from backline.engines.core.audio import Audio, write_audio
from backline.engines.core.transcribe import midi_to_notes
from backline.engines.registry import available_engines

pytestmark = pytest.mark.skipif("bass" not in available_engines(), reason="the bass engine is not installed")


def song(path: Path, bpm: float = 100.0, sr: int = 22050) -> Path:
    """8 bars of 4/4 (and a 1 s tail): kick on 1 and 3, a noise snare on 2 and 4, hats on 8ths, a triad per bar D G A G D Bm G A."""
    rng = np.random.default_rng(1)
    beat = 60.0 / bpm
    n = int((8 * 4 * beat + 1.0) * sr)  # and a second of ringing out
    t = np.arange(n) / sr
    x = np.zeros(n)
    for k in range(32):
        a = int(k * beat * sr)
        d = np.arange(min(n - a, int(0.3 * sr))) / sr
        if k % 2 == 0:
            x[a:a + len(d)] += 0.7 * np.exp(-d * 18) * np.sin(2 * np.pi * 55 * d)
        else:
            x[a:a + len(d)] += 0.25 * np.exp(-d * 25) * rng.standard_normal(len(d))
    for k in range(64):
        a = int(k * beat / 2 * sr)
        d = np.arange(min(n - a, int(0.05 * sr))) / sr
        x[a:a + len(d)] += 0.05 * np.exp(-d * 80) * rng.standard_normal(len(d))
    roots = [62, 67, 69, 67, 62, 71, 67, 69]
    for bar, r in enumerate(roots):
        a, b = int(bar * 4 * beat * sr), int((bar + 1) * 4 * beat * sr)
        third = 3 if r == 71 else 4
        tt = t[a:b] - t[a]
        x[a:b] += sum(0.08 * np.sin(2 * np.pi * 440 * 2 ** ((r + iv - 69) / 12) * tt) for iv in (0, third, 7)) \
            * np.minimum(1.0, tt * 50)
    x = x.astype(np.float32)
    return write_audio(path, Audio(np.stack([x, x]), sr))


def test_a_plain_file_gets_its_heard_tempo_and_bar_grid(qtbot, make_window, tmp_path):  # noqa: F811
    window = make_window()
    path = song(tmp_path / "song.wav")
    assert window.load_capture_file(path)
    cap = window.capture
    assert abs(cap.timeline.bpm - 100.0) < 1.0  # not the 120 BPM default
    assert cap.last_bar() == 8  # bars 1–8 over its 19.2 s
    assert "100." in window.heard.text() and "D major" in window.heard.text()
    assert window.chord_lane.text().startswith("D | G | A | G | D | Bm")


def test_chord_lane_bass_panel_and_rerender_from_midi(qtbot, make_window, tmp_path):  # noqa: F811
    window = make_window(engine="bass")
    wait_ready(qtbot, window, "bass")
    panel = window.panels["bass"]
    names = list(panel.widgets)
    assert names.index("style") < names.index("steps") and names.index("complexity") < names.index("cfg")
    assert panel.advanced_box is not None and not panel.advanced_box.isVisible()
    assert panel.advanced_box.isAncestorOf(panel.widgets["steps"])  # the sampler's settings fold away
    assert not panel.advanced_box.isAncestorOf(panel.widgets["style"])
    panel.advanced_toggle.setChecked(True)
    assert panel.advanced_box.isVisible()

    assert window.load_capture_file(song(tmp_path / "song.wav"))
    window.chord_lane.setText("D | H | A")
    window.capture_control.chords_edited()
    assert "H" in window.message_bar.text() and window.capture.chart == ""  # refused, one line
    window.chord_lane.setText("D | G | A | G | D | Bm | G | A7")
    window.capture_control.chords_edited()
    assert window.capture.chart.startswith("D | G")
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as added:
        assert window.generate(engine="bass", bars=(5, 6), seed=4)
    record = added.args[0]
    assert record.status == "ok", record.error
    heard = record.report["listening"]  # the engine followed the lane under bars 5–6, on the host's grid
    assert heard["sources"]["chords"] == "user" and heard["chords"] == "D | Bm" and heard["sources"]["tempo"] == "daw"
    midi = window.store.absolute(record.midi)
    notes = midi_to_notes(mido.MidiFile(str(midi)))
    assert notes

    edited = tmp_path / "edited.mid"  # the musician moves every note up a fifth in the DAW
    mid = mido.MidiFile(str(midi))
    for track in mid.tracks:
        for i, msg in enumerate(track):
            if msg.type in ("note_on", "note_off"):
                track[i] = msg.copy(note=msg.note + 7)
    mid.save(str(edited))
    with qtbot.waitSignal(window.takeAdded, timeout=WAIT_MS) as again:
        assert window.rerender_take(record.id, edited)
    redo = again.args[0]
    assert redo.status == "ok", redo.error
    assert redo.controls["midi_in"] == str(edited) and redo.bars == record.bars
    got = midi_to_notes(mido.MidiFile(str(window.store.absolute(redo.midi))))
    assert [n.pitch for n in got] == [n.pitch + 7 for n in notes]
    assert Path(window.store.absolute(redo.stems["bass"])).is_file()

    # the MIDI chip's file, previewed in the take's sound (its preset's reference instrument): no sound card here,
    # so what would be played is caught at the player
    played = []
    window.player.play = lambda audio, what="": played.append((audio, what))
    window.cards[redo.id].preview_midi.click()
    assert len(played) == 1 and played[0][1] == f"midi:{redo.id}", window.message_bar.text()
    audio = played[0][0]
    assert audio.peak() > 0.01 and abs(audio.seconds - (got[-1].end - got[0].start + 0.34)) < 0.1
