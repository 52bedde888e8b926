"""`backline train gmsdi` on a tiny synthetic Slakh-layout corpus: stem cache, sub-mixture examples with their
label sets, train, resume, export, and the exported weights driving the engine."""

import json

import numpy as np
import torch
import yaml

from backline.engines.accompany import spec
from backline.engines.accompany.data import StemCache, all_subsets, subset_index
from backline.engines.accompany.engine import build
from backline.engines.core.audio import Audio, write_audio
from backline.host.cli import main as cli_main

SR = 44100


def _corpus(root, songs=2, seconds=2.5):
    t = np.arange(int(seconds * SR)) / SR
    for i in range(songs):
        folder = root / f"Track{i + 1:05d}"
        (folder / "stems").mkdir(parents=True)
        f0 = 55.0 * (1 + i / 4)
        stems = {"S00": np.sin(2 * np.pi * f0 * t) * 0.4,
                 "S01": sum(np.sin(2 * np.pi * f0 * k * t) for k in (4, 5, 6)) * 0.1,
                 "S02": np.random.default_rng(i).standard_normal(t.size) * (np.mod(t, 0.5) < 0.05) * 0.2}
        for sid, x in stems.items():
            write_audio(folder / "stems" / f"{sid}.flac", Audio(np.stack([x, x]).astype(np.float32), SR))
        meta = {"stems": {"S00": {"inst_class": "Bass", "is_drum": False, "program_num": 33},
                          "S01": {"inst_class": "Piano", "is_drum": False, "program_num": 0},
                          "S02": {"inst_class": "Drums", "is_drum": True, "program_num": 0}}}
        (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
        (folder / "extras.json").write_text(json.dumps({"roles": {"S00": "bass", "S01": "piano", "S02": "drums"}}))
    return root


def test_label_table_indexes_every_role_set_once():
    subsets = all_subsets()
    assert len(subsets) == 63 and len(set(subsets)) == 63
    assert all(subset_index(s) == i for i, s in enumerate(subsets))
    assert subset_index(("Drums", "Bass")) == subset_index(("Bass", "Drums"))


def test_train_resume_export_and_separate(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    run, cache, export = tmp_path / "run", tmp_path / "cache", tmp_path / "w" / "gmsdi"
    args = ["train", "gmsdi", "--corpus", str(corpus), "--cache", str(cache), "--config", "debug", "--run", str(run),
            "--batch", "2", "--log-every", "2"]
    assert cli_main(args + ["--steps", "4"]) == 0
    files = sorted(cache.rglob("*.safetensors"))
    assert len(files) == 2
    data = StemCache(files)
    assert all(set(r) == {"Bass", "Piano", "Drums"} for r in data.roles)
    x, label, scale = data.example(32, np.random.default_rng(0))
    assert x.shape == (spec.BINS, 32) and 0 <= label < 63 and float(scale) > 0
    assert set(all_subsets()[label]) <= {"Bass", "Piano", "Drums"}  # a sub-mixture of the roles present
    assert cli_main(args + ["--steps", "6", "--export", str(export)]) == 0  # resumes at step 4
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    meta = json.loads(export.with_suffix(".json").read_text())
    assert meta["kind"] == "gmsdi-score" and meta["training"]["steps"] == 6
    engine = build("shipped", weights=export)
    assert not torch.allclose(engine.model.bin_scale, torch.ones(spec.BINS))  # measured, and shipped with the weights
    mix = Audio(np.random.default_rng(1).standard_normal((2, SR)).astype(np.float32) * 0.1, SR)
    out = engine.separate(mix, ("Bass", "Drums"), mode="separate", steps=2, w=1.0)
    np.testing.assert_allclose(out["Bass"].samples + out["Drums"].samples, mix.samples, atol=1e-4)
