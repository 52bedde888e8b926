"""The learned comping planner: a small autoregressive GRU over 16th-note steps that decides *when* an
accompaniment part plays and *how thick* (rest / hold / an attack of 1-4 voices, which voice a single note takes,
and how hard), on the same listened grid as the bass planner; the voicing step (`follow.voice_chord`) picks the
pitches. Why this split: rhythm and texture are what differ between a ballad arpeggio, a funk comp and a string
pad and are easy to learn from symbolic data; pitches must be chord tones of the heard chord with good voice
leading, which a rule does exactly and a 16th-step model on a CPU budget would only approximate.

Per step the model sees the bass planner's grid features (chord now and next with the distance, key and scale,
position in the bar, meter, kick, section; `bass.planner.features` with its own style/attribute columns dropped),
the instrument family (keys, guitar, strings, pads), the comping style, four attributes measured on the training
part (complexity = attacks per bar, intensity = mean velocity, register = mean pitch, density = voices per attack),
and what the band already plays around it (band attacks on this step, how busy the band is over the bar, whether a
lead sounds): so a control asks for a texture and the band's activity is part of the context.

Tokens per step: 0 = rest, 1 = hold, 2 + (d - 1) = an attack of d voices (d = 1..4, 4 = four or more). Heads: the
token, the voice of a single-note attack (0 = lowest … 3 = highest of the voicing), the velocity bucket (8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backline.engines.accompany.instruments import FAMILY_STYLES, STYLES  # noqa: F401 - FAMILY_STYLES re-exported
from backline.engines.bass.planner import ATTRS as BASS_ATTRS
from backline.engines.bass.planner import N_FEATURES as GRID_FEATURES_ALL
from backline.engines.bass.planner import STYLES as BASS_STYLES
from backline.engines.bass.planner import (
    Grid,
    LoadedPlanner,
    _sample,
    aim_attributes,
    bucket_velocity,
    load_planner_as,
    resolve_config,
    step_shapes,
    token_runs,
    torch_generator,
)
from backline.engines.bass.planner import PlannerConfig as BassPlannerConfig
from backline.engines.bass.planner import features as grid_features
from backline.engines.core.errors import ConfigError

KIND = "comp-planner"
FORMAT_VERSION = 1
WEIGHTS = Path(__file__).parent / "weights" / "planner"

REST, HOLD = 0, 1
MAX_VOICES = 4
N_TOKENS = 2 + MAX_VOICES
BOS = N_TOKENS
N_VOICE_IDX = 4
VEL_BUCKETS = 8
FAMILIES = ("keys", "guitar", "strings", "pads")
ATTRS = ("complexity", "intensity", "register", "density")
BAND = ("band_attack", "band_busy", "lead_on")
GRID_FEATURES = GRID_FEATURES_ALL - len(BASS_STYLES) - len(BASS_ATTRS)
N_FEATURES = GRID_FEATURES + len(FAMILIES) + len(STYLES) + len(ATTRS) + len(BAND)


@dataclass(frozen=True)
class CompEvent:
    """One planned attack: `voices` notes (or one note: voice index `voice`) from `step` for `length` steps."""

    step: int
    length: int
    voices: int
    voice: int  # for single-note attacks: 0 = lowest … 3 = highest; -1 otherwise
    velocity: int


def part_attributes(events: list[CompEvent], grid: Grid, mean_pitch: float | None) -> dict[str, float]:
    if not events:
        return {"complexity": 0.0, "intensity": 0.5, "register": 0.0, "density": 0.0}
    bars = max(1.0, grid.steps / grid.bar_steps)
    return {"complexity": min(1.0, len(events) / bars / 8.0),
            "intensity": float(np.mean([e.velocity for e in events])) / 127.0,
            "register": ((mean_pitch if mean_pitch is not None else 64.0) - 64.0) / 12.0,
            "density": float(np.mean([e.voices for e in events])) / MAX_VOICES}


def tokens_of(events: list[CompEvent], steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events → per-step tokens, voice indices (-1 where none) and velocity buckets (-1 where no attack)."""
    tok = np.zeros(steps, np.int64)
    vidx = np.full(steps, -1, np.int64)
    vel = np.full(steps, -1, np.int64)
    for e in sorted(events, key=lambda e: e.step):
        if not 0 <= e.step < steps:
            continue
        tok[e.step] = 2 + min(MAX_VOICES, max(1, e.voices)) - 1
        vidx[e.step] = e.voice if e.voices == 1 else -1
        vel[e.step] = min(VEL_BUCKETS - 1, e.velocity * VEL_BUCKETS // 128)
        end = min(steps, e.step + max(1, e.length))
        tok[e.step + 1:end] = np.where(tok[e.step + 1:end] == REST, HOLD, tok[e.step + 1:end])
    return tok, vidx, vel


def events_of(tokens: np.ndarray, vidx: np.ndarray, vel: np.ndarray) -> list[CompEvent]:
    return [CompEvent(s, n, t - 1, int(vidx[s]) if t == 2 else -1, bucket_velocity(int(vel[s])))
            for s, n, t in token_runs(tokens)]


def features(grid: Grid, family: str, style: str, attrs: dict[str, float], band: np.ndarray) -> np.ndarray:
    """[steps, N_FEATURES] float32: the bass planner's grid features + family, style, attributes, band [steps, 3]."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown instrument family {family!r}", fix=f"use one of {', '.join(FAMILIES)}")
    n = grid.steps
    base = grid_features(grid, "unknown", {a: 0.0 for a in BASS_ATTRS})[:, :GRID_FEATURES]
    eye = np.eye
    style_i = STYLES.index(style) if style in STYLES else STYLES.index("unknown")
    parts = [base, np.repeat(eye(len(FAMILIES), dtype=np.float32)[[FAMILIES.index(family)]], n, 0),
             np.repeat(eye(len(STYLES), dtype=np.float32)[[style_i]], n, 0),
             np.repeat(np.array([[attrs[a] for a in ATTRS]], np.float32), n, 0), band.astype(np.float32)]
    return np.concatenate(parts, 1).astype(np.float32)


def band_features(attacks: np.ndarray, bar: int, lead: np.ndarray | None = None) -> np.ndarray:
    """Band attack strength per step (0-1) → [steps, 3]: attack now, how busy the bar around it is, lead sounding."""
    a = np.clip(np.asarray(attacks, np.float32), 0.0, 1.0)
    kernel = np.ones(bar, np.float32) / bar
    busy = np.convolve(a, kernel, mode="same") if len(a) else a
    lead_on = np.zeros_like(a) if lead is None else np.asarray(lead, np.float32)
    return np.stack([a, busy, lead_on], 1)


@dataclass
class PlannerConfig(BassPlannerConfig):
    """The bass planner's config fields (same JSON keys) with the comping planner's smaller defaults."""

    hidden: int = 96
    token_dim: int = 16
    n_features: int = N_FEATURES


CONFIGS = {"small": PlannerConfig(), "debug": PlannerConfig(hidden=24, layers=1, token_dim=8)}


def build_planner(config: str | dict[str, Any] | PlannerConfig = "small"):
    """The trainable torch module: the bass planner's `StepPlanner` with a voice-index head (training, and the
    untrained `debug` weights)."""
    from backline.engines.bass.planner_model import StepPlanner  # lazy: torch, for training only

    return StepPlanner(resolve_config(config, CONFIGS, PlannerConfig), N_TOKENS, N_VOICE_IDX)


class Planner(LoadedPlanner):
    """A loaded comping planner (its attribute means are per "family/style"): attributes from controls, the part
    planned on a grid."""

    def attributes(self, family: str, style: str, complexity: float = 0.5, intensity: float = 0.5,
                   register: float = 0.0) -> dict[str, float]:
        """Controls (0.5 = the style's typical; register in octaves) → the attributes the model aims at."""
        base = self.style_attrs.get(f"{family}/{style}") or self.style_attrs.get(f"{family}/unknown") or \
            {"complexity": 0.4, "intensity": 0.6, "register": 0.0, "density": 0.6}
        return aim_attributes(base, complexity, intensity, register) | {"density": float(base["density"])}

    def plan(self, grid: Grid, family: str, style: str, attrs: dict[str, float], band: np.ndarray, *,
             seed: int = 0, temperature: float = 0.7, top_p: float = 0.9) -> list[CompEvent]:
        """Sample the part step by step; no attack where no chord is heard."""
        runner = self.runner
        cond_in, state = runner.start(features(grid, family, style, attrs, band))
        gen = torch_generator(seed)
        prev = BOS
        tokens = np.zeros(grid.steps, np.int64)
        vidx = np.full(grid.steps, -1, np.int64)
        vels = np.full(grid.steps, -1, np.int64)
        for s in range(grid.steps):
            (logits, vlog, velog), state = runner.step(cond_in[s], prev, state)
            if s == 0 or tokens[s - 1] == REST:
                logits[HOLD] = -math.inf
            if grid.root[s] >= 12:
                logits[2:] = -math.inf
            t = _sample(logits, temperature, top_p, gen)
            tokens[s] = t
            if t >= 2:
                vidx[s] = int(np.argmax(vlog))
                vels[s] = int(np.argmax(velog))
            prev = t
        return events_of(tokens, vidx, vels)


def load_planner(path: str | Path | None = None, config: str = "shipped") -> Planner:
    """'shipped' (or a path) loads trained weights; 'debug'/'small' build an untrained planner (tests)."""
    return load_planner_as(Planner, path, config, weights=WEIGHTS, kind=KIND, build=build_planner, configs=CONFIGS,
                           shapes=lambda c: step_shapes(resolve_config(c, CONFIGS, PlannerConfig), N_TOKENS, N_VOICE_IDX),
                           format_version=FORMAT_VERSION)
