"""Paper 003's GMSDI with a denoiser that is a mask over the mixture: the score model's x̂₀ is M ⊙ |Y|, M ∈ [0, 1].

Issue 21 keeps paper 003's framework (per-source score models coupled through the mixture y = Σ_k x_k: the
separator, the extractor, their ensemble) but asks the denoiser to learn *what to keep* instead of painting a
spectrum. This module is that score model and its three ways of sampling, plus a StoRM-style refinement of the
predictive network's estimate (model.py), all run by the project's one sampler loop (`engines.diffusion.sample`,
Karras' stochastic Euler as in the paper) through the GMSDI modes of `engines.accompany.gmsdi`, which only need a
`guide.denoise(u, t, roles, neg, w) -> D(u)`: `MaskGuide` is that guide.

Where paper 003 is vague or does not fit, the choices (deliberate, each for a reason):

- **Space.** The states are magnitude STFTs (mono 22.05 kHz, FFT 1024, hop 256: the predictive network's grid,
  `frontend.stft`), scaled by one gain per mixture (`accompany.spec.mix_scale`: RMS 0.5) so σ means the same on
  every song. Magnitudes are not exactly additive (|Σ S_k| ≤ Σ |S_k|); as in the accompaniment engine every mode
  ends with ratio masks over the mixture's complex STFT (mixture phase), so the returned stems sum to the mix.
- **A conditional score model.** The paper's S(x, z, σ) sees only the noisy source and the text; ours also sees
  the mixture (mask parametrisation needs |Y|), i.e. it is a score of p(x_k | y). The text embedding z_k becomes
  one of six learned role embeddings: the three sources (bass, drums, other) and their complements (no-bass,
  no-drums, no-other), which are the ⊗_{l≠k} z_l "rest" prompts the extractor scores y − x_k with. No
  classifier-free guidance: there is no text to drop (w is accepted by the guide and ignored).
- **Denoiser.** D_k(u, y, σ) = M ⊙ y with M = w ⊙ clip(u / y, 0, 1) + (1 − w) ⊙ M_net,
  w = (s·y)² / ((s·y)² + σ²) per bin: a Wiener-style skip in mask space (EDM's c_skip, with the data spread taken
  as s·y since a source is somewhere in [0, y]; s is one learned scalar). It keeps D → u as σ → 0, which a
  denoiser must do and a GRU cannot learn quickly, and keeps M in [0, 1] since both terms are.
  M_net is the predictive network's architecture (model.py: level-blind log features, 2-layer bi-GRU, softmax
  over the three roles; a complement role takes 1 − its source's mask), with the noisy source (w·r and w per
  bin), log σ and the role added to its first hidden layer through zero-initialised layers: a network loaded
  from the shipped weights starts as exactly the shipped predictive estimate at every σ, so training only has to
  learn what the noisy source adds.
- **Loss.** L1 on x̂₀ against the true source magnitude (the predictive network's loss, bass weighted ×2),
  log σ ~ N(−1.2, 1.2) (EDM's P_mean, P_std), a role drawn per crop among the six.
- **Separator.** The paper constrains the drums (its best); so do we: the states are bass and other, drums =
  y(0) − bass − other. **Extractor.** x_k against the complement role at y(0) − x_k. **Ensemble.** per role the
  better system on the seed-2 held-out songs (the paper's ensemble is the per-stem maximum, Table 2).
- **Coupling strength / CFG weight.** None to choose: the separator and extractor updates are the paper's,
  without guidance.
- **StoRM** (Lemercier et al. 2023): start from the predictive network's estimate, x(σ_s) = x̂_pred + σ_s ε, and
  run the same coupled sampler from σ_s down, a few steps; the diffusion only corrects what the predictive
  network left, instead of sampling from noise.

Measured (weights/TRAINING.md, 48 minutes of one CPU thread from the shipped weights): neither beats the predictive
network — the extractor ties it on bass over 16 held-out songs (+6.43 dB both) and loses on drums, StoRM returns
its estimate within 0.12 dB, the separator is below — at 4–18× its CPU time. So `separate` keeps the predictive
network and this module is the benchmark path (benchmarks/separate_gmsdi_eval.py), kept for the next try.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from backline.engines.accompany.gmsdi import Extractor as GmsdiExtractor
from backline.engines.accompany.gmsdi import Separator as GmsdiSeparator
from backline.engines.accompany.spec import mix_scale
from backline.engines.core.errors import ConfigError
from backline.engines.core.weights import load_weights
from backline.engines.diffusion.sampler import EulerChurn, sample, t_of
from backline.engines.separate.engine import Separator
from backline.engines.separate.model import BINS, DEFAULT_CONFIG, ROLES, MaskNet, features, magnitude

KIND = "separate-gmsdi-mask"
#: The six role conditions: the three sources, then the band without each (the extractor's "rest" prompt).
CONDITIONS: tuple[str, ...] = (*ROLES, *(f"no-{r}" for r in ROLES))
#: The separator's constrained source (paper 003: drums) and its free ones, in state order.
CONSTRAINED = "drums"
FREE: tuple[str, ...] = tuple(r for r in ROLES if r != CONSTRAINED)
P_MEAN, P_STD = -1.2, 1.2
SIGMA_MIN, SIGMA_MAX = 1e-3, 3.0
EPS = 1e-5
CONFIG: dict[str, Any] = DEFAULT_CONFIG | {"conditions": list(CONDITIONS), "sigma_features": 16}


def sigma_features(sigma: torch.Tensor, n: int) -> torch.Tensor:
    """Fourier features of log σ ([B] → [B, n]), σ from 1e-3 to 40 spread over a few periods."""
    freqs = torch.arange(1, n // 2 + 1, dtype=torch.float32, device=sigma.device)
    x = sigma.float().clamp_min(1e-6).log()[:, None] * freqs[None] / 4.0
    return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


class MaskScoreNet(MaskNet):
    """The GMSDI denoiser D(u, y, σ, role) = M ⊙ y (module docstring). Same `inp`/`rnn`/`out` as MaskNet, so the
    shipped predictive weights load into it; the conditioning layers start at zero."""

    def __init__(self, bins: int = BINS, hidden: int = 176, layers: int = 2,
                 roles: list[str] | tuple[str, ...] = ROLES, sigma_features: int = 16, **_: Any) -> None:
        super().__init__(bins, hidden, layers, roles)
        self.n_sigma = int(sigma_features)
        self.inp_x = nn.Linear(2 * self.bins, hidden)
        self.inp_sigma = nn.Linear(self.n_sigma, hidden)
        self.role_emb = nn.Embedding(2 * len(self.roles), hidden)
        for layer in (self.inp_x, self.inp_sigma, self.role_emb):
            nn.init.zeros_(layer.weight)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
        self.log_spread = nn.Parameter(torch.tensor(math.log(0.5)))

    def reliability(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """w = (s·y)² / ((s·y)² + σ²) per bin: how much the noisy source says about the clean one there."""
        sy2 = (self.log_spread.exp() * y) ** 2
        return sy2 / (sy2 + sigma.float().reshape(-1, 1, 1) ** 2)

    def mask(self, u: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor, role: torch.Tensor) -> torch.Tensor:
        """u: noisy source [B, F, T] (VE: x + σε), y: mixture magnitude [B, F, T], σ [B], role [B] (index
        into CONDITIONS) → M [B, F, T] in [0, 1]."""
        b, f, t = y.shape
        w = self.reliability(y, sigma)
        r = (u / y.clamp_min(EPS)).clamp(0.0, 1.0)
        cond = torch.cat([w * r, w], dim=1).transpose(1, 2)  # [B, T, 2F]
        h = self.inp(features(y).transpose(1, 2)) + self.inp_x(cond)
        h = h + (self.inp_sigma(sigma_features(sigma, self.n_sigma)) + self.role_emb(role))[:, None, :]
        h, _ = self.rnn(h)
        logits = self.out(h).view(b, t, len(self.roles), f).permute(0, 2, 3, 1)  # [B, R, F, T]
        soft = torch.softmax(logits, dim=1)
        k = role % len(self.roles)
        picked = soft[torch.arange(b, device=y.device), k]
        m_net = torch.where((role >= len(self.roles))[:, None, None], 1.0 - picked, picked)
        return w * r + (1.0 - w) * m_net

    def denoise(self, u: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor, role: torch.Tensor) -> torch.Tensor:
        """x̂₀ = M ⊙ y."""
        return self.mask(u, y, sigma, role) * y


def build(config: dict[str, Any] | None = None) -> MaskScoreNet:
    keys = ("bins", "hidden", "layers", "roles", "sigma_features")
    return MaskScoreNet(**{k: v for k, v in (config or CONFIG).items() if k in keys})


def from_predictive(predictive: nn.Module) -> MaskScoreNet:
    """A score network whose first estimate is the predictive network's (its inp/rnn/out weights)."""
    net = build(CONFIG | {"hidden": predictive.rnn.hidden_size, "layers": predictive.rnn.num_layers})
    missing, unexpected = net.load_state_dict(predictive.state_dict(), strict=False)
    assert not unexpected and all(k.split(".")[0] in ("inp_x", "inp_sigma", "role_emb", "log_spread")
                                  for k in missing), (missing, unexpected)
    return net


