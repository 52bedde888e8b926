"""Paper 000 §3.1's spectral autoencoder (Musika-style, single stage, end to end) and its two critics.

Shape of the computation (all 1-D convolutions over STFT frames, frequency bins as channels — Musika's trick that
makes the codec fast):

    audio [B, C, T] (T = 4096·N) ─STFT(hop 256, win 1024)→ log-magnitude s [B, C·513, 16N]
      ─encoder: 1×1 in-proj, 4 × (residual blocks, stride-2 conv)→ latents [B, dim, N]   (r_time = 16·256 = 4096)
      ─decoder: mirror with stride-2 transposed convs→ [B, 2·C·513, 16N] = log-magnitude ŝ and phase φ
      ─iSTFT(√exp(ŝ) · e^{iφ})→ audio [B, C, T]

Choices where the paper is vague (deliberate, documented here):
- Phase is one unbounded value per bin mapped through (cos φ, sin φ) as in Vocos, so no wrap-around in the
  loss landscape; the paper only says "magnitude and phase".
- The decoder's magnitude head predicts the log-magnitude s = log(|X|²+ε) (what L_rec compares) in the same
  normalised units as the encoder input, (s − offset)/scale, so a fresh decoder starts near typical levels;
  it is clamped to ≤ 14 before exponentiation so a bad step cannot produce Inf audio.
- Stereo: the mix codec takes L and R as 2·513 input channels and outputs both (one 64-dim latent per frame for
  the stereo pair); the stem codec is mono (stems are downmixed; one 32-dim latent per frame).
- The latent space is unbounded (the paper's §3.4 says so); per-dimension mean/std measured on training data is
  stored with the shipped weights so diffusion trainers can normalise.
- Blocks: pre-activation residual blocks (LeakyReLU 0.2, k=3 conv then 1×1 conv), zero padding. The STFT frame
  count is made exactly 16·N by dropping the centred STFT's extra last frame (the iSTFT is still exact).
- Critics: same residual 1-D stacks with 3 stride-2 stages, patch logits (hinge loss); one sees the log-magnitude
  (hop 256, win 1024), the other 128-bin HTK log-mel of the same STFT.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from backline.engines.core import frontend as fe

SAMPLE_RATE = 44100
N_FFT = 1024
STFT_HOP = 256
HOP = 4096  # samples per latent frame (r_time)
N_BINS = N_FFT // 2 + 1
N_MELS = 128
MAG_CLAMP = 14.0


@dataclass
class CodecConfig:
    """Everything that shapes the model; stored in the weights' JSON and checked on load."""

    role: str = "mix"  # "mix" (stereo in/out, dim 64) or "stem" (mono, dim 32)
    size: str = "small"
    channels: int = 2
    dim: int = 64
    widths: list[int] = field(default_factory=lambda: [64, 96, 128, 192, 256])  # level 0 (frame rate) … level 4
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1, 2])  # residual blocks per level
    critic_width: int = 64
    critic_blocks: int = 1
    input_offset: float = -4.0  # log-magnitude normalisation: (s − offset) / scale
    input_scale: float = 5.0
    seed: int = 0
    version: int = 1
    # "head": the decoder predicts a phase per bin (version-1 weights; it collapsed to a constant, see TRAINING.md);
    # "spsi": the decoder predicts magnitude only and the phase is reconstructed from it (SPSI + Griffin-Lim)
    phase: str = "head"
    phase_iters: int = 0  # fast Griffin-Lim iterations after SPSI at decode time
    # decoder level calibration (dB), measured on training crops at export (`train.calibrate_output_gain`): the
    # log-domain reconstruction objective leaves decoded audio a few dB quiet, the same for every input
    output_gain_db: float = 0.0

    def __post_init__(self) -> None:
        if self.role not in ("mix", "stem"):
            raise ValueError(f"role must be 'mix' or 'stem', got {self.role!r}")
        if self.phase not in ("head", "spsi"):
            raise ValueError(f"phase must be 'head' or 'spsi', got {self.phase!r}")
        if not 0 <= int(self.phase_iters) <= 64:
            raise ValueError(f"phase_iters must be 0–64, got {self.phase_iters!r}")
        if len(self.widths) != 5 or len(self.blocks) != 5:
            raise ValueError("widths and blocks need 5 entries (frame rate + 4 stride-2 levels)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown codec config keys {sorted(unknown)}")
        return cls(**d)


