"""A weights JSON is untrusted: crafted configs are refused before any tensor is allocated."""

from __future__ import annotations

import json
import resource
import shutil

import pytest

from backline.engines.bass.engine import KIND, WEIGHTS_DIR, load_bass_model
from backline.engines.core.errors import WeightsError


@pytest.fixture
def weights(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"bass{suffix}", tmp_path / f"bass{suffix}")
    return tmp_path / "bass"


def _edit(path, **changes):
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["config"].update(changes)
    meta_path.write_text(json.dumps(meta))


def test_shipped_copy_loads(weights):
    model, meta = load_bass_model(weights=weights)
    assert meta["kind"] == KIND and sum(p.numel() for p in model.parameters()) > 10**6


def test_huge_channels_are_refused_before_any_allocation(weights):
    _edit(weights, channels=[8192, 8192, 8192])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(WeightsError) as err:
        load_bass_model(weights=weights)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "\n" not in str(err.value) and ("G parameters" in str(err.value) or "do not match" in str(err.value))
    assert grown_mib < 200  # the 12 GB model was never built


@pytest.mark.parametrize("changes, match", [
    ({"channels": "abc"}, "channels must be a list"),
    ({"heads": "four"}, "heads must be an int"),
    ({"blocks": 10**9}, "far too large"),
    ({"channels": list(range(1000))}, "lists 1000 values"),
    ({"groups": None, "time_dim": [1, 2]}, "time_dim must be an int"),
])
def test_wrong_types_and_sizes_are_one_line_errors(weights, changes, match):
    _edit(weights, **changes)
    with pytest.raises(WeightsError, match=match) as err:
        load_bass_model(weights=weights)
    assert "\n" not in str(err.value)