def load_score_model(path: str | Path) -> MaskScoreNet:
    """The score network from fp16 safetensors + JSON (`train separate-gmsdi --export`), computed in float32."""
    model, _ = load_weights(path, kind=KIND, build=build, reference=CONFIG | {"dtype": "float16"})
    return model.float().eval()


def role_index(name: str) -> int:
    return CONDITIONS.index(name)


# ---------------------------------------------------------------------------------------------- training

def denoising_loss(model: MaskScoreNet, mix_spec: torch.Tensor, stem_specs: torch.Tensor,
                   generator: torch.Generator | None = None, role_weights: tuple[float, ...] = (2.0, 1.0, 1.0)
                   ) -> torch.Tensor:
    """One batch's loss: complex mixture STFT [B, F, T], complex stem STFTs [B, R, F, T]. Per crop a role of
    CONDITIONS (a complement's target is |Y − S_k|), σ ~ logN(P_MEAN, P_STD), u = x + σε; L1 of M ⊙ y − x
    relative to the crop's mean |y|, weighted by the role's source (bass ×2)."""
    b, r = stem_specs.shape[:2]
    y = mix_spec.abs()
    scale = mix_scale(y)  # [B, 1, 1]
    y = y * scale
    role = torch.randint(0, 2 * r, (b,), generator=generator)
    k = role % r
    src = stem_specs[torch.arange(b), k]
    target = torch.where((role >= r)[:, None, None], (mix_spec - src).abs(), src.abs()) * scale
    sigma = (P_MEAN + P_STD * torch.randn(b, generator=generator)).exp().clamp(SIGMA_MIN, 40.0)
    u = target + sigma[:, None, None] * torch.randn(target.shape, generator=generator)
    est = model.denoise(u, y, sigma, role)
    err = (est - target).abs().mean(dim=(1, 2)) / y.mean(dim=(1, 2)).clamp_min(EPS)
    weights = torch.tensor(role_weights, dtype=err.dtype)[k]
    return (err * weights).sum() / weights.sum()