_SIZES: dict[str, dict[str, Any]] = {
    # tiny random-init model for tests
    "debug": {"widths": [16, 16, 24, 24, 32], "blocks": [0, 0, 1, 1, 1], "critic_width": 16, "critic_blocks": 0},
    # the shipped model: ≥ 100× real time on a 2-core CPU
    "small": {"widths": [64, 96, 128, 192, 256], "blocks": [1, 1, 1, 1, 2], "critic_width": 64, "critic_blocks": 1},
    # paper 000's ~37 M-parameter autoencoder
    "paper": {"widths": [256, 384, 512, 640, 768], "blocks": [1, 2, 2, 2, 3], "critic_width": 256,
              "critic_blocks": 2},
}
SIZES = tuple(_SIZES)


def make_config(role: str, size: str = "small", phase: str = "spsi", phase_iters: int | None = None) -> CodecConfig:
    if size not in _SIZES:
        raise ValueError(f"unknown codec size {size!r}; choose from {', '.join(_SIZES)}")
    # input normalisation = mean/std of log-magnitudes measured on corpus crops (stems are sparser and quieter)
    norm = {"input_offset": -5.5, "input_scale": 4.5} if role == "mix" else {"input_offset": -8.5, "input_scale": 4.0}
    # SPSI alone by default: measured on bass stems, 4 fast Griffin-Lim passes after it raised the hop-band share
    # from 0.0–1.0 % to 1.1–2.0 % and moved chroma by < 0.03, at twice the decode time (TRAINING.md)
    iters = phase_iters if phase_iters is not None else 0
    return CodecConfig(role=role, size=size, channels=2 if role == "mix" else 1, dim=64 if role == "mix" else 32,
                       phase=phase, phase_iters=iters if phase == "spsi" else 0, **norm, **_SIZES[size])


