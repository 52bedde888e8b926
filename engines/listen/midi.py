"""Listening to the band's MIDI: tempo, meter and chords are exact there (pretty_midi)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backline.engines.core.errors import ConfigError
from backline.engines.listen.chart import Chord
from backline.engines.listen.harmony import chords_from_chroma
from backline.engines.listen.key import key_from_chords, key_from_chroma
from backline.engines.listen.listening import Listening


def chords_from_notes(notes: list[tuple[float, float, int]], beats: np.ndarray, bar_pos: np.ndarray, numerator: int,
                      key: tuple[int, str], duration: float) -> list[Chord]:
    """Chords per beat from (start, end, pitch) notes: the pitch-class durations per beat, as a chroma."""
    chroma = np.zeros((12, len(beats)))
    edges = np.r_[beats, duration]
    for s, e, p in notes:
        i0 = max(0, int(np.searchsorted(edges, s, side="right")) - 1)
        i1 = min(len(beats) - 1, int(np.searchsorted(edges, e, side="left")) - 1)
        for i in range(i0, i1 + 1):
            ov = min(e, edges[i + 1]) - max(s, edges[i])
            if ov > 0:
                chroma[p % 12, i] += ov * (1.5 if p < 52 else 1.0)
    return chords_from_chroma(chroma, bar_pos, numerator, key, chroma.sum(0))


def listen_midi(path: str | Path, duration: float | None = None, *, exclude_bass: bool = True) -> Listening:
    """The band's MIDI: tempo, meter, beats and bar one exactly from the file, key and chords from its notes."""
    import pretty_midi

    path = Path(path)
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # noqa: BLE001 - pretty_midi raises many kinds for a bad file
        raise ConfigError(f"cannot read the band MIDI ({err})", path=path, fix="give a standard MIDI file") from err
    tempos = pm.get_tempo_changes()[1]
    if len(set(np.round(tempos, 3))) > 1:
        raise ConfigError("the band MIDI changes tempo; following a tempo map is not supported yet", path=path,
                          fix="give a constant-tempo section (or --bpm)")
    bpm = float(tempos[0]) if len(tempos) else 120.0
    ts = pm.time_signature_changes
    num, den = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
    end = duration if duration is not None else pm.get_end_time()
    beat_s = 60.0 / bpm * 4.0 / den
    beats = np.arange(0.0, end - 1e-6, beat_s)
    bar_pos = np.arange(len(beats)) % num
    insts = [i for i in pm.instruments if not i.is_drum]
    if exclude_bass and len(insts) > 1:
        bass = [i for i in insts if 32 <= i.program <= 39 or "bass" in i.name.lower()]
        insts = [i for i in insts if i not in bass] or insts
    notes = [(n.start, n.end, n.pitch) for i in insts for n in i.notes]
    if not notes:
        raise ConfigError("the band MIDI has no pitched notes to take chords from", path=path,
                          fix="give the band's MIDI with its chord instruments")
    hist = np.zeros(12)
    for s, e, p in notes:
        hist[p % 12] += e - s
    key = key_from_chroma(hist)
    chords = chords_from_notes(notes, beats, bar_pos, num, key, end)
    key = key_from_chords(chords, bar_pos == 0, hist, key)
    src = {k: "midi" for k in ("tempo", "meter", "bar_one", "key", "chords")}
    return Listening(bpm, num, den, beats, beats[bar_pos == 0], key[0], key[1], chords, end, src)
