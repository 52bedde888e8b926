"""Codec training (DDP with 2 gloo processes, resume) and the latent cache, on the debug config."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from backline.engines.codec import load_codec
from backline.engines.codec.latents import latent_cache_tracks, load_latent_cache, read_latent_meta
from backline.engines.core.audio import read_audio
from backline.engines.core.errors import DatasetError
from backline.host.cli import main as cli


@pytest.fixture(scope="module")
def corpus(request, tmp_path_factory):
    """The shared 2-song fixture when conftest has it; otherwise render the same kind of corpus here."""
    try:
        return request.getfixturevalue("tiny_corpus")
    except pytest.FixtureLookupError:
        from backline.engines.data.synth import synthesize

        out = tmp_path_factory.mktemp("codec_corpus")
        synthesize(out, 2, 0, jobs=1, min_bars=8, max_bars=8, progress=False)
        return out


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_ddp_two_gloo_processes_train_and_resume(corpus, tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "backline.host.cli", "train", "codec", "--config", "stem", "--data", str(corpus),
            "--size", "debug", "--batch", "2", "--adv-start", "1", "--run-dir", str(run_dir),
            "--log-every", "1", "--ckpt-every", "2", "--quiet", "--threads", "1"]
    first = subprocess.run(base + ["--steps", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "world size 2" in first.stdout
    rows = _metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert "critic" in rows[-1] and all(np.isfinite(v) for v in rows[-1].values())
    second = subprocess.run(base + ["--steps", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert [r["step"] for r in _metrics(run_dir)] == [1, 2, 3]  # resumed at step 2, not restarted
    codec = load_codec("stem", weights=run_dir / "stem.safetensors")
    meta = json.loads((run_dir / "stem.json").read_text())
    assert meta["training"]["steps"] == 3 and meta["training"]["world_size"] == 2
    assert codec.latent_stats is not None and codec.latent_stats[0].shape == (32,)


def test_training_step_fits_a_batch(corpus):
    """The generator, pitch-probe and critic losses are wired to the right parameters: a batch gets fitted."""
    from backline.engines.codec.codec import build_model
    from backline.engines.codec.model import Critics, make_config
    from backline.engines.codec.train import CropStream, PitchProbe, generator_losses, hinge_critic_loss

    torch.manual_seed(0)
    cfg = make_config("mix", "debug")
    assert cfg.phase == "spsi"
    model, critics, probe = build_model(cfg), Critics(cfg), PitchProbe(cfg.dim)
    crops = [next(iter(CropStream(corpus, "mix", seed))) for seed in (1, 2)]
    x, roll = torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])
    assert x.shape == (2, 2, 16 * 4096) and roll.shape == (2, 128, 64)
    assert roll.max() == 1.0  # the corpus MIDI reached the piano roll
    x, roll = x[:, :, : 6 * 4096], roll[:, :, : 6 * 4]  # keep the test cheap
    opt = torch.optim.Adam(list(model.parameters()) + list(probe.parameters()), 3e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critics.parameters(), 3e-3, betas=(0.5, 0.9))
    first = None
    for step in range(60):
        use_adv = step >= 50
        critics.requires_grad_(False)
        total, logs, wav = generator_losses(model, critics, x, use_adv, probe, roll)
        opt.zero_grad()
        total.backward()
        assert all(p.grad is None for p in critics.parameters())  # the generator step leaves the critics alone
        assert all(p.grad is not None for p in model.parameters())
        assert all(p.grad is not None for p in probe.parameters())
        opt.step()
        critics.requires_grad_(True)
        if not use_adv:
            first, fitted = first or logs, logs
            assert wav is None  # no waveform is synthesised when no term needs it
            continue
        spec, mel = critics(torch.cat([x, wav.detach()]))
        l_d = hinge_critic_loss(spec[:2], spec[2:]) + hinge_critic_loss(mel[:2], mel[2:])
        opt_d.zero_grad()
        l_d.backward()
        opt_d.step()
        opt_d.zero_grad()
    assert set(logs) == {"rec", "sc", "energy", "pitch", "adv", "loss"}
    assert fitted["rec"] < 0.9 * first["rec"] and fitted["sc"] < first["sc"]
    assert fitted["pitch"] < 0.5 * first["pitch"]
    assert logs["loss"] == pytest.approx(logs["adv"] + 25 * logs["rec"] + 25 * logs["sc"] + 5 * logs["energy"]
                                         + 10 * logs["pitch"], rel=1e-4)


def test_train_refuses_bad_data(tmp_path):
    from backline.engines.codec.train import find_tracks

    with pytest.raises(DatasetError, match="not found"):
        find_tracks(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no TrackNNNNN"):
        find_tracks(tmp_path)
    assert cli(["train", "codec", "--config", "mix", "--data", str(tmp_path), "--steps", "1"]) == 2


def test_latent_cache_layout(corpus, tmp_path):
    out = tmp_path / "latents"
    assert cli(["data", "encode", "--data", str(corpus), "--out", str(out), "--config", "debug", "--quiet"]) == 0
    files = latent_cache_tracks(out)
    assert len(files) == 2
    mix_codec, stem_codec = load_codec("mix", "debug"), load_codec("stem", "debug")
    track = sorted(p for p in corpus.iterdir() if p.is_dir())[0]
    lat = load_latent_cache(out / f"{track.name}.safetensors")
    meta = read_latent_meta(out / f"{track.name}.safetensors")
    n = meta["frames"]
    stems = sorted(p.stem for p in (track / "stems").glob("S*.flac"))
    assert set(lat) == {"mix", "mix_no_bass"} | {f"stem_{s}" for s in stems}
    assert lat["mix"].shape == (64, n) and lat["stem_S00"].shape == (32, n)
    assert meta["roles"][stems[0]] and meta["stems"] == stems
    # the cached latents are the codec's latents of the actual files
    ref = mix_codec.encode(read_audio(track / "mix.flac"), chunk_frames=None)
    assert torch.allclose(lat["mix"], ref, atol=1e-4)
    bass = [s for s, r in meta["roles"].items() if r == "bass"][0]
    ref_stem = stem_codec.encode(read_audio(track / "stems" / f"{bass}.flac"), chunk_frames=None)
    assert torch.allclose(lat[f"stem_{bass}"], ref_stem, atol=1e-4)
    assert not torch.allclose(lat["mix_no_bass"], lat["mix"], atol=1e-3)
    # rerunning keeps existing files (resume) and never rewrites them
    mtime = files[0].stat().st_mtime_ns
    assert cli(["data", "encode", "--data", str(corpus), "--out", str(out), "--config", "debug", "--quiet"]) == 0
    assert files[0].stat().st_mtime_ns == mtime
    with pytest.raises(DatasetError, match="no index.json"):
        latent_cache_tracks(tmp_path)


def test_fine_tune_starts_from_exported_weights_on_chosen_roles(corpus, tmp_path):
    """`--init` starts from an exported codec (not from scratch); `--roles bass` draws only bass stems."""
    from backline.engines.codec.train import CropStream
    from backline.engines.data.slakh import list_tracks

    stream = CropStream(corpus, "stem", seed=0, stem_roles={"bass"})
    bass_ids = {(t.path, s.id) for t in list_tracks(corpus) for s in t.audio_stems() if s.role == "bass"}
    assert bass_ids and all(len(stems) == 1 for _, stems, _ in stream.items)
    assert {(t.path, stems[0]) for t, stems, _ in stream.items} <= bass_ids

    common = ["train", "codec", "--config", "stem", "--data", str(corpus), "--size", "debug", "--batch", "2",
              "--adv-start", "100", "--quiet", "--threads", "1", "--log-every", "1"]
    assert cli(common + ["--run-dir", str(tmp_path / "a"), "--steps", "2"]) == 0
    start = load_codec("stem", weights=tmp_path / "a" / "stem.safetensors").model.state_dict()
    assert cli(common + ["--run-dir", str(tmp_path / "b"), "--steps", "1", "--lr", "0",
                         "--init", str(tmp_path / "a" / "stem.safetensors"), "--roles", "bass"]) == 0
    tuned = load_codec("stem", weights=tmp_path / "b" / "stem.safetensors")
    assert all(torch.equal(start[k], v) for k, v in tuned.model.state_dict().items())  # lr 0: the init survives
    meta = json.loads((tmp_path / "b" / "stem.json").read_text())["training"]
    assert meta["roles"] == ["bass"] and meta["init"].endswith("stem.safetensors")
    assert cli(common + ["--run-dir", str(tmp_path / "c"), "--steps", "1", "--roles", "bass",
                         "--config", "mix"]) == 2  # roles are for the stem codec only
