"""The bass engine (paper 000): mix → mix-codec latents → conditional latent diffusion (DDIM, CFG with rescale,
style grounding) → stem-codec decode → render chain → WAV, plus a MIDI transcription of the generated line.

Timing and alignment: the request's mix is the DAW region [region_start, region_stop) at the DAW's rate. It is
resampled to the codec's 44.1 kHz, encoded (latent frame i = samples [4096 i, 4096 (i+1))), the bass latents are
generated frame-aligned with it, decoded to exactly the resampled length and resampled back to the DAW rate
and trimmed/padded to the region's exact sample count, so the stem starts at `region_start` to the sample.
The MIDI is written on the request's timeline with the region's offset, so it lands at the same bar.

Any length from one latent frame to a whole song runs in one pass (the U-Net is convolutional and its attention
uses Dynamic Positional Bias). If the GPU runs out of memory we retry with the variations one at a time, then
in overlapping time chunks, then on the CPU, and the report says which fallback ran.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backline.engines.bass.planner import STYLES as PLANNER_STYLES
from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.balance import LEVEL, balance_take
from backline.engines.core.errors import (
    AudioFormatError,
    BacklineError,
    Cancelled,
    ConfigError,
    DeviceError,
    WeightsError,
)
from backline.engines.core.protocol import (
    Control,
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Take,
    check_cancel,
    validate_controls,
)
from backline.engines.diffusion import classifier_free, ddim_sample, style_grounding
from backline.engines.listen import LISTEN_CONTROLS

NAME = "bass"
WEIGHTS_DIR = Path(__file__).parent / "weights"
KIND = "bass-diffusion"
FORMAT_VERSION = 1
QUANTISE = {"off": None, "1/8": 2, "1/16": 4, "1/16T": 6}
#: A mix quieter than this peak (dBFS) is treated as silence.
SILENT_MIX_DB = -70.0
#: Time chunk (latent frames) and overlap for the out-of-memory fallback.
OOM_CHUNK, OOM_OVERLAP = 512, 32
#: Longer than this (≈ 3 min) is sampled in overlapping windows from the start: attention memory grows with the
#: square of the length (a 15-minute mix in one pass reached 3 GB by step 5), windows keep it flat.
ONE_PASS_FRAMES, LONG_CHUNK, LONG_OVERLAP = 2048, 1024, 64
#: Peak resident memory of a CPU run ≈ BASE + seconds of mix × (PER_SECOND + extra variations × PER_VARIATION),
#: measured with /usr/bin/time on `backline generate bass` (shipped weights, 1 thread, 2-core Xeon), in bytes:
#: 1:30 of 48 kHz stereo → 1.43e9, 3:00 of 44.1 kHz → 1.64e9, 3:54 of 48 kHz → 2.00e9, and before this check
#: existed 4:30 → 2.18e9, 6:00 → 2.21e9. The line is at or above every measurement but the 1:30 one (1 % under).
#: A mix whose estimate passes the limit is refused up front with the estimate.
MEMORY_BASE_BYTES = 1.02e9
MEMORY_PER_SECOND = 4.3e6
MEMORY_PER_VARIATION_SECOND = 1.2e6
#: The limit: BACKLINE_MEMORY_GB (default 2 GB, what a laptop can spare beside a DAW).
DEFAULT_MEMORY_GB = 2.0


def estimate_memory_bytes(seconds: float, variations: int = 1) -> float:
    """Estimated peak RSS of a CPU generation for `seconds` of mix (see MEMORY_BASE_BYTES)."""
    return MEMORY_BASE_BYTES + seconds * (MEMORY_PER_SECOND + max(0, variations - 1) * MEMORY_PER_VARIATION_SECOND)


def memory_limit_bytes() -> float:
    import os

    raw = os.environ.get("BACKLINE_MEMORY_GB", "")
    try:
        gb = float(raw) if raw.strip() else DEFAULT_MEMORY_GB
    except ValueError as err:
        raise ConfigError(f"BACKLINE_MEMORY_GB={raw!r} is not a number", fix="e.g. BACKLINE_MEMORY_GB=4") from err
    return gb * 1e9


def check_memory(seconds: float, variations: int = 1) -> None:
    """Refuse, before any work, a mix too long for the memory limit, with the estimate and what to do."""
    need, limit = estimate_memory_bytes(seconds, variations), memory_limit_bytes()
    if need <= limit:
        return
    per_second = MEMORY_PER_SECOND + max(0, variations - 1) * MEMORY_PER_VARIATION_SECOND
    fits = max(0.0, (limit - MEMORY_BASE_BYTES) / per_second)
    raise DeviceError(f"a {_clock(seconds)} mix{f' with {variations} variations' if variations > 1 else ''} needs "
                      f"about {need / 1e9:.1f} GB of memory, over the {limit / 1e9:.1f} GB limit",
                      fix=f"generate up to {_clock(fits)} at a time (--bars), or allow more with "
                          f"BACKLINE_MEMORY_GB={math.ceil(need / 1e9)}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"

CONTROLS = (
    Control("steps", "int", 64, "Sampler steps", 1, 1000, 1, group="advanced",
            help="denoising steps: more is slower and cleaner; 64 sounds best (DDIM steps K)"),
    Control("cfg", "float", 2.0, "Follow the band", 0.0, 20.0, 0.1, group="advanced",
            help="how closely the bass follows the mix: 1 = plain, higher sticks to the band more "
                 "(classifier-free guidance λ)"),
    Control("rescale", "float", 0.7, "Guidance rescale", 0.0, 1.0, 0.05, group="advanced",
            help="tames harshness when 'Follow the band' is high, above 2.5 (std rescale φ)"),
    Control("strength", "float", 1.0, "Style strength", 0.0, 4.0, 0.05,
            help="how strongly the preset's sound is held: 0 = off, 1 = normal, more holds it longer"),
    Control("quantise", "choice", "off", "MIDI grid", choices=tuple(QUANTISE),
            help="quantise the transcribed MIDI to the DAW grid"),
    Control("preset", "preset", "finger", "Preset", help="a bass style from presets/bass"),
    Control("reference", "audio", "", "Style reference", help="a solo bass recording to copy the sound of"),
)
#: Follow mode's musician controls come first in a panel; overrides go under "Advanced"; what the host supplies
#: itself (the chord lane, the DAW's tempo, a take's MIDI to re-render) is command-line only.
MODES = ("follow", "free")
FOLLOW_CONTROLS = (
    Control("mode", "choice", "follow", "Mode", choices=MODES,
            help="follow: listen to tempo, bars and chords, plan a line on them and play it; free: paper 000 as is"),
    Control("style", "choice", "preset", "Style",
            choices=("preset",) + tuple(s for s in PLANNER_STYLES if s != "unknown"),
            help="how the line is played (preset: the preset's own style)"),
    Control("complexity", "float", 0.5, "Complexity", 0.0, 1.0, 0.05,
            help="fewer ↔ more notes (0.5 = the style's usual)"),
    Control("intensity", "float", 0.5, "Intensity", 0.0, 1.0, 0.05, help="softer ↔ harder playing"),
    Control("register", "int", 0, "Register", -1, 1, 1, help="octave: -1 low, 0 usual, +1 high"),
    Control("swing", "float", 0.0, "Swing", 0.0, 1.0, 0.05, help="0 = straight, 1 = triplet swing"),
    # off by default: striking every heard kick fits the band only a little better (benchmarks/reference_eval.py
    # table 7, matching top-1 with two clips per song: dev songs 0.76 → 0.80, held-out 0.92 → 0.92), but where the
    # listener hears false kicks (35–41 % of "kicks" on 2 of 6 held-out songs had no drum onset within 40 ms) the
    # locked line's p90 against the real drums rose from 23 to 57–70 ms — a late-sounding part. The real basses
    # strike ~0.63 of the heard kicks, the locked line ~0.98; unlocked, the style's rhythm alone ~0.60.
    Control("lock_to_kick", "bool", False, "Lock to kick",
            help="a note on every kick drum hit (the band's kick, heard or from its MIDI); off: the style's rhythm alone"),
    # soundfont by default: the reference instrument is nearer the preset's reference (timbre grounding among the
    # presets 0.66 vs 0.71) and renders 4x faster, but plays the notes less cleanly (basic-pitch on the take: note
    # F1 0.75 vs 0.85, pitch class 0.93 vs 0.97; benchmarks/reference_eval.py table 8) — its riff spans F2–C4 only
    Control("sound", "choice", "soundfont", "Preset sound", choices=("soundfont", "reference"), group="advanced",
            help="soundfont: a preset plays through its General MIDI program; reference: through the instrument "
                 "sampled from its reference recording (built once in 0.2 s, cached)"),
    LEVEL,
    *LISTEN_CONTROLS,
    Control("midi_in", "text", "", "Line MIDI", group="cli",
            help="play this bass line MIDI (edited in the DAW) in the preset's sound instead of planning one"),
)
ALL_CONTROLS = FOLLOW_CONTROLS + CONTROLS


def codec_fingerprint(codec) -> str:
    """The codec's latent-space id (`codec.latent_space_id`): what the bass model, its training cache and the
    style-mean caches depend on. A decoder-only codec update keeps it."""
    from backline.engines.codec.codec import latent_space_id

    return latent_space_id(codec)


@dataclass
class Sampling:
    """Resolved controls for one generation."""

    steps: int = 64
    cfg: float = 2.0
    rescale: float = 0.7
    strength: float = 1.0
    eta: float = 0.0

    def check(self) -> Sampling:
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise ConfigError(f"steps={self.steps} must be a positive whole number", fix="use e.g. --steps 64")
        if not math.isfinite(self.cfg) or self.cfg < 0:
            raise ConfigError(f"CFG weight {self.cfg} must be >= 0", fix="use e.g. --cfg 2.0 (1.0 = no guidance)")
        if not 0.0 <= self.rescale <= 1.0:
            raise ConfigError(f"rescale φ={self.rescale} must be within 0–1", fix="use e.g. --rescale 0.7")
        if not math.isfinite(self.strength) or self.strength < 0:
            raise ConfigError(f"strength {self.strength} must be >= 0", fix="0 = no grounding, 1 = paper")
        return self


@dataclass
class LatentResult:
    latents: torch.Tensor  # [V, stem_dim, frames] in the codec's latent space
    device: str
    fallbacks: list[str] = field(default_factory=list)


class BassEngine:
    name = NAME

    def __init__(self, model, mix_codec, stem_codec, *, device: str = "cpu", config: str = "shipped",
                 meta: dict[str, Any] | None = None) -> None:
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.mix_codec = mix_codec
        self.stem_codec = stem_codec
        self.device = str(device)
        self.config = config
        self.meta = meta or {}
        self.compiled = None  # set by enable_compile() on CUDA
        self.warnings: list[str] = []

    # --- protocol ---------------------------------------------------------------------------------------
    def describe(self) -> EngineDescription:
        training = self.meta.get("training", {})
        weights = f"bass diffusion ({self.config}); " + (
            f"{training.get('steps', '?')} steps on {training.get('data', '?')}" if training else "untrained")
        return replace(describe(self.config, self.device), weights=weights)

    def generate(self, request: GenerationRequest, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        t_start = time.perf_counter()
        progress = progress or (lambda f, m: None)
        timings: dict[str, float] = {}
        controls = dict(request.controls)
        from backline.engines.bass.presets import load_preset

        # a UI built from describe() sends preset/reference as controls; the CLI uses the request's fields
        reference = request.reference or (Path(controls["reference"]) if controls.get("reference") else None)
        controls.pop("reference", None)
        preset_control = controls.pop("preset", None)
        preset_name = (request.preset or preset_control or "finger") if reference is None else None
        preset = load_preset(preset_name) if preset_name else None
        defaults = {c.name: c.default for c in ALL_CONTROLS if c.kind not in ("preset", "audio")}  # one declaration
        if preset:
            defaults |= preset.controls
        merged = defaults | {k: v for k, v in controls.items() if v is not None}
        merged = validate_controls(tuple(c for c in ALL_CONTROLS if c.name in defaults), merged, NAME)
        if merged["mode"] == "follow" or merged.get("midi_in"):
            return self._generate_follow(request, merged, preset, progress, cancel, t_start, reference=reference)
        sampling = Sampling(int(merged["steps"]) if float(merged["steps"]).is_integer() else merged["steps"],
                            float(merged["cfg"]), float(merged["rescale"]), float(merged["strength"])).check()
        quantise = merged["quantise"]
        if quantise not in QUANTISE:
            raise ConfigError(f"quantise={quantise!r} is not a grid", fix=f"use one of {', '.join(QUANTISE)}")
        if request.variations < 1:
            raise ConfigError(f"variations={request.variations} must be >= 1")
        mix = self._check_mix(request.mix)
        if self._param_device().type == "cpu":
            check_memory(mix.seconds, request.variations)
        seeds = [int(request.seed) + k for k in range(request.variations)]

        # the MIDI's tempo: the DAW's, the user's, or heard (a plain file is not 120 BPM just because nobody said)
        timeline = request.timeline
        tempo_note = None
        if merged["tempo_from"] == "listen" and not float(merged["bpm"]):
            t0 = time.perf_counter()
            try:
                timeline = self.listen(request, merged | {"chords": "", "key": ""}, mix).timeline(mix.sample_rate)
            except BacklineError as err:  # free mode does not need the grid: keep the given one and say so
                tempo_note = f"no tempo heard ({err}); the MIDI uses {timeline.bpm:g} BPM"
            timings["listen_s"] = time.perf_counter() - t0

        # style
        t0 = time.perf_counter()
        mu_style, style_info = self._style(preset, reference)
        timings["style_s"] = time.perf_counter() - t0
        progress(0.02, "encoding the mix")

        # mix → latents
        t0 = time.perf_counter()
        sr_codec = self.mix_codec.sample_rate
        mix44 = mix.resampled(sr_codec)
        cond = self.mix_codec.encode(mix44, cancel=cancel)  # [64, F]
        frames44 = mix44.frames
        del mix44  # a long mix is hundreds of MB: keep only what the rest needs
        timings["encode_s"] = time.perf_counter() - t0
        check_cancel(cancel)

        # sampling
        t0 = time.perf_counter()

        def on_step(state: dict[str, Any]) -> None:
            progress(0.05 + 0.8 * (state["i"] + 1) / state["steps"], f"step {state['i'] + 1}/{state['steps']}")

        result = self.sample_latents(cond, seeds, sampling, mu_style, callback=on_step, cancel=cancel)
        timings["sample_s"] = time.perf_counter() - t0

        # decode, render, transcribe — all in memory: generate() writes nothing (engines.takes writes the take)
        t0 = time.perf_counter()
        dries: list[Audio] = []
        for v in range(len(seeds)):
            check_cancel(cancel)
            progress(0.86 + 0.04 * v / len(seeds), "decoding")
            dry = self.stem_codec.decode(result.latents[v].cpu(), frames44, channels=2).resampled(mix.sample_rate)
            dries.append(dry if dry.frames == mix.frames else dry.slice(0, mix.frames))  # exact region length
        timings["decode_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        from backline.engines.core.effects import render

        rendered = []
        for dry in dries:
            check_cancel(cancel)
            chain = preset.chain if preset else ()
            lufs = preset.loudness_lufs if preset else -18.0
            wet, level = render(dry, chain, target_lufs=lufs, where=f"{preset.name} chain" if preset else "chain")
            wet, balance = balance_take(wet, mix, "bass", float(merged["level"]))
            rendered.append((dry, wet, level | {"balance": balance}))
        timings["render_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        midis = []
        for dry, _, _ in rendered:
            check_cancel(cancel)
            progress(0.92, "transcribing to MIDI")
            midis.append(bass_midi(dry, timeline, request.region_start, quantise,
                                   preset.gm_program if preset else 34))
        timings["transcribe_s"] = time.perf_counter() - t0
        check_cancel(cancel)

        takes = [Take(seed=seed, stems={"bass": wet}, midi=mid, start_sample=request.region_start,
                      report={"notes": len(notes), "peak": round(wet.peak(), 4), "level": level, "frames": wet.frames})
                 for seed, (_dry, wet, level), (notes, mid) in zip(seeds, rendered, midis)]
        timings["total_s"] = time.perf_counter() - t_start
        report = {
            "engine": NAME, "config": self.config, "device": result.device, "fallbacks": result.fallbacks,
            "warnings": list(self.warnings) + ([tempo_note] if tempo_note else []),
            "weights": self.describe().weights,
            "settings": {"steps": sampling.steps, "cfg": sampling.cfg, "rescale": sampling.rescale,
                         "strength": sampling.strength, "quantise": quantise, "variations": len(seeds),
                         "level": float(merged["level"])},
            "seeds": seeds, "style": style_info,
            "region": {"start_sample": request.region_start, "frames": mix.frames,
                       "sample_rate": mix.sample_rate, "bpm": timeline.bpm,
                       "start_bar": round(timeline.samples_to_bar(request.region_start), 4)},
            "latent_frames": int(cond.shape[-1]),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        progress(1.0, "done")
        return GenerationResult(takes, report)

    # --- follow mode: listen → plan → render ------------------------------------------------------------
    def planner(self):
        """The bass planner (shipped weights, loaded on first use; `debug` engines get an untrained one)."""
        from backline.engines.bass.planner import engine_planner, load_planner

        return engine_planner(self, load_planner)

    def listen(self, request: GenerationRequest, merged: dict[str, Any], mix: Audio):
        """What the mix plays (tempo, bars, key, chords per beat); the DAW's timeline wins when trusted."""
        from backline.engines.listen import listen

        transport = request.timeline if merged["tempo_from"] == "timeline" else None
        bpm = float(merged["bpm"]) or None
        return listen(mix, transport=transport, region_start=request.region_start, bpm=bpm,
                      meter=merged["meter"] or None, key=merged["key"] or None, chords=merged["chords"] or None,
                      band_midi=request.midi)

    def _generate_follow(self, request: GenerationRequest, merged: dict[str, Any], preset, progress, cancel,
                         t_start: float, reference: Path | None = None) -> GenerationResult:
        from backline.engines.bass.follow import plan_line, read_line_midi, render_line
        from backline.engines.core.transcribe import notes_to_midi
        from backline.engines.listen import kick_onsets

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
        mix = self._check_mix(request.mix)
        seeds = [int(request.seed) + k for k in range(request.variations)]
        # --- style reference (issue 22, engines/bass/reference.py): the user's recording gives the sound and feel
        ref_inst = ref_info = preset_inst = None
        if reference is not None:
            from backline.engines.bass.reference import prepare_reference

            t0 = time.perf_counter()
            ref_inst, ref_info = prepare_reference(reference, progress=lambda f, m: progress(0.05 * f, m),
                                                   cancel=cancel)
            timings["reference_s"] = time.perf_counter() - t0
        elif preset is not None and merged.get("sound") == "reference":
            from backline.engines.bass.reference import preset_instrument

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
                    from backline.engines.bass.reference import plan_in_feel

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
                from backline.engines.bass.reference import render_in_reference

                dry, wet, level = render_in_reference(ref_inst, notes, mix.frames, sr)
            elif preset_inst is not None:
                from backline.engines.bass.reference import render_preset

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
            "weights": self.describe().weights, "listening": lst.to_dict(),
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

    # --- pieces (also used by benchmarks and training) --------------------------------------------------
    def _check_mix(self, mix: Audio | None) -> Audio:
        if mix is None:
            raise ConfigError("the bass engine needs a mix to listen to", fix="give --mix MIX.wav")
        hop = getattr(self.mix_codec, "hop", 4096)
        min_frames = math.ceil(hop * mix.sample_rate / self.mix_codec.sample_rate)
        if mix.frames < min_frames:
            raise AudioFormatError(f"the mix is {mix.frames} samples long, shorter than one latent frame "
                                   f"({min_frames} samples = {min_frames / mix.sample_rate * 1000:.0f} ms)",
                                   fix="give at least a bar of music")
        if not np.all(np.isfinite(mix.samples)):
            mix = Audio(np.nan_to_num(mix.samples, nan=0.0, posinf=1.0, neginf=-1.0), mix.sample_rate)
        if mix.peak() <= 10 ** (SILENT_MIX_DB / 20):
            raise AudioFormatError("the mix is silent, there is nothing to play along to",
                                   fix="check the region/bars, or that the DAW export is not muted")
        return mix

    def _style(self, preset, reference: Path | None) -> tuple[np.ndarray, dict[str, Any]]:
        from backline.engines.bass.presets import (
            check_bass_reference,
            file_sha256,
            preset_style_mean,
            style_mean_of_audio,
        )

        if reference is not None:
            reference = Path(reference)
            audio = read_audio(reference)
            share = check_bass_reference(audio, reference)
            mu = style_mean_of_audio(audio, self.stem_codec)
            return mu, {"reference": str(reference), "sha256": file_sha256(reference), "bass_share": round(share, 3)}
        mu, info = preset_style_mean(preset, self.stem_codec, codec_fingerprint(self.stem_codec))
        return mu, {"preset": preset.name, "reference": str(preset.reference)} | info

    def sample_latents(self, cond: torch.Tensor, seeds: list[int], sampling: Sampling,
                       mu_style: np.ndarray | torch.Tensor | None, *, callback=None,
                       cancel: threading.Event | None = None) -> LatentResult:
        """Mix latents [64, F] (or [V, 64, F], one mix per seed) in codec space → bass latents [V, 32, F] (codec
        space), one per seed. `mu_style` is [32] or [V, 32] (one style per seed), in codec space."""
        sampling.check()
        frames = cond.shape[-1]
        if cond.dim() == 2:
            cond = cond[None].expand(len(seeds), -1, -1)
        if cond.shape[0] != len(seeds):
            raise ConfigError(f"{cond.shape[0]} mixes for {len(seeds)} seeds")
        noise = torch.stack([torch.randn(self.model.cfg.stem_dim, frames, generator=torch.Generator().manual_seed(s))
                             for s in seeds])
        cond_n = self.model.norm_mix(cond.float().to(self._param_device()))
        mu_n = None
        if mu_style is not None and sampling.strength > 0:
            mu = torch.as_tensor(np.asarray(mu_style), dtype=torch.float32).to(self._param_device())
            mu_n = (mu - self.model.stem_shift) / self.model.stem_scale
        fallbacks: list[str] = []
        device = self._param_device()
        try:
            if frames > ONE_PASS_FRAMES:
                fallbacks.append(f"long mix: generated in {LONG_CHUNK}-frame windows (≈ {LONG_CHUNK * 4096 / 44100:.0f} s)"
                                 f" with {LONG_OVERLAP}-frame crossfades")
                x = self._chunked(noise, cond_n, sampling, mu_n, callback, cancel, device, LONG_CHUNK, LONG_OVERLAP)
            else:
                x = self._run(noise, cond_n, sampling, mu_n, callback, cancel, device)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is handled; everything else re-raises
            if not _is_oom(err):
                raise
            x, device = self._oom_fallback(noise, cond_n, sampling, mu_n, callback, cancel, fallbacks)
        return LatentResult(self.model.denorm_stem(x.float().to(self.model.stem_shift.device)), str(device), fallbacks)

    def _param_device(self) -> torch.device:
        return self.model.stem_shift.device

    def _model_fn(self):
        fn = self.compiled or self.model
        if self._param_device().type == "cuda":
            def run(x, t, c):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return fn(x, t, c).float()
            return run
        return fn

    def _run(self, noise, cond_n, sampling: Sampling, mu_n, callback, cancel, device) -> torch.Tensor:
        fn = classifier_free(self._model_fn(), cond_n.to(device), scale=sampling.cfg, rescale=sampling.rescale)
        transforms = [style_grounding(mu_n.to(device), sampling.strength)] if mu_n is not None else []
        return ddim_sample(fn, noise.to(device), steps=sampling.steps, transforms=transforms, callback=callback,
                           cancel=cancel, eta=sampling.eta)

    def _oom_fallback(self, noise, cond_n, sampling, mu_n, callback, cancel, fallbacks):
        """Out of memory: variations one at a time → overlapping time chunks → the CPU."""
        device = self._param_device()
        _empty_cache()
        if noise.shape[0] > 1:
            fallbacks.append("out of memory: generated the variations one at a time")
            try:
                outs = [self._run(noise[v: v + 1], cond_n[v: v + 1], sampling,
                                  mu_n[v: v + 1] if mu_n is not None and mu_n.dim() == 2 else mu_n, callback, cancel,
                                  device) for v in range(noise.shape[0])]
                return torch.cat(outs), device
            except Exception as err:  # noqa: BLE001
                if not _is_oom(err):
                    raise
                _empty_cache()
        if noise.shape[-1] > OOM_CHUNK:
            fallbacks.append(f"out of memory: generated in {OOM_CHUNK}-frame chunks with {OOM_OVERLAP}-frame crossfades")
            try:
                return self._chunked(noise, cond_n, sampling, mu_n, callback, cancel, device), device
            except Exception as err:  # noqa: BLE001
                if not _is_oom(err):
                    raise
                _empty_cache()
        if device.type == "cpu":
            raise DeviceError("ran out of memory even on the CPU", fix="generate fewer bars or fewer variations")
        fallbacks.append("out of memory on the GPU: generated on the CPU (slower)")
        self.model.to("cpu")
        try:
            return self._run(noise, cond_n.cpu(), sampling, mu_n.cpu() if mu_n is not None else None, callback,
                             cancel, torch.device("cpu")), torch.device("cpu")
        finally:
            self.model.to(device)

    def _chunked(self, noise, cond_n, sampling, mu_n, callback, cancel, device, chunk: int = OOM_CHUNK,
                 overlap: int = OOM_OVERLAP) -> torch.Tensor:
        """Independent overlapping windows, cross-faded in latent space by the one windowing helper
        (`engines.core.windows`; memory bound, seams possible). The callback sees the steps of all windows as one
        count (window k's step i = k·steps + i)."""
        from backline.engines.core.windows import overlap_add_spans, windows

        starts = [a for a, _ in windows(noise.shape[-1], chunk, chunk - overlap)]

        def one(a: int, b: int) -> np.ndarray:
            k = starts.index(a)
            window_callback = None
            if callback is not None:
                def window_callback(state):
                    callback(state | {"i": k * state["steps"] + state["i"], "steps": len(starts) * state["steps"]})
            x = self._run(noise[..., a:b], cond_n[..., a:b], sampling, mu_n, window_callback, cancel, device)
            return x.float().cpu().numpy()

        out = overlap_add_spans(one, noise.shape[-1], chunk, chunk - overlap)
        return torch.from_numpy(out).to(device=device, dtype=noise.dtype)

    def enable_compile(self) -> None:
        """torch.compile the U-Net (CUDA; dynamic shapes so new lengths do not recompile every time)."""
        self.compiled = torch.compile(self.model, dynamic=True)


