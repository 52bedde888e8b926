"""The shipped listening models on the demo song: `backline analyze` lists the instruments it really contains."""

from __future__ import annotations

import pytest
import yaml

from backline.engines.analysis.tagger import FINE_TAGS, fine_index
from backline.host.cli import main

demo = pytest.importorskip("backline.engines.data.demo", reason="the demo song module is not in this install")


def test_backline_analyze_demo_mix_lists_its_instruments(capsys):
    track = demo.demo_song()
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    truth = {FINE_TAGS[fine_index(s["program_num"], s.get("is_drum", False))] for s in meta["stems"].values()}
    assert main(["analyze", str(track / "mix.flac")]) == 0
    out = capsys.readouterr().out
    listed = set()
    in_list = False
    for line in out.splitlines():
        if line.startswith("instruments present"):
            in_list = True
        elif in_list and line.startswith("  "):
            listed.add(line.strip().split("  ")[0].strip())
        else:
            in_list = False
    assert truth <= listed, f"missed {truth - listed}\n{out}"
    assert len(listed - truth) <= 1, f"wrongly listed {listed - truth}\n{out}"
    assert "missing parts: none" in out  # the demo has bass, drums and accompaniment


def _band_without(track, *roles):
    """The demo band summed from its stems without `roles` (what `backline demo` analyses)."""
    import numpy as np

    from backline.engines.core.audio import Audio, read_audio
    from backline.engines.data.slakh import read_track

    stems = [read_audio(st.audio) for st in read_track(track).audio_stems() if st.role not in roles]
    n = min(a.frames for a in stems)
    return Audio(np.sum([a.samples[:, :n] for a in stems], axis=0).astype(np.float32), stems[0].sample_rate)


@pytest.mark.parametrize("gone, missing", [(("bass",), ["bass"]), (("drums",), ["drums"]),
                                           (("piano", "guitar", "strings"), ["accompaniment"])])
def test_a_removed_part_is_reported_missing_and_only_that_one(gone, missing):
    from backline.engines.analysis.api import analyze

    report = analyze(_band_without(demo.demo_song(), *gone))
    assert report.missing_parts == missing, report.parts
    assert report.suggestion == {"bass": "bass", "drums": "drums", "accompaniment": "accompany"}[missing[0]]


def test_each_engine_warns_when_its_part_already_plays(tmp_path):
    from backline.engines.analysis.api import role_already_playing
    from backline.engines.core.audio import read_audio

    track = demo.demo_song()
    full = read_audio(track / "mix.flac")
    warning = role_already_playing("bass", full)
    assert warning and "bass is already playing in the mix" in warning
    assert role_already_playing("bass", _band_without(track, "bass")) is None
    assert "drums are already playing" in role_already_playing("drums", full)
    assert role_already_playing("drums", _band_without(track, "drums")) is None
    # band MIDI: the demo's full MIDI has a drum track, the band without drums has none
    assert "already has drums" in role_already_playing("drums", midi=track / "all_src.mid")
    assert role_already_playing("drums", midi=demo.demo_midi_without_drums(tmp_path)) is None
    assert "already has a bass" in role_already_playing("bass", midi=track / "all_src.mid")
