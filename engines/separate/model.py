"""The separation network: a mask per role over the mixture's magnitude STFT, from one forward pass.

Why a mask (measured, ../shared/MEASURED.md and weights/TRAINING.md): a network that outputs M ∈ [0, 1] per
time-frequency bin only has to learn *what to keep*, and the estimate x̂ = M ⊙ |X| is bounded by the mixture by
construction; the GMSDI score model that paints magnitudes from noise reached +1.5 dB after 17 minutes of CPU
training where a 1.5 M-parameter mask network reached +8.7 dB in 10.

The masks of all roles come from one softmax, so they sum to one in every bin: the separated stems sum to the
mixture exactly (paper 003's coupling of the sources through the mixture, y = Σ_k x_k, held as a hard
constraint), and "the band without the bass" is simply 1 − M_bass.

Representation: mono 22.05 kHz, Hann FFT 1024, hop 256 (21.5 Hz bins, 11.6 ms frames) through the project's
one STFT (`engines.frontend.stft`); the input feature is the log magnitude relative to the window's mean
magnitude, so the network is blind to the mix's overall level.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backline.engines.core.frontend import istft, stft

SAMPLE_RATE = 22050
N_FFT = 1024
HOP = 256
BINS = N_FFT // 2 + 1
#: Roles the shipped network separates, in mask order. "other" is everything that is neither bass nor drums.
ROLES: tuple[str, ...] = ("bass", "drums", "other")
KIND = "separate-mask"
DEFAULT_CONFIG: dict[str, Any] = {"bins": BINS, "hidden": 176, "layers": 2, "roles": list(ROLES),
                                  "sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP}
EPS = 1e-5


def features(mag: torch.Tensor) -> torch.Tensor:
    """Level-blind log magnitude: log(|X| / mean|X| + 1e-3), [..., BINS, frames]."""
    ref = mag.mean(dim=(-2, -1), keepdim=True).clamp_min(EPS)
    return torch.log(mag / ref + 1e-3)


class MaskNet(nn.Module):
    """Linear bins→hidden, a bidirectional GRU over frames, a linear head to roles × bins, softmax over roles.

    [B, BINS, T] mixture magnitude → masks [B, R, BINS, T] in [0, 1] that sum to 1 over R."""

    def __init__(self, bins: int = BINS, hidden: int = 176, layers: int = 2, roles: list[str] | tuple[str, ...] = ROLES,
                 **_: Any) -> None:
        super().__init__()
        self.bins, self.roles = int(bins), tuple(roles)
        self.inp = nn.Sequential(nn.Linear(self.bins, hidden), nn.LayerNorm(hidden), nn.GELU())
        self.rnn = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(self.roles) * self.bins)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        b, f, t = mag.shape
        h = self.inp(features(mag).transpose(1, 2))  # [B, T, H]
        h, _ = self.rnn(h)
        logits = self.out(h).view(b, t, len(self.roles), f).permute(0, 2, 3, 1)  # [B, R, F, T]
        return torch.softmax(logits, dim=1)


def build(config: dict[str, Any]) -> MaskNet:
    return MaskNet(**{k: v for k, v in config.items() if k in ("bins", "hidden", "layers", "roles")})


def magnitude(wave: torch.Tensor) -> torch.Tensor:
    """|STFT| of mono 22.05 kHz audio [..., T] → [..., BINS, frames]."""
    return stft(wave, N_FFT, HOP).abs()


def masked_l1(masks: torch.Tensor, mix_mag: torch.Tensor, target_mags: torch.Tensor,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between masked mixture magnitudes and the true stems' magnitudes, per mixture scaled by its mean
    magnitude (so loud and quiet crops count alike). masks/targets [B, R, F, T], mix [B, F, T]."""
    scale = mix_mag.mean(dim=(-2, -1), keepdim=True).clamp_min(EPS).unsqueeze(1)
    err = (masks * mix_mag.unsqueeze(1) - target_mags).abs() / scale
    per_role = err.mean(dim=(0, 2, 3))
    if weights is not None:
        per_role = per_role * weights
    return per_role.sum()


