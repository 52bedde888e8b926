"""`backline train drums` on the one training loop: the four models train in turn, a run resumes from its
checkpoint, and an export that would fail is refused before the corpus is even read."""

from __future__ import annotations

import json

from backline.host.cli import main as cli


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_resume_and_export_checked_first(tmp_path):
    run, out = tmp_path / "run", tmp_path / "weights"
    common = ["train", "drums", "--synth", "3", "--synth-max-bars", "24", "--run", str(run), "--config", "debug",
              "--batch", "4", "--val-fraction", "0.34", "--threads", "1"]
    assert cli(common + ["--steps", "2", "--export", str(out)]) == 0
    rows = _rows(run)
    assert rows[-1]["step"] == 8 and {"seq2seq_loss", "locator_loss", "infiller_loss", "vae_loss"} <= set(rows[0])
    first = json.loads((out / "pipeline.json").read_text())["training"]
    assert first["steps"] == {"seq2seq": 2, "locator": 2, "infiller": 2, "vae": 2} and not first["stopped_early"]
    assert cli(common + ["--steps", "3"]) == 0  # resumes at step 8 of 12: only the last 4 steps run
    assert [r["step"] for r in _rows(run)][-1] == 12 and len(_rows(run)) == len(rows) + 1
    before = (out / "vae.safetensors").read_bytes()
    assert cli(common + ["--steps", "4", "--export", str(out)]) == 2  # refused before any training
    assert len(_rows(run)) == len(rows) + 1 and (out / "vae.safetensors").read_bytes() == before
