"""Wiener / EM post-filter of source estimates over a mixture STFT (the open-unmix / norbert scheme).

Why: a mask network predicts each source's magnitude as a ratio of the mixture's (M_j ⊙ |X|, the masks summing
to one); those magnitudes are better read as estimates of the sources' power spectral densities than used as
the filter itself. Each EM iteration fits a local Gaussian model to the current estimates — per source a power
spectrogram v_j(f, t) (the mean over channels of |y_j|²) and, for a stereo mix, a spatial covariance R_j(f) (2×2,
Σ_t y_j y_jᴴ / Σ_t v_j: where the source sits in the stereo image) — and re-estimates every source with the
multichannel Wiener filter y_j = v_j R_j (Σ_k v_k R_k)⁻¹ x. The estimates still sum to the mixture (up to the
small diagonal loading), so "the band without a part" stays X − y_part. With more than two channels the sources
are filtered per channel (R_j = 1), which keeps the memory of a window linear in its channels.

Reference: Nugraha, Liutkus & Vincent, "Multichannel audio source separation with deep neural networks" (2016);
Stöter et al., "Open-Unmix" (2019), norbert.expectation_maximization.
"""

from __future__ import annotations

import torch

#: Diagonal loading of the mixture covariance, relative to the mean mixture power of the chunk.
LOADING = 1e-6
#: Absolute floor of that loading (a silent chunk: its 2×2 determinant stays a normal float32, ~1e-24).
FLOOR = 1e-12
#: Added to each source's normalised spatial covariance (trace 2), as norbert does: a source panned to one place
#: has a rank-1 covariance, and where it alone sounds the mixture's covariance would be singular.
SPATIAL_LOADING = 1e-3


def _power(y: torch.Tensor, x: torch.Tensor, exponent: float) -> torch.Tensor:
    """A source's power estimate |y|^e · |x|^(2−e): e = 2 is the classic |y|² (each iteration sharpens ratio masks
    M into M²/ΣM²); e = 1 keeps the ratio M itself, so only the stereo image (R_j) refines the estimate."""
    return y.abs().square() if exponent == 2 else y.abs().pow(exponent) * x.abs().pow(2 - exponent)


def _em_stereo(y: torch.Tensor, x: torch.Tensor, iterations: int, exponent: float = 2.0) -> torch.Tensor:
    """EM with a full 2×2 spatial covariance per source and frequency. y [J, 2, F, T], x [2, F, T] complex."""
    eps = max(LOADING * float(x.abs().square().mean()), FLOOR)
    for _ in range(iterations):
        v = _power(y, x[None], exponent).mean(dim=1)  # [J, F, T]
        own = y.abs().square().mean(dim=1).sum(-1)  # R_j normalised by the estimate's own power: trace 2
        r = torch.einsum("jaft,jbft->jfab", y, y.conj()) / (own[..., None, None] + eps)  # [J, F, 2, 2]
        r = r + SPATIAL_LOADING * torch.eye(2, dtype=r.dtype)  # a panned source alone is rank 1: keep C invertible
        c = torch.einsum("jft,jfab->ftab", v.to(r.dtype), r)  # mixture covariance [F, T, 2, 2]
        a, b, cc, d = c[..., 0, 0] + eps, c[..., 0, 1], c[..., 1, 0], c[..., 1, 1] + eps
        det = a * d - b * cc
        inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-cc, a], -1)], -2) / det[..., None, None]
        for j in range(y.shape[0]):
            gain = v[j].to(r.dtype)[..., None, None] * (r[j][:, None] @ inv)  # [F, T, 2, 2]
            y[j] = torch.einsum("ftab,bft->aft", gain, x)
    return y


def _em_mono(y: torch.Tensor, x: torch.Tensor, iterations: int, exponent: float = 2.0) -> torch.Tensor:
    """EM channel by channel (R_j = 1): y_j = v_j / Σ_k v_k · x with v_j = |y_j|². y [J, C, F, T]."""
    eps = max(LOADING * float(x.abs().square().mean()), FLOOR)
    for _ in range(iterations):
        v = _power(y, x[None], exponent)
        y = v / (v.sum(0, keepdim=True) + eps) * x[None]
    return y


@torch.inference_mode()
def wiener(masks: torch.Tensor, x: torch.Tensor, iterations: int = 1, *, combine: torch.Tensor | None = None,
           spatial: bool = True, exponent: float = 2.0, chunk_bins: int = 64) -> torch.Tensor:
    """Refine mask estimates by `iterations` EM steps of the multichannel Wiener filter.

    masks: [J, F, T] or [J, C, F, T] real, the sources' ratio masks over the mixture (the first estimates are
    masks ⊙ x); x: the mixture STFT [C, F, T] complex. Returns `combine` @ estimates, [K, C, F, T] complex
    (default: all J sources), so a caller asking for one part — or for the mix without it (a row of ones with a
    zero) — holds only that. Work goes `chunk_bins` frequencies at a time (the model is per frequency), so the
    extra memory stays a small fraction of the window's STFT. `iterations=0` is the plain masking; `exponent`
    see `_power` (2: the classic filter).
    """
    j = masks.shape[0]
    combine = torch.eye(j) if combine is None else combine
    combine = combine.to(x.dtype)
    out = torch.empty((combine.shape[0],) + tuple(x.shape), dtype=x.dtype)
    if masks.dim() == 3:
        masks = masks[:, None]
    stereo = spatial and x.shape[0] == 2 and iterations > 0
    for f0 in range(0, x.shape[1], chunk_bins):
        xs = x[:, f0:f0 + chunk_bins]
        y = masks[:, :, f0:f0 + chunk_bins].to(x.dtype) * xs[None]
        if iterations > 0:
            y = (_em_stereo(y, xs, iterations, exponent) if stereo
                 else _em_mono(y, xs, iterations, exponent))
        out[:, :, f0:f0 + chunk_bins] = torch.einsum("kj,jcft->kcft", combine, y)
    return out