def bass_line(notes, *, max_pitch: int = 67, min_dur: float = 0.05, ghost_s: float = 0.1, chord_s: float = 0.03):
    """Polyphonic transcription → one bass voice.

    basic-pitch on a bass stem finds the line plus ghosts: a second note starting a few tens of ms after the
    real onset (often a third or fourth below) and octave doublings. We keep notes up to G4 and ≥ 50 ms, and walk
    them in time: a note starting within `chord_s` of the sounding one is the same onset (keep the lower: the
    fundamental), one starting within `ghost_s` of it is a ghost (dropped), a later one ends the sounding note.
    On corpus bass stems this raised onset+pitch F1 (50 ms) from 0.44 to 0.55–0.66; CREPE (tiny and full) found
    almost none of the notes of these low (E1–C3) lines (F1 ≈ 0), which is why the bass engine does not use it.
    """
    from backline.engines.core.transcribe import Note

    out: list = []
    for n in sorted((n for n in notes if n.pitch <= max_pitch and n.end - n.start >= min_dur),
                    key=lambda n: (n.start, n.pitch)):
        if out and n.start < out[-1].end:
            p = out[-1]
            gap = n.start - p.start
            if gap < chord_s:
                if n.pitch < p.pitch:
                    out[-1] = Note(n.pitch, p.start, max(p.end, n.end), max(p.velocity, n.velocity))
                continue
            if gap < ghost_s:
                continue
            out[-1] = Note(p.pitch, p.start, n.start, p.velocity)
        out.append(n)
    return out


