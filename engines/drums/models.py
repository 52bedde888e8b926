"""The drum engine's four small networks (paper 002b's pipeline; sizes chosen for one CPU thread).

All read per-quarter tokens (see representation.py) of an 11-bar segment, with learned embeddings for the
beat in the bar, the bar in the segment, the phrase position ((song bar − 1) mod 8) and the meter.

- `Seq2SeqDrums` (as in the paper, without the phrase position: `phrase=False` in the shipped config, so the
  basic pattern comes from the band and the segment alone): encoder over the MA tokens, decoder over the drum tokens shifted right by one bar, with a
  *bar-causal* self-attention mask (a token sees every drum token of earlier bars, none of its own bar) and
  cross-attention to the MA. It generates a bar at a time: the 24×9 onsets of each quarter of the bar are
  216 Bernoulli outputs given the earlier bars and the MA. One decoder pass per bar is what makes 64 bars
  take tens of milliseconds; the bar-causal factorisation is our choice (the paper does not say how it
  tokenises), and it keeps the paper's property that the pattern is decoded left to right.
- `FillLocator`: a 2-layer bidirectional (BERT-style) encoder over the MA tokens alone → one fill logit per
  bar (token outputs averaged over the bar).
- `DrumInfiller`: a BERT-style encoder over drum + MA tokens in which masked quarters are replaced by a
  learned mask vector of one of two kinds — "fill here" or "plain regenerate" — and predicted from both
  contexts (the paper's in-filling model, with the mask kind as our addition so one model serves the
  "fills" and "regenerate these bars" modes).
- `FillVAE`: the paper's optional MLP module that decodes a fill from a latent code. A conditional VAE:
  the encoder sees the fill bar and the bar before it, the decoder sees z and the bar before it. Sampling z
  is the engine's "variation" control.

Masks are boolean "may attend" tensors for `scaled_dot_product_attention`; every query may attend to itself,
so padded rows never become all-masked (which would give NaNs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backline.engines.drums.representation import (
    CONTEXT_BARS,
    DRUM_TOKEN_DIM,
    MA_TOKEN_DIM,
    MAX_QUARTERS_PER_BAR,
)

MAX_BARS_IN_SEGMENT = 16
N_METERS = 8
#: output biases start at the logit of a typical onset rate (~2 % of the 216 bits of a quarter are on), so
#: untrained (debug) models are sparse and training does not spend its first steps learning the base rate
PRIOR_LOGIT = -3.9


def _prior(linear: nn.Linear) -> nn.Linear:
    nn.init.constant_(linear.bias, PRIOR_LOGIT)
    return linear


class Block(nn.Module):
    """Pre-LayerNorm transformer block, optionally with cross-attention."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.cross = cross
        if cross:
            self.lnc = nn.LayerNorm(d)
            self.q = nn.Linear(d, d)
            self.kv = nn.Linear(d, 2 * d)
            self.cproj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def _attend(self, q, k, v, mask):
        # plain view/transpose rather than einops: this runs ~600 times per 64-bar song and einops' parsing
        # cost ~10 % of generation time
        b, lq, d = q.shape
        h = self.heads
        q = q.view(b, lq, h, d // h).transpose(1, 2)
        k = k.view(b, k.shape[1], h, d // h).transpose(1, 2)
        v = v.view(b, v.shape[1], h, d // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, lq, d)

    def forward(self, x, mask, memory=None, memory_mask=None):
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        x = x + self.drop(self.proj(self._attend(q, k, v, mask)))
        if self.cross:
            h = self.lnc(x)
            k, v = self.kv(memory).chunk(2, dim=-1)
            x = x + self.drop(self.cproj(self._attend(self.q(h), k, v, memory_mask)))
        return x + self.drop(self.ff(self.ln2(x)))


class Positions(nn.Module):
    """Sum of beat-in-bar, bar-in-segment, phrase-position and meter embeddings."""

    def __init__(self, d: int, phrase: bool = True) -> None:
        super().__init__()
        self.beat = nn.Embedding(MAX_QUARTERS_PER_BAR, d)
        self.bar = nn.Embedding(MAX_BARS_IN_SEGMENT, d)
        self.phrase = nn.Embedding(8, d) if phrase else None
        self.meter = nn.Embedding(N_METERS, d)

    def forward(self, beat, bar, phrase, meter):
        out = self.beat(beat) + self.bar(bar.clamp(max=MAX_BARS_IN_SEGMENT - 1)) + self.meter(meter)[:, None, :]
        return out + self.phrase(phrase) if self.phrase is not None else out


def key_mask(valid: torch.Tensor) -> torch.Tensor:
    """Bidirectional mask `[B, 1, T, T]`: attend to valid keys, and always to oneself."""
    t = valid.shape[1]
    eye = torch.eye(t, dtype=torch.bool, device=valid.device)
    return (valid[:, None, None, :] | eye)


def bar_causal_mask(bar: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`[B, 1, T, T]`: token i may see token j when j's bar is not later than i's (inputs are shifted by a
    bar, so that means drums of earlier bars only)."""
    t = bar.shape[1]
    eye = torch.eye(t, dtype=torch.bool, device=bar.device)
    allowed = (bar[:, None, :] <= bar[:, :, None]) & valid[:, None, :]
    return (allowed | eye)[:, None]


class Seq2SeqDrums(nn.Module):
    def __init__(self, d: int = 96, heads: int = 4, ff: int = 256, enc_layers: int = 2, dec_layers: int = 2,
                 dropout: float = 0.1, phrase: bool = True) -> None:
        super().__init__()
        self.ma_in = nn.Linear(MA_TOKEN_DIM, d)
        self.drum_in = nn.Linear(DRUM_TOKEN_DIM, d)
        self.bos = nn.Parameter(torch.zeros(d))
        self.enc_pos = Positions(d, phrase)
        self.dec_pos = Positions(d, phrase)
        self.encoder = nn.ModuleList(Block(d, heads, ff, dropout) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(Block(d, heads, ff, dropout, cross=True) for _ in range(dec_layers))
        self.enc_ln = nn.LayerNorm(d)
        self.out_ln = nn.LayerNorm(d)
        self.out = _prior(nn.Linear(d, DRUM_TOKEN_DIM))

    def encode(self, ma, beat, bar, phrase, meter, valid):
        x = self.ma_in(ma) + self.enc_pos(beat, bar, phrase, meter)
        mask = key_mask(valid)
        for block in self.encoder:
            x = block(x, mask)
        return self.enc_ln(x)

    @staticmethod
    def shift_one_bar(drums: torch.Tensor, qpb: int) -> torch.Tensor:
        """Drum tokens of bar k-1 at the positions of bar k (zeros for bar 0, where BOS is added)."""
        return F.pad(drums, (0, 0, qpb, 0))[:, : drums.shape[1]]

    def decode(self, memory, drums_shifted, beat, bar, phrase, meter, valid, memory_valid=None):
        """Drum logits for the decoder positions given (which may be a prefix of the memory's: thanks to the
        bar-causal mask, bar k's outputs do not depend on later positions, so generation decodes only up to k)."""
        x = self.drum_in(drums_shifted) + self.dec_pos(beat, bar, phrase, meter)
        x = x + (bar == 0)[..., None] * self.bos
        mask = bar_causal_mask(bar, valid)
        memory_valid = valid if memory_valid is None else memory_valid
        mem_mask = memory_valid[:, None, None, :].expand(-1, 1, x.shape[1], -1)
        for block in self.decoder:
            x = block(x, mask, memory, mem_mask)
        return self.out(self.out_ln(x))

    def forward(self, ma, drums, beat, bar, phrase, meter, valid, qpb: int):
        memory = self.encode(ma, beat, bar, phrase, meter, valid)
        return self.decode(memory, self.shift_one_bar(drums, qpb), beat, bar, phrase, meter, valid)


class FillLocator(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4, ff: int = 128, layers: int = 2, dropout: float = 0.1,
                 phrase: bool = True) -> None:
        super().__init__()
        self.ma_in = nn.Linear(MA_TOKEN_DIM, d)
        self.pos = Positions(d, phrase)
        self.blocks = nn.ModuleList(Block(d, heads, ff, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)
        nn.init.constant_(self.head.bias, -1.5)  # fills are ~15 % of bars

    def forward(self, ma, beat, bar, phrase, meter, valid, n_bars: int = CONTEXT_BARS):
        """Fill logit per bar `[B, n_bars]` (bars beyond a sample's length are garbage; mask them)."""
        x = self.ma_in(ma) + self.pos(beat, bar, phrase, meter)
        mask = key_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        tok = self.head(self.ln(x))[..., 0]  # [B, T]
        onehot = F.one_hot(bar.clamp(max=n_bars - 1), n_bars).float() * valid[..., None]
        return (tok[..., None] * onehot).sum(1) / onehot.sum(1).clamp(min=1)


MASK_VISIBLE, MASK_REGENERATE, MASK_FILL = 0, 1, 2


class DrumInfiller(nn.Module):
    def __init__(self, d: int = 96, heads: int = 4, ff: int = 256, layers: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.ma_in = nn.Linear(MA_TOKEN_DIM, d)
        self.drum_in = nn.Linear(DRUM_TOKEN_DIM, d)
        self.mask_kind = nn.Embedding(3, d)
        self.pos = Positions(d)
        self.blocks = nn.ModuleList(Block(d, heads, ff, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.out = _prior(nn.Linear(d, DRUM_TOKEN_DIM))

    def forward(self, ma, drums, kind, beat, bar, phrase, meter, valid):
        """`kind` per token: 0 visible, 1 masked (regenerate), 2 masked (fill). Returns drum logits per token."""
        visible = (kind == MASK_VISIBLE)[..., None].float()
        x = self.drum_in(drums * visible) + self.mask_kind(kind) + self.ma_in(ma) + self.pos(beat, bar, phrase, meter)
        mask = key_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        return self.out(self.ln(x))


class FillVAE(nn.Module):
    """MLP conditional VAE over one bar (up to 8 quarters, zero-padded): fill | previous bar.

    Each quarter's 216 onsets are first projected to `quarter_dim` by one shared linear layer (and decoded
    back by another), so the MLP works on 8 × quarter_dim values; this keeps the module at ~0.3 M parameters
    instead of the ~3 M a flat 1728-wide MLP would need.
    """

    def __init__(self, latent: int = 16, hidden: int = 256, quarter_dim: int = 32) -> None:
        super().__init__()
        self.latent = latent
        self.q_in = nn.Linear(DRUM_TOKEN_DIM, quarter_dim)
        self.q_out = _prior(nn.Linear(quarter_dim, DRUM_TOKEN_DIM))
        flat = MAX_QUARTERS_PER_BAR * quarter_dim
        self.quarter_dim = quarter_dim
        self.enc = nn.Sequential(nn.Linear(2 * flat, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent + flat, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, flat))

    def _squeeze(self, bar):
        return self.q_in(bar.view(*bar.shape[:-1], MAX_QUARTERS_PER_BAR, DRUM_TOKEN_DIM)).flatten(-2)

    def encode(self, fill, prev):
        mu, logvar = self.enc(torch.cat([self._squeeze(fill), self._squeeze(prev)], -1)).chunk(2, -1)
        return mu, logvar.clamp(-8, 8)

    def decode(self, z, prev):
        h = self.dec(torch.cat([z, self._squeeze(prev)], -1))
        return self.q_out(h.view(*h.shape[:-1], MAX_QUARTERS_PER_BAR, self.quarter_dim)).flatten(-2)

    def forward(self, fill, prev):
        mu, logvar = self.encode(fill, prev)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z, prev), mu, logvar


MODEL_CLASSES = {"seq2seq": Seq2SeqDrums, "locator": FillLocator, "infiller": DrumInfiller, "vae": FillVAE}

CONFIGS: dict[str, dict[str, dict]] = {
    "shipped": {
        "seq2seq": {"d": 96, "heads": 4, "ff": 256, "enc_layers": 2, "dec_layers": 2, "dropout": 0.1,
                    "phrase": False},
        "locator": {"d": 64, "heads": 4, "ff": 128, "layers": 2, "dropout": 0.1},
        "infiller": {"d": 96, "heads": 4, "ff": 256, "layers": 3, "dropout": 0.1},
        "vae": {"latent": 16, "hidden": 256, "quarter_dim": 32},
    },
    "debug": {
        "seq2seq": {"d": 32, "heads": 2, "ff": 64, "enc_layers": 1, "dec_layers": 1, "dropout": 0.0},
        "locator": {"d": 32, "heads": 2, "ff": 64, "layers": 1, "dropout": 0.0},
        "infiller": {"d": 32, "heads": 2, "ff": 64, "layers": 1, "dropout": 0.0},
        "vae": {"latent": 4, "hidden": 64, "quarter_dim": 8},
    },
}


def build_model(name: str, config: dict) -> nn.Module:
    return MODEL_CLASSES[name](**config)