def psa_targets(mix_spec: torch.Tensor, stem_specs: torch.Tensor) -> torch.Tensor:
    """Phase-sensitive targets (Erdogan et al. 2015) Re(S_k · conj X) / |X| = |S_k| cos(∠S_k − ∠X), untruncated.

    Why: the estimate is scored after iSTFT(M ⊙ X) with the MIXTURE phase, and for a real mask the squared error
    |M|X| e^{i∠X} − S_k|² equals (M|X| − psa_k)² plus a term the mask cannot change, so by Parseval this target's
    squared error is the time-domain error itself; |S_k| is not the best a real mask can reach. The targets of
    all roles sum to |X| in every bin (Σ_k S_k = X), the sum a softmax's masks keep. mix [..., F, T] complex,
    stems [..., R, F, T] complex → [..., R, F, T] real."""
    return (stem_specs * mix_spec.conj().unsqueeze(-3)).real / mix_spec.abs().clamp_min(EPS).unsqueeze(-3)


def masked_psa(masks: torch.Tensor, mix_spec: torch.Tensor, stem_specs: torch.Tensor,
               weights: torch.Tensor | None = None, power: int = 1) -> torch.Tensor:
    """`masked_l1`'s error (power 1; power 2: squared, scaled by the squared mean magnitude) against the
    truncated phase-sensitive targets, psa clipped to [0, |X|]: the part a mask in [0, 1] can reach (a negative
    target means "out of phase with the mix", best served by 0). masks [B, R, F, T], specs complex.

    Power 2 is what the shipped weights train with, by measurement (weights/TRAINING.md, session 6): the squared
    error is the metric's own, and with L1 every bin where the target falls below |S| counts alike, so a network
    that cannot see phase shrinks the bass wherever it is unsure — L1 lost 0.43 dB of bass on the seed-2027 songs
    (one song's 150–500 Hz bass almost entirely) and put the real piano task below the mix, where L2 gained bass on
    every held-out set and the demo."""
    mix_mag = mix_spec.abs()
    target = torch.minimum(psa_targets(mix_spec, stem_specs).clamp_min(0.0), mix_mag.unsqueeze(1))
    scale = mix_mag.mean(dim=(-2, -1), keepdim=True).clamp_min(EPS).unsqueeze(1)
    err = ((masks * mix_mag.unsqueeze(1) - target) / scale).abs() ** power
    per_role = err.mean(dim=(0, 2, 3))
    if weights is not None:
        per_role = per_role * weights
    return per_role.sum()


def mixture_phase_sisdr(masks: torch.Tensor, mix_spec: torch.Tensor, stems: torch.Tensor) -> torch.Tensor:
    """SI-SDR (dB, [B, R]) of each role's estimate iSTFT(M ⊙ X) against its waveform: the figure the network is
    scored on, differentiable. A role left out of a crop (below −30 dB re the mix) gets NaN: it has no score.
    masks [B, R, F, T], mix_spec complex [B, F, T], stems [B, R, S]."""
    est = istft(masks * mix_spec.unsqueeze(1), N_FFT, HOP, length=stems.shape[-1])
    ref, est = stems - stems.mean(-1, keepdim=True), est - est.mean(-1, keepdim=True)
    ref_energy = (ref ** 2).sum(-1)
    target = ((est * ref).sum(-1) / ref_energy.clamp_min(1e-8)).unsqueeze(-1) * ref
    sdr = 10 * torch.log10((target ** 2).sum(-1).clamp_min(1e-8) / ((est - target) ** 2).sum(-1).clamp_min(1e-8))
    present = ref_energy > 1e-3 * (stems.sum(1) ** 2).sum(-1, keepdim=True)
    return torch.where(present, sdr, torch.full_like(sdr, float("nan")))


#: Bins below 300 Hz (21.5 Hz each): the bass's fundamentals and second harmonics, where a low piano or organ
#: line sits too.
LEAK_BINS = 14


def low_leak(masks: torch.Tensor, mix_mag: torch.Tensor, target_mags: torch.Tensor,
             roles: tuple[str, ...] = ROLES) -> torch.Tensor:
    """What the bass mask lets through of the true "other" below 300 Hz (M_bass ⊙ |other|), scaled like
    `masked_l1` and averaged over all bins so its weight compares with the bass term's. L1 charges a wrong bass
    bin the same whether the bass missed a harmonic or took the piano's; this term charges the second more."""
    b, o = roles.index("bass"), roles.index("other")
    scale = mix_mag.mean(dim=(-2, -1), keepdim=True).clamp_min(EPS)
    leak = masks[:, b, :LEAK_BINS] * target_mags[:, o, :LEAK_BINS] / scale
    return leak.sum(dim=1).mean() / masks.shape[2]
