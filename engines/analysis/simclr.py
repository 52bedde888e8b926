"""A SimCLR music encoder (paper 002a) on a compact NFNet-style backbone, and the (mix, stem) matching model.

Training recipe kept from the paper: NT-Xent with τ = 0.1 over the batch (2N views, the other 2N − 2 are
negatives); positives are two 3 s snippets of one track whose centres are < 5 s apart; 96-bin HTK log-mel at
16 kHz, 25 ms window, FFT 2048, 10 ms hop (96 × 300 per snippet); mixup on the log-mels with gains
λ ~ Beta(5, 2) against a shuffled copy of the batch; a ReLU MLP projector used only by the loss; embeddings
are the global-average-pooled last conv features, averaged over snippets taken at 0.5 Hz along a track.

Backbone ("NF-Lite") vs SF-NFNet-F0 (62.4M parameters in the paper), what we kept and changed:
* kept: no batch norm anywhere; scaled weight standardisation in every conv (w ← g·(w − μ)/(σ·√fan_in));
  residual blocks x + α·f(x / β) with α = 0.2 and β the analytically tracked expected std of the input
  (reset at each transition block), zero-initialised skip gains, γ-scaled GELU (γ = 1.7015), bottleneck
  blocks with grouped 3×3 convs and squeeze-excite, a final 1×1 conv to 2× the last width, then GAP.
* changed, for a 2-core CPU: widths (16 stem; 32, 64, 128, 128 stages) instead of (256, 512, 1536, 1536);
  one block per stage instead of (1, 2, 6, 3); group width 16 instead of 128; no stochastic depth and no
  adaptive gradient clipping (plain global-norm clipping at 1.0 instead); the "short-fast" idea is kept
  as stride (2, 1) — frequency only — in the last stage so the time axis stays finer than the frequency
  axis. ~0.3M parameters.
* projector: 3 layers (two ReLU hidden layers of 256, output 128; paper: 3 × 4096); embedding 256-dim.

Matching ("fit"): the same backbone (initialised from the SimCLR weights) with two projector heads, one for
the mix (everything but the stem) and one for the stem, trained CLIP-style: a symmetric NT-Xent (τ = 0.1)
where the positive of a mix is its own bass, drums or other stem at the same time and the negatives are
the other stems of the batch. `match_matrix` gives paper 000's soft-assignment matrix (softmax over stems
of cosine / τ); the fit score is a logistic calibration sigmoid(a·cos + b) fitted on held-out pairs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.analysis.features import SIMCLR_N_MELS
from backline.engines.core.errors import ConfigError

TAU = 0.1
SNIPPET_FRAMES = 300  # 3 s at 100 frames/s
MIXUP_BETA = (5.0, 2.0)
GELU_GAMMA = 1.7015043497085571  # makes GELU variance-preserving for unit-Gaussian inputs (NFNet)


@dataclass(frozen=True)
class SimCLRConfig:
    stem: int = 16
    widths: tuple[int, ...] = (32, 64, 128, 128)
    strides: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 1))
    group_width: int = 16
    embed_dim: int = 256
    proj_dim: int = 256
    proj_layers: int = 3
    out_dim: int = 128
    alpha: float = 0.2
    n_mels: int = SIMCLR_N_MELS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SimCLRConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        d["strides"] = tuple(tuple(s) for s in d["strides"])
        return cls(**d)


CONFIGS: dict[str, SimCLRConfig] = {
    "small": SimCLRConfig(),
    "debug": SimCLRConfig(stem=8, widths=(8, 16), strides=((2, 2), (2, 2)), group_width=8, embed_dim=32,
                          proj_dim=32, proj_layers=2, out_dim=16),
}
CONFIGS["shipped"] = CONFIGS["small"]


def get_config(name: str) -> SimCLRConfig:
    if name not in CONFIGS:
        raise ConfigError(f"unknown SimCLR config {name!r}", fix=f"use one of {', '.join(CONFIGS)}")
    return CONFIGS[name]


class WSConv2d(nn.Conv2d):
    """Conv with scaled weight standardisation and a learnable per-channel gain (Brock et al., NF-ResNets)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))
        nn.init.kaiming_normal_(self.weight, nonlinearity="linear")

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self.gain * (w - mean) * torch.rsqrt(var * fan_in + 1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


def act(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x) * GELU_GAMMA


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, ratio: float = 0.5) -> None:
        super().__init__()
        hidden = max(1, int(ch * ratio))
        self.fc1 = nn.Conv2d(ch, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))  # ×2 keeps the variance (NFNet)


