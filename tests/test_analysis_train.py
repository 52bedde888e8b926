"""The three listening-model trainers run end to end on the tiny corpus (debug configs, a few steps), write
weights that load, and resume from their checkpoints."""

from __future__ import annotations

import json

from backline.engines.analysis.musicoder import build_musicoder
from backline.engines.analysis.simclr import MatchingModel, SimCLRConfig, SimCLRModel
from backline.engines.analysis.tagger import build_tagger
from backline.engines.core.weights import load_weights
from backline.host.cli import main


def test_trainers_end_to_end(tiny_corpus, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "train").symlink_to(tiny_corpus, target_is_directory=True)
    data = ["--corpus", str(root), "--cache", str(tmp_path / "cache"), "--crops-per-track", "6"]
    mc = tmp_path / "mc"
    assert main(["train", "musicoder", *data, "--config", "debug", "--steps", "3", "--batch", "2", "--frames", "60",
                 "--warmup", "2", "--run-dir", str(mc)]) == 0
    enc, meta = load_weights(mc / "musicoder", kind="musicoder-encoder", build=build_musicoder)
    assert meta["training"]["steps"] == 3 and float(enc.cmvn.std.min()) > 0
    # resume: the same run continues from its checkpoint to 5 steps
    assert main(["train", "musicoder", *data, "--config", "debug", "--steps", "5", "--batch", "2", "--frames", "60",
                 "--warmup", "2", "--run-dir", str(mc)]) == 0
    steps = [json.loads(line)["step"] for line in (mc / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 5 and json.loads((mc / "musicoder.json").read_text())["training"]["steps"] == 5

    sc = tmp_path / "sc"
    assert main(["train", "simclr", *data, "--config", "debug", "--steps", "2", "--batch", "2", "--warmup", "1",
                 "--run-dir", str(sc), "--out", str(sc / "simclr")]) == 0
    load_weights(sc / "simclr", kind="simclr-encoder", build=lambda c: SimCLRModel(SimCLRConfig.from_dict(c)))
    mt = tmp_path / "mt"
    assert main(["train", "simclr", *data, "--mode", "matching", "--init", str(sc / "simclr"), "--steps", "2",
                 "--batch", "2", "--warmup", "1", "--run-dir", str(mt), "--out", str(mt / "matching")]) == 0
    _, meta = load_weights(mt / "matching", kind="matching", build=lambda c: MatchingModel(SimCLRConfig.from_dict(c)))
    assert "calibration" in meta["training"]

    tg = tmp_path / "tg"
    assert main(["train", "tagger", *data, "--encoder", str(mc / "musicoder"), "--heads", "flat,gmp,resatt",
                 "--steps", "2", "--batch", "4", "--run-dir", str(tg)]) == 0
    for head in ("flat", "gmp", "resatt"):
        model, meta = load_weights(tg / f"tagger_{head}", kind="tagger", build=build_tagger)
        assert model.head.kind == head and len(meta["training"]["lam_grid_val_fine_bce"]) == (0 if head == "flat" else 5)
        assert ((model.fine_thresholds > 0) & (model.fine_thresholds < 1)).all()
    # each head is its own resumable run on the one training loop, with a held-out learning curve
    rows = [json.loads(line) for line in (tg / "gmp" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and "val_fine_bce" in rows[-1] and "gmp_loss" in rows[-1]
    assert main(["train", "tagger", *data, "--encoder", str(mc / "musicoder"), "--heads", "gmp", "--steps", "3",
                 "--batch", "4", "--run-dir", str(tg)]) == 0
    rows = [json.loads(line) for line in (tg / "gmp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]  # resumed at step 2, not restarted
    assert json.loads((tg / "tagger_gmp.json").read_text())["training"]["steps"] == 3
