"""The mask-parametrised GMSDI score model (engines/separate/diffusion.py): its denoiser is a mask over the mixture,
it starts as the predictive network, the separator's estimates sum to the mixture, the sampler is deterministic
for a seed, and the trainer's loss reaches the conditioning layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError
from backline.engines.core.frontend import stft
from backline.engines.separate import diffusion as gm
from backline.engines.separate.model import BINS, HOP, N_FFT, ROLES, SAMPLE_RATE, MaskNet, magnitude


def _music(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Three 'parts' (a low tone, clicks, a high chord) summed: [3, samples]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    bass = 0.4 * torch.sin(2 * torch.pi * 55 * t)
    drums = torch.zeros_like(t)
    drums[:: SAMPLE_RATE // 4] = 1.0
    drums = torch.nn.functional.conv1d(drums[None, None], torch.randn(1, 1, 200, generator=g) * 0.1,
                                       padding=100)[0, 0, : t.shape[0]]
    other = 0.2 * sum(torch.sin(2 * torch.pi * f * t) for f in (440.0, 554.0, 659.0))
    return torch.stack([bass, drums, other])


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    pred = MaskNet(hidden=16, layers=1).eval()
    score = gm.from_predictive(pred).eval()
    return pred, score


def test_denoiser_is_a_bounded_mask_and_starts_as_the_predictive_network(nets):
    pred, score = nets
    mag = magnitude(_music().sum(0))[None]
    y = mag * 0.5 / mag.pow(2).mean().sqrt()
    u = y * 0.3 + torch.randn(y.shape)
    with torch.no_grad():
        p = pred(mag)[0]
        for role in range(len(gm.CONDITIONS)):
            m = score.mask(u, y, torch.tensor([0.5]), torch.tensor([role]))
            assert m.shape == (1, BINS, y.shape[-1])
            assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
        # far above the data (σ ≫ y) the noisy source says nothing: the mask is the predictive one (its
        # complement for a "no-" role), because every conditioning layer starts at zero
        big = torch.tensor([1e4])
        for k in range(len(ROLES)):
            src = score.mask(u, y, big, torch.tensor([k]))[0]
            rest = score.mask(u, y, big, torch.tensor([k + len(ROLES)]))[0]
            torch.testing.assert_close(src, p[k], atol=1e-4, rtol=0)
            torch.testing.assert_close(rest, 1 - p[k], atol=1e-4, rtol=0)
        audible = y[0] > 1e-3 * y.max()  # (where the mix is silent a mask means nothing)
        torch.testing.assert_close(gm.onepass_masks(score, mag[0])[:, audible], p[:, audible], atol=1e-4, rtol=0)
        # near σ = 0 a denoiser returns its input (within [0, y]): the mask-space skip
        clean = y * torch.rand(y.shape, generator=torch.Generator().manual_seed(1))
        d = score.denoise(clean, y, torch.tensor([1e-4]), torch.tensor([0]))
        assert float((d - clean).abs().max()) < 1e-3 * float(y.max())


def test_separator_estimates_sum_to_the_mixture_and_the_sampler_is_seeded(nets):
    _, score = nets
    mag = magnitude(_music().sum(0))
    y = mag * 0.5 / mag.pow(2).mean().sqrt()
    s = gm.Sampling(steps=3, churn=20.0, seed=7)
    est = gm.separator_estimates(score, y, s)
    assert est.shape == (len(ROLES), BINS, y.shape[-1])
    torch.testing.assert_close(est.sum(0), y, atol=1e-5 * float(y.max()), rtol=0)  # the drums are the mixture's remainder
    again = gm.separator_estimates(score, y, s)
    assert torch.equal(est, again)
    other = gm.separator_estimates(score, y, gm.Sampling(steps=3, churn=20.0, seed=8))
    assert not torch.equal(est, other)
    masks = gm.masks_from(est, y, exclusive=True)
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("mode", ["onepass", "separator", "extractor", "ensemble", "storm-separator", "storm-extractor"])
def test_every_mode_separates_through_the_engine_windows(nets, mode):
    pred, score = nets
    music = _music(seconds=0.5).numpy()
    mix = Audio(np.stack([music.sum(0), 0.5 * music.sum(0)]).astype(np.float32), SAMPLE_RATE)
    sep = gm.DiffusionSeparator(pred, score, mode, gm.Sampling(steps=2, storm_sigma=0.3 if "storm" in mode else 0))
    parts = [("bass", False), ("drums", False), ("other", False), ("bass", True)]
    bass, drums, other, no_bass = sep.separate(mix, parts)
    assert bass.samples.shape == mix.samples.shape
    np.testing.assert_allclose(bass.samples + no_bass.samples, mix.samples, atol=1e-4)
    if mode in ("separator", "storm-separator"):  # exclusive masks: the three stems are the mix
        np.testing.assert_allclose(bass.samples + drums.samples + other.samples, mix.samples, atol=1e-4)


def test_unknown_mode_and_missing_weights_are_one_clear_error(nets):
    pred, score = nets
    with pytest.raises(ConfigError, match="unknown separation mode"):
        gm.DiffusionSeparator(pred, score, "magic")
    with pytest.raises(ConfigError, match="needs the GMSDI score weights"):
        gm.DiffusionSeparator(pred, None, "extractor")


def test_loss_trains_the_conditioning_and_weights_round_trip(nets, tmp_path):
    from backline.engines.separate.diffusion_train import export

    _, score = nets
    net = gm.from_predictive(MaskNet(hidden=16, layers=1))
    music = _music(seconds=1.0)[None]
    loss = gm.denoising_loss(net, stft(music.sum(1), N_FFT, HOP), stft(music, N_FFT, HOP),
                             generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert float(net.inp_x.weight.grad.abs().sum()) > 0  # zero-initialised, but it receives gradient
    assert float(net.role_emb.weight.grad.abs().sum()) > 0
    export(net, tmp_path / "w", {"steps": 0})
    back = gm.load_score_model(tmp_path / "w")
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], tensor.half().float())


def test_trainer_runs_resumes_and_exports(tmp_path):
    """`backline train separate-gmsdi`: a few steps on cached renders, snapshots and the held-out denoising loss in
    metrics.jsonl, then a second call resumes from the checkpoint and exports weights that load."""
    import json

    from backline.host.cli import main

    cache = tmp_path / "cache"
    cache.mkdir()
    for i in range(2):
        np.save(cache / f"Track{i:05d}_v0.npy", _music(seconds=7.0, seed=i).numpy().astype(np.float16))
    run = tmp_path / "run"
    args = ["train", "separate-gmsdi", "--cache", str(cache), "--val-cache", str(cache), "--run-dir", str(run),
            "--init", "", "--batch", "2", "--crop-seconds", "1", "--eval-every", "2"]
    assert main([*args, "--steps", "2"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and "val_l1_sigma0.3" in rows[0]
    assert rows[-1]["step"] == 2 and np.isfinite(rows[-1]["loss"])
    assert (run / "snapshots" / "step2.safetensors").exists()
    assert main([*args, "--steps", "3", "--export", str(tmp_path / "w")]) == 0
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    model = gm.load_score_model(tmp_path / "w")
    assert isinstance(model, gm.MaskScoreNet)