class NFBlock(nn.Module):
    """Bottleneck NF block: x + α·skip_gain·f(act(x)/β); a transition block also reshapes the shortcut."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int], beta: float, alpha: float, group_width: int) -> None:
        super().__init__()
        mid = max(group_width, cout // 2 // group_width * group_width)
        self.beta, self.alpha = beta, alpha
        self.transition = cin != cout or stride != (1, 1)
        self.conv1 = WSConv2d(cin, mid, 1)
        self.conv2 = WSConv2d(mid, mid, 3, stride=stride, padding=1, groups=mid // group_width)
        self.conv3 = WSConv2d(mid, mid, 3, padding=1, groups=mid // group_width)
        self.conv4 = WSConv2d(mid, cout, 1)
        self.se = SqueezeExcite(cout)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        self.shortcut = None
        if self.transition:
            self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride != (1, 1) else nn.Identity()
            self.shortcut = WSConv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = act(x) / self.beta
        shortcut = self.shortcut(self.pool(out)) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(act(out))
        out = self.conv3(act(out))
        out = self.conv4(act(out))
        out = self.se(out)
        return shortcut + out * self.alpha * self.skip_gain


class NFLiteEncoder(nn.Module):
    """Log-mel [B, 96, T] -> embedding [B, embed_dim] (GAP of the last conv features)."""

    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mel_mean", torch.zeros(config.n_mels))
        self.register_buffer("mel_std", torch.ones(config.n_mels))
        self.stem = WSConv2d(1, config.stem, 3, stride=2, padding=1)
        blocks, cin, expected_std = [], config.stem, 1.0
        for width, stride in zip(config.widths, config.strides):
            blocks.append(NFBlock(cin, width, tuple(stride), beta=expected_std, alpha=config.alpha,
                                  group_width=config.group_width))
            expected_std = math.sqrt(1.0 + config.alpha**2)  # variance after a transition block: 1 + α²
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.final = WSConv2d(cin, config.embed_dim, 1)

    def normalize(self, logmel: torch.Tensor) -> torch.Tensor:
        return (logmel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def forward(self, logmel: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
        x = logmel if normalized else self.normalize(logmel)
        x = self.stem(x[:, None])
        x = self.blocks(x)
        x = act(self.final(x))
        return x.mean(dim=(2, 3))


def projector(cfg: SimCLRConfig, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """SimCLR's MLP projector (ReLU, as in the paper); the matching heads use GELU (see MatchingModel)."""
    layers: list[nn.Module] = []
    dim = cfg.embed_dim
    for _ in range(cfg.proj_layers - 1):
        layers += [nn.Linear(dim, cfg.proj_dim), act()]
        dim = cfg.proj_dim
    layers.append(nn.Linear(dim, cfg.out_dim))
    return nn.Sequential(*layers)


class SimCLRModel(nn.Module):
    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = NFLiteEncoder(config)
        self.projector = projector(config)

    def forward(self, logmel: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
        return self.projector(self.encoder(logmel, normalized=normalized))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """SimCLR NT-Xent over 2N views: mean over i of −log(exp(s_i,p(i)/τ) / Σ_{k≠i} exp(s_i,k/τ)), s = cosine."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = z1.shape[0]
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Cross-modal NT-Xent: row i of a matches row i of b; negatives are the other rows of the other side."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / tau
    t = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t))


def mixup(x: torch.Tensor, generator: torch.Generator | None = None, beta: tuple[float, float] = MIXUP_BETA) -> torch.Tensor:
    """x' = λ·x + (1 − λ)·x[perm] on log-mels, λ ~ Beta(5, 2) per example (paper 002a §2.1)."""
    n = x.shape[0]
    if n < 2:
        return x
    perm = torch.randperm(n, generator=generator)
    g1 = torch._standard_gamma(torch.full((n,), beta[0]), generator=generator)
    g2 = torch._standard_gamma(torch.full((n,), beta[1]), generator=generator)
    lam = (g1 / (g1 + g2)).to(x.dtype).view(n, *([1] * (x.ndim - 1)))
    return lam * x + (1 - lam) * x[perm]


@dataclass
class Calibration:
    a: float = 10.0
    b: float = -5.0


class MatchingModel(nn.Module):
    """(mix, stem) matching: shared NF-Lite backbone, separate mix/stem projectors, cosine similarity."""

    def __init__(self, config: SimCLRConfig, calibration: Calibration | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = NFLiteEncoder(config)
        # GELU heads: with ReLU, fine-tuning from the SimCLR projector collapsed to dead units (constant
        # embeddings, loss stuck at log N) in our first run; GELU has no dead zone.
        self.mix_head = projector(config, nn.GELU)
        self.stem_head = projector(config, nn.GELU)
        self.register_buffer("calib", torch.tensor([10.0, -5.0]))
        if calibration is not None:
            self.calib.copy_(torch.tensor([calibration.a, calibration.b]))

    def embed_mix(self, logmel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mix_head(self.encoder(logmel)), dim=-1)

    def embed_stem(self, logmel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.stem_head(self.encoder(logmel)), dim=-1)

    def loss(self, mix: torch.Tensor, stem: torch.Tensor, tau: float = TAU) -> torch.Tensor:
        return symmetric_info_nce(self.mix_head(self.encoder(mix)), self.stem_head(self.encoder(stem)), tau)

    def forward(self, mix: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        """The training loss (so a DDP wrapper sees the whole graph)."""
        return self.loss(mix, stem)

    def fit_from_cosine(self, cos: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.calib[0] * cos + self.calib[1])


def soft_assignment(mix_emb: torch.Tensor, stem_emb: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Paper 000's matching matrix: row m = softmax over stems of cos(mix_m, stem_s) / τ."""
    return torch.softmax(F.normalize(mix_emb, dim=-1) @ F.normalize(stem_emb, dim=-1).T / tau, dim=-1)


def fit_calibration(pos: torch.Tensor, neg: torch.Tensor, steps: int = 500) -> Calibration:
    """Logistic regression of match/no-match on cosine (2 parameters), balanced classes."""
    x = torch.cat([pos, neg]).float()
    y = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).float()
    w = torch.cat([torch.full_like(pos, 0.5 / len(pos)), torch.full_like(neg, 0.5 / len(neg))]).float()
    params = torch.tensor([5.0, 0.0], requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=steps)

    def closure():
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(params[0] * x + params[1], y, reduction="none") * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    p = params.detach()
    return Calibration(float(p[0]), float(p[1]))
