"""The accompaniment / separation engine (paper 003, GMSDI): a prompt of instrument labels and a mix in, one
stem per label out (plus MIDI and a report), through the one sampler loop.

Modes (control `mode`):
- `accompaniment` — partial generation: the mix is the given sources x_I (labelled, by default, with every
  role the prompt does not name), the prompt's roles are generated (ADPM2), coupled through the mixture
  with α, β, γ; Griffin-Lim (seeded by the mix's phase) turns each generated magnitude into audio.
- `extract` — the extractor for each prompted role (Euler, s_churn), ratio mask on the mix.
- `separate` — the separator over the prompted roles (Drums constrained when present), masks that sum
  to the mix.
- `ensemble` — per role, the extractor or the separator as `gmsdi.ENSEMBLE_CHOICE` says.
- `total` — total generation of the prompted roles (one part each) for the region's length; no mix needed.

Alignment: everything runs on the region's audio resampled to 16 kHz mono; masks are carried back to an STFT
of the mix at its own rate and channels (bilinear over time and frequency, the 8 kHz mask extended above it),
so separated stems keep the mix's stereo image and rate, are exactly `region` long and start at
`region_start` to the sample. Generated stems are resampled back to the mix rate and cut to the region.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backline.engines.accompany import spec
from backline.engines.accompany.description import (  # noqa: F401 - the controls re-exported
    CONTROLS,
    FOLLOW_CONTROLS,
    FOLLOW_STYLES,
    GMSDI_CONTROLS,
    MODES,
    NAME,
    describe,
)
from backline.engines.accompany.follow_engine import (  # noqa: F401 - re-exported
    FORMAT_VERSION,
    KIND,
    WEIGHTS_DIR,
    AccompanyFollowEngine,
    _merge_midi,
    _midi_bytes,
)
from backline.engines.accompany.gmsdi import (
    ENSEMBLE_CHOICE,
    Extractor,
    Guide,
    PartialGeneration,
    Separator,
    TotalGeneration,
)
from backline.engines.accompany.model import CONFIGS, build_model
from backline.engines.accompany.roles import ROLES, canonical, label_text, negative_prompt, parse_prompt
from backline.engines.accompany.text import TextEncoder, load_table
from backline.engines.core.audio import Audio, resample
from backline.engines.core.errors import BacklineError, ConfigError, WeightsError
from backline.engines.core.frontend import istft, stft
from backline.engines.core.protocol import (
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Take,
    check_cancel,
)
from backline.engines.core.weights import load_weights
from backline.engines.core.windows import overlap_add_spans, windows
from backline.engines.diffusion.sampler import ADPM2, EulerChurn, sample, sigma_of
from backline.engines.diffusion.schedule import CosineSchedule

#: Long mixes are sampled in windows of this many STFT frames (16.4 s) overlapping by OVERLAP_FRAMES (2 s).
WINDOW_FRAMES, OVERLAP_FRAMES = 1024, 128
#: GM programs for the MIDI of each role (0-based); drums get no transcription.
GM_PROGRAM = {"Bass": 33, "Guitar": 25, "Piano": 0, "Strings": 48, "Lead": 80}


DEFAULTS = {"accompaniment": {"steps": 48, "cfg": 2.0}, "free": {"steps": 48, "cfg": 2.0}, "total": {"steps": 48, "cfg": 2.0},
            "extract": {"steps": 32, "cfg": 2.0}, "separate": {"steps": 32, "cfg": 1.0},
            "ensemble": {"steps": 32, "cfg": 2.0}}


@dataclass
class Prepared:
    """A mix at the model's rate: complex STFT, magnitude, the per-mixture scale and the original audio."""

    audio: Audio
    wave: torch.Tensor  # mono 16 kHz
    spec: torch.Tensor  # complex [BINS, F]
    mag: torch.Tensor  # [BINS, F]
    scale: torch.Tensor  # scalar gain to the model's level

    bin_scale: torch.Tensor | None = None  # the model's per-bin scale [BINS]

    @property
    def scaled(self) -> torch.Tensor:
        """The mixture in the model's representation: magnitude × per-mixture gain ÷ per-bin scale."""
        return self.mag * self.scale / self.bins

    @property
    def bins(self) -> torch.Tensor:
        return torch.ones(()) if self.bin_scale is None else self.bin_scale[:, None]

    def to_magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Representation → linear magnitude at the mixture's level."""
        return x * self.bins / self.scale

    def window(self, start: int, stop: int) -> Prepared:
        """Frames [start, stop) with the whole mixture's level (one gain for every window)."""
        return Prepared(self.audio, self.wave, self.spec[:, start:stop], self.mag[:, start:stop], self.scale,
                        self.bin_scale)