def transcribe_bass(audio: Audio) -> list:
    """A bass stem → its notes (basic-pitch limited to 30–450 Hz, then `bass_line`).

    The stem is first brought to −18 LUFS: basic-pitch's thresholds are absolute, and a decoded stem can come
    out of the codec far quieter than a real one."""
    from backline.engines.core.effects import normalise_loudness
    from backline.engines.core.transcribe import transcribe_polyphonic

    audio, _ = normalise_loudness(audio, -18.0)
    return bass_line(transcribe_polyphonic(audio, min_hz=30.0, max_hz=450.0))


def bass_midi(audio: Audio, timeline, region_start: int, quantise: str = "off", gm_program: int = 34):
    """Transcribe a generated bass → (notes, MIDI file) placed at `region_start` on the DAW timeline."""
    from backline.engines.core.transcribe import notes_to_midi

    if quantise not in QUANTISE:
        raise ConfigError(f"quantise={quantise!r} is not a grid", fix=f"use one of {', '.join(QUANTISE)}")
    notes = transcribe_bass(audio)
    mid = notes_to_midi(notes, timeline, quantise=QUANTISE[quantise], program=gm_program - 1,
                        offset_seconds=region_start / timeline.sample_rate, name="Backline bass")
    return notes, mid


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    return isinstance(err, oom) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- building -----------------------------------------------------------------------------------------------

