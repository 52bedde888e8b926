"""The accompaniment engine as the registry builds it (`accompany`): follow mode (listen → plan → voice → render) runs
here without torch; the GMSDI score model's modes (free, extract, separate, ensemble, total) go to
`engine.AccompanyEngine`, built (torch, the score model, the text encoder) the first time one is asked for.

Why a follow-first engine: a follow take loads only the comping planner (numpy) and the shared listener; building
the GMSDI model first imported torch (1.6 CPU-s) and loaded weights a follow take never uses. `AccompanyEngine`
subclasses this class, so follow mode has one implementation whichever object runs it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from backline.engines.accompany import spec
from backline.engines.accompany.description import CONTROLS, NAME, describe
from backline.engines.accompany.planner import FAMILY_STYLES, load_planner
from backline.engines.bass.planner import engine_planner
from backline.engines.core.audio import Audio, playable_mix
from backline.engines.core.effects import loudness_lufs
from backline.engines.core.errors import BacklineError, ConfigError
from backline.engines.core.midi import midi_bytes
from backline.engines.core.protocol import (
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Take,
    check_cancel,
)
from backline.engines.core.weights import read_weights_config
from backline.engines.listen import kick_onsets, listen

WEIGHTS_DIR = Path(__file__).parent / "weights"
KIND = "gmsdi-score"
FORMAT_VERSION = 1


class _LazyText:
    """The engine's text encoder, built only if a prompt is not an instrument's name or alias (`instrument_for`
    encodes nothing for those): "piano" needs no sentence model and no torch."""

    def __init__(self, engine: AccompanyFollowEngine) -> None:
        self.engine = engine

    def encode(self, texts):
        return self.engine.text.encode(texts)


class AccompanyFollowEngine:
    """Follow mode here; every other mode is handed to `full()` (the GMSDI engine), built on first use."""

    name = NAME

    def __init__(self, *, config: str = "shipped", device: str = "cpu", weights: Path | None = None) -> None:
        self.config, self.device, self.weights = config, str(device), weights
        self._planner = None  # engine_planner() loads it on first use
        self._text = None
        self._full = None
        self._full_lock = threading.Lock()

    @property
    def text(self):
        """The text encoder with the shipped label table (free-text prompts, the GMSDI modes' labels)."""
        if self._text is None:
            # lazy: torch and the sentence model; a prompt naming an instrument never gets here
            from backline.engines.accompany.text import TextEncoder, load_table

            table = WEIGHTS_DIR / "labels.safetensors"
            self._text = TextEncoder(load_table(table) if table.exists() else None)
        return self._text

    def full(self):
        """The GMSDI engine (score model, text encoder), built the first time a mode other than follow is asked for."""
        with self._full_lock:
            if self._full is None:
                from backline.engines.accompany import (
                    engine,  # lazy: torch and the score model, GMSDI modes only
                )

                self._full = engine.build(self.config, self.device, weights=self.weights)
            return self._full

    # --- protocol ---------------------------------------------------------------------------------------
    def training_meta(self) -> dict[str, Any]:
        """The score model's training record, from its JSON alone (nothing is loaded to describe the engine)."""
        if self.config != "shipped":
            return {}
        try:
            return read_weights_config(self.weights or WEIGHTS_DIR / "gmsdi", kind=KIND,
                                       format_version=FORMAT_VERSION).get("training", {})
        except BacklineError:
            return {}

    def describe(self) -> EngineDescription:
        training = self.training_meta()
        planner = "untrained (debug)" if self.config == "debug" else "weights/planner"
        weights = f"follow: comp planner {planner}; free: GMSDI score model ({self.config}); " + (
            f"{training.get('steps', '?')} steps on {training.get('data', '?')}" if training else "untrained")
        return replace(describe(self.config, self.device), weights=weights)

    def generate(self, request: GenerationRequest, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Follow mode here; the other modes through the GMSDI engine, once the controls are checked (a bad one is
        one line before anything loads)."""
        t_start = time.perf_counter()
        known = {c.name for c in CONTROLS}
        unknown = set(request.controls) - known
        if unknown:
            raise ConfigError(f"unknown control(s) {', '.join(sorted(unknown))} for {NAME}", fix=f"known: {', '.join(known)}")
        controls = {c.name: c.validate(request.controls.get(c.name, c.default)) for c in CONTROLS}
        if controls["mode"] != "follow":
            return self.full().generate(request, progress=progress, cancel=cancel)
        return self._generate_follow(request, controls, progress or (lambda f, m: None), cancel, t_start)

    # --- follow mode: listen → plan → voice → render ---------------------------------------------------------
    def planner(self):
        """The comping planner (shipped weights, loaded on first use; `debug` engines get an untrained one)."""
        return engine_planner(self, load_planner)

    def listen(self, request: GenerationRequest, controls: dict[str, Any], mix: Audio):
        """The shared listener (DAW > user chart > band MIDI > audio), as the bass engine calls it."""
        transport = request.timeline if controls["tempo_from"] == "timeline" else None
        return listen(mix, transport=transport, region_start=request.region_start, bpm=float(controls["bpm"]) or None,
                      meter=controls["meter"] or None, key=controls["key"] or None,
                      chords=controls["chords"] or None, band_midi=request.midi)

    def instruments(self, prompt: str) -> list[tuple[Any, float]]:
        """Prompt → [(instrument, match score)], one per comma-separated part, in the prompt's order."""
        # lazy: the follow path pulls mido (core.transcribe); the GPU lease's bench builds this engine on a machine
        # without MIDI tooling (packaging/gpu_lease.py LeaseImportGuard)
        from backline.engines.accompany.follow import instrument_for, split_prompt

        out = []
        for text in split_prompt(prompt):
            inst, score = instrument_for(text, _LazyText(self))
            if inst.name not in [i.name for i, _ in out]:
                out.append((inst, score))
        return out

    def _generate_follow(self, request: GenerationRequest, controls: dict[str, Any], progress, cancel,
                         t_start: float) -> GenerationResult:
        # lazy: the follow path pulls mido (core.transcribe); the GPU lease's bench builds this engine on a machine
        # without MIDI tooling (packaging/gpu_lease.py LeaseImportGuard)
        from backline.engines.accompany.follow import band_activity, plan_part, register_lanes, render_part
        from backline.engines.bass.follow import grid_from_listening
        from backline.engines.core.transcribe import notes_to_midi

        if request.variations < 1:
            raise ConfigError(f"variations={request.variations} must be >= 1")
        timings: dict[str, float] = {}
        insts = self.instruments(request.prompt or controls["prompt"])
        style = None if controls["style"] == "auto" else controls["style"]
        if style is not None:
            for inst, _ in insts:
                if style not in FAMILY_STYLES[inst.family]:
                    raise ConfigError(f"{inst.name} does not play {style!r}",
                                      fix=f"{inst.family} styles: {', '.join(FAMILY_STYLES[inst.family])} (or auto)")
        mix = self.check_mix(request.mix)
        warnings = self._band_warnings(request.midi, insts)
        seeds = [int(request.seed) + k for k in range(request.variations)]
        progress(0.05, "listening")
        t0 = time.perf_counter()
        lst = self.listen(request, controls, mix)
        kicks = lst.kicks if lst.kicks is not None else kick_onsets(mix)
        grid, origin, step_s = grid_from_listening(lst, kicks)
        band = band_activity(mix, origin, step_s, grid.steps, request.midi)
        band_lufs = loudness_lufs(mix)
        timings["listen_s"] = time.perf_counter() - t0
        check_cancel(cancel)
        sr = mix.sample_rate
        timeline = request.timeline if lst.sources.get("tempo") == "daw" else lst.timeline(sr)
        planner = self.planner()
        lanes = register_lanes([i for i, _ in insts])
        takes = []
        timings["plan_s"] = timings["render_s"] = 0.0
        for v, seed in enumerate(seeds):
            stems, midis, parts_report = {}, {}, {}
            for k, (inst, score) in enumerate(insts):
                check_cancel(cancel)
                progress(0.1 + 0.85 * (v * len(insts) + k) / (len(seeds) * len(insts)), f"playing the {inst.name}")
                t0 = time.perf_counter()
                part = plan_part(planner, lst, kicks, inst, style=style, complexity=controls["complexity"],
                                 intensity=controls["intensity"], register=controls["register"], mix=mix,
                                 band_midi=request.midi, seed=seed + 101 * k, lane=lanes.get(inst.name), band=band)
                timings["plan_s"] += time.perf_counter() - t0
                if not part.notes:
                    raise ConfigError("the planned part has no notes (no chord was heard to play along to)",
                                      fix="give the chords (--chords) or a longer mix")
                t0 = time.perf_counter()
                target = (band_lufs if band_lufs > -70 else -20.0) + inst.level_db + controls["level"]
                _dry, wet, level = render_part(part.notes, inst, mix.frames, sr, lst.bpm, numerator=lst.numerator,
                                               denominator=lst.denominator, target_lufs=target)
                timings["render_s"] += time.perf_counter() - t0
                name = inst.name.replace(" ", "_")
                stems[name] = wet
                midis[name] = notes_to_midi(part.notes, timeline, program=inst.program,
                                            offset_seconds=request.region_start / sr, name=f"Backline {inst.name}")
                parts_report[name] = {"instrument": inst.name, "family": inst.family, "gm_program": inst.program + 1,
                                      "prompt_match": round(score, 3), "style": part.style, "notes": len(part.notes),
                                      "register": list(part.register), "attributes": part.attributes,
                                      "level": level | {"vs_band_db": round(inst.level_db + controls["level"], 2)},
                                      "peak": round(wet.peak(), 4)}
            take = Take(seed=seed, stems=stems, midi=_merge_midi(midis), start_sample=request.region_start,
                        report={"mode": "follow", "parts": parts_report, "frames": mix.frames,
                                "notes": {n: p["notes"] for n, p in parts_report.items()}})
            take.attachments = {f"{n}.mid": _midi_bytes(m) for n, m in midis.items()} if len(midis) > 1 else {}
            takes.append(take)
        total_s = time.perf_counter() - t_start
        timings["total_s"] = total_s
        report = {
            "engine": NAME, "mode": "follow", "render": "soundfont", "config": self.config, "device": "cpu",
            "weights": self.describe().weights,
            "listening": lst.to_dict(), "warnings": warnings,
            "grid_origin_s": round(origin, 4),  # step 0 of the part's 16th grid: the listener's, as for the bass
            "instruments": [{"name": i.name, "family": i.family, "gm_program": i.program + 1,
                             "prompt_match": round(s, 3)} for i, s in insts],
            "settings": {k: controls[k] for k in ("style", "complexity", "intensity", "register", "level")}
            | {"variations": len(seeds)},
            "seeds": seeds,
            "region": {"start_sample": request.region_start, "frames": mix.frames, "sample_rate": sr,
                       "bpm": timeline.bpm, "meter": f"{timeline.numerator}/{timeline.denominator}",
                       "start_bar": round(timeline.samples_to_bar(request.region_start), 4)},
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "x_real_time": round(total_s / max(mix.seconds, 1e-9), 4),  # processing s ÷ audio s
        }
        progress(1.0, "done")
        return GenerationResult(takes, report)

    @staticmethod
    def _band_warnings(band_midi, insts) -> list[str]:
        """A prompt for a part the band's MIDI already plays (same GM family of programs) gets a warning."""
        if not band_midi:
            return []
        import pretty_midi

        try:
            pm = pretty_midi.PrettyMIDI(str(band_midi))
        except Exception:  # noqa: BLE001 - the listener reports an unreadable file in one line
            return []
        out = []
        for inst, _ in insts:
            same = [i for i in pm.instruments if not i.is_drum and i.notes and i.program // 8 == inst.program // 8]
            if same:
                name = pretty_midi.program_to_instrument_name(same[0].program)
                out.append(f"the band already plays a {inst.name} part ({name}, {len(same[0].notes)} notes); "
                           f"the new one may double it")
        return out

    def check_mix(self, mix: Audio | None) -> Audio:
        min_frames = spec.N_FFT * mix.sample_rate // spec.SAMPLE_RATE if mix is not None else 0
        return playable_mix(mix, min_frames=min_frames, need="this mode needs a mix to listen to",
                            short="too short to analyse")


def _midi_bytes(mid) -> bytes:
    return midi_bytes(mid)


def _merge_midi(midis: dict[str, Any]):
    """One type-1 MIDI file: the tempo track once, then one track per role on its own channel."""
    import mido

    first = next(iter(midis.values()))
    out = mido.MidiFile(type=1, ticks_per_beat=first.ticks_per_beat)
    out.tracks.append(first.tracks[0])
    for ch, (_role, mid) in enumerate(midis.items()):
        track = mido.MidiTrack()
        for msg in mid.tracks[1]:
            track.append(msg.copy(channel=ch if ch < 9 else ch + 1) if hasattr(msg, "channel") else msg)
        out.tracks.append(track)
    return out


def build(config: str = "shipped", device: str = "cpu", weights: Path | None = None) -> AccompanyFollowEngine:
    """The registry's `accompany`: follow mode without torch; `shipped` or `debug` as `engine.build` takes them."""
    if config not in ("shipped", "debug"):
        raise ConfigError(f"unknown accompany config {config!r}", fix="use shipped or debug")
    return AccompanyFollowEngine(config=config, device=device, weights=weights)
