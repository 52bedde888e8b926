"""The learned bass planner: a small autoregressive GRU over 16th-note steps that writes a bass line (pitch, onset,
duration, velocity) on a listened grid of chords, kick hits and sections, in a style and with a musician's controls.

Why this shape. Paper 000's diffusion model has to learn harmony implicitly from audio and, trained on a CPU, did not
(0.30 of its note-time on chord tones against the true bass's 0.87). Harmony is explicit here: every step sees the
chord sounding now and the next chord with the distance to it (walking and anticipating lines need both), the key,
the position in the bar, the kick drum now/next, the section, the style and four attributes. A GRU is enough for
one-voice lines and samples a 100-bar song step by step in well under a second on one CPU thread.

Tokens per step: 0 = rest, 1 = hold (the previous note sounds on), 2 + k = a new note at MIDI pitch `LOW + k`
(E1-ish to C4). A second head gives the velocity (8 buckets) of new notes.

Attributes (`complexity`, `intensity`, `register`, `lock`) are measured on the training line itself (onsets per bar,
mean velocity, mean pitch, share of onsets on kick hits), so at run time a control sets what the model aims at
(attribute conditioning). Per-style means of the attributes are stored with the weights: a control of 0.5 asks for
the style's typical value. Swing is a timing feel applied to the planned notes (late off-beats), not learned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backline.engines.bass.grid import (
    ATTRS,
    METERS,
    POSITIONS,
    QUALITIES,
    QUALITY_INTERVALS,
    SECTIONS,
    STYLES,
    Grid,
    PlanNote,
)
from backline.engines.core.dsp import gelu
from backline.engines.core.errors import ConfigError
from backline.engines.core.weights import load_arrays

KIND = "bass-planner"
FORMAT_VERSION = 1
WEIGHTS = Path(__file__).parent / "weights" / "planner"

LOW, HIGH = 24, 60  # pitch range of the tokens (inclusive)
N_PITCH = HIGH - LOW + 1
REST, HOLD = 0, 1
N_TOKENS = 2 + N_PITCH
BOS = N_TOKENS  # the "previous token" at step 0
VEL_BUCKETS = 8
def line_attributes(notes: list[PlanNote], grid: Grid) -> dict[str, float]:
    """The four attributes of a line on a grid (what the controls ask for)."""
    if not notes:
        return {"complexity": 0.0, "intensity": 0.5, "register": 0.0, "lock": 0.0}
    bars = max(1.0, grid.steps / grid.bar_steps)
    on_kick = sum(1 for n in notes if n.step < grid.steps and grid.kick[n.step]) / len(notes)
    return {"complexity": min(1.0, len(notes) / bars / 12.0),
            "intensity": float(np.mean([n.velocity for n in notes])) / 127.0,
            "register": (float(np.mean([n.pitch for n in notes])) - 36.0) / 12.0,
            "lock": on_kick}


def tokens_of(notes: list[PlanNote], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Notes → per-step tokens and velocity buckets (-1 where no onset)."""
    tok = np.zeros(steps, np.int64)
    vel = np.full(steps, -1, np.int64)
    for n in sorted(notes, key=lambda n: n.step):
        if not 0 <= n.step < steps:
            continue
        p = int(np.clip(n.pitch, LOW, HIGH))
        tok[n.step] = 2 + p - LOW
        vel[n.step] = min(VEL_BUCKETS - 1, n.velocity * VEL_BUCKETS // 128)
        end = min(steps, n.step + max(1, n.length))
        tok[n.step + 1:end] = np.where(tok[n.step + 1:end] == REST, HOLD, tok[n.step + 1:end])
    return tok, vel


def notes_of(tokens: np.ndarray, vel: np.ndarray) -> list[PlanNote]:
    return [PlanNote(s, n, LOW + t - 2, bucket_velocity(int(vel[s]))) for s, n, t in token_runs(tokens)]


def token_runs(tokens: np.ndarray) -> list[tuple[int, int, int]]:
    """Step tokens → (first step, steps, token) of each attack (token >= 2) with the HOLDs after it; a HOLD after a
    rest is dropped. How both planners (bass here, comping in `accompany.planner`) read their tokens back."""
    runs: list[list[int]] = []
    sounding = False
    for s, t in enumerate(tokens.tolist()):
        if t == HOLD and sounding:
            runs[-1][1] += 1
            continue
        sounding = t >= 2
        if sounding:
            runs.append([s, 1, t])
    return [(s, n, t) for s, n, t in runs]


def bucket_velocity(bucket: int) -> int:
    """A velocity bucket (< 0: none predicted, read as bucket 5) → a MIDI velocity near the bucket's middle."""
    return int(min(127, (bucket if bucket >= 0 else 5) * 128 // VEL_BUCKETS + 8))


def features(grid: Grid, style: str, attrs: dict[str, float]) -> np.ndarray:
    """[steps, F] float32 conditioning (see the module docstring)."""
    n, bar = grid.steps, grid.bar_steps
    steps = np.arange(n)
    root = grid.root.astype(np.int64)
    # the next chord (root, quality change) and how far away it is
    nxt_root = np.full(n, 12, np.int64)
    dist = np.full(n, 32, np.int64)
    change = np.flatnonzero((root[1:] != root[:-1]) | (grid.quality[1:] != grid.quality[:-1])) + 1
    j = 0
    for s in range(n):
        while j < len(change) and change[j] <= s:
            j += 1
        if j < len(change):
            nxt_root[s] = root[change[j]]
            dist[s] = change[j] - s
    eye = np.eye
    meter_i = METERS.index((grid.numerator, grid.denominator)) if (grid.numerator, grid.denominator) in METERS else -1
    sec = grid.section.astype(np.int64)
    sec_last = np.zeros(n, np.float32)  # last bar of a section: fills and pickups happen there
    bounds = np.flatnonzero(sec[1:] != sec[:-1]) + 1
    for b in bounds:
        sec_last[max(0, b - bar):b] = 1.0
    style_i = STYLES.index(style) if style in STYLES else STYLES.index("unknown")
    scale = (0, 2, 4, 5, 7, 9, 11) if grid.mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    key_pcs = np.zeros(12, np.float32)
    key_pcs[[(grid.key_pc + i) % 12 for i in scale]] = 1.0
    chord_pcs = np.zeros((n, 12), np.float32)
    for q, ivs in enumerate(QUALITY_INTERVALS[name] for name in QUALITIES):
        for iv in ivs:
            rows = (grid.quality == q) & (root < 12)
            chord_pcs[rows, (root[rows] + iv) % 12] = 1.0
    kick = grid.kick.astype(np.float32)
    parts = [
        eye(13, dtype=np.float32)[root], eye(len(QUALITIES), dtype=np.float32)[grid.quality.astype(np.int64)],
        chord_pcs, eye(13, dtype=np.float32)[nxt_root], eye(5, dtype=np.float32)[np.minimum(dist, 5) - 1],
        np.repeat(key_pcs[None], n, 0), eye(12, dtype=np.float32)[np.full(n, grid.key_pc)],
        np.repeat(np.array([[grid.mode == "major", grid.mode != "major"]], np.float32), n, 0),
        eye(POSITIONS, dtype=np.float32)[steps % bar],
        eye(len(METERS) + 1, dtype=np.float32)[np.full(n, meter_i)],
        np.stack([kick, np.roll(kick, -1) * (steps < n - 1), np.roll(kick, 1) * (steps > 0)], 1),
        eye(len(SECTIONS), dtype=np.float32)[sec], sec_last[:, None],
        np.repeat(eye(len(STYLES), dtype=np.float32)[[style_i]], n, 0),
        np.repeat(np.array([[attrs[a] for a in ATTRS]], np.float32), n, 0),
    ]
    return np.concatenate(parts, 1).astype(np.float32)


N_FEATURES = 13 + len(QUALITIES) + 12 + 13 + 5 + 12 + 12 + 2 + POSITIONS + len(METERS) + 1 + 3 + len(SECTIONS) + 1 \
    + len(STYLES) + len(ATTRS)


@dataclass
class PlannerConfig:
    hidden: int = 128
    layers: int = 2
    token_dim: int = 48
    dropout: float = 0.1
    n_features: int = N_FEATURES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIGS = {"small": PlannerConfig(), "debug": PlannerConfig(hidden=32, layers=1, token_dim=8)}


def resolve_config(config: Any, configs: dict[str, Any], cls: type) -> Any:
    """A config object, a preset name from `configs` or a dict (an exported JSON config; keys the dataclass
    does not know are ignored) → an instance of the dataclass `cls`. Shared by both planners' `build_planner`."""
    if isinstance(config, cls):
        return config
    if isinstance(config, str):
        if config not in configs:
            raise ConfigError(f"unknown planner config {config!r}", fix=f"use one of {', '.join(configs)}")
        return configs[config]
    return cls(**{k: v for k, v in config.items() if k in cls.__dataclass_fields__})


def build_planner(config: str | dict[str, Any] | PlannerConfig = "small"):
    """The trainable torch module (`planner_model.StepPlanner`): training, and the untrained `debug` weights."""
    from backline.engines.bass.planner_model import StepPlanner  # lazy: torch, for training only

    return StepPlanner(resolve_config(config, CONFIGS, PlannerConfig), N_TOKENS)


def step_shapes(cfg: Any, n_tokens: int, n_voices: int = 0) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of a `StepPlanner` with config `cfg` (what its safetensors must hold)."""
    h = int(cfg.hidden)
    shapes = {"embed.weight": (n_tokens + 1, int(cfg.token_dim)), "inp.0.weight": (h, int(cfg.n_features) + int(cfg.token_dim)),
              "inp.0.bias": (h,), "head.weight": (n_tokens, h), "head.bias": (n_tokens,),
              "vel.weight": (VEL_BUCKETS, h), "vel.bias": (VEL_BUCKETS,)}
    for k in range(int(cfg.layers)):
        shapes |= {f"gru.weight_ih_l{k}": (3 * h, h), f"gru.weight_hh_l{k}": (3 * h, h),
                   f"gru.bias_ih_l{k}": (3 * h,), f"gru.bias_hh_l{k}": (3 * h,)}
    if n_voices:
        shapes |= {"voice.weight": (n_voices, h), "voice.bias": (n_voices,)}
    return shapes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class StepRunner:
    """The inference of a trained `StepPlanner` in numpy, one step at a time (both planners use it).

    Why numpy: the planners are a small GRU whose step costs microseconds; torch's import alone was 1.6 CPU-s, more
    than a whole follow take's work. The equations are `planner_model.StepPlanner`'s (nn.GRU's, gates r, z, n:
    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h; dropout is off at inference),
    computed in float64 from the float32 weights: outputs agree with the torch module to ~1e-6
    (tests/test_planner_numpy.py). Training keeps the torch module; this is the one inference path."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.layers = sum(1 for k in w if k.startswith("gru.weight_ih_l"))
        n_cond = w["inp.0.weight"].shape[1] - w["embed.weight"].shape[1]
        self.w_cond, self.b_inp = w["inp.0.weight"][:, :n_cond], w["inp.0.bias"]
        self.token_in = w["embed.weight"] @ w["inp.0.weight"][:, n_cond:].T  # a token's share of the input layer
        self.gru = [(w[f"gru.weight_ih_l{k}"], w[f"gru.weight_hh_l{k}"], w[f"gru.bias_ih_l{k}"], w[f"gru.bias_hh_l{k}"])
                    for k in range(self.layers)]
        self.heads = [(w[f"{name}.weight"], w[f"{name}.bias"]) for name in ("head", "voice", "vel") if f"{name}.weight" in w]
        self.hidden = self.b_inp.shape[0]

    def start(self, cond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the conditioning's share of the input layer for every step [T, H], the initial state [layers, H])."""
        return np.asarray(cond, np.float64) @ self.w_cond.T + self.b_inp, np.zeros((self.layers, self.hidden))

    def step(self, cond_in: np.ndarray, prev: int, state: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """One step: `cond_in` (a row of `start`'s), the previous token → ([token, (voice,) velocity logits] as
        float32, the new state)."""
        x = gelu(cond_in + self.token_in[prev])
        new = np.empty_like(state)
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.gru):
            h = state[k]
            gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
            r_i, z_i, n_i = np.split(gi, 3)
            r_h, z_h, n_h = np.split(gh, 3)
            r, z = _sigmoid(r_i + r_h), _sigmoid(z_i + z_h)
            n = np.tanh(n_i + r * n_h)
            x = new[k] = (1.0 - z) * n + z * h
        return [(w @ x + b).astype(np.float32) for w, b in self.heads], new


@dataclass
class LoadedPlanner:
    """What `load_planner_as` gives both planners: the weights (float32 arrays, `StepPlanner`'s tensor names), the
    per-style attribute means it was trained with (what a 0.5 control asks for) and the weights' metadata."""

    weights: dict[str, np.ndarray]
    style_attrs: dict[str, dict[str, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runner = StepRunner(self.weights)


class Planner(LoadedPlanner):
    """A loaded bass planner: attributes from controls, and the line planned on a grid."""

    def attributes(self, style: str, complexity: float = 0.5, intensity: float = 0.5, register: float = 0.0,
                   lock_to_kick: bool = False) -> dict[str, float]:
        """Controls (0.5 = the style's typical; register in octaves) → the attribute values the model aims at."""
        base = self.style_attrs.get(style) or self.style_attrs.get("unknown") or \
            {"complexity": 0.4, "intensity": 0.7, "register": 0.2, "lock": 0.4}
        return aim_attributes(base, complexity, intensity, register) | \
            {"lock": float(max(base["lock"], 0.9)) if lock_to_kick else float(base["lock"])}

    def plan(self, grid: Grid, style: str, attrs: dict[str, float], *, seed: int = 0, temperature: float = 0.7,
             top_p: float = 0.9, in_key: bool = True, lock_to_kick: bool = False,
             floor: int | None = None) -> list[PlanNote]:
        """Sample a line step by step. `in_key` keeps new notes on chord tones or the key's scale (a guard: the
        trained model rarely needs it); `lock_to_kick` starts a note on every kick hit (the model picks which);
        `floor` is the lowest pitch a new note may take (the register chosen from the band, see `register_floor`).

        Walking (`style="walking"`) is a deliberate constrained decoding over the model's own probabilities, not a
        learned habit: the trained model conditioned on walking still repeated notes and never approached the next
        chord (see TRAINING.md), and the rules of a walking line are short and well known — a new note on every
        beat and none between, a chord tone on the strong beats (the root where the chord changes), the beat
        before a change a step or half step from the next root (from the key's scale under the in-key guard),
        and no repeated pitch. The model chooses among what the rules allow, so its sense of register and contour
        is kept.

        Root styles (`ROOT_RULES`: root_fifth, sustained, ballad, octave) are held to their names the same way: the
        root wherever a chord starts and on every beat, the fifth (or, ballad, a third) allowed on the half bar;
        between beats the model is free. The model alone wandered through passing tones over a long chord; with the
        rules the line has the chord root on the beat as often as the real bass of the four-part set
        (benchmarks/nodrums_eval.py; figures in the README).

        A final cadence (the last chord, silence after it) is held once its first note sounds (`_final_cadence`).
        The rules choose which note, not whether: the model's probability of a new note is kept."""
        runner = self.runner
        cond_in, state = runner.start(features(grid, style, attrs))
        gen = torch_generator(seed)
        scale = (0, 2, 4, 5, 7, 9, 11) if grid.mode == "major" else (0, 2, 3, 5, 7, 8, 10)
        key_pcs = {(grid.key_pc + i) % 12 for i in scale}
        pitch_of = np.arange(N_TOKENS) - 2 + LOW  # a token's MIDI pitch (meaningless for REST/HOLD)
        pcs_of_token = pitch_of % 12
        walk = WalkingRule(grid) if style == "walking" else None
        rooted = ROOT_RULES.get(style)
        beat_steps = max(1, 16 // grid.denominator)
        root = grid.root.astype(np.int64)
        changes = set((np.flatnonzero(root[1:] != root[:-1]) + 1).tolist()) | {0}
        prev = BOS
        tokens = np.zeros(grid.steps, np.int64)
        vels = np.full(grid.steps, -1, np.int64)
        last_pitch: int | None = None
        before_pitch: int | None = None
        cadence = _final_cadence(grid)
        for s in range(grid.steps):
            (logits, vlog), state = runner.step(cond_in[s], prev, state)
            if cadence is not None and cadence[0] < s < cadence[1] and tokens[s - 1] != REST \
                    and any(tokens[cadence[0]:s] >= 2):
                tokens[s] = HOLD  # the final chord rings out: the note under it is held, not repeated
                prev = HOLD
                continue
            if s == 0 or tokens[s - 1] == REST:
                logits[HOLD] = -math.inf
            bad = np.zeros(N_TOKENS, bool)
            if in_key:
                allowed = key_pcs | grid.chord_pcs(s)  # walking's approach notes too: a scale step always exists
                bad |= np.array([t >= 2 and pcs_of_token[t] not in allowed for t in range(N_TOKENS)])
            if floor is not None:
                bad[2:] |= pitch_of[2:] < floor
            if walk is not None:
                bad |= walk.mask(s, last_pitch, pitch_of, before_pitch, outer=bad.copy())
            if rooted is not None and root[s] < 12:
                on_beat = s % beat_steps == 0
                half = grid.bar_steps // 2 if grid.numerator % 2 == 0 else -1
                if s in changes or s % grid.bar_steps == 0:
                    want = {int(root[s])}  # the chord's root where it starts and on every bar's one
                elif on_beat and s % grid.bar_steps != half:
                    want = {int(root[s])}  # the root (in any octave) on the other beats
                elif on_beat:  # the half bar: root or fifth (the two-feel's "boom ... chick")
                    want = ({(int(root[s]) + i) % 12 for i in rooted} & grid.chord_pcs(s)) or {int(root[s])}
                else:
                    want = None
                if want is not None:
                    bad[2:] |= ~np.isin(pcs_of_token[2:], list(want))
            if bad.all():
                bad[:] = False  # rules that contradict each other (a tiny range): let the model choose
            note_mass = _logsumexp(logits[2:])  # how much the model wants a new note here at all
            logits[bad] = -np.inf
            if not bad[2:].all():  # the rules choose which note, not whether: the pitch mass they ruled out
                logits[2:] = note_mass + _log_softmax(logits[2:])  # would otherwise turn into rests
            if lock_to_kick and grid.kick[s] and grid.root[s] < 12:  # every kick hit gets a bass note
                if not bad[2:].all():
                    logits[:2] = -math.inf
            t = _sample(logits, temperature, top_p, gen)
            tokens[s] = t
            if t >= 2:
                vels[s] = int(np.argmax(vlog))
                before_pitch, last_pitch = last_pitch, int(pitch_of[t])
            prev = t
        return notes_of(tokens, vels)


def aim_attributes(base: dict[str, float], complexity: float, intensity: float, register: float) -> dict[str, float]:
    """The controls both planners share → attribute values around a style's typical `base`: 0.5 keeps it,
    complexity ±0.4 and intensity ±0.25 over the control's range (clipped), register in octaves added."""
    return {"complexity": float(np.clip(base["complexity"] + (complexity - 0.5) * 0.8, 0.0, 1.0)),
            "intensity": float(np.clip(base["intensity"] + (intensity - 0.5) * 0.5, 0.2, 1.0)),
            "register": float(base["register"] + register)}


#: styles whose new notes on the beat are held to chord roots (see `Planner.plan`): intervals allowed on the half
#: bar when no chord starts there
ROOT_RULES: dict[str, tuple[int, ...]] = {"root_fifth": (0, 7), "sustained": (0, 7), "ballad": (0, 7, 4, 3),
                                          "octave": (0, 7)}


def _final_cadence(grid: Grid) -> tuple[int, int] | None:
    """(first, end) steps of the last chord when the music ends there (silence after it, "no chord" to the end):
    a bassist plays into a final cadence and holds the note. None when the grid ends on a sounding chord (a loop,
    a region cut from a song)."""
    root = grid.root
    if len(root) == 0 or root[-1] < 12:
        return None
    sounding = np.flatnonzero(root < 12)
    if not len(sounding):
        return None
    end = int(sounding[-1]) + 1
    first = end - 1
    while first > 0 and root[first - 1] == root[end - 1] and grid.quality[first - 1] == grid.quality[end - 1]:
        first -= 1
    return first, end


class WalkingRule:
    """The constraints of a walking line on a grid (see `Planner.plan`): which tokens are ruled out at each step."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.beat = max(1, 16 // grid.denominator)  # steps per beat
        bar = grid.bar_steps
        self.strong = {0, bar // 2} if grid.numerator % 2 == 0 else {0}
        root = grid.root.astype(np.int64)
        change = (root[1:] != root[:-1]) & (root[1:] < 12)
        self.changes = set((np.flatnonzero(change) + 1).tolist())
        # the beat before each change: where the approach note goes, and the root it leads to
        self.approach: dict[int, int] = {}
        for c in self.changes:
            b = c - self.beat
            if b >= 0 and b % self.beat == 0 and (b not in self.changes):
                self.approach[b] = int(root[c])

    def mask(self, s: int, last: int | None, pitch_of: np.ndarray, before: int | None = None,
             outer: np.ndarray | None = None) -> np.ndarray:
        g = self.grid
        bad = np.zeros(len(pitch_of), bool)
        if g.root[s] >= 12:
            return bad
        if s % self.beat:  # between beats: the note sounds on (quarter notes)
            bad[:] = True
            bad[HOLD] = False
            return bad
        bad[:2] = True  # on a beat: a new note
        notes = pitch_of[2:]
        pcs = notes % 12
        ruled_out = outer[2:] if outer is not None else np.zeros(len(notes), bool)  # in key, register floor
        harm = np.zeros(len(notes), bool)
        root_only = np.zeros(len(notes), bool)
        strong = s in self.changes or (s % g.bar_steps) in self.strong
        if strong:
            want = {int(g.root[s])} if s in self.changes else g.chord_pcs(s)
            harm |= ~np.isin(pcs, list(want))
            if s in self.changes:
                root_only = pcs != int(g.root[s])
        if s in self.approach:
            harm |= ~np.isin((pcs - self.approach[s]) % 12, (1, 2, 10, 11))
        motion = np.zeros(len(notes), bool)
        if last is not None:
            if s in self.changes and s - self.beat in self.approach:
                motion |= np.abs(notes - last) > 2  # land on the root the approach note pointed at
            motion |= notes == last  # walk, do not repeat
            motion |= np.abs(notes - last) > (7 if strong else 4)  # by steps and thirds, a leap to a strong beat
            if before is not None and not strong:
                motion |= notes == before  # and onwards, not back and forth
        # as many rules as can hold together with the guards: motion goes first, then all but the root
        for nb in (harm | motion, harm, root_only, np.zeros(len(notes), bool)):
            if not (nb | ruled_out).all():
                break
        bad[2:] = nb
        return bad


def approach_share(notes: list[PlanNote], grid: Grid) -> tuple[float, int]:
    """(share, count) of chord changes (root changes) where a note starts on the change on the new root and the
    note before it is a step or half step away: the walking bassist's approach."""
    root = grid.root.astype(np.int64)
    changes = np.flatnonzero((root[1:] != root[:-1]) & (root[1:] < 12)) + 1
    onsets = {n.step: n for n in notes}
    order = sorted(notes, key=lambda n: n.step)
    hits = total = 0
    for c in changes.tolist():
        total += 1
        n = onsets.get(int(c))
        if n is None or n.pitch % 12 != root[c]:
            continue
        before = [m for m in order if m.step < c]
        if before and 1 <= abs(before[-1].pitch - n.pitch) <= 2:
            hits += 1
    return (hits / total if total else 0.0), total


def register_floor(band_low: float | None, octave: int = 0, register: float = 0.0) -> int | None:
    """The lowest planned pitch under a band whose lowest voice sits at `band_low` (MIDI, low in its range): an
    octave below it, where a cellist or an upright player sits under a choir or a string trio (a band with a bass
    of its own reads low and leaves the planner's range as it is). `octave` is the render's octave shift, so the
    floor holds for the sounding line; `register` < 0 (the user asked for low) lowers it by an octave. None when
    the band's low voice was not heard."""
    if band_low is None or not np.isfinite(band_low):
        return None
    return int(max(LOW, round(band_low) - 12 - 12 * octave + (12 * math.floor(register) if register < 0 else 0)))


def _logsumexp(x: np.ndarray) -> np.float32:
    m = x.max()
    return np.float32(m + np.log(np.exp(x - m).sum(dtype=np.float32)))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max()
    return (shifted - np.log(np.exp(shifted).sum(dtype=np.float32))).astype(np.float32)


def torch_generator(seed: int) -> np.random.MT19937:
    """A numpy Mersenne Twister in the state `torch.Generator().manual_seed(seed)` starts from (the same
    `init_genrand` of the 32-bit seed): the planners sampled with torch's generator, and keeping its stream keeps
    every seed's take the note-for-note same line after the move to numpy."""
    key = np.empty(624, np.uint32)
    x = int(seed) & 0xFFFFFFFF
    for i in range(624):
        key[i] = x
        x = (1812433253 * (x ^ (x >> 30)) + i + 1) & 0xFFFFFFFF
    gen = np.random.MT19937()
    gen.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
    return gen


def _exponential(gen: np.random.MT19937, n: int) -> np.ndarray:
    """`torch.empty(n).exponential_(1, generator=gen)` on the CPU: per value a 53-bit uniform from two 32-bit
    draws (first one high), −log1p(−u) in double, rounded to float32."""
    raw = gen.random_raw(2 * n).astype(np.uint64)
    u = ((raw[0::2] << np.uint64(32)) | raw[1::2]) & np.uint64((1 << 53) - 1)
    return (-np.log1p(-(u.astype(np.float64) * 2.0 ** -53))).astype(np.float32)


def _sample(logits: np.ndarray, temperature: float, top_p: float, gen: np.random.MT19937) -> int:
    """Nucleus sampling of one token from float32 logits, draw for draw what the torch version did (softmax at
    `temperature`, the most likely tokens up to `top_p`, then `torch.multinomial`: argmax of p / Exp(1))."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = (logits / np.float32(temperature)).astype(np.float32)
    e = np.exp(z - z.max())
    probs = (e / e.sum(dtype=np.float32)).astype(np.float32)
    order = np.argsort(-probs, kind="stable")
    cum = np.cumsum(probs[order], dtype=np.float32)
    keep = order[: int((cum < np.float32(top_p)).sum()) + 1]
    p = (probs[keep] / probs[keep].sum(dtype=np.float32)).astype(np.float32)
    return int(keep[np.argmax(p / _exponential(gen, len(keep)))])


def load_planner(path: str | Path | None = None, config: str = "shipped") -> Planner:
    """'shipped' (or a path) loads trained weights; 'debug'/'small' build an untrained planner (tests)."""
    return load_planner_as(Planner, path, config, weights=WEIGHTS, kind=KIND, build=build_planner, configs=CONFIGS,
                           shapes=lambda c: step_shapes(resolve_config(c, CONFIGS, PlannerConfig), N_TOKENS),
                           format_version=FORMAT_VERSION)


def engine_planner(engine: Any, load: Any) -> Any:
    """`engine.planner()` of the bass and accompaniment engines: `load()`'s shipped planner, loaded on first use and
    kept on the engine; a `debug` engine gets an untrained one (`load(config="debug")`), so tests need no weights."""
    if getattr(engine, "_planner", None) is None:
        engine._planner = load(config="debug") if engine.config == "debug" else load()
    return engine._planner


def load_planner_as(cls: type, path: str | Path | None, config: str, *, weights: Path, kind: str, build,
                    shapes, configs: dict[str, Any], format_version: int) -> Any:
    """The loading both planners share: `cls(weights, style_attrs, meta)` from exported weights (shipped or a path;
    `shapes(config)` says what they must hold), or an untrained `config` model's weights made under seed 0 so tests
    are repeatable without touching the global RNG."""
    if path is None and config != "shipped":
        import torch  # lazy: an untrained planner (tests, `debug`) takes torch's initial weights

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            state = build(config).state_dict()
        return cls({k: v.float().numpy() for k, v in state.items()}, {}, {"config": configs[config].to_dict()})
    arrays, meta = load_arrays(Path(path) if path else weights, kind=kind, format_version=format_version,
                               shapes=shapes)
    return cls(arrays, meta.get("config", {}).get("style_attrs", {}), meta)


def apply_swing(notes: list[PlanNote], swing: float) -> list[tuple[float, float, int, int]]:
    """Planned notes → (onset, length, pitch, velocity) in 16th steps with a swing feel: an off-beat 8th moves
    late by `swing`/3 of a 16th-pair (1.0 = triplet swing), an off-beat 16th by half that."""
    if not 0.0 <= swing <= 1.0:
        raise ConfigError(f"swing {swing} must be within 0-1", fix="0 = straight, 1 = triplet swing")
    out = []
    for n in notes:
        pos = n.step % 4
        shift = {0: 0.0, 1: swing / 3.0, 2: 2.0 * swing / 3.0, 3: swing / 3.0}[pos]
        out.append((n.step + shift, n.length - shift, n.pitch, n.velocity))
    return out