def load_bass_model(config: str = "shipped", weights: str | Path | None = None):
    """(model, meta). 'shipped' loads engines/bass/weights/bass; 'debug'/'small'/'paper' build untrained models."""
    from backline.engines.bass.model import CONFIGS, build_model
    from backline.engines.core.weights import load_weights

    if weights is not None or config == "shipped":
        path = Path(weights) if weights is not None else WEIGHTS_DIR / "bass"
        model, meta = load_weights(path, kind=KIND, build=build_model, format_version=FORMAT_VERSION,
                                   reference=CONFIGS["small"].to_dict())
        return model.float(), meta
    if config not in CONFIGS:
        raise ConfigError(f"unknown bass config {config!r}", fix=f"use shipped or one of {', '.join(CONFIGS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(config)
    return model, {"config": model.cfg.to_dict()}


def build(config: str = "shipped", device: str = "cpu", weights: str | Path | None = None,
          codec_weights: str | Path | None = None) -> BassEngine:
    """The registered builder: `ENGINE_REGISTRY['bass']`. 'debug' pairs the debug U-Net with debug codecs.

    `weights` / `codec_weights` (a folder with mix.safetensors and stem.safetensors) override the shipped files,
    for evaluating a training run before it is shipped."""
    from backline.engines.codec import load_codec
    from backline.engines.core.protocol import check_device

    check_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but CUDA is not available", fix="use --device cpu")
    model, meta = load_bass_model(config, weights)
    codec_config = meta.get("config", {}).get("codec_config")
    if codec_config is None:  # untrained models: debug pairs with the debug codecs, the others with the shipped
        codec_config = "debug" if config == "debug" else "shipped"
    try:
        if codec_weights is not None:
            mix_codec = load_codec("mix", device=device, weights=Path(codec_weights) / "mix")
            stem_codec = load_codec("stem", device=device, weights=Path(codec_weights) / "stem")
        else:
            mix_codec = load_codec("mix", config=codec_config, device=device)
            stem_codec = load_codec("stem", config=codec_config, device=device)
    except WeightsError as err:
        raise WeightsError(f"the bass engine needs the codec weights ({err})",
                           fix="train them with: backline train codec") from err
    if mix_codec.dim != model.cfg.cond_dim or stem_codec.dim != model.cfg.stem_dim:
        raise WeightsError(f"bass model expects codec dims {model.cfg.cond_dim}/{model.cfg.stem_dim}, codecs give "
                           f"{mix_codec.dim}/{stem_codec.dim}", fix="use bass weights trained with these codecs")
    engine = BassEngine(model, mix_codec, stem_codec, device=device, config=config, meta=meta)
    trained_with = meta.get("training", {}).get("codec_fingerprints")
    if trained_with:
        now = {"mix": codec_fingerprint(mix_codec), "stem": codec_fingerprint(stem_codec)}
        changed = [k for k in ("mix", "stem") if trained_with.get(k) != now[k]]
        if changed:  # still usable, but the latents moved under the model: say so in every report
            engine.warnings.append(f"the {' and '.join(changed)} codec weights changed since the bass model was "
                                   "trained; retrain it (backline train bass) for best results")
    return engine


__all__ = ["BassEngine", "Sampling", "build", "codec_fingerprint", "load_bass_model", "Cancelled"]


def describe(config: str = "shipped", device: str = "cpu") -> EngineDescription:
    """The engine's description without loading any weights: the command line builds its flags from it, the
    built engine adds what its weights are."""
    from backline.engines.bass.presets import list_presets, user_cache_dir
    from backline.engines.bass.reference import cache_dir as instrument_cache_dir
    from backline.engines.core.render import latency_cache_dir

    controls = tuple(
        Control(c.name, "choice", c.default, c.label, choices=tuple(list_presets()), help=c.help)
        if c.name == "preset" else c for c in ALL_CONTROLS)
    return EngineDescription(NAME, "Bass", controls, inputs=("mix",), extra_inputs=("midi",),
                             outputs=("audio", "midi"), weights=f"bass diffusion ({config})", device=device,
                             fast={"steps": 2}, caches=tuple(str(d) for d in (
                                 user_cache_dir(), instrument_cache_dir(), latency_cache_dir())))