def windowed(prep: Prepared, run, callback=None, window: int = 0, overlap: int = 0) -> dict[str, torch.Tensor]:
    """`run(prep_window, callback) -> {name: [BINS, frames]}` over overlapping windows of a long mixture, joined
    by the one windowing helper (`engines.core.windows`, raised-cosine cross-fades). Why: the bottom attention is
    quadratic in length (a 15-minute mix would need tens of GB); windows of ~16 s keep memory flat and every
    window sees 2 s of context either side. The callback sees the steps of all windows as one count."""
    window = window or WINDOW_FRAMES
    overlap = overlap or OVERLAP_FRAMES
    total = prep.mag.shape[-1]
    if total <= window:
        return run(prep, callback)
    starts = [a for a, _ in windows(total, window, window - overlap)]
    names: list[str] = []
    device = [torch.device("cpu")]

    def one(a: int, b: int) -> np.ndarray:
        k = starts.index(a)

        def cb(state):
            if callback is not None:
                callback(state | {"i": k * state["steps"] + state["i"], "steps": len(starts) * state["steps"]})

        part = run(prep.window(a, b), cb)  # the window keeps the whole mixture's level
        names[:] = list(part)
        device[0] = part[names[0]].device
        return torch.stack([part[name] for name in names]).float().cpu().numpy()

    out = overlap_add_spans(one, total, window, window - overlap)
    return {name: torch.from_numpy(out[i]).to(device[0]) for i, name in enumerate(names)}


