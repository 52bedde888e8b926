"""Paper 003's score model S(y(t), z, σ(t)) as a 1-D U-Net over time whose channels are the 513 magnitude
bins, v-objective on the project's cosine schedule (σ = tan(π t / 2) in the paper's VE terms).

Choices (written down because the paper's model is a 2-D waveform U-Net we cannot train on a CPU):
- Frequency bins are the input channels: a 16 kHz, hop-256 spectrogram is 62.5 frames/s, so a 2 s training
  crop is 128 steps and every conv mixes all bins at once; a 2-D U-Net over (bins, frames) costs ~10× more.
- Conditioning: the frozen sentence embedding z (384-d, all-MiniLM-L6-v2) is projected and added to the
  sinusoidal-time MLP embedding; every residual block gets a FiLM (scale, shift) from that sum.
- The learned null embedding z* (paper 003's CFG "unconditional" prompt) is a parameter of the model of the
  same width as z; training swaps z for z* with probability `cond_dropout`.
- `bin_scale` (a buffer, measured once on the training mixtures) divides every bin of the scaled magnitude
  so each bin of a full mixture has unit RMS: a fixed linear map, so y = Σ x_k still holds, but the 40 dB
  spectral tilt of music no longer hides the upper bins from the loss (without it a first run learned almost
  nothing in 850 steps: denoising error at t = 0.3 was no better than predicting zero).
- Self-attention at the lowest level only; lengths are padded to a multiple of 2^(levels−1) and cropped back,
  so any length works.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.accompany.spec import BINS

TEXT_DIM = 384  # all-MiniLM-L6-v2


@dataclass(frozen=True)
class ScoreConfig:
    bins: int = BINS
    text_dim: int = TEXT_DIM
    channels: tuple[int, ...] = (128, 192, 256)
    blocks: int = 1  # residual blocks per level on the way down (the way up has the same number)
    emb_dim: int = 256
    heads: int = 4
    groups: int = 8
    cond_dropout: float = 0.15
    crop: int = 128  # training crop in frames (information; the model runs on any length)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreConfig:
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


CONFIGS: dict[str, ScoreConfig] = {
    "small": ScoreConfig(),
    "debug": ScoreConfig(channels=(16, 24), emb_dim=32, heads=2, groups=4, crop=32),
}


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.out = nn.Conv1d(ch, ch, 1)
        self.heads = heads
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, t).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [b, heads, t, c/h]
        return x + self.out(h.transpose(-1, -2).reshape(b, c, t))


class ScoreModel(nn.Module):
    """v̂ = S(z_t, t, text) for z_t [B, bins, frames], t [B] in [0, 1], text [B, text_dim]."""

    def __init__(self, cfg: ScoreConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, e = cfg.channels, cfg.emb_dim
        self.null_text = nn.Parameter(torch.randn(cfg.text_dim) * 0.05)  # z*, the learned null embedding
        # per-bin scale of the representation (spec.py): measured on the training mixtures, stored with the weights
        self.register_buffer("bin_scale", torch.ones(cfg.bins))
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.text_mlp = nn.Sequential(nn.Linear(cfg.text_dim, e), nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Conv1d(cfg.bins, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            self.down.append(nn.ModuleList([ResBlock(prev if j == 0 else c, c, e, cfg.groups) for j in range(cfg.blocks)]))
            prev = c
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
        self.mid1 = ResBlock(prev, prev, e, cfg.groups)
        self.attn = Attention(prev, cfg.heads, cfg.groups)
        self.mid2 = ResBlock(prev, prev, e, cfg.groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c = ch[i]
            self.up.append(nn.ModuleList([ResBlock(prev + c if j == 0 else c, c, e, cfg.groups) for j in range(cfg.blocks)]))
            prev = c
            if i > 0:
                self.upsample.append(nn.Conv1d(c, ch[i - 1], 3, padding=1))
                prev = ch[i - 1]
        self.out_norm = nn.GroupNorm(min(cfg.groups, ch[0]), ch[0])
        self.out = nn.Conv1d(ch[0], cfg.bins, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        mult = 2 ** (len(self.cfg.channels) - 1)
        pad = (-frames) % mult
        if pad:
            x = F.pad(x, (0, pad))
        emb = self.time_mlp(timestep_embedding(t, self.cfg.emb_dim)) + self.text_mlp(text.to(x.dtype))
        emb = F.silu(emb)
        h = self.inp(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        v = self.out(F.silu(self.out_norm(h)))
        return v[..., :frames]

    def null(self, batch: int) -> torch.Tensor:
        """The learned null embedding z*, repeated [batch, text_dim]."""
        return self.null_text[None].expand(batch, -1)


def build_model(cfg: ScoreConfig | dict[str, Any]) -> ScoreModel:
    return ScoreModel(cfg if isinstance(cfg, ScoreConfig) else ScoreConfig.from_dict(cfg))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
