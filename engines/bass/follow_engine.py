"""The bass follow engine (registered as `bass`): listen → plan → render. The planned MIDI *is* the take's MIDI.

It loads what it plays with and nothing else: the planner (on first use) and the shared listener. Paper 000's
diffusion path is another engine (`bass-latent`, `engines/bass/engine.py`); the panel's `mode=free` hands the
request to it, built the first time free mode is asked for, so a follow-only session never loads the U-Net or a
codec (see `engines/bass/common.py`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backline.engines.bass.common import (
    ALL_CONTROLS,
    LATENT_CONTROLS,
    LATENT_NAME,
    NAME,
    check_mix,
    listen_mix,
    resolve_controls,
)
from backline.engines.bass.description import describe
from backline.engines.bass.follow import plan_line, read_line_midi, render_line
from backline.engines.bass.planner import FORMAT_VERSION as PLANNER_FORMAT
from backline.engines.bass.planner import KIND as PLANNER_KIND
from backline.engines.bass.planner import STYLES as PLANNER_STYLES
from backline.engines.bass.planner import WEIGHTS as PLANNER_WEIGHTS
from backline.engines.bass.planner import engine_planner, load_planner
from backline.engines.bass.reference import (
    plan_in_feel,
    prepare_reference,
    preset_instrument,
    render_in_reference,
    render_preset,
)
from backline.engines.core.balance import balance_take
from backline.engines.core.errors import BacklineError, ConfigError
from backline.engines.core.protocol import (
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Take,
    check_cancel,
    check_device,
)
from backline.engines.core.transcribe import notes_to_midi
from backline.engines.core.weights import read_weights_config
from backline.engines.listen import kick_onsets

#: The latent engine's control names: what a free-mode request carries over to it.
LATENT_NAMES = frozenset(c.name for c in LATENT_CONTROLS)


if TYPE_CHECKING:
    from backline.engines.bass import engine as latent

class BassFollowEngine:
    """Listen → plan → render; `mode=free` delegates to the latent engine (`latent()`), built on first use."""

    name = NAME

    def __init__(self, *, config: str = "shipped", device: str = "cpu", latent_weights: str | Path | None = None,
                 codec_weights: str | Path | None = None) -> None:
        self.config = config
        self.device = str(device)
        self.latent_weights, self.codec_weights = latent_weights, codec_weights
        self._planner = None  # engine_planner() loads it on first use
        self._latent: latent.BassEngine | None = None
        self._latent_lock = threading.Lock()
        self.warnings: list[str] = []

    # --- protocol ---------------------------------------------------------------------------------------
    def describe(self) -> EngineDescription:
        """The follow controls, then the latent engine's (for mode=free); describes the planner's weights from
        their JSON alone (nothing is loaded to describe the engine)."""
        return dataclasses.replace(describe(self.config, self.device), weights=self.weights_text())

    def weights_text(self) -> str:
        if self.config == "debug":
            planner = "bass planner (debug, untrained)"
        else:
            try:
                training = read_weights_config(PLANNER_WEIGHTS, kind=PLANNER_KIND, format_version=PLANNER_FORMAT).get("training", {})
            except BacklineError:
                training = {}
            planner = "bass planner (shipped); " + (
                f"{training.get('steps', '?')} steps on {training.get('data', '?')}" if training else "untrained")
        return planner + "; free mode: the bass-latent engine, loaded when first asked for"

    def generate(self, request: GenerationRequest, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        t_start = time.perf_counter()
        progress = progress or (lambda f, m: None)
        merged, preset, reference = resolve_controls(request, ALL_CONTROLS)
        if merged["mode"] == "free" and not merged.get("midi_in"):
            return self._generate_free(request, progress, cancel)
        return self._generate_follow(request, merged, preset, progress, cancel, t_start, reference=reference)

    # --- free mode: the latent engine ---------------------------------------------------------------------
    def latent(self) -> latent.BassEngine:
        """The latent engine (U-Net + both codecs), built the first time free mode is asked for."""
        with self._latent_lock:
            if self._latent is None:
                from backline.engines.bass import (
                    engine as latent,  # lazy: U-Net, codecs and torchaudio, free mode only
                )
                self._latent = latent.build(self.config, self.device, weights=self.latent_weights,
                                            codec_weights=self.codec_weights)
            return self._latent

    def _generate_free(self, request: GenerationRequest, progress: ProgressFn, cancel) -> GenerationResult:
        """The request, less the follow-only controls, to the latent engine; its takes are this engine's."""
        sub = dataclasses.replace(request, engine=LATENT_NAME,
                                  controls={k: v for k, v in request.controls.items() if k in LATENT_NAMES})
        progress(0.0, "loading the diffusion model")
        result = self.latent().generate(sub, progress=progress, cancel=cancel)
        result.report |= {"engine": NAME, "mode": "free", "via": LATENT_NAME}
        return result

    # --- follow mode: listen → plan → render ------------------------------------------------------------
    def planner(self):
        """The bass planner (shipped weights, loaded on first use; `debug` engines get an untrained one)."""
        return engine_planner(self, load_planner)

    def listen(self, request: GenerationRequest, merged: dict[str, Any], mix):
        """What the mix plays (tempo, bars, key, chords per beat); the DAW's timeline wins when trusted."""
        return listen_mix(request, merged, mix)

    def _generate_follow(self, request: GenerationRequest, merged: dict[str, Any], preset, progress, cancel,
                         t_start: float, reference: Path | None = None) -> GenerationResult:
        timings: dict[str, float] = {}
        if request.variations < 1:
            raise ConfigError(f"variations={request.variations} must be >= 1")
        for name in ("complexity", "intensity", "swing"):
            if not 0.0 <= float(merged[name]) <= 1.0:
                raise ConfigError(f"{name}={merged[name]} must be within 0–1")
        if int(merged["register"]) not in (-1, 0, 1):
            raise ConfigError(f"register={merged['register']} must be -1, 0 or +1 (octaves)")
        style = merged["style"]
        if style == "preset":
            style = (preset.controls.get("style") if preset else None) or "root_fifth"
        if style not in PLANNER_STYLES:
            raise ConfigError(f"style={style!r} is not a bass style",
                              fix=f"use one of {', '.join(s for s in PLANNER_STYLES if s != 'unknown')}")
        mix = check_mix(request.mix)
        seeds = [int(request.seed) + k for k in range(request.variations)]
        # --- style reference (issue 22, engines/bass/reference.py): the user's recording gives the sound and feel
        ref_inst = ref_info = preset_inst = None
        if reference is not None:
            t0 = time.perf_counter()
            ref_inst, ref_info = prepare_reference(reference, progress=lambda f, m: progress(0.05 * f, m),
                                                   cancel=cancel)
            timings["reference_s"] = time.perf_counter() - t0
        elif preset is not None and merged.get("sound") == "reference":
            t0 = time.perf_counter()  # a preset = its reference (the sound) + its style (how it is played)
            preset_inst, _ = preset_instrument(preset, progress=lambda f, m: progress(0.05 * f, m), cancel=cancel)
            timings["instrument_s"] = time.perf_counter() - t0
        # --- end style reference
        progress(0.05, "listening")
        t0 = time.perf_counter()
        lst = self.listen(request, merged, mix)
        timings["listen_s"] = time.perf_counter() - t0
        check_cancel(cancel)
        sr = mix.sample_rate
        octave = int((preset.render or {}).get("octave", 0)) if preset else 0
        lines: list[tuple[list, dict]] = []
        t0 = time.perf_counter()
        if merged.get("midi_in"):
            notes, _ = read_line_midi(merged["midi_in"])
            lines = [(notes, {"source": str(merged["midi_in"])})] * len(seeds)
        else:
            progress(0.2, "planning the line")
            kicks = lst.kicks if lst.kicks is not None else kick_onsets(mix)
            for seed in seeds:
                check_cancel(cancel)
                if ref_inst is not None:  # issue 22: planned in the reference's feel
                    notes, grid, info = plan_in_feel(self.planner(), lst, kicks, ref_inst.feel, seed=seed,
                                                     lock_to_kick=bool(merged["lock_to_kick"]),
                                                     style=None if merged["style"] == "preset" else style)
                    lines.append((notes, info))
                    continue
                notes, grid, attrs = plan_line(
                    self.planner(), lst, kicks, style=style, complexity=float(merged["complexity"]),
                    intensity=float(merged["intensity"]), register=float(merged["register"]),
                    swing=float(merged["swing"]), lock_to_kick=bool(merged["lock_to_kick"]), seed=seed, octave=octave)
                lines.append((notes, {"style": style, "attributes": {k: round(v, 3) for k, v in attrs.items()},
                                      "kick_hits": int(grid.kick.sum())}))
        timings["plan_s"] = time.perf_counter() - t0
        if not any(notes for notes, _ in lines):
            raise ConfigError("the planned line has no notes (nothing was heard to play along to)",
                              fix="give the chords (--chords) or a longer mix")
        timeline = request.timeline if lst.sources.get("tempo") == "daw" else lst.timeline(sr)
        rendered = []
        t0 = time.perf_counter()
        for v, (notes, _) in enumerate(lines):
            check_cancel(cancel)
            progress(0.3 + 0.6 * v / len(lines), "playing the line")
            if ref_inst is not None:  # issue 22: in the reference's own sound
                dry, wet, level = render_in_reference(ref_inst, notes, mix.frames, sr)
            elif preset_inst is not None:
                dry, wet, level = render_preset(preset_inst, preset, notes, mix.frames, sr)
            else:
                dry, wet, level = render_line(notes, preset, mix.frames, sr, lst.bpm)
            wet, balance = balance_take(wet, mix, "bass", float(merged["level"]))  # at the band's balance
            rendered.append((dry, wet, level | {"balance": balance}))
        timings["render_s"] = time.perf_counter() - t0
        check_cancel(cancel)
        program = (preset.gm_program if preset else 34) - 1
        takes = [Take(seed=seed, stems={"bass": wet},
                      midi=notes_to_midi(notes, timeline, program=program, offset_seconds=request.region_start / sr,
                                         name="Backline bass"),
                      start_sample=request.region_start,
                      report={"notes": len(notes), "peak": round(wet.peak(), 4), "level": level, "frames": wet.frames,
                              "plan": info, "listening": lst.to_dict()})
                 for seed, (notes, info), (_dry, wet, level) in zip(seeds, lines, rendered)]
        timings["total_s"] = time.perf_counter() - t_start
        report = {
            "engine": NAME, "mode": "follow" if not merged.get("midi_in") else "midi-in",
            "render": "reference sampler" if ref_inst is not None else
                      "preset's reference instrument" if preset_inst is not None else "soundfont",
            "config": self.config, "device": "cpu", "fallbacks": [], "warnings": list(self.warnings),
            "weights": self.weights_text(), "listening": lst.to_dict(),
            "settings": {k: merged[k] for k in ("style", "complexity", "intensity", "register", "swing",
                                                "lock_to_kick", "level", "sound")} | {"variations": len(seeds)},
            "seeds": seeds, "preset": preset.name if preset else None,
            "region": {"start_sample": request.region_start, "frames": mix.frames, "sample_rate": sr,
                       "bpm": timeline.bpm, "start_bar": round(timeline.samples_to_bar(request.region_start), 4)},
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        if ref_info is not None:  # issue 22: what was learned from the reference, in words and numbers
            report["reference"] = ref_info
            for take in takes:
                take.report["learned"] = ref_info["learned"]
        progress(1.0, "done")
        return GenerationResult(takes, report)


def build(config: str = "shipped", device: str = "cpu", weights: str | Path | None = None,
          codec_weights: str | Path | None = None) -> BassFollowEngine:
    """The registered builder: `ENGINE_REGISTRY['bass']`. Loads nothing: the planner comes on the first take, the
    latent engine (with `weights` / `codec_weights` when given, see `engine.build`) on the first free-mode take."""
    check_device(device)
    return BassFollowEngine(config=config, device=device, latent_weights=weights, codec_weights=codec_weights)


__all__ = ["BassFollowEngine", "build"]
