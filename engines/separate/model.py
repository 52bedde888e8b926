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

The low band (config "low_bins" > 0; 0 = the input of run 8 and before): a bin of 21.5 Hz cannot tell a bass's
pitch (E1–G2 notes are 2.4–5.8 Hz apart), so the network cannot know which upper bins are its harmonics. The
network can also read the log magnitude of a long-window STFT (`LOW_FFT` 4096 = 5.4 Hz bins, the same hop and
centring, so its frames are the mask frames) up to `low_bins` bins (112 = 0–600 Hz: the bass's fundamental and
its harmonics 2–10, which pin its pitch to the semitone). It enters as extra columns of the input Linear, kept
as their own bias-free Linear `inp_low` (inp(x) + inp_low(x_low) = [W | W_low]·[x; x_low] + b, before the
LayerNorm) so a trainer can give them their own learning rate; a network widened from a narrower one starts with
them at zero (`load_narrower`) and so computes the narrower network's masks exactly until training moves them.
The masks stay on the 1024/256 grid. The shipped weights have no low band: fine-tuned from run 8 it measured no
gain over the same steps without it (weights/TRAINING.md, session 6).
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
#: The long window of the low band (module docstring) and the bins a low-band network reads by default (0–600 Hz).
LOW_FFT = 4096
LOW_BINS = 112
DEFAULT_CONFIG: dict[str, Any] = {"bins": BINS, "hidden": 176, "layers": 2, "roles": list(ROLES),
                                  "sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP,
                                  "low_bins": 0, "low_fft": LOW_FFT, "rnn_hidden": 0}
EPS = 1e-5


def features(mag: torch.Tensor) -> torch.Tensor:
    """Level-blind log magnitude: log(|X| / mean|X| + 1e-3), [..., BINS, frames]."""
    ref = mag.mean(dim=(-2, -1), keepdim=True).clamp_min(EPS)
    return torch.log(mag / ref + 1e-3)


def low_features(low: torch.Tensor, mag: torch.Tensor, low_fft: int = LOW_FFT) -> torch.Tensor:
    """The low band's log magnitude, level-blind like `features` and against the same reference (the 1024 STFT's
    mean magnitude, scaled by low_fft / N_FFT as a sinusoid's peak is), so the band keeps its level relative to the
    mix: [..., low_bins, frames]."""
    ref = mag.mean(dim=(-2, -1), keepdim=True).clamp_min(EPS) * (low_fft / N_FFT)
    return torch.log(low / ref + 1e-3)