# ---------------------------------------------------------------------------------------------- sampling

@dataclass
class MaskGuide:
    """The guide the GMSDI modes of `engines.accompany.gmsdi` call: `denoise(u_ve, t, roles, neg, w)` → D(u)
    for a batch of VE states, every row against the same mixture y(0). `roles` holds indices into CONDITIONS
    (where the text-conditioned guide takes embeddings); `neg` and `w` (CFG) do not apply and are ignored."""

    model: MaskScoreNet
    mixture: torch.Tensor  # scaled |Y| [F, T]
    evaluations: int = 0

    @torch.no_grad()
    def denoise(self, u_ve: torch.Tensor, t: float, text: torch.Tensor, neg: Any = None, w: Any = None) -> torch.Tensor:
        n = u_ve.shape[0]
        sigma = torch.full((n,), math.tan(t * math.pi / 2), dtype=torch.float32)
        y = self.mixture[None].expand(n, -1, -1)
        self.evaluations += n
        return self.model.denoise(u_ve.float(), y, sigma, text.reshape(n).long())


@dataclass
class EulerFromState(EulerChurn):
    """Paper 003's stochastic Euler started from a given state instead of pure noise (StoRM): `sample`'s
    `noise` argument is then the VP state z_t0 itself."""

    name = "euler-from-state"

    def init(self, noise: torch.Tensor, t0: float) -> torch.Tensor:
        return noise


