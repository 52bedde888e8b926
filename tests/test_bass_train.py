"""`backline train bass` on a tiny Slakh-layout corpus with the debug codecs: cache, train, resume, export, load."""

import json

import numpy as np
import torch
import yaml

from backline.engines.bass.data import PairCache, bass_tracks, random_subsets
from backline.engines.bass.engine import Sampling, build
from backline.engines.core.audio import Audio, write_audio
from backline.host.cli import main as cli_main

SR = 44100


def _corpus(root, songs=2, seconds=3.0):
    """Slakh2100 layout with synthetic stems (bass sine, a chord, noise bursts) — no renderer needed."""
    t = np.arange(int(seconds * SR)) / SR
    for i in range(songs):
        folder = root / f"Track{i + 1:05d}"
        (folder / "stems").mkdir(parents=True)
        f0 = 55.0 * (1 + i / 4)
        stems = {
            "S00": np.sin(2 * np.pi * f0 * t) * 0.4,
            "S01": sum(np.sin(2 * np.pi * f0 * k * t) for k in (4, 5, 6)) * 0.1,
            "S02": np.random.default_rng(i).standard_normal(t.size) * (np.mod(t, 0.5) < 0.05) * 0.2,
        }
        for sid, x in stems.items():
            write_audio(folder / "stems" / f"{sid}.flac", Audio(np.stack([x, x]).astype(np.float32), SR))
        meta = {"stems": {"S00": {"inst_class": "Bass", "is_drum": False, "program_num": 33},
                          "S01": {"inst_class": "Piano", "is_drum": False, "program_num": 0},
                          "S02": {"inst_class": "Drums", "is_drum": True, "program_num": 0}}}
        (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
        (folder / "extras.json").write_text(json.dumps({"roles": {"S00": "bass", "S01": "piano", "S02": "drums"}}))
    return root


def test_subsets_are_non_empty_and_start_with_all_other_stems():
    rng = np.random.default_rng(0)
    subs = random_subsets(("S01", "S02", "S03"), 6, rng)
    assert subs[0] == ("S01", "S02", "S03") and len(subs) == 6
    assert all(len(s) >= 1 and set(s) <= {"S01", "S02", "S03"} for s in subs)
    assert len(random_subsets(("S01",), 4, rng)) == 4  # a single other stem: repeats are allowed


def test_train_resume_export_and_generate(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    tracks = bass_tracks(corpus)
    assert [t.bass for t in tracks] == ["S00", "S00"] and tracks[0].others == ("S01", "S02")
    run, cache, export = tmp_path / "run", tmp_path / "cache", tmp_path / "w" / "bass"
    args = ["train", "bass", "--corpus", str(corpus), "--cache", str(cache), "--codec", "debug", "--config", "debug",
            "--run", str(run), "--batch", "2", "--crop", "16", "--log-every", "2", "--subsets", "3"]
    assert cli_main(args + ["--steps", "4"]) == 0
    files = sorted(cache.rglob("*.safetensors"))
    assert len(files) == 2
    pairs = PairCache(files)
    bass, mix = pairs.batch(3, 16, np.random.default_rng(0))
    assert bass.shape == (3, 32, 16) and mix.shape == (3, 64, 16)
    # resume: the second run continues at step 4, not from scratch
    assert cli_main(args + ["--steps", "6", "--export", str(export)]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    meta = json.loads(export.with_suffix(".json").read_text())
    assert meta["kind"] == "bass-diffusion" and meta["training"]["steps"] == 6
    engine = build("debug", weights=export)
    stats = torch.stack([engine.model.stem_shift, engine.model.stem_scale])
    assert not torch.allclose(stats[1], torch.ones(32))  # the cache's latent statistics travel with the weights
    cond = engine.mix_codec.encode(Audio(np.zeros((2, SR), np.float32) + 0.01, SR))
    out = engine.sample_latents(cond, [0], Sampling(steps=2), None).latents
    assert out.shape == (1, 32, cond.shape[-1]) and torch.isfinite(out).all()
