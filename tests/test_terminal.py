"""Issue 16, the terminal: listing flags alone, progress that counts real steps with the time left, no raw JSON
in the drums output, no doubled labels."""

from __future__ import annotations

import io

from backline.engines.data.demo import file_label
from backline.engines.runner import TerminalProgress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_counts_the_engines_steps_and_shows_the_time_left(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    bar = TerminalProgress("bass")
    bar.stream, bar.tty = _Tty(), True
    with bar:
        bar.update(0.05, "encoding the mix")
        now[0] += 10
        bar.update(0.25, ", step 16/64")
        line = bar.line(now[0])
    assert line.startswith("bass  25% ")
    assert "step 16/64" in line and ", step" not in line  # the engine's own count, no stray comma
    assert "0:10 elapsed, ~0:38 left" in line  # 0.2 of the work in 10 s: 0.75 left takes 37.5 s
    assert "‰" not in bar.stream.getvalue()


def test_no_doubled_labels():
    assert file_label("bass", "bass") == "bass audio"
    assert file_label("drums", "drums") == "drums audio"
    assert file_label("accompany", "piano") == "accompany piano audio"


def test_drums_output_has_no_raw_json(tmp_path, capsys):
    import mido

    from backline.host.cli import main

    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120))]))
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Piano")])
    for _ in range(16):
        track += [mido.Message("note_on", note=60, velocity=80, time=0),
                  mido.Message("note_off", note=60, velocity=0, time=96)]
    mid.tracks.append(track)
    mid.save(tmp_path / "band.mid")
    assert main(["generate", "drums", "--band-midi", str(tmp_path / "band.mid"), "--out", str(tmp_path / "o"),
                 "--config", "debug", "--no-render"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "[{" not in out
    assert "band tracks: Piano (piano, 16 notes)" in out
