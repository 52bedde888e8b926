"""The representation the score model diffuses in: the linear magnitude STFT of mono 16 kHz audio
(FFT 1024, hop 256: 513 bins × 62.5 frames/s), scaled by one gain per mixture.

Why this and not the codec latents (measured, `benchmarks/gmsdi_eval.py --repr`): every GMSDI mode couples
the sources through the mixture, y = Σ_k x_k. On corpus songs the relative additivity error
‖Σ_k R(x_k) − R(Σ_k x_k)‖ / ‖R(y)‖ over six held-out songs is 0.32 for power spectra, 0.51 for magnitude,
0.69 for the stem codec's latents (0.60 standardised) — the codec is the least additive, and its decoder's phase is its
known weak spot, while separation with the mixture's phase needs no decoder at all. Power is more additive but
so heavy-tailed (peaks 10⁴× the median bin) that a small net spends its capacity on the loudest bins; linear
magnitude is the compromise, and every mode ends with a ratio mask over the estimates, so the returned stems
sum to the mixture exactly and the additivity error only costs sharpness, not energy.

Level: one gain per mixture, `scale = TARGET_RMS / rms(R(full mix))`, is applied to the mixture and to all
of its sources alike (training and inference), so sub-mixtures keep their level relative to the full mix and
y = Σ x_k still holds after scaling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backline.engines.core.frontend import istft, stft

if TYPE_CHECKING:  # pragma: no cover
    import torch

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
BINS = N_FFT // 2 + 1
#: RMS of a full mixture's scaled magnitude (so a mixture has ~unit scale for the diffusion schedule).
TARGET_RMS = 0.5
EPS = 1e-8


def frames_for(samples: int) -> int:
    """STFT frames for `samples` (centred STFT: T // hop + 1)."""
    return samples // HOP + 1


def complex_spec(wave: torch.Tensor) -> torch.Tensor:
    """[..., T] mono 16 kHz → complex [..., BINS, frames]."""
    return stft(wave, N_FFT, HOP)


def mix_scale(mix_mag: torch.Tensor) -> torch.Tensor:
    """One gain per mixture ([..., BINS, frames] → [..., 1, 1]) that brings its magnitude RMS to TARGET_RMS."""
    rms = mix_mag.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
    return TARGET_RMS / rms.clamp_min(1e-5)


def masks_from_estimates(estimates: torch.Tensor, mix_mag: torch.Tensor, *, exclusive: bool = True) -> torch.Tensor:
    """Ratio masks from magnitude estimates [K, BINS, F] (clamped ≥ 0).

    exclusive=True (all K sources estimated): m_k = x_k / Σ_l x_l, so the masked stems sum to the mixture.
    exclusive=False (one source out of an unknown rest): m = min(x / |Y|, 1).
    """
    est = estimates.clamp_min(0)
    if exclusive:
        return est / est.sum(dim=0, keepdim=True).clamp_min(EPS)
    return (est / mix_mag.clamp_min(EPS)).clamp(0, 1)


def apply_mask(mask: torch.Tensor, mix_spec: torch.Tensor, length: int) -> torch.Tensor:
    """Masked mixture STFT with the mixture's phase → waveform [..., length]."""
    return istft(mask * mix_spec, N_FFT, HOP, length=length)


def griffin_lim(mag: torch.Tensor, length: int, iters: int = 48, momentum: float = 0.99,
                init_phase: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) over the project's STFT: a phase for a generated magnitude that
    has no mixture to borrow one from (generation). `init_phase` (e.g. the mixture's) seeds the iteration."""
    import torch  # lazy: the free modes only; a follow take reads this module's constants without torch

    if init_phase is None:
        phase = torch.rand(mag.shape, generator=generator) * 2 * torch.pi
        angles = torch.polar(torch.ones_like(mag), phase)
    else:
        angles = init_phase / init_phase.abs().clamp_min(EPS)
    previous = torch.zeros_like(angles)
    for _ in range(iters):
        wave = istft(mag * angles, N_FFT, HOP, length=length)
        rebuilt = stft(wave, N_FFT, HOP)
        accel = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accel / accel.abs().clamp_min(EPS)
        previous = rebuilt
    return istft(mag * angles, N_FFT, HOP, length=length)