@dataclass
class Sampling:
    """How to sample: steps of the Euler solver, its churn, σ range; `storm_sigma` > 0 starts from the predictive
    estimate noised to that σ instead of from σ_max noise. Churn 0, not paper 003's 20: with 8 steps instead of
    150 the churn's fresh noise is never denoised away (measured, TRAINING.md: separator bass +4.8 → +6.9 dB)."""

    steps: int = 8
    churn: float = 0.0
    sigma_max: float = SIGMA_MAX
    sigma_min: float = SIGMA_MIN
    storm_sigma: float = 0.0
    seed: int = 0


def _run(fn, init: torch.Tensor, s: Sampling, generator: torch.Generator) -> torch.Tensor:
    """The one sampler loop over the VP state of `fn` (a GMSDI mode), from noise or from `init` (StoRM)."""
    if s.storm_sigma > 0:
        solver = EulerFromState(sigma_min=s.sigma_min, sigma_max=s.storm_sigma, s_churn=s.churn)
        t0 = t_of(s.storm_sigma)
        u = init + s.storm_sigma * torch.randn(init.shape, generator=generator)
        z = math.cos(t0 * math.pi / 2) * u
        return sample(fn, z, steps=s.steps, solver=solver, generator=generator)
    solver = EulerChurn(sigma_min=s.sigma_min, sigma_max=s.sigma_max, s_churn=s.churn)
    noise = torch.randn(init.shape, generator=generator)
    return sample(fn, noise, steps=s.steps, solver=solver, generator=generator)


def separator_estimates(model: MaskScoreNet, y: torch.Tensor, s: Sampling,
                        predictive: torch.Tensor | None = None) -> torch.Tensor:
    """GMSDI separator over the scaled mixture magnitude y [F, T] → estimates [len(ROLES), F, T] (ROLES order)
    that sum to y exactly (the constrained drums are the remainder). `predictive` masks [R, F, T] are the
    StoRM start when s.storm_sigma > 0."""
    g = torch.Generator().manual_seed(int(s.seed))
    guide = MaskGuide(model, y)
    texts = torch.tensor([role_index(r) for r in (*FREE, CONSTRAINED)])
    mode = GmsdiSeparator(guide, y, texts, w=0.0)
    init = torch.zeros((len(FREE), *y.shape))
    if predictive is not None:
        init = torch.stack([predictive[ROLES.index(r)] * y for r in FREE])
    free = _run(mode, init, s, g)
    full = mode.finish(free)  # FREE..., CONSTRAINED
    order = [*FREE, CONSTRAINED]
    return torch.stack([full[order.index(r)] for r in ROLES])


def extractor_estimate(model: MaskScoreNet, y: torch.Tensor, role: str, s: Sampling,
                       predictive: torch.Tensor | None = None) -> torch.Tensor:
    """GMSDI extractor of one source: S(x_k, k) − S(y(0) − x_k, no-k) → its estimate [F, T]."""
    g = torch.Generator().manual_seed(int(s.seed) + 1000 * ROLES.index(role))
    guide = MaskGuide(model, y)
    mode = GmsdiExtractor(guide, y, torch.tensor(role_index(role)), torch.tensor(role_index(f"no-{role}")), w=0.0)
    init = torch.zeros((1, *y.shape)) if predictive is None else (predictive[ROLES.index(role)] * y)[None]
    return _run(mode, init, s, g)[0]


def masks_from(est: torch.Tensor, y: torch.Tensor, exclusive: bool) -> torch.Tensor:
    """Estimates → masks in [0, 1] over the mixture: x_k / Σ x_l (the stems then sum to the mix) or x / y."""
    est = est.clamp_min(0)
    if exclusive:
        return est / est.sum(dim=0, keepdim=True).clamp_min(EPS)
    return (est / y.clamp_min(EPS)).clamp(0.0, 1.0)


#: Per role, the system the ensemble takes (paper 003: the per-stem better of separator and extractor),
#: measured on the seed-2 held-out songs with run 2's weights (benchmarks/separate_gmsdi_eval.py, TRAINING.md):
#: the extractor won every role (bass +8.33 vs +7.42, drums +10.09 vs +8.52, other +9.04 vs +8.32), so here
#: the ensemble is the extractor (the paper's took the drums from the separator).
ENSEMBLE: dict[str, str] = {"bass": "extractor", "drums": "extractor", "other": "extractor"}


