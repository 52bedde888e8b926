"""The generation pipeline: seq2seq basic pattern → fill locations → BERT infilling (→ optional MLP variation).

Every stage works on a whole song's token arrays and slides 11-bar segments over it:

- basic pattern: the first segment generates its bars left to right; each later segment keeps the last five
  bars already decided as its prefix and generates the next six (one decoder pass per bar);
- fill locations: every 11-bar MA segment (stride 1) is scored in one batch; a bar's fill probability is the
  mean over the segments that contain it; bars above the tuned threshold are fills, and of two adjacent
  fill bars only the likelier is kept (fills are single events; the corpus and LPD-5 rarely hold two in a row);
- infilling: one segment per fill bar (the fill as near the middle as the song allows), batched; the fill
  bar's quarters are masked as "fill", and the first quarter of the next bar as "regenerate" so the model
  can add the crash that usually follows a fill (merged with what is there, never removing notes).

Greedy decoding (p > 0.5) is the default: it gives the song's main groove. `sample=True` draws every onset
from its Bernoulli instead (the paper's "sampling" baseline).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from backline.engines.drums import novelty as nov
from backline.engines.drums.models import MASK_FILL, MASK_REGENERATE, MASK_VISIBLE
from backline.engines.drums.representation import (
    CONTEXT_BARS,
    DRUM_TOKEN_DIM,
    MAX_QUARTERS_PER_BAR,
    STEPS_PER_QUARTER,
    SongGrid,
    drum_tokens,
    ma_tokens,
    meter_id,
    token_positions,
)
from backline.engines.protocol import check_cancel

PREFIX_BARS = 5


def single_thread(fn):
    """Run with one torch thread on CPU. These models are tiny: with two threads on a busy 2-core machine one
    decoder pass took 77 ms instead of 5 ms (threads spinning against each other), so one thread it is."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        if self.device.type != "cpu":
            return fn(self, *args, **kwargs)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(self, *args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapper


@dataclass
class PipelineConfig:
    locator_threshold: float = 0.5
    novelty_threshold: float = nov.DEFAULT_THRESHOLD


@dataclass
class DrumResult:
    drums: np.ndarray  # [steps, 9] bool over the whole grid
    fill_bars: list[int]  # 0-based grid bars that got fills
    fill_probability: np.ndarray  # per bar (NaN where not predicted)
    generated_bars: list[int] = field(default_factory=list)


def _positions(grid: SongGrid, b0: int, n: int, device) -> tuple[torch.Tensor, ...]:
    beat, bar, phrase = token_positions(n, grid.qpb, grid.first_bar + b0)
    as_t = lambda a: torch.from_numpy(a).long()[None].to(device)  # noqa: E731
    meter = torch.tensor([meter_id(grid.numerator, grid.denominator)], device=device)
    return as_t(beat), as_t(bar), as_t(phrase), meter


def _ma(grid: SongGrid) -> np.ndarray:
    """MA tokens of a grid, computed once per grid (three stages read them)."""
    cached = grid.info.get("_ma_tokens")
    if cached is None or cached.shape[0] != grid.steps // STEPS_PER_QUARTER:
        cached = grid.info["_ma_tokens"] = ma_tokens(grid)
    return cached


def _stack(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat(parts, 0) for parts in zip(*items))


class DrumPipeline:
    def __init__(self, seq2seq, locator, infiller, vae=None, config: PipelineConfig | None = None,
                 device: str = "cpu") -> None:
        self.seq2seq, self.locator, self.infiller, self.vae = seq2seq, locator, infiller, vae
        self.config = config or PipelineConfig()
        self.device = torch.device(device)
        for m in (seq2seq, locator, infiller, vae):
            if m is not None:
                m.to(self.device).eval()

    # --- (1) basic pattern ------------------------------------------------------------------------------
    @single_thread
    @torch.inference_mode()
    def basic_pattern(self, grid: SongGrid, drums: np.ndarray | None = None, bars: tuple[int, int] | None = None,
                      known: np.ndarray | None = None, *, sample: bool = False, temperature: float = 1.0,
                      generator: torch.Generator | None = None, cancel: threading.Event | None = None) -> np.ndarray:
        """Generate grid bars `bars` (0-based, inclusive; default all) into a copy of `drums`.

        `known[b]` says bar b of `drums` is given (the user's) and may serve as the prefix of later segments.
        """
        qpb, n = grid.qpb, grid.n_bars
        first, last = bars or (0, n - 1)
        out = np.zeros((grid.steps, 9), bool) if drums is None else drums.copy()
        known = np.zeros(n, bool) if known is None else known.copy()
        ma = torch.from_numpy(_ma(grid)).to(self.device)
        tok = torch.from_numpy(drum_tokens(out)).to(self.device)
        cur = first
        while cur <= last:
            check_cancel(cancel)
            prefix = 0
            while prefix < PREFIX_BARS and cur - prefix - 1 >= 0 and known[cur - prefix - 1]:
                prefix += 1
            s = cur - prefix
            e = min(n, s + CONTEXT_BARS)
            nb = e - s
            pos = _positions(grid, s, nb, self.device)
            valid = torch.ones(1, nb * qpb, dtype=torch.bool, device=self.device)
            memory = self.seq2seq.encode(ma[None, s * qpb:e * qpb], *pos, valid)
            window = tok[s * qpb:e * qpb].clone()[None]
            stop = min(e - 1, last)
            for k in range(cur - s, stop - s + 1):
                t = (k + 1) * qpb  # decode bars 0..k only (bar-causal: later positions cannot matter)
                beat, bar, phrase, meter = pos
                logits = self.seq2seq.decode(memory, self.seq2seq.shift_one_bar(window[:, :t], qpb), beat[:, :t],
                                             bar[:, :t], phrase[:, :t], meter, valid[:, :t], valid)
                logits = logits[0, k * qpb:t]
                if sample:
                    probs = torch.sigmoid(logits / max(temperature, 1e-3))
                    bits = torch.bernoulli(probs, generator=generator)
                else:
                    bits = (logits > 0).float()
                window[0, k * qpb:(k + 1) * qpb] = bits
            tok[s * qpb:e * qpb] = window[0]
            known[cur:stop + 1] = True
            cur = stop + 1
        generated = tok.cpu().numpy().reshape(-1, 9) > 0.5
        lo, hi = first * grid.steps_per_bar, (last + 1) * grid.steps_per_bar
        out[lo:hi] = generated[lo:hi]
        return out

    # --- (2) fill locations -------------------------------------------------------------------------------
    @single_thread
    @torch.inference_mode()
    def fill_probability(self, grid: SongGrid) -> np.ndarray:
        """Per-bar fill probability from the MA alone (mean over all 11-bar segments holding the bar)."""
        qpb, n = grid.qpb, grid.n_bars
        nb = min(CONTEXT_BARS, n)
        ma = torch.from_numpy(_ma(grid)).to(self.device)
        starts = list(range(0, n - nb + 1))
        items = []
        for s in starts:
            items.append((ma[None, s * qpb:(s + nb) * qpb], *_positions(grid, s, nb, self.device)))
        total = np.zeros(n)
        count = np.zeros(n)
        for i in range(0, len(items), 256):
            chunk = items[i:i + 256]
            ma_b, beat, bar, phrase, meter = _stack(chunk)
            valid = torch.ones(ma_b.shape[:2], dtype=torch.bool, device=self.device)
            logits = self.locator(ma_b, beat, bar, phrase, meter, valid, n_bars=nb).cpu().numpy()
            for j, s in enumerate(starts[i:i + 256]):
                total[s:s + nb] += logits[j]
                count[s:s + nb] += 1
        return 1.0 / (1.0 + np.exp(-total / np.maximum(count, 1)))

    def choose_fill_bars(self, prob: np.ndarray, bars: tuple[int, int] | None = None) -> list[int]:
        first, last = bars or (0, len(prob) - 1)
        cand = [b for b in range(first, last + 1) if prob[b] > self.config.locator_threshold]
        chosen: list[int] = []
        for b in sorted(cand, key=lambda b: -prob[b]):
            if all(abs(b - c) > 1 for c in chosen):
                chosen.append(b)
        return sorted(chosen)

    # --- (3) infilling ------------------------------------------------------------------------------------
    @single_thread
    @torch.inference_mode()
    def infill(self, grid: SongGrid, drums: np.ndarray, bars: list[int], *, kind: int = MASK_FILL,
               sample: bool = False, temperature: float = 1.0, variation: float = 0.0,
               generator: torch.Generator | None = None, crash_after: bool = True) -> np.ndarray:
        """Re-generate `bars` (0-based) of `drums` from the drum and MA context around each."""
        if not bars:
            return drums.copy()
        qpb, n = grid.qpb, grid.n_bars
        nb = min(CONTEXT_BARS, n)
        ma = torch.from_numpy(_ma(grid)).to(self.device)
        tok = torch.from_numpy(drum_tokens(drums)).to(self.device)
        items, kinds, starts = [], [], []
        bar_set = set(bars)
        for f in bars:
            s = int(np.clip(f - nb // 2, 0, n - nb))
            k = torch.full((1, nb * qpb), MASK_VISIBLE, dtype=torch.long, device=self.device)
            k[0, (f - s) * qpb:(f - s + 1) * qpb] = kind
            if crash_after and kind == MASK_FILL and f + 1 < s + nb and f + 1 not in bar_set:
                k[0, (f + 1 - s) * qpb] = MASK_REGENERATE
            items.append((ma[None, s * qpb:(s + nb) * qpb], tok[None, s * qpb:(s + nb) * qpb],
                          *_positions(grid, s, nb, self.device)))
            kinds.append(k)
            starts.append(s)
        ma_b, dr_b, beat, bar, phrase, meter = _stack(items)
        kind_b = torch.cat(kinds, 0)
        valid = torch.ones(kind_b.shape, dtype=torch.bool, device=self.device)
        logits = self.infiller(ma_b, dr_b, kind_b, beat, bar, phrase, meter, valid)
        if variation > 0 and self.vae is not None:
            logits = self._vae_logits(logits, dr_b, bars, starts, qpb, variation, generator)
        if sample:
            bits = torch.bernoulli(torch.sigmoid(logits / max(temperature, 1e-3)), generator=generator)
        else:
            bits = (logits > 0).float()
        out = tok.clone()
        for j, (f, s) in enumerate(zip(bars, starts)):
            out[f * qpb:(f + 1) * qpb] = bits[j, (f - s) * qpb:(f - s + 1) * qpb]
            if kind_b[j, min((f + 1 - s) * qpb, kind_b.shape[1] - 1)] == MASK_REGENERATE:
                t = (f + 1) * qpb
                out[t] = torch.maximum(out[t], bits[j, (f + 1 - s) * qpb])
        return out.cpu().numpy().reshape(-1, 9) > 0.5

    def _vae_logits(self, logits, dr_b, bars, starts, qpb, variation, generator):
        """Replace the fill bars' logits by the MLP decoder's, from z ~ N(0, variation² I) and the bar before."""
        logits = logits.clone()
        for j, (f, s) in enumerate(zip(bars, starts)):
            k = f - s
            prev = torch.zeros(MAX_QUARTERS_PER_BAR * DRUM_TOKEN_DIM, device=logits.device)
            if k > 0:
                prev[: qpb * DRUM_TOKEN_DIM] = dr_b[j, (k - 1) * qpb:k * qpb].reshape(-1)
            z = torch.randn(self.vae.latent, generator=generator).to(logits.device) * variation
            dec = self.vae.decode(z[None], prev[None])[0, : qpb * DRUM_TOKEN_DIM].reshape(qpb, DRUM_TOKEN_DIM)
            logits[j, k * qpb:(k + 1) * qpb] = dec
        return logits

    # --- the whole thing ------------------------------------------------------------------------------------
    def generate(self, grid: SongGrid, *, mode: str = "full", bars: tuple[int, int] | None = None,
                 fill_bars: list[int] | None = None, fills: bool = True, user_drums: np.ndarray | None = None,
                 seed: int = 0, variation: float = 0.0, sample: bool = False, progress=None,
                 cancel: threading.Event | None = None) -> DrumResult:
        """`mode`: 'full' (new part for `bars`), 'fills' (fills into `user_drums`), 'regenerate' (new `bars` in
        `user_drums`). `fill_bars` (0-based) overrides the locator; `fills=False` skips fills (the basic pattern)."""
        progress = progress or (lambda f, m: None)
        n = grid.n_bars
        first, last = bars or (0, n - 1)
        gen = torch.Generator().manual_seed(int(seed))
        prob = np.full(n, np.nan)
        if mode == "full":
            progress(0.1, "basic pattern (seq2seq)")
            drums = self.basic_pattern(grid, None, (first, last), sample=sample, generator=gen, cancel=cancel)
            generated = list(range(first, last + 1))
        elif mode == "regenerate":
            if user_drums is None:
                raise ValueError("regenerate needs the user's drums")
            known = np.ones(n, bool)
            known[first:last + 1] = False
            progress(0.1, "regenerating bars (seq2seq)")
            drums = self.basic_pattern(grid, user_drums, (first, last), known, sample=sample, generator=gen,
                                       cancel=cancel)
            generated = list(range(first, last + 1))
        elif mode == "fills":
            if user_drums is None:
                raise ValueError("fills mode needs the user's drums")
            drums = user_drums.copy()
            generated = []
        else:
            raise ValueError(mode)
        check_cancel(cancel)
        chosen: list[int] = []
        if fills:
            if fill_bars is not None:
                chosen = sorted(b for b in fill_bars if first <= b <= last)
            else:
                progress(0.5, "locating fills (BERT on the band)")
                prob = self.fill_probability(grid)
                chosen = self.choose_fill_bars(prob, (first, last))
            check_cancel(cancel)
            if chosen:
                progress(0.7, f"infilling {len(chosen)} fill bar(s)")
                drums = self.infill(grid, drums, chosen, variation=variation, generator=gen,
                                    sample=sample and variation == 0)
        generated = sorted(set(generated) | set(chosen))
        progress(0.9, "done")
        return DrumResult(drums, chosen, prob, generated)


def bar_novelty(drums: np.ndarray, grid: SongGrid) -> np.ndarray:
    return nov.novelty(drums, grid.steps_per_bar)


def steps_per_bar(grid: SongGrid) -> int:
    return grid.qpb * STEPS_PER_QUARTER
