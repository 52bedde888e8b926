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
