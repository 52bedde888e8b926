"""Paper 003's five inference modes as model functions for the one sampler loop (engines/diffusion).

Each mode is a `fn(z, t) -> v̂` over a *stack* of states (one row per source, plus the mixture where the mode
has one). Every step it evaluates the score model once, batched, on every term the mode needs (the sources,
the constrained K-th source y(0) − Σ x_l, the mixture), with classifier-free guidance against the learned
null embedding z* or a negative prompt, and combines the scores in the paper's VE terms:

    σ = tan(π t / 2),  u_ve = z / α,  S(u, z, σ) = (D(u) − u) / σ²      (D: the model's denoised estimate)

then turns the combined score back into the v̂ the loop expects: D' = u + σ² S', v̂' = (α z − D') / β.
All terms of one step share σ, so this is exactly the paper's update at every noise level.

Coupling strength: the paper's 1/γ² terms (total and partial generation) are written here with γ_k = γ σ,
so that the pull (y − Σ x)/(γ² σ²) keeps the same weight relative to the score at every noise level (a fixed γ
would do nothing at σ = 40 and swamp the score at σ = 0.001); γ = ∞ switches a coupling off. The samplers
take explicit steps, so the coupling is stiff below γ ≈ 0.8 (48 ADPM2 steps: γ = 0.7 diverges on the
Gaussian test, γ = 1 ties Σ x to y within 0.2 % of its spread); the engine allows γ ≥ 1.

The ensemble of separator and extractor is the paper's: per source, the system that measures better on
held-out songs (Table 2's ensemble 11.56 dB is the mean of the per-stem maxima); the choice is a table.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from backline.engines.diffusion.guidance import cfg_combine
from backline.engines.diffusion.sampler import sigma_of


@dataclass
class Guide:
    """Model + text vectors + CFG: `denoise(u_ve, t, text, neg, w)` → D for a batch of VE inputs.

    CFG as the paper: S* = S(z) + w (S(z) − S(z*)), i.e. `cfg_combine(cond, other, 1 + w)`, with z* the
    learned null embedding or the row's negative-prompt embedding. Rows with w = 0 skip the second pass.
    """

    model: torch.nn.Module
    evaluations: int = 0

    def denoise(self, u_ve: torch.Tensor, t: float, text: torch.Tensor, neg: torch.Tensor | None,
                w: Sequence[float]) -> torch.Tensor:
        a, b = math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
        n = u_ve.shape[0]
        z = a * u_ve
        guided_rows = [i for i in range(n) if w[i] != 0]
        neg = self.model.null(n).to(text) if neg is None else neg
        inputs = torch.cat([z, z[guided_rows]]) if guided_rows else z
        texts = torch.cat([text, neg[guided_rows]]) if guided_rows else text
        tb = torch.full((inputs.shape[0],), t, dtype=torch.float32, device=z.device)
        v = self.model(inputs.to(self._dtype()), tb, texts.to(self._dtype())).float()
        self.evaluations += inputs.shape[0]
        out = v[:n].clone()
        for j, i in enumerate(guided_rows):
            out[i] = cfg_combine(v[i:i + 1], v[n + j:n + j + 1], 1.0 + float(w[i]))[0]
        return a * z - b * out

    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def _to_v(z: torch.Tensor, t: float, denoised: torch.Tensor) -> torch.Tensor:
    a, b = math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
    return (a * z - denoised) / max(b, 1e-8)


class _Mode(ABC):
    """Shared plumbing: VE view of the VP state, score from D, v̂ from a combined score."""

    def __call__(self, z: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
        t = float(tb[0])
        a = math.cos(t * math.pi / 2)
        sigma = sigma_of(t)
        u = z / a
        scores = self.scores(u, t, sigma)
        return _to_v(z, t, u + sigma**2 * scores)

    @abstractmethod
    def scores(self, u: torch.Tensor, t: float, sigma: float) -> torch.Tensor:
        """Per-source scores ∇ log p at (u, σ)."""

    @staticmethod
    def score(guide: Guide, u: torch.Tensor, t: float, sigma: float, text, neg, w) -> torch.Tensor:
        return (guide.denoise(u, t, text, neg, w) - u) / sigma**2


@dataclass
class Separator(_Mode):
    """GMSDI separator: states are the K−1 free sources; the K-th is y(0) − Σ_{l<K} x_l. For k < K:
    S(x_k, z_k, σ) − S(y(0) − Σ_l x_l, z_K, σ). `texts` [K, D] with the constrained source last."""

    guide: Guide
    mixture: torch.Tensor  # y(0) [F, T]
    texts: torch.Tensor  # [K, D], constrained source last
    w: float = 3.0
    negatives: torch.Tensor | None = None  # [K, D] or None (null embedding)

    def scores(self, u, t, sigma):
        rest = (self.mixture - u.sum(0))[None]
        inputs = torch.cat([u, rest])
        s = self.score(self.guide, inputs, t, sigma, self.texts, self.negatives, [self.w] * inputs.shape[0])
        return s[:-1] - s[-1:]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """[K−1] free sources → all K, the constrained one being the remainder of the mixture."""
        return torch.cat([x, (self.mixture - x.sum(0))[None]])


@dataclass
class Extractor(_Mode):
    """GMSDI extractor: one state x_k; S(x_k, z_k, σ) − S(y(0) − x_k, ⊗_{l≠k} z_l, σ)."""

    guide: Guide
    mixture: torch.Tensor
    text: torch.Tensor  # [D] z_k
    rest_text: torch.Tensor  # [D] the concatenated labels of the other sources
    w: float = 7.5
    negative: torch.Tensor | None = None  # [D] negative prompt for z_k (None: null embedding)

    def scores(self, u, t, sigma):
        inputs = torch.cat([u, self.mixture[None] - u])
        texts = torch.stack([self.text, self.rest_text])
        neg = None
        if self.negative is not None:
            neg = torch.stack([self.negative, self.guide.model.null(1)[0].to(self.negative)])
        s = self.score(self.guide, inputs, t, sigma, texts, neg, [self.w, self.w])
        return s[:1] - s[1:]


@dataclass
class TotalGeneration(_Mode):
    """GMSDI total generation: states are M parts (a partition of the sources; a part's text is its labels
    concatenated) plus the mixture y (last row).
    x_m: S(x_m, z_m) + (y − Σ x_l)/γ_x² ;  y: S(y, ⊗ z_l) + (Σ x_l − y)/γ_y²   (γ = γ·σ, see module doc)."""

    guide: Guide
    texts: torch.Tensor  # [M + 1, D]: the parts, then the whole mixture's label
    w: float = 1.0
    gamma_x: float = 1.0
    gamma_y: float = math.inf

    def scores(self, u, t, sigma):
        s = self.score(self.guide, u, t, sigma, self.texts, None, [self.w] * u.shape[0])
        parts, y = u[:-1], u[-1]
        return _couple(s, y - parts.sum(0), sigma, self.gamma_x, self.gamma_y)


def _couple(scores: torch.Tensor, gap: torch.Tensor, sigma: float, gamma_x: float, gamma_y: float) -> torch.Tensor:
    """GMSDI's coupled update: the parts' scores (all rows but the last) move towards closing `gap` = mixture −
    Σ parts with weight 1/(γ_x σ)², the mixture's score (last row) away from it with 1/(γ_y σ)²; γ = ∞ turns a
    side off."""
    out = scores.clone()
    if math.isfinite(gamma_x):
        out[:-1] += gap[None] / (gamma_x * sigma) ** 2
    if math.isfinite(gamma_y):
        out[-1] -= gap / (gamma_y * sigma) ** 2
    return out


@dataclass
class PartialGeneration(_Mode):
    """GMSDI partial generation (accompaniment): given sources x_I (their sum, clean) are noised with the
    perturbation kernel at the current σ; states are the generated parts x_J plus the mixture y (last row).
    x_j: S(x_j, z_j) + [y − (α Σ_I x_i + β Σ_J x_l)]/γ_x² ;  y: S(y, ⊗ z_l) + [(α Σ_I + β Σ_J) − y]/γ_y²."""

    guide: Guide
    given: torch.Tensor  # Σ_{i∈I} x_i(0) [F, T]
    texts: torch.Tensor  # [|J| + 1, D]: the generated parts, then the label of all sources I ∪ J
    alpha: float = 1.0
    beta: float = 1.0
    w: float = 2.0
    gamma_x: float = 1.0
    gamma_y: float = 1.0
    generator: torch.Generator | None = field(default=None, repr=False)

    def scores(self, u, t, sigma):
        s = self.score(self.guide, u, t, sigma, self.texts, None, [self.w] * u.shape[0])
        noise = torch.randn(self.given.shape, generator=self.generator).to(u)
        given_t = self.given + sigma * noise
        parts, y = u[:-1], u[-1]
        return _couple(s, y - (self.alpha * given_t + self.beta * parts.sum(0)), sigma, self.gamma_x, self.gamma_y)


#: Which system each role takes in the ensemble (paper 003, Table 2: drums from the separator, the rest
#: from the extractor); benchmarks/gmsdi_eval.py prints both so the table can be re-derived.
ENSEMBLE_CHOICE: dict[str, str] = {"Bass": "extractor", "Drums": "separator", "Guitar": "extractor",
                                   "Piano": "extractor", "Strings": "extractor", "Lead": "extractor"}
