"""The bass U-Net: Dynamic Positional Bias on lengths never seen in training, shapes, configs."""

import torch

from backline.engines.bass.model import CONFIGS, DynamicPositionBias, build_model, count_parameters


def test_dpb_bias_depends_only_on_the_offset_and_extends_to_any_length():
    dpb = DynamicPositionBias(heads=3, hidden=8)
    with torch.no_grad():
        b = dpb(40, torch.device("cpu"), torch.float32)
        assert b.shape == (3, 40, 40)
        # Toeplitz: B_ij = MLP(i − j)
        for d in (-7, 0, 5):
            diag = torch.diagonal(b, offset=-d, dim1=1, dim2=2)
            assert torch.allclose(diag, diag[:, :1].expand_as(diag))
        # a longer map contains the shorter one (same function of i − j, nothing tied to a fixed length)
        big = dpb(500, torch.device("cpu"), torch.float32)
        assert torch.allclose(big[:, :40, :40], b, atol=1e-6)
        assert torch.isfinite(big).all()


def test_debug_unet_runs_on_half_and_four_times_the_training_crop_and_odd_lengths():
    torch.manual_seed(0)
    model = build_model("debug").eval()
    crop = model.cfg.crop
    with torch.no_grad():
        for length in (crop // 2, crop * 4, 1, 7, crop + 3):
            z = torch.randn(2, model.cfg.stem_dim, length)
            c = torch.randn(2, model.cfg.cond_dim, length)
            out = model(z, torch.rand(2), c)
            assert out.shape == z.shape and torch.isfinite(out).all()


def test_attention_sees_far_context_at_unseen_lengths():
    """The whole input is context, at any length: a change in the mix at the very end of a 4x-crop input reaches
    the first output frame (beyond the convolutions' reach; attention and GroupNorm carry it)."""
    torch.manual_seed(1)
    model = build_model("debug").eval()
    for p in model.parameters():  # untrained output conv is zero: give it weights so the test can see through
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.2)
    length = model.cfg.crop * 4
    z = torch.randn(1, model.cfg.stem_dim, length)
    c = torch.randn(1, model.cfg.cond_dim, length)
    c2 = c.clone()
    c2[..., -4:] += 5.0
    with torch.no_grad():
        a, b = model(z, torch.tensor([0.5]), c), model(z, torch.tensor([0.5]), c2)
    assert (a[..., 0] - b[..., 0]).abs().max() > 1e-4


def test_config_sizes():
    assert 40e6 < count_parameters(build_model("paper")) < 44e6  # paper 000: 42M
    small = count_parameters(build_model("small"))
    assert small * 2 < 10 * 2**20  # shipped as fp16 within 10 MiB
    assert set(CONFIGS) == {"paper", "small", "debug"}
