"""The shipped drum weights: `backline generate drums --midi <band without drums> --out DIR` writes MIDI + WAV.

Uses the demo song's band MIDI when the demo module provides it, otherwise a corpus-style song made by the
corpus composer with its drum part left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest

from backline.engines.drums.engine import WEIGHTS_DIR


def _band_without_drums(folder: Path) -> Path:
    try:
        from backline.engines.data import demo

        path = demo.demo_midi_without_drums(folder) if hasattr(demo, "demo_midi_without_drums") else None
        if path is not None:
            return Path(path)
    except ImportError:
        pass
    from backline.engines.data.midi import song_midi_bytes
    from backline.engines.data.song import make_song
    from backline.engines.data.synth import song_rng

    song = make_song(song_rng(2024, 7), min_bars=24, max_bars=32, meter=(4, 4))
    path = folder / "band.mid"
    path.write_bytes(song_midi_bytes(song, [p for p in song.parts if p.role != "drums"]))
    return path


@pytest.mark.skipif(not (WEIGHTS_DIR / "pipeline.json").is_file(), reason="shipped drum weights missing")
def test_shipped_weights_generate_drum_midi_and_wav(tmp_path):
    from backline.host.cli import main

    band = _band_without_drums(tmp_path)
    out = tmp_path / "d"
    assert main(["generate", "drums", "--band-midi", str(band), "--out", str(out)]) == 0
    midi, wav, report = out / "drums_seed0.mid", out / "drums_seed0.wav", out / "drums_seed0.json"
    assert midi.is_file() and wav.is_file() and report.is_file()
    notes = [m for m in mido.MidiFile(str(midi)) if m.type == "note_on" and m.velocity > 0]
    assert len(notes) > 100 and {m.channel for m in notes} == {9}
    info = json.loads(report.read_text())
    assert info["fill_bars"], "the trained locator should place at least one fill in a multi-section song"
    # a fill bar stands out from its neighbours by the novelty measure
    assert max(info["novelty"][str(b)] for b in info["fill_bars"]) > 0.25
    from backline.engines.core.audio import read_audio

    assert read_audio(wav).peak() > 0.01


@pytest.mark.skipif(not (WEIGHTS_DIR / "pipeline.json").is_file(), reason="shipped drum weights missing")
def test_shipped_variation_decodes_different_fills_from_the_latent_code(tmp_path):
    import numpy as np

    from backline.engines.drums import novelty as nov
    from backline.engines.drums.engine import load_models
    from backline.engines.drums.inputs import read_midi_files

    pipe = load_models("shipped").pipeline
    grid = read_midi_files([_band_without_drums(tmp_path)]).grid
    spb = grid.steps_per_bar
    takes = [pipe.generate(grid, fill_bars=[3], seed=s, variation=1.0).drums for s in range(4)]
    assert len({t[3 * spb:4 * spb].tobytes() for t in takes}) > 1  # the latent code changes the fill
    assert all(nov.novelty(t, spb)[3] > 0.25 for t in takes)  # and each is still a fill
    assert all(np.array_equal(t[: 3 * spb], takes[0][: 3 * spb]) for t in takes)  # nothing before it moves