class AccompanyEngine(AccompanyFollowEngine):
    """The whole engine: follow mode (inherited) and the GMSDI score model's modes (free, extract, separate,
    ensemble, total). The registry builds `follow_engine.AccompanyFollowEngine`, which builds this on first use."""

    name = NAME

    def __init__(self, model, table: dict[str, torch.Tensor] | None = None, *, device: str = "cpu",
                 config: str = "shipped", meta: dict[str, Any] | None = None) -> None:
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        super().__init__(config=config, device=device)
        self._text = TextEncoder(table)
        self.meta = meta or {}

    def full(self) -> AccompanyEngine:
        return self

    def training_meta(self) -> dict[str, Any]:
        return self.meta.get("training", {})

    # --- protocol ---------------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Pure: returns one take per variation holding a stem per prompted role (Audio) and a MIDI file."""
        t_start = time.perf_counter()
        progress = progress or (lambda f, m: None)
        known = {c.name for c in CONTROLS}
        unknown = set(request.controls) - known
        if unknown:
            raise ConfigError(f"unknown control(s) {', '.join(sorted(unknown))} for {NAME}", fix=f"known: {', '.join(known)}")
        controls = {c.name: c.validate(request.controls.get(c.name, c.default)) for c in CONTROLS}
        if controls["mode"] == "follow":
            return self._generate_follow(request, controls, progress, cancel, t_start)
        mode = "accompaniment" if controls["mode"] == "free" else controls["mode"]
        roles = parse_prompt(request.prompt or controls["prompt"])
        steps = controls["steps"] or DEFAULTS[mode]["steps"]
        w = controls["cfg"] if controls["cfg"] >= 0 else DEFAULTS[mode]["cfg"]
        if request.variations < 1:
            raise ConfigError(f"variations={request.variations} must be >= 1")
        mix = request.mix
        if mode == "total":
            frames = (request.region_stop - request.region_start) if request.region_stop is not None else (
                mix.frames if mix is not None else 0)
            if frames <= 0:
                raise ConfigError("total generation needs a length", fix="give --bars (and --bpm) or a mix")
            rate = mix.sample_rate if mix is not None else request.timeline.sample_rate
        else:
            mix = self.check_mix(mix)
            frames, rate = mix.frames, mix.sample_rate
        given = parse_prompt(controls["given"]) if controls["given"] else tuple(r for r in ROLES if r not in roles)
        timeline = request.timeline
        if mix is not None and controls["tempo_from"] != "timeline" and not controls["bpm"]:
            progress(0.02, "listening for the tempo")  # the MIDI carries the song's tempo, never a placeholder
            try:
                timeline = self.listen(request, controls, mix).timeline(request.timeline.sample_rate)
            except BacklineError:  # too short or too sparse to hear a tempo in: the request's timeline stands
                pass
        takes = []
        timings: dict[str, float] = {}
        seeds = [int(request.seed) + k for k in range(request.variations)]
        for v, seed in enumerate(seeds):
            def on_step(state, v=v):
                progress(0.05 + 0.8 * (v + (state["i"] + 1) / state["steps"]) / len(seeds),
                         f"{mode}: step {state['i'] + 1}/{state['steps']}")

            t0 = time.perf_counter()
            if mode == "total":
                stems = self.total(roles, frames, rate, steps=steps, w=w, gamma=controls["gamma"], seed=seed,
                                   callback=on_step, cancel=cancel)
            elif mode == "accompaniment":
                stems = self.accompany(mix, roles, given, steps=steps, w=w, alpha=controls["alpha"],
                                       beta=controls["beta"], gamma=controls["gamma"], seed=seed,
                                       callback=on_step, cancel=cancel)
            else:
                stems = self.separate(mix, roles, mode=mode, steps=steps, w=w, seed=seed, callback=on_step,
                                      cancel=cancel)
            timings[f"sample_s_seed{seed}"] = time.perf_counter() - t0
            check_cancel(cancel)
            progress(0.9, "transcribing to MIDI")
            t0 = time.perf_counter()
            midis, notes = {}, {}
            for role, audio in stems.items():
                check_cancel(cancel)
                if role in GM_PROGRAM:
                    n, mid = role_midi(audio, role, timeline, request.region_start)
                    midis[role], notes[role.lower()] = mid, len(n)
            timings[f"transcribe_s_seed{seed}"] = time.perf_counter() - t0
            stem_map = {role.lower(): audio for role, audio in stems.items()}
            midi = _merge_midi(midis) if midis else None
            take = Take(seed=seed, stems=stem_map, midi=midi, start_sample=request.region_start,
                        report={"mode": mode, "roles": [r.lower() for r in roles], "notes": notes,
                                "peak": {r.lower(): round(a.peak(), 4) for r, a in stems.items()},
                                "frames": frames})
            take.attachments = {f"{r.lower()}.mid": _midi_bytes(m) for r, m in midis.items()}  # MIDI per label
            takes.append(take)
        total_s = time.perf_counter() - t_start
        seconds = frames / rate
        report = {
            "engine": NAME, "config": self.config, "device": self.device, "weights": self.describe().weights,
            "mode": mode, "prompt": label_text(roles), "given": label_text(given) if mode == "accompaniment" else None,
            "settings": {"steps": steps, "cfg": w, "alpha": controls["alpha"], "beta": controls["beta"],
                         "gamma": controls["gamma"], "variations": len(seeds),
                         "sampler": "adpm2" if mode in ("accompaniment", "total") else "euler (s_churn 20)"},
            "seeds": seeds, "text_encoder_calls": self.text.calls,
            "region": {"start_sample": request.region_start, "frames": frames, "sample_rate": rate,
                       "bpm": timeline.bpm, "start_bar": round(timeline.samples_to_bar(request.region_start), 4)},
            "timings_s": {k: round(v, 3) for k, v in timings.items()} | {"total_s": round(total_s, 3)},
            "x_real_time": round(total_s / max(seconds, 1e-9), 4),  # processing s ÷ audio s (one convention)
        }
        if mode == "accompaniment":
            report["quality"] = FREE_MODE_QUALITY
        progress(1.0, "done")
        return GenerationResult(takes, report)

    # --- pieces (benchmarks use these directly) ---------------------------------------------------------
    @property
    def ensemble_choice(self) -> dict[str, str]:
        """Per role, the system the ensemble takes: measured for the shipped weights (`ensemble_choice` in
        their JSON, from benchmarks/gmsdi_eval.py), else the paper's table (`gmsdi.ENSEMBLE_CHOICE`)."""
        return ENSEMBLE_CHOICE | dict(self.meta.get("ensemble_choice") or {})

    def prepare(self, mix: Audio) -> Prepared:
        mono = torch.from_numpy(resample(mix.samples.mean(axis=0), mix.sample_rate, spec.SAMPLE_RATE).copy())
        z = spec.complex_spec(mono)
        mag = z.abs()
        return Prepared(mix, mono, z, mag, spec.mix_scale(mag), self.model.bin_scale.detach().float().cpu())

    def embed(self, roles) -> torch.Tensor:
        return self.text.encode([label_text(roles)])[0].to(self.device)

    def _guide(self) -> Guide:
        return Guide(self.model)

    def _noise(self, shape, seed: int) -> tuple[torch.Tensor, torch.Generator]:
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(shape, generator=g), g

    def _run(self, fn, rows: int, frames: int, solver, steps: int, seed: int, callback, cancel) -> torch.Tensor:
        noise, g = self._noise((rows, spec.BINS, frames), seed)
        with torch.inference_mode():
            return sample(fn, noise.to(self.device), steps=steps, solver=solver, callback=callback, cancel=cancel,
                          generator=g).float().cpu()

    # separation -----------------------------------------------------------------------------------------
    def separator_estimates(self, prep: Prepared, roles: tuple[str, ...], *, steps: int, w: float, seed: int,
                            callback=None, cancel=None) -> dict[str, torch.Tensor]:
        """GMSDI separator over `roles` (Drums constrained when present, else the last role): scaled
        magnitude estimates per role."""
        if len(roles) == 1:
            return {roles[0]: prep.scaled.clone()}
        constrained = "Drums" if "Drums" in roles else roles[-1]
        order = [r for r in roles if r != constrained] + [constrained]
        texts = torch.stack([self.embed([r]) for r in order])
        fn = Separator(self._guide(), prep.scaled.to(self.device), texts, w=w)
        solver = EulerChurn(s_churn=20.0)
        steps = stable_steps(solver, len(order), steps)
        self.last_steps = steps
        x = self._run(fn, len(order) - 1, prep.mag.shape[-1], solver, steps, seed, callback, cancel)
        return dict(zip(order, fn.finish(x.to(self.device)).cpu()))

    def extractor_estimate(self, prep: Prepared, role: str, rest: tuple[str, ...], *, steps: int, w: float,
                           seed: int, callback=None, cancel=None) -> torch.Tensor:
        """GMSDI extractor for one role; `rest` labels the rest of the mix. Negative prompts for Bass and
        Drums as the paper."""
        neg = self.embed(negative_prompt(role)) if role in ("Bass", "Drums") else None
        fn = Extractor(self._guide(), prep.scaled.to(self.device), self.embed([role]),
                       self.embed(rest) if rest else self.model.null(1)[0], w=w, negative=neg)
        return self._run(fn, 1, prep.mag.shape[-1], EulerChurn(s_churn=20.0), steps, seed, callback, cancel)[0]

    def estimates(self, prep: Prepared, roles: tuple[str, ...], *, mode: str, steps: int, w: float, seed: int,
                  mix_roles: tuple[str, ...] = ROLES, callback=None, cancel=None) -> dict[str, torch.Tensor]:
        """Scaled magnitude estimates for `roles` by `mode` (extract / separate / ensemble), windowed."""
        if mode not in ("extract", "separate", "ensemble"):
            raise ConfigError(f"mode {mode!r} is not a separation mode")
        return windowed(prep, lambda p, cb: self._estimates(p, roles, mode=mode, steps=steps, w=w, seed=seed,
                                                            mix_roles=mix_roles, callback=cb, cancel=cancel),
                        callback)

    def _estimates(self, prep, roles, *, mode, steps, w, seed, mix_roles, callback, cancel):
        out: dict[str, torch.Tensor] = {}
        choice = self.ensemble_choice
        want_sep = mode == "separate" or (mode == "ensemble" and any(choice[r] == "separator" for r in roles))
        if want_sep:
            sep_roles = canonical(set(roles) | set(mix_roles)) if mode == "ensemble" else roles
            sep = self.separator_estimates(prep, sep_roles, steps=steps, w=w, seed=seed, callback=callback, cancel=cancel)
            out.update({r: sep[r] for r in roles if mode == "separate" or choice[r] == "separator"})
        for role in roles:
            if role in out:
                continue
            rest = tuple(r for r in canonical(set(mix_roles) | set(roles)) if r != role)
            out[role] = self.extractor_estimate(prep, role, rest, steps=steps, w=w, seed=seed, callback=callback,
                                                cancel=cancel)
        return {r: out[r] for r in roles}

    def separate(self, mix: Audio, roles: tuple[str, ...], *, mode: str = "extract", steps: int = 32,
                 w: float = 2.0, seed: int = 0, mix_roles: tuple[str, ...] = ROLES, callback=None,
                 cancel=None) -> dict[str, Audio]:
        """Stems for `roles`, at the mix's rate and channels, masked from the mix with its own phase."""
        prep = self.prepare(mix)
        est = self.estimates(prep, roles, mode=mode, steps=steps, w=w, seed=seed, mix_roles=mix_roles,
                             callback=callback, cancel=cancel)
        names = list(est)
        stacked = torch.stack([est[r] for r in names])
        exclusive = mode == "separate" and len(names) > 1
        masks = spec.masks_from_estimates(stacked, prep.scaled, exclusive=exclusive)
        waves = apply_masks_at_rate(masks, mix)
        return {r: Audio(waves[i], mix.sample_rate) for i, r in enumerate(names)}

    # generation -----------------------------------------------------------------------------------------
    def accompany(self, mix: Audio, roles: tuple[str, ...], given: tuple[str, ...], *, steps: int = 48,
                  w: float = 2.0, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0, seed: int = 0,
                  callback=None, cancel=None) -> dict[str, Audio]:
        """Partial generation: the prompted roles for a mix that holds `given`."""
        prep = self.prepare(mix)
        mags = self.accompany_magnitudes(prep, roles, given, steps=steps, w=w, alpha=alpha, beta=beta,
                                         gamma=gamma, seed=seed, callback=callback, cancel=cancel)
        return {r: _limit(self._render(prep.to_magnitude(mags[r]), prep.wave.shape[-1], mix, seed, prep.spec))
                for r in roles}

    def accompany_magnitudes(self, prep: Prepared, roles, given, *, steps, w, alpha, beta, gamma, seed,
                             callback=None, cancel=None) -> dict[str, torch.Tensor]:
        return windowed(prep, lambda p, cb: self._accompany_magnitudes(
            p, roles, given, steps=steps, w=w, alpha=alpha, beta=beta, gamma=gamma, seed=seed, callback=cb,
            cancel=cancel), callback)

    def _accompany_magnitudes(self, prep, roles, given, *, steps, w, alpha, beta, gamma, seed, callback, cancel):
        texts = torch.stack([self.embed([r]) for r in roles] + [self.embed(canonical(set(roles) | set(given)))])
        g = torch.Generator().manual_seed(int(seed) + 7919)
        fn = PartialGeneration(self._guide(), prep.scaled.to(self.device), texts, alpha=alpha, beta=beta, w=w,
                               gamma_x=gamma, gamma_y=gamma, generator=g)
        x = self._run(fn, len(roles) + 1, prep.mag.shape[-1], ADPM2(), steps, seed, callback, cancel)
        return {r: x[i].clamp_min(0) for i, r in enumerate(roles)}

    def total(self, roles: tuple[str, ...], frames: int, rate: int, *, steps: int = 48, w: float = 2.0,
              gamma: float = 1.0, seed: int = 0, partitions: list[tuple[str, ...]] | None = None,
              callback=None, cancel=None) -> dict[str, Audio]:
        """Total generation: one part per role (or per block of `partitions`) plus their mixture."""
        parts = partitions or [(r,) for r in roles]
        mags = self.total_magnitudes(parts, spec.frames_for(math.ceil(frames * spec.SAMPLE_RATE / rate)), steps=steps,
                                     w=w, gamma=gamma, seed=seed, callback=callback, cancel=cancel)
        length16 = math.ceil(frames * spec.SAMPLE_RATE / rate)
        target = Audio(np.zeros((2, frames), np.float32), rate)
        bins = self.model.bin_scale.detach().float().cpu()[:, None]
        stems = {label_text(p): self._render(mags[i] * bins, length16, target, seed, None) for i, p in enumerate(parts)}
        # no mixture sets the level: the parts together peak at −1 dBFS, their balance kept
        peak = float(np.abs(sum(a.samples for a in stems.values())).max())
        gain = 10 ** (-1 / 20) / peak if peak > 0 else 1.0
        return {k: Audio(a.samples * gain, rate) for k, a in stems.items()}

    def total_magnitudes(self, parts, frames16: int, *, steps, w, gamma, seed, callback=None, cancel=None) -> torch.Tensor:
        everything = canonical(set().union(*map(set, parts)))
        texts = torch.stack([self.embed(p) for p in parts] + [self.embed(everything)])
        fn = TotalGeneration(self._guide(), texts, w=w, gamma_x=gamma, gamma_y=math.inf)
        x = self._run(fn, len(parts) + 1, frames16, ADPM2(), steps, seed, callback, cancel)
        return x[:-1].clamp_min(0)

    def _render(self, mag: torch.Tensor, length16: int, like: Audio, seed: int, phase) -> Audio:
        wave = spec.griffin_lim(mag, length16, init_phase=phase, generator=torch.Generator().manual_seed(seed))
        out = resample(wave.numpy(), spec.SAMPLE_RATE, like.sample_rate)
        out = np.pad(out, (0, max(0, like.frames - out.shape[-1])))[: like.frames]
        return Audio(np.repeat(out[None], max(1, like.channels), axis=0), like.sample_rate)


