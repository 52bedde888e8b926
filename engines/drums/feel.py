"""The drum controls a musician knows — style, fill amount, complexity, intensity, swing, humanise — and how
each one maps onto the models and the post-processing.

The models (seq2seq, locator, infiller) were trained without a style token, so a style is applied as a
**groove template**, not by retraining: the corpus generator's own groove for that style
(`backline.engines.data.song._groove`, the grooves the models learned from) supplies the layers that *are* the
style, and the model keeps the rest. What each control does, in order:

* ``fill_amount`` (0–1, default 0.5) → the fill locator's threshold, in logit space:
  ``threshold = sigmoid(logit(t0) + 4·(0.5 − fill_amount))`` with t0 the shipped threshold; 0 = no fills,
  1 = a fill wherever the locator gives a bar ≥ ~4 % (still never two bars in a row).
* ``style`` (``band`` = the model's own groove, following the band; or rock, funk, shuffle, half-time, bossa,
  disco, ballad; 4/4 songs only, other meters keep the model's groove and the report says so): in every
  non-fill bar the template's **cymbal layer** (hats/ride) and **snare layer** replace the model's (they carry
  the time feel: half-time's snare on 3, shuffle's triplets, bossa's cross-stick clave); the **kick** stays
  the model's (it follows the band's bass and rhythm) joined with the template's downbeat — except disco and
  bossa, whose kick *is* the style. A crash the model put on a downbeat stays. Fill bars stay the model's.
* ``complexity`` (0–1, default 0.5): below 0.5, onsets off the eighth-note grid (16ths, ghost notes, pickups)
  are dropped outside fills with probability (0.5 − c)·2; above 0.5, the model's own snare/hat onsets that
  a template replaced come back with probability (c − 0.5)·2, and ghost snares are added on the 16ths
  before and after each backbeat with probability (c − 0.5)·0.8.
* ``intensity`` (0–1, default 0.5): velocities × (0.75 + 0.5·intensity); at ≤ 0.25 open hats close and
  crashes go except the first and those after fills; at ≥ 0.75 the hats of the second half of every
  four-bar phrase open up to the ride and the kick doubles beat 1 with an eighth pickup before beat 3.
* ``swing`` (0–1, default 0): off-beat eighths move later by 4·swing grid steps (of 24 per quarter) — 1.0 is
  the triplet feel (2:1); in a groove whose bar has onsets on the odd 16ths, those 16ths swing instead
  (by 2·swing steps). It acts on the grid, so MIDI and audio agree exactly.
* ``humanise`` (0–1, default 0.3): per-note timing offsets, Gaussian σ = 10 ms·humanise (kick and snare
  σ × 0.6, clipped to ±2σ, never before the region start), written into the MIDI ticks; and extra
  velocity spread σ = 8·humanise. Seeded by the take's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from backline.engines.data.song import _groove
from backline.engines.drums.representation import (
    CLOSED_HAT,
    CRASH,
    GM_TO_CLASS,
    KICK,
    N_CLASSES,
    OPEN_HAT,
    RIDE,
    SNARE,
    STEPS_PER_QUARTER,
)

#: style name (what a musician reads) -> the corpus generator's groove name
STYLES: dict[str, str] = {"rock": "rock", "funk": "funk", "shuffle": "shuffle", "half-time": "half_time",
                          "bossa": "bossa", "disco": "disco", "ballad": "ballad"}
STYLE_CHOICES = ("band", *STYLES)
KICK_IS_STYLE = {"disco", "bossa"}
SIDE_STICK = {"bossa"}  # styles whose snare layer is a cross-stick: written as GM 37 (side stick), not 38
CYMBALS = (CLOSED_HAT, OPEN_HAT, RIDE)
CONTROL_NAMES = ("style", "fill_amount", "complexity", "intensity", "swing", "humanise")


@dataclass
class Feel:
    style: str = "band"
    fill_amount: float = 0.5
    complexity: float = 0.5
    intensity: float = 0.5
    swing: float = 0.0
    humanise: float = 0.3
    notes: list[str] = field(default_factory=list)  # what was done, for the report
    side_stick_bars: list[int] = field(default_factory=list)  # bars whose snare is played as a cross-stick (37)

    @classmethod
    def from_controls(cls, controls: dict) -> Feel:
        return cls(**{k: controls[k] for k in CONTROL_NAMES if k in controls})


def fill_threshold(fill_amount: float, base: float) -> float | None:
    """Locator threshold for a fill amount (None = no fills)."""
    if fill_amount <= 0:
        return None
    base = min(max(base, 1e-3), 1 - 1e-3)
    return 1 / (1 + math.exp(-(math.log(base / (1 - base)) + 4 * (0.5 - fill_amount))))


def template_bar(style: str, variant: str, steps_per_bar: int) -> np.ndarray:
    """The style's groove (corpus generator) as a [steps_per_bar, 9] onset grid for one 4/4 bar."""
    name = STYLES[style]
    n = 12 if name == "shuffle" else 16
    bar = np.zeros((steps_per_bar, N_CLASSES), bool)
    for step, pitch, _vel in _groove(name, variant):
        cls = GM_TO_CLASS.get(pitch)
        if cls is not None:
            bar[step * steps_per_bar // n, cls] = True
    return bar


def apply_pattern(drums: np.ndarray, feel: Feel, *, numerator: int, denominator: int, steps_per_bar: int,
                  bars: list[int], fill_bars: list[int], rng: np.random.Generator) -> np.ndarray:
    """Style, complexity, the onset side of intensity, and swing on `[steps, 9]` onsets, in the generated `bars`
    (0-based; a part of yours that the engine only added fills to keeps its own bars)."""
    out = drums.copy()
    fills = set(fill_bars)
    bars = sorted(bars)
    if not bars:
        return out
    first = bars[0]
    spb = steps_per_bar
    eighth, sixteenth = STEPS_PER_QUARTER // 2, STEPS_PER_QUARTER // 4
    style = feel.style
    if style != "band" and (numerator, denominator) != (4, 4):
        feel.notes.append(f"style {style} is a 4/4 groove; this {numerator}/{denominator} song keeps the model's groove")
        style = "band"
    if style in SIDE_STICK:
        feel.side_stick_bars = [b for b in bars if b not in fills]
    pos = np.arange(spb)
    off_eighth = pos % eighth != 0
    backbeats = [STEPS_PER_QUARTER, 3 * STEPS_PER_QUARTER] if spb == 4 * STEPS_PER_QUARTER else []
    for b in bars:
        if b in fills:
            continue
        lo, hi = b * spb, (b + 1) * spb
        model = drums[lo:hi]
        bar = model.copy()
        if style != "band":
            tpl = template_bar(style, "A" if (b - first) % 8 < 4 else "B", spb)
            layers = [*CYMBALS, SNARE] + ([KICK] if style in KICK_IS_STYLE else [])
            bar[:, layers] = tpl[:, layers]
            if style not in KICK_IS_STYLE:
                bar[0, KICK] = True
            bar[0, CRASH] |= model[0, CRASH]
            if bar[0, CRASH]:
                bar[0, list(CYMBALS)] = False
        c = feel.complexity
        if c < 0.5:
            drop = off_eighth[:, None] & (rng.random(bar.shape) < (0.5 - c) * 2)
            bar &= ~drop
        elif c > 0.5:
            p = (c - 0.5) * 2
            if style != "band":
                back = model[:, [SNARE, CLOSED_HAT]] & (rng.random((spb, 2)) < p)
                bar[:, [SNARE, CLOSED_HAT]] |= back
            for beat in backbeats:
                for step in (beat - sixteenth, beat + sixteenth):
                    if rng.random() < p * 0.4:
                        bar[step, SNARE] = True
        out[lo:hi] = bar
    # intensity: orchestration (velocities are scaled in apply_dynamics)
    if feel.intensity <= 0.25:
        keep = {first} | {f + 1 for f in fills}
        for b in bars:
            seg = out[b * spb:(b + 1) * spb]
            seg[:, CLOSED_HAT] |= seg[:, OPEN_HAT]
            seg[:, OPEN_HAT] = False
            if b not in keep:
                seg[:, CRASH] = False
    elif feel.intensity >= 0.75:
        for b in bars:
            if b in fills:
                continue
            lo = b * spb
            if (b - first) % 4 >= 2:
                hats = out[lo:lo + spb, CLOSED_HAT].copy()
                out[lo:lo + spb, CLOSED_HAT] = False
                out[lo:lo + spb, RIDE] |= hats
            if spb == 4 * STEPS_PER_QUARTER:
                out[lo + 2 * STEPS_PER_QUARTER - eighth, KICK] = True
    if feel.swing > 0:
        out = swing(out, feel.swing, spb, bars)
    return out


def swing(drums: np.ndarray, amount: float, steps_per_bar: int, bars: list[int]) -> np.ndarray:
    """Move off-beat eighths later by 4·amount steps (16ths by 2·amount in a 16th-note bar)."""
    out = drums.copy()
    eighth, sixteenth = STEPS_PER_QUARTER // 2, STEPS_PER_QUARTER // 4
    for b in bars:
        lo, hi = b * steps_per_bar, (b + 1) * steps_per_bar
        bar = out[lo:hi]
        pos = np.arange(steps_per_bar)
        sixteenth_bar = bar[(pos % eighth) == sixteenth].any()
        unit, shift = (sixteenth, round(2 * amount)) if sixteenth_bar else (eighth, round(4 * amount))
        if shift == 0:
            continue
        new = bar.copy()
        for step in pos[(pos % (2 * unit)) == unit]:
            if bar[step].any() and step + shift < steps_per_bar:
                new[step + shift] |= bar[step]
                new[step] = False
        out[lo:hi] = new
    return out


def apply_dynamics(velocities: np.ndarray, feel: Feel, rng: np.random.Generator,
                   steps: np.ndarray | None = None) -> np.ndarray:
    """Intensity's velocity scale and humanise's extra velocity spread (0 stays 0), on the `steps` mask only
    (the generated bars: a part of yours keeps its own dynamics)."""
    v = velocities.astype(float) * (0.75 + 0.5 * feel.intensity)
    v += rng.normal(0, 8 * feel.humanise, v.shape)
    out = np.where(velocities > 0, np.clip(np.round(v), 1, 127), 0).astype(np.uint8)
    if steps is not None:
        out[~steps] = velocities[~steps]
    return out


def timing_offsets(drums: np.ndarray, feel: Feel, seconds_per_step: np.ndarray, ticks_per_step: float,
                   rng: np.random.Generator) -> np.ndarray:
    """[steps, 9] int tick offsets: Gaussian σ = 10 ms·humanise (kick/snare ×0.6), clipped to ±2σ, none at step 0."""
    sigma_s = 0.010 * feel.humanise
    if sigma_s <= 0:
        return np.zeros(drums.shape, int)
    scale = np.ones(N_CLASSES)
    scale[[KICK, SNARE]] = 0.6
    jitter = np.clip(rng.normal(0, 1, drums.shape), -2, 2) * sigma_s * scale[None, :]
    ticks = np.round(jitter / seconds_per_step[:, None] * ticks_per_step).astype(int)
    ticks[0] = np.maximum(ticks[0], 0)
    return np.where(drums, ticks, 0)