class MaskNet(nn.Module):
    """Linear bins→hidden, a bidirectional GRU over frames, a linear head to roles × bins, softmax over roles.

    [B, BINS, T] mixture magnitude (and, with `low_bins` > 0, the low band [B, low_bins, T] of `low_band`) →
    masks [B, R, BINS, T] in [0, 1] that sum to 1 over R."""

    def __init__(self, bins: int = BINS, hidden: int = 176, layers: int = 2, roles: list[str] | tuple[str, ...] = ROLES,
                 low_bins: int = 0, low_fft: int = LOW_FFT, rnn_hidden: int = 0, **_: Any) -> None:
        super().__init__()
        self.bins, self.roles = int(bins), tuple(roles)
        self.low_bins, self.low_fft = int(low_bins), int(low_fft)
        if not 0 <= self.low_bins <= self.low_fft // 2 + 1:
            raise ValueError(f"low_bins {self.low_bins} must be 0 … {self.low_fft // 2 + 1} (low_fft {self.low_fft})")
        self.inp = nn.Sequential(nn.Linear(self.bins, hidden), nn.LayerNorm(hidden), nn.GELU())
        self.inp_low = nn.Linear(self.low_bins, hidden, bias=False) if self.low_bins else None
        #: the GRU's width (0: `hidden`, as runs 1–psa2): wider than the input projection so the recurrent core can
        #: grow from shipped weights without changing the LayerNorm's statistics (`load_narrower`)
        rnn = int(rnn_hidden) or int(hidden)
        self.rnn = nn.GRU(hidden, rnn, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * rnn, len(self.roles) * self.bins)

    def low_band(self, wave: torch.Tensor) -> torch.Tensor | None:
        """The low band this network reads, from mono 22.05 kHz audio [..., S] → [..., low_bins, S // HOP + 1]
        (None for a network without one): |STFT| with the long window through the project's one STFT."""
        if not self.low_bins:
            return None
        return stft(wave, self.low_fft, HOP)[..., : self.low_bins, :].abs()

    def config(self) -> dict[str, Any]:
        """The settings `build` needs to make this network again (what an export writes beside its weights)."""
        return {"bins": self.bins, "hidden": self.rnn.input_size, "layers": self.rnn.num_layers,
                "roles": list(self.roles), "low_bins": self.low_bins, "low_fft": self.low_fft,
                "rnn_hidden": self.rnn.hidden_size}

    def forward(self, mag: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        b, f, t = mag.shape
        h = self.inp[0](features(mag).transpose(1, 2))  # [B, T, H]
        if self.inp_low is not None:
            if low is None:
                raise ValueError("this network also reads the mix's low band: call it as "
                                 "model(magnitude(wave), model.low_band(wave))")
            h = h + self.inp_low(low_features(low.to(h.dtype), mag, self.low_fft).transpose(1, 2))
        h = self.inp[2](self.inp[1](h))
        h, _ = self.rnn(h)
        logits = self.out(h).view(b, t, len(self.roles), f).permute(0, 2, 3, 1)  # [B, R, F, T]
        return torch.softmax(logits, dim=1)


def build(config: dict[str, Any]) -> MaskNet:
    keys = ("bins", "hidden", "layers", "roles", "low_bins", "low_fft", "rnn_hidden")
    return MaskNet(**{k: v for k, v in config.items() if k in keys})


def load_narrower(model: MaskNet, state: dict[str, torch.Tensor]) -> None:
    """Load the weights of a narrower network into `model`: fewer low-band columns (run 8: none; the missing input
    columns set to zero) and/or a narrower GRU (`_widen_rnn`). The widened network then computes the narrower
    one's masks exactly, so a fine-tune goes on from it rather than restarting."""
    key = "inp_low.weight"
    state = dict(state)
    if model.inp_low is not None:
        want, have = model.inp_low.weight, state.get(key)
        if have is not None and (have.shape[0] != want.shape[0] or have.shape[1] > want.shape[1]):
            raise ValueError(f"{key} {tuple(have.shape)} does not fit in {tuple(want.shape)}")
        wide = torch.zeros_like(want)
        if have is not None:
            wide[:, : have.shape[1]] = have.to(wide.dtype)
        state[key] = wide
    elif key in state:
        raise ValueError("these weights read a low band; build the network with low_bins > 0 to load them")
    _widen_rnn(model, state)
    model.load_state_dict(state)


def _widen_rnn(model: MaskNet, state: dict[str, torch.Tensor]) -> None:
    """Fit a narrower GRU's weights (hidden H) into `model`'s wider one (H2 ≥ H) in place in `state`, function-
    preserving (Net2Net-style): each gate's old rows go to the top of that gate's new block, the old units' inputs
    from the new units (recurrent, the next layer's, the head's) are zero, so the old units and the masks are
    computed exactly as before; the new units keep `model`'s random incoming weights and start to matter as their
    zero outgoing weights learn."""
    h2 = model.rnn.hidden_size
    have = state.get("rnn.weight_hh_l0")
    if have is None or have.shape[1] == h2:
        return
    h = have.shape[1]
    if h > h2:
        raise ValueError(f"these weights' GRU is wider ({h}) than the network's ({h2})")
    cur = model.state_dict()

    def cols(old: torch.Tensor, new: torch.Tensor, bidir_in: bool) -> torch.Tensor:
        """Old columns into a zeroed block of the new width; a bidirectional input is [forward H | backward H]."""
        out = torch.zeros(old.shape[0], new.shape[1], dtype=new.dtype)
        if bidir_in:
            out[:, :h], out[:, h2:h2 + h] = old[:, :h], old[:, h:]
        else:
            out[:, : old.shape[1]] = old
        return out

    for name, new in cur.items():
        if not name.startswith(("rnn.", "out.")) or name not in state:
            continue
        old = state[name].to(new.dtype)
        if name.startswith("out."):
            state[name] = cols(old, new, True) if name == "out.weight" else old
            continue
        wide = new.clone()
        rows = old
        if rows.dim() == 2:  # weight_ih_l0 keeps its input; weight_ih_lk (k ≥ 1) reads both directions; weight_hh
            is_hh, is_deep_ih = "weight_hh" in name, "weight_ih_l0" not in name
            if is_hh or is_deep_ih:  # the old units ignore the new ones (zero columns); new rows keep their init
                rows = cols(old, new, bidir_in=not is_hh)
        for g in range(3):  # the gates r, z, n stacked as [3·H2, …]
            wide[g * h2: g * h2 + h] = rows[g * h: (g + 1) * h]
        state[name] = wide


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