#: Free mode's quality as measured when issue 20 was filed (the demo band, --prompt piano, shipped GMSDI weights:
#: centred-chroma cosine with the real piano part, chord-tone share of its transcribed note-time, time per second of
#: music on one thread), shown in every free-mode report: GMSDI partial generation is experimental at this size.
FREE_MODE_QUALITY = {"label": "experimental", "chroma_cosine_with_real_part": "-0.01 to +0.19",
                     "chord_tone_share": "0.16-0.30", "x_real_time": 1.4}


# --- helpers ------------------------------------------------------------------------------------------------
def apply_masks_at_rate(masks: torch.Tensor, mix: Audio) -> np.ndarray:
    """Masks [K, BINS, F16] from the 16 kHz STFT → stems [K, channels, frames] of the mix at its own rate: an
    STFT of the same duration per hop (n_fft, hop scaled by rate/16 kHz, rounded to even), the masks
    interpolated bilinearly onto its (frequency, time) grid, above 8 kHz the top bin's mask."""
    ratio = mix.sample_rate / spec.SAMPLE_RATE
    hop = max(1, int(round(spec.HOP * ratio)))
    n_fft = int(2 ** math.ceil(math.log2(spec.N_FFT * ratio)))
    x = torch.from_numpy(mix.samples)
    z = stft(x, n_fft, hop)  # [C, bins, F]
    bins, frames = z.shape[-2:]
    freq_idx = (torch.arange(bins) * (mix.sample_rate / n_fft) / (spec.SAMPLE_RATE / spec.N_FFT)).clamp(max=spec.BINS - 1)
    time_idx = (torch.arange(frames) * (hop / mix.sample_rate) * (spec.SAMPLE_RATE / spec.HOP)).clamp(max=masks.shape[-1] - 1)
    m = _interp(masks, freq_idx, dim=1)
    m = _interp(m, time_idx, dim=2)  # [K, bins, frames]
    out = istft(m[:, None] * z[None], n_fft, hop, length=mix.frames)  # [K, C, T]
    return out.numpy().astype(np.float32)


