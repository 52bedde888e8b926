"""Measure how late each (soundfont, GM program) pair sounds after its note-on; write font_onsets.json.

Why: some soundfont samples start with tens of milliseconds of near-silence (FluidR3's finger and pick
basses begin 13–48 ms after the note-on) or have slow attacks (string ensembles, warm pads). A corpus
rendered with them would teach the models late onsets, and its stems would fail the 15 ms onset check. So
the corpus builder only renders a program with the soundfonts in which it measured tight here.

Run: `python -m backline.engines.data.calibrate_fonts` (about two minutes). It renders notes or triads
back to back across each role's pitch range and records the worst onset error (see `onsets.match_onsets`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mido
import numpy as np

from backline.engines.core.render import find_soundfonts, render_midi
from backline.engines.data.onsets import match_onsets

TABLE = Path(__file__).with_name("font_onsets.json")
#: A pair is usable when its worst isolated-note onset error is within this (the corpus test allows 15 ms).
MAX_LAG_S = 0.010
CANDIDATES = {
    "bass": (tuple(range(32, 40)), range(28, 53, 1)),
    "keys": ((0, 1, 2, 3, 4, 5, 6, 7, 11, 16, 17, 18), range(40, 85, 1)),
    "guitar": (tuple(range(24, 31)), range(48, 81, 1)),
    "strings": ((45, 46, 48, 49, 50, 51, 52, 53, 88, 89, 90, 91, 92, 94, 95), range(52, 85, 1)),
    "lead": ((40, 56, 61, 62, 64, 65, 66, 68, 71, 73, 80, 81, 84, 85, 87), range(58, 87, 1)),
}


def _probe(path: Path, program: int, pitches: range, chords: bool) -> list[float]:
    """Notes (or triads) on every semitone, a quarter note apart at 120 BPM, each released a 16th early.

    Every semitone, because a soundfont's sample zones can be a single key wide (TimGM6mb's brass section
    is 35 ms late on F5 alone).

    Context matters: bowed strings and choirs that start cleanly from silence lose their onsets when the
    previous chord is still releasing, so the probe plays them in that context. Returns note-on times (s).
    """
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=500000))
    tr.append(mido.Message("program_change", program=program))
    times = []
    for k, p in enumerate(pitches):
        notes = [p, p + 4, p + 7] if chords else [p]
        for j, n in enumerate(notes):
            tr.append(mido.Message("note_on", note=n, velocity=85, time=(120 if k else 240) if j == 0 else 0))
        for j, n in enumerate(notes):
            tr.append(mido.Message("note_off", note=n, velocity=0, time=360 if j == 0 else 0))
        times.append(0.25 + k * 0.5)
    mid.save(str(path))
    return times


def calibrate() -> dict:
    fonts = find_soundfonts()
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.mid"
        for role, (programs, pitches) in CANDIDATES.items():
            for program in programs:
                times = _probe(probe, program, pitches, chords=role in ("keys", "guitar", "strings"))
                for name, font in fonts.items():
                    audio = render_midi(probe, font)
                    m = match_onsets(audio.samples, audio.sample_rate, times)
                    worst = float(np.max(np.abs(m.errors)))
                    table.setdefault(str(program), {})[name] = round(worst, 4)
                print(program, table[str(program)], flush=True)
    return table


def main() -> None:
    table = calibrate()
    TABLE.write_text(json.dumps({"max_lag_s": MAX_LAG_S, "worst_onset_error_s": table}, indent=1) + "\n")
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