class ResBlock(nn.Module):
    def __init__(self, ch: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(ch, ch, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.conv2 = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


def _stack(ch: int, n: int) -> list[nn.Module]:
    return [ResBlock(ch, 3, dilation=1 + (i % 2) * 2) for i in range(n)]  # dilations 1, 3, 1, 3 …


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        w, b = cfg.widths, cfg.blocks
        layers: list[nn.Module] = [nn.Conv1d(cfg.channels * N_BINS, w[0], 1)]
        for lvl in range(4):
            layers += _stack(w[lvl], b[lvl])
            layers += [nn.LeakyReLU(0.2), nn.Conv1d(w[lvl], w[lvl + 1], 4, stride=2, padding=1)]
        layers += _stack(w[4], b[4])
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(w[4], cfg.dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        w, b = cfg.widths, cfg.blocks
        layers: list[nn.Module] = [nn.Conv1d(cfg.dim, w[4], 3, padding=1)]
        layers += _stack(w[4], b[4])
        for lvl in reversed(range(4)):
            layers += [nn.LeakyReLU(0.2), nn.ConvTranspose1d(w[lvl + 1], w[lvl], 4, stride=2, padding=1)]
            layers += _stack(w[lvl], b[lvl])
        heads = 2 if cfg.phase == "head" else 1  # log-magnitude (+ phase)
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(w[0], heads * cfg.channels * N_BINS, 1)]  # 1×1: the widest layer
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class SpectralAutoencoder(nn.Module):
    """Encoder + decoder + the STFT glue. Audio lengths must be multiples of `HOP` here (the Codec pads)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    # -- spectral glue ------------------------------------------------------------------------------------------
    def analyse(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, C, T] → log-magnitude [B, C, 513, T/256] (the centred STFT's extra last frame dropped)."""
        return fe.log_magnitude(audio.float(), N_FFT, STFT_HOP)[..., :-1]

    def normalise(self, s: torch.Tensor) -> torch.Tensor:
        return ((s - self.cfg.input_offset) / self.cfg.input_scale).flatten(1, 2)

    def encode_spec(self, s: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalise(s))

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, C, 4096·N] → latents [B, dim, N]."""
        return self.encode_spec(self.analyse(audio))

    def decode_spec(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """latents → (log-magnitude ŝ [B, C, 513, 16N], phase φ or None when it is reconstructed) in float32."""
        out = self.decoder(z).float()
        b, _, t = out.shape
        heads = 2 if self.cfg.phase == "head" else 1
        out = out.view(b, heads, self.cfg.channels, N_BINS, t)
        # the magnitude head works in the encoder's normalised units; map back to log-magnitude
        log_mag = out[:, 0] * self.cfg.input_scale + self.cfg.input_offset
        return log_mag, (out[:, 1] if heads == 2 else None)

    def synthesise(self, log_mag: torch.Tensor, phase: torch.Tensor | None, length: int | None = None,
                   carry: torch.Tensor | None = None, carry_frame: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """iSTFT of √exp(ŝ)·e^{iφ}; φ is SPSI (+ `phase_iters` of fast Griffin-Lim) when the decoder has no phase head.

        16N frames invert exactly to 4096N samples: the dropped last centred frame's samples are still covered by
        the previous window, so the overlap-add envelope never vanishes. Returns (waveform, SPSI accumulated phase
        or None); `carry`/`carry_frame` continue a previous block's phase (see `frontend.spsi_phase`)."""
        mag = torch.exp(0.5 * log_mag.float().clamp(max=MAG_CLAMP) + self.cfg.output_gain_db * (math.log(10) / 20))
        length = length or log_mag.shape[-1] * STFT_HOP
        if phase is not None:
            return fe.istft(torch.polar(mag, phase), N_FFT, STFT_HOP, length=length), None
        with torch.no_grad():
            # one phase for all channels: a stereo mix costs one SPSI pass, and L and R stay phase-coherent (the
            # image is carried by level differences, as in the decoded magnitudes)
            shared = log_mag.detach().float().amax(dim=1, keepdim=True)  # the louder channel's partials
            phase, accumulated = fe.spsi_phase(shared, N_FFT, STFT_HOP, carry, carry_frame)
        if self.cfg.phase_iters:
            return fe.griffin_lim(mag, phase, self.cfg.phase_iters, N_FFT, STFT_HOP, length), accumulated
        unit = torch.polar(torch.ones_like(phase), phase)  # cos/sin once, shared by the channels
        return fe.istft(mag * unit, N_FFT, STFT_HOP, length=length), accumulated

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        log_mag, phase = self.decode_spec(z)
        return self.synthesise(log_mag, phase, length)[0]

    def forward(self, audio: torch.Tensor, synthesise: bool = True) -> dict[str, torch.Tensor]:
        s = self.analyse(audio)
        z = self.encode_spec(s)
        log_mag, phase = self.decode_spec(z)
        out = {"s": s, "z": z, "log_mag": log_mag}
        if synthesise:
            out["wav"] = self.synthesise(log_mag, phase, audio.shape[-1])[0]
        return out


class Critic(nn.Module):
    """Residual 1-D conv critic over frames (features as channels); returns patch logits [B, 1, frames/8]."""

    def __init__(self, in_ch: int, width: int, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(in_ch, width, 3, padding=1)]
        ch = width
        for _ in range(3):
            layers += _stack(ch, blocks)
            layers += [nn.LeakyReLU(0.2), nn.Conv1d(ch, ch * 2, 4, stride=2, padding=1)]
            ch *= 2
        layers += [nn.LeakyReLU(0.2), nn.Conv1d(ch, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Critics(nn.Module):
    """Paper 000's two critics: log-magnitude (hop 256, win 1024) and 128-bin mel of the same STFT."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = Critic(cfg.channels * N_BINS, cfg.critic_width, cfg.critic_blocks)
        self.mel = Critic(cfg.channels * N_MELS, cfg.critic_width, cfg.critic_blocks)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = fe.stft(audio.float(), N_FFT, STFT_HOP)
        s = fe.log_power(spec)
        fb = fe.mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, device=audio.device)
        mel = torch.log(torch.matmul(spec.abs().square().transpose(-1, -2), fb).transpose(-1, -2) + fe.LOG_EPS)
        off, scale = self.cfg.input_offset, self.cfg.input_scale
        return self.spec(((s - off) / scale).flatten(1, 2)), self.mel(((mel - off) / scale).flatten(1, 2))


def receptive_context(cfg: CodecConfig) -> int:
    """Latent frames of context each side that make chunked processing equal whole-file processing.

    Sums each conv's reach (kernel−1)·dilation at its level, in STFT frames, for the deeper of encoder and
    decoder, converts to latent frames (÷16) and adds one frame for the STFT window's own ±512-sample reach.
    """
    reach = 0  # one-sided, in STFT frames
    for lvl in range(5):
        step = 2**lvl
        reach += sum(((3 - 1) * (1 + (i % 2) * 2) // 2) * step for i in range(cfg.blocks[lvl]))
        if lvl < 4:
            reach += 2 * step  # stride-2 conv / transposed conv of kernel 4
    reach += 16  # k=3 conv at the latent level (one latent frame each side)
    reach += cfg.phase_iters * (N_FFT // STFT_HOP - 1)  # each Griffin-Lim pass reaches one window further
    return -(-reach // 16) + 1


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