def stable_steps(solver: EulerChurn, sources: int, steps: int, limit: int = 400) -> int:
    """The fewest Euler steps (≥ `steps`) at which the separator's coupled update is stable.

    With K sources the constrained term y − Σ_{l<K} x_l feeds every free source, so the drift's stiffest mode
    (all free sources moving together) is K times a single source's: an explicit step from σ̂ to σ_next is
    stable only while K (1 − σ_next/σ̂) < 2 (we keep 1.8). Karras' ρ = 7 grid with s_churn 20 needs ~125 steps
    for six sources (16 steps blew the estimates up to 10⁴× the mixture); the paper ran 150."""
    n = steps
    while n < limit:
        sig = [sigma_of(t) for t in solver.times(n, CosineSchedule())]
        gamma = min(solver.s_churn / n, math.sqrt(2) - 1)
        worst = max((1 - sig[i + 1] / (sig[i] * (1 + gamma)) for i in range(n - 1)), default=1.0)
        if sources * worst < 1.8:
            return n
        n += 8
    return limit


def _limit(audio: Audio, ceiling_db: float = -1.0) -> Audio:
    """Generated stems keep the level the model gave them relative to the mix, but never clip: a stem
    peaking above the ceiling is scaled down to it."""
    peak = audio.peak()
    ceiling = 10 ** (ceiling_db / 20)
    return audio if peak <= ceiling else Audio(audio.samples * (ceiling / peak), audio.sample_rate)


