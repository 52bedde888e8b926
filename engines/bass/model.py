"""Paper 000's latent diffusion U-Net: 1-D residual conv blocks, self-attention with Dynamic Positional Bias at
the low-resolution levels, the mix latents concatenated to the noisy stem latents, and sinusoidal timestep
embeddings concatenated to the feature maps before every block.

Choices where the paper is vague (deliberate, so they are written down):
- DPB's MLP sees the relative offset i − j through sign(d)·log(1 + |d|) (the log-spaced coordinates of
  CrossFormer/Swin V2, the papers 000 cites for DPB): still a function of i − j alone, but offsets far beyond the
  training crop map to inputs near those seen in training, which is what lets a 256-frame-trained model run on
  a whole song in one pass. One bias per head.
- Each block gets the *raw* sinusoidal embedding of t (no MLP), concatenated as extra channels, as written.
- Residual block = GroupNorm·SiLU·Conv(k=3) twice with a 1×1 skip; downsampling is a stride-2 conv and
  upsampling nearest ×2 + conv; lengths are zero-padded at the end to a multiple of 2^(levels−1) and the
  output is cropped back, so any length ≥ 1 frame works.
- Latents are standardised per channel with statistics measured on the training set (`stem_shift/scale`,
  `mix_shift/scale`, stored as buffers in the weights) so the schedule sees unit-variance data whatever the
  codec's latent scale; grounding is affine-invariant so it may act in either space.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    stem_dim: int = 32  # dim_y (stem codec)
    cond_dim: int = 64  # dim_x (mix codec)
    channels: tuple[int, ...] = (64, 128, 192)
    blocks: int = 2  # residual blocks per level (down path; the up path has blocks + 1)
    attn_levels: tuple[int, ...] = (2,)  # level indices (0 = full rate) that get self-attention
    heads: int = 4
    time_dim: int = 32  # sinusoidal embedding width concatenated before every block
    dpb_hidden: int = 64
    groups: int = 8
    cond_dropout: float = 0.15
    crop: int = 256  # training crop in latent frames (information; the model runs on any length)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        d = dict(d)
        for k in ("channels", "attn_levels"):
            if k in d:
                d[k] = tuple(d[k])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


CONFIGS: dict[str, UNetConfig] = {
    # 41.8M parameters, the paper's 42M (4 levels, attention at the two lowest).
    "paper": UNetConfig(channels=(128, 256, 384, 576), blocks=2, attn_levels=(2, 3), heads=8, time_dim=128,
                        dpb_hidden=128, groups=32),
    # What we ship (~2.3M parameters, stored as fp16 ≈ 4.6 MiB): trainable on a CPU within a session.
    "small": UNetConfig(channels=(64, 96, 128), blocks=2, attn_levels=(1, 2), heads=4, time_dim=32,
                        dpb_hidden=64, groups=8),
    # Tests only.
    "debug": UNetConfig(channels=(16, 32), blocks=1, attn_levels=(1,), heads=2, time_dim=8, dpb_hidden=16,
                        groups=4, crop=32),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids of t·1000 (t ∈ [0, 1]) → [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, time_dim: int, groups: int) -> None:
        super().__init__()
        cin_t = cin + time_dim
        self.norm1 = nn.GroupNorm(_groups(groups, cin_t), cin_t)
        self.conv1 = nn.Conv1d(cin_t, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(groups, cout), cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, temb[:, :, None].expand(-1, -1, x.shape[-1]).to(x.dtype)], dim=1)
        h = self.conv1(F.silu(self.norm1(h)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def _groups(groups: int, channels: int) -> int:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


class DynamicPositionBias(nn.Module):
    """B_ij = MLP(i − j) per head, for any length (paper 000 §3.2, after CrossFormer)."""

    def __init__(self, heads: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, heads))

    def forward(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        rel = torch.arange(-(length - 1), length, device=device, dtype=torch.float32)
        feats = (torch.sign(rel) * torch.log1p(rel.abs()))[:, None]
        table = self.mlp(feats)  # [2L-1, H]
        idx = torch.arange(length, device=device)
        offsets = idx[:, None] - idx[None, :] + (length - 1)  # i − j shifted to ≥ 0
        return table[offsets].permute(2, 0, 1).to(dtype)  # [H, L, L]


class AttentionBlock(nn.Module):
    def __init__(self, channels: int, heads: int, dpb_hidden: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(groups, channels), channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.out = nn.Conv1d(channels, channels, 1)
        self.dpb = DynamicPositionBias(heads, dpb_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, n).transpose(-1, -2).unbind(1)
        bias = self.dpb(n, x.device, q.dtype)[None]  # softmax(QKᵀ/√d + B)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return x + self.out(h.transpose(-1, -2).reshape(b, c, n))


class Level(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, cfg: UNetConfig, attn: bool) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, cfg.time_dim, cfg.groups) for i in range(n))
        self.attn = nn.ModuleList(AttentionBlock(cout, cfg.heads, cfg.dpb_hidden, cfg.groups) if attn else nn.Identity()
                                  for _ in range(n))

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for res, attn in zip(self.res, self.attn):
            x = attn(res(x, temb))
        return x


class BassUNet(nn.Module):
    """G_θ(z_t, t, c_x) → v̂. Inputs [B, stem_dim, T], [B], [B, cond_dim, T] (standardised latents)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.inp = nn.Conv1d(cfg.stem_dim + cfg.cond_dim, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down.append(Level(ch[max(i - 1, 0)] if i else ch[0], c, cfg.blocks, cfg, i in cfg.attn_levels))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
        deepest = ch[-1]
        self.mid = Level(deepest, deepest, 2, cfg, True)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            cin = (ch[i + 1] if i < len(ch) - 1 else deepest) + ch[i]
            self.up.append(Level(cin, ch[i], cfg.blocks + 1, cfg, i in cfg.attn_levels))
            if i > 0:
                self.upsample.append(nn.Conv1d(ch[i], ch[i], 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(cfg.groups, ch[0]), ch[0])
        self.out = nn.Conv1d(ch[0], cfg.stem_dim, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        for name, dim in (("stem", cfg.stem_dim), ("mix", cfg.cond_dim)):
            self.register_buffer(f"{name}_shift", torch.zeros(dim))
            self.register_buffer(f"{name}_scale", torch.ones(dim))

    # --- latent standardisation -----------------------------------------------------------------------
    def set_latent_stats(self, stem_mean: torch.Tensor, stem_std: torch.Tensor, mix_mean: torch.Tensor,
                         mix_std: torch.Tensor) -> None:
        self.stem_shift.copy_(stem_mean)
        self.stem_scale.copy_(stem_std.clamp_min(1e-4))
        self.mix_shift.copy_(mix_mean)
        self.mix_scale.copy_(mix_std.clamp_min(1e-4))

    def norm_stem(self, c: torch.Tensor) -> torch.Tensor:
        return (c - self.stem_shift[:, None]) / self.stem_scale[:, None]

    def denorm_stem(self, c: torch.Tensor) -> torch.Tensor:
        return c * self.stem_scale[:, None] + self.stem_shift[:, None]

    def norm_mix(self, c: torch.Tensor) -> torch.Tensor:
        return (c - self.mix_shift[:, None]) / self.mix_scale[:, None]

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.cfg.channels) - 1)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n = z.shape[-1]
        pad = (-n) % self.multiple
        if pad:
            z, cond = F.pad(z, (0, pad)), F.pad(cond, (0, pad))
        temb = timestep_embedding(t, self.cfg.time_dim).to(z.dtype)
        h = self.inp(torch.cat([z, cond.to(z.dtype)], dim=1))
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, temb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, temb)
        for j, level in enumerate(self.up):
            skip = skips.pop()
            if j > 0:
                h = self.upsample[j - 1](F.interpolate(h, size=skip.shape[-1], mode="nearest"))
            h = level(torch.cat([h, skip], dim=1), temb)
        out = self.out(F.silu(self.out_norm(h)))
        return out[..., :n]


def build_model(config: dict[str, Any] | UNetConfig | str) -> BassUNet:
    if isinstance(config, str):
        cfg = CONFIGS[config]
    elif isinstance(config, UNetConfig):
        cfg = config
    else:
        cfg = UNetConfig.from_dict(config)
    return BassUNet(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BassUNet", "CONFIGS", "UNetConfig", "build_model", "count_parameters", "timestep_embedding",
           "DynamicPositionBias"]