@torch.no_grad()
def onepass_masks(model: MaskScoreNet, mix_mag: torch.Tensor, sigma: float = 40.0) -> torch.Tensor:
    """The score network used as a predictive one: x̂₀ of each source at σ far above the data with u = 0, as
    exclusive masks. The control that tells what the *sampling* adds from what more training of the shared
    weights added (its x̂₀ at high σ is trained on the predictive task too)."""
    y = mix_mag * mix_scale(mix_mag)
    n = len(ROLES)
    est = model.denoise(torch.zeros((n, *y.shape)), y[None].expand(n, -1, -1), torch.full((n,), sigma),
                        torch.arange(n))
    return masks_from(est, y, exclusive=True)


def gmsdi_masks(model: MaskScoreNet, mix_mag: torch.Tensor, mode: str, s: Sampling,
                predictive: torch.Tensor | None = None, roles: tuple[str, ...] = ROLES) -> torch.Tensor:
    """Unscaled mixture magnitude [F, T] → masks [len(ROLES), F, T] by `mode` ("separator", "extractor",
    "ensemble"); the extractor only runs the `roles` asked for (the others' masks are left at 0)."""
    y = mix_mag * mix_scale(mix_mag)
    out = torch.zeros((len(ROLES), *y.shape))
    sep = ext = None
    need_sep = mode == "separator" or (mode == "ensemble" and any(ENSEMBLE[r] == "separator" for r in roles))
    if need_sep:
        sep = masks_from(separator_estimates(model, y, s, predictive), y, exclusive=True)
    if mode != "separator":
        ext_roles = roles if mode == "extractor" else tuple(r for r in roles if ENSEMBLE[r] == "extractor")
        ext = {r: masks_from(extractor_estimate(model, y, r, s, predictive), y, exclusive=False) for r in ext_roles}
    for i, r in enumerate(ROLES):
        if mode == "separator" or (mode == "ensemble" and ENSEMBLE[r] == "separator"):
            out[i] = sep[i]
        elif ext is not None and r in ext:
            out[i] = ext[r]
    return out


class DiffusionSeparator(Separator):
    """The engine's Separator (windows, mixture phase per channel, the mix's own rate) with its masks from one of
    the systems issue 21 compares: "predictive" (the shipped one pass), "onepass" (the score network's own x̂₀
    at σ = 40, no sampling: the control for what training alone added), "separator", "extractor", "ensemble"
    (GMSDI from noise) or "storm-separator" / "storm-extractor" (the predictive estimate refined by that GMSDI
    mode from `sampling.storm_sigma`). `roles` limits the extractor's work to the parts that will be used."""

    def __init__(self, predictive: nn.Module, score: MaskScoreNet | None, mode: str = "predictive",
                 sampling: Sampling | None = None, roles: tuple[str, ...] = ROLES, device: str = "cpu") -> None:
        super().__init__(predictive, device)
        if mode not in MODES:
            raise ConfigError(f"unknown separation mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
        if mode != "predictive" and score is None:
            raise ConfigError(f"mode {mode!r} needs the GMSDI score weights", fix="train separate-gmsdi first")
        self.score = None if score is None else score.to(device).eval()
        self.mode, self.roles = mode, tuple(roles)
        self.sampling = sampling or Sampling(storm_sigma=0.1 if mode.startswith("storm") else 0.0,
                                             steps=4 if mode.startswith("storm") else 8)

    @torch.inference_mode()
    def masks(self, mono22: np.ndarray) -> torch.Tensor:
        wave = torch.from_numpy(np.ascontiguousarray(mono22, dtype=np.float32)).to(self.device)
        mag = magnitude(wave)
        pred = self.model(mag[None], self.model.low_band(wave[None]))[0].float()
        if self.mode == "predictive":
            return pred.cpu()
        if self.mode == "onepass":
            return onepass_masks(self.score, mag.float()).cpu()
        gmsdi_mode = self.mode.removeprefix("storm-")
        start = pred if self.mode.startswith("storm") else None
        return gmsdi_masks(self.score, mag.float(), gmsdi_mode, self.sampling, start, self.roles).cpu()


MODES: tuple[str, ...] = ("predictive", "onepass", "separator", "extractor", "ensemble", "storm-separator", "storm-extractor")