def _interp(x: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
    lo = idx.floor().long()
    hi = (lo + 1).clamp(max=x.shape[dim] - 1)
    frac = (idx - lo).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = -1
    return x.index_select(dim, lo) * (1 - frac.reshape(shape)) + x.index_select(dim, hi) * frac.reshape(shape)


def role_midi(audio: Audio, role: str, timeline, region_start: int):
    """basic-pitch transcription of one stem, placed at the region's start on the DAW timeline."""
    # lazy: basic-pitch and mido; the GPU lease imports this module on a machine without them
    from backline.engines.core.transcribe import notes_to_midi, transcribe_polyphonic

    notes = transcribe_polyphonic(audio)
    mid = notes_to_midi(notes, timeline, program=GM_PROGRAM[role], offset_seconds=region_start / timeline.sample_rate,
                        name=f"Backline {role.lower()}")
    return notes, mid


# --- building -----------------------------------------------------------------------------------------------
def load_model(weights: Path | None = None):
    path = weights or WEIGHTS_DIR / "gmsdi"
    model, meta = load_weights(path, kind=KIND, build=lambda c: build_model(c).half() if c.get("dtype") == "float16"
                               else build_model(c), format_version=FORMAT_VERSION)
    return model.float(), meta


def build(config: str = "shipped", device: str = "cpu", weights: Path | None = None) -> AccompanyEngine:
    """`shipped` loads weights/gmsdi.safetensors; `debug` is a tiny seeded random-init model (tests)."""
    table_path = WEIGHTS_DIR / "labels.safetensors"
    table = load_table(table_path) if table_path.exists() else None
    if config == "debug":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(CONFIGS["debug"])
        return AccompanyEngine(model, table, device=device, config="debug")
    if config != "shipped":
        raise ConfigError(f"unknown accompany config {config!r}", fix="use shipped or debug")
    try:
        model, meta = load_model(weights)
    except WeightsError:
        raise
    return AccompanyEngine(model, table, device=device, config="shipped", meta=meta)
