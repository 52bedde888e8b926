"""The drum engine behind the Engine protocol: band MIDI (or audio) in → drum MIDI + WAV + JSON report out.

Timing contract: the output MIDI and WAV start at the first bar of the region (tick 0 / sample 0 = the
downbeat of that bar), carry the song's tempo map from that point and its meter, and `Take.start_sample`
says where that is on the DAW timeline. When the band MIDI has its own tempo (it came from the session), it
wins; the request's timeline supplies the sample rate, and the tempo and meter when the MIDI has none. The
WAV is exactly as long as the region (the engine contract: a clip that fits the selection); what still rings
at its end is faded out (`engines.render.render_take`: raised cosine), and every hit sounds on its note-on (the
kit's attack latency is measured and taken off). Its level sits at the corpus's drums-vs-band balance against
the request's mix when there is one (`engines.balance`, the `level` control), else as rendered.

Drum MIDI is on channel 10 (mido channel 9), notes a 32nd long, GM drum keys (representation.CLASS_PITCH).
Audio: the GM soundfonts' standard kit through backline.engines.core.render (fluidsynth), or a VST3 instrument
through pedalboard (`vst3` control). Linux has no VST3 instruments installed here; the path exists for
users who have one, and a plugin that is not an instrument is refused with a message.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mido
import numpy as np
import torch

from backline.engines.core.audio import Audio
from backline.engines.core.balance import balance_take
from backline.engines.core.errors import (
    AudioFileError,
    ConfigError,
    MissingDependencyError,
    TimelineError,
    WeightsError,
)
from backline.engines.core.presets import find_preset
from backline.engines.core.presets import list_presets as shared_list
from backline.engines.core.protocol import (
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    Take,
    check_cancel,
)
from backline.engines.core.render import fit_to_region, render_take
from backline.engines.core.timeline import TempoMap, Timeline, parse_bar_range
from backline.engines.core.transcribe import events_to_track
from backline.engines.core.weights import load_weights
from backline.engines.drums import novelty as nov
from backline.engines.drums.description import CONTROLS, SOUNDFONTS, describe  # noqa: F401 - re-exported
from backline.engines.drums.feel import (
    CONTROL_NAMES,
    Feel,
    apply_dynamics,
    apply_pattern,
    fill_threshold,
    timing_offsets,
)
from backline.engines.drums.inputs import (
    BandInput,
    grid_from_audio,
    parse_role_overrides,
    read_drum_midi,
    read_midi_files,
)
from backline.engines.drums.models import CONFIGS, build_model
from backline.engines.drums.pipeline import DrumPipeline, PipelineConfig
from backline.engines.drums.representation import (
    CLASS_PITCH,
    DRUM_CLASSES,
    SNARE,
    STEPS_PER_QUARTER,
    check_bar_list,
)
from backline.engines.drums.velocity import assign_velocities

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_NAMES = ("seq2seq", "locator", "infiller", "vae")
FORMAT_VERSION = 1
#: Longest drum audio rendered in one go (20 min of stereo float32 at 48 kHz ≈ 0.5 GB in memory).
MAX_RENDER_SECONDS = 20 * 60
SIDE_STICK_KEY = 37  # GM side stick: how a cross-stick is written
NOTE_QUARTERS = 0.125  # drum notes are a 32nd long; GM kits ignore note-off for most drums anyway


@dataclass
class LoadedModels:
    pipeline: DrumPipeline
    summary: str


def load_models(config: str = "shipped", device: str = "cpu", weights_dir: str | Path | None = None) -> LoadedModels:
    """Shipped: the trained weights (safetensors + JSON config, checked). Debug: tiny random-init models."""
    if config == "debug":
        torch.manual_seed(0)
        models = {name: build_model(name, CONFIGS["debug"][name]) for name in MODEL_NAMES}
        return LoadedModels(DrumPipeline(*(models[n] for n in MODEL_NAMES), PipelineConfig(0.5), device),
                            "debug (random init)")
    if config != "shipped":
        raise ConfigError(f"unknown drum engine config {config!r}", fix="use 'shipped' or 'debug'")
    folder = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    models = {}
    for name in MODEL_NAMES:
        models[name], _ = load_weights(folder / name, kind=f"drums-{name}", format_version=FORMAT_VERSION,
                                       build=lambda cfg, n=name: build_model(n, cfg), map_location="cpu")
    meta_path = folder / "pipeline.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"cannot be read ({err})", path=meta_path, fix="retrain with backline train drums --export") from err
    cfg = PipelineConfig(float(meta["locator_threshold"]), float(meta.get("novelty_threshold", nov.DEFAULT_THRESHOLD)))
    summary = (f"{'shipped' if folder == WEIGHTS_DIR else folder.name} weights, trained on "
               f"{meta.get('training', {}).get('songs', '?')} songs")
    return LoadedModels(DrumPipeline(*(models[n] for n in MODEL_NAMES), cfg, device), summary)


def build(config: str = "shipped", device: str = "cpu") -> DrumEngine:
    return DrumEngine(load_models(config, device), device)


def list_presets() -> list[str]:
    return shared_list("drums")


def preset_controls(name: str | None) -> dict[str, Any]:
    """The [controls] of a drum style preset (presets/drums/NAME.toml, read by the shared, path-safe preset
    reader), {} for none."""
    if not name:
        return {}
    return dict(find_preset("drums", name).controls)


def parse_bar_list(text: str) -> list[int]:
    """'8,16, 24' → [8, 16, 24]; ranges allowed ('8,15-16')."""
    out: list[int] = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        first, last = parse_bar_range(part)
        out.extend(range(first, last + 1))
    return out


# --- output writers --------------------------------------------------------------------------------------

def region_timeline(timeline: Timeline, start_quarter: float) -> Timeline:
    """The timeline seen from `start_quarter` (tempo map shifted so that quarter 0 is the region start)."""
    points = [(0.0, timeline.tempo.bpm_at_quarter(start_quarter))]
    points += [(q - start_quarter, bpm) for q, bpm in timeline.tempo.points if q > start_quarter]
    return Timeline(timeline.sample_rate, TempoMap(tuple(points)), timeline.numerator, timeline.denominator,
                    timeline.ppq)


def drum_midi(drums: np.ndarray, velocities: np.ndarray, timeline: Timeline,
              offsets: np.ndarray | None = None, pitches: np.ndarray | None = None) -> mido.MidiFile:
    """Grid `[steps, 9]` (step 0 = tick 0) → type-1 MIDI: tempo/meter track + a channel-10 drum track.
    `offsets` [steps, 9] moves single onsets off the grid by whole ticks (humanise); `pitches` [steps, 9] (0 =
    the class's key) plays single onsets on another key of their class (a cross-stick for the snare)."""
    ppq = timeline.ppq
    events: list[tuple[int, mido.Message | mido.MetaMessage]] = [
        (0, mido.MetaMessage("time_signature", numerator=timeline.numerator, denominator=timeline.denominator))]
    for q, bpm in timeline.tempo.points:
        events.append((int(round(q * ppq)), mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
    # notes: (tick, off-before-on rank, pitch, velocity) sorted once, each message built once with its delta
    # (building and then re-timing 2,000 mido messages cost ~0.2 s for 64 bars)
    length = int(round(NOTE_QUARTERS * ppq))
    steps, classes = np.nonzero(drums)
    ticks = np.round(steps * ppq / STEPS_PER_QUARTER).astype(int)
    if offsets is not None:
        ticks = np.maximum(ticks + offsets[steps, classes], 0)
    keys = [int(pitches[s, c]) if pitches is not None and pitches[s, c] else CLASS_PITCH[c] for s, c in zip(steps, classes)]
    raw = [(int(t), 1, k, int(max(1, velocities[s, c]))) for t, k, s, c in zip(ticks, keys, steps, classes)]
    raw += [(t + length, 0, p, 0) for t, _, p, _ in raw]
    raw.sort()
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Backline drums", time=0)])
    now = 0
    for tick, is_on, pitch, vel in raw:
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, channel=9, note=pitch, velocity=vel, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    mid.tracks.append(events_to_track(events, name="tempo"))
    mid.tracks.append(track)
    return mid


def render_vst3(plugin_path: str | Path, mid: mido.MidiFile, seconds: float, sample_rate: int) -> Audio:
    """Render MIDI through a VST3 instrument with pedalboard (messages timed in seconds)."""
    import pedalboard

    path = Path(plugin_path)
    if not path.exists():
        raise AudioFileError("VST3 plugin not found", path=path,
                             fix="give the path of a .vst3 instrument (none ship with Linux here; use the soundfont kit)")
    try:
        plugin = pedalboard.load_plugin(str(path))
    except (ImportError, RuntimeError, ValueError) as err:
        raise MissingDependencyError(f"cannot load it as a plugin ({err})", path=path,
                                     fix="check that it is a VST3 built for this system") from err
    if not getattr(plugin, "is_instrument", False):
        raise ConfigError("this plugin is an effect, not an instrument", path=path,
                          fix="choose a VST3 drum instrument, or render with a soundfont")
    messages, now = [], 0.0
    for msg in mid:
        now += msg.time
        if not msg.is_meta:
            messages.append(msg.copy(time=now))
    out = plugin(messages, duration=seconds, sample_rate=sample_rate, num_channels=2)
    return Audio(np.asarray(out, np.float32), sample_rate)


# --- the engine -------------------------------------------------------------------------------------------

class DrumEngine:
    name = "drums"

    def __init__(self, models: LoadedModels, device: str = "cpu") -> None:
        self.models = models
        self.pipeline = models.pipeline
        self.device = device

    def describe(self) -> EngineDescription:
        return replace(describe(device=self.device), weights=self.models.summary)

    # input ------------------------------------------------------------------------------------------------
    def read_input(self, request: GenerationRequest, controls: dict[str, Any]) -> BandInput:
        overrides = parse_role_overrides([s for s in controls["roles"].split(",") if s.strip()])
        if request.midi is not None:
            band = read_midi_files([request.midi], role_overrides=overrides,
                                   sample_rate=request.timeline.sample_rate)
            if not _has_tempo(request.midi):  # a MIDI file without tempo: the DAW's timeline decides
                band.timeline = Timeline(request.timeline.sample_rate, request.timeline.tempo,
                                         band.timeline.numerator, band.timeline.denominator)
            # the MIDI's bar 1 is the capture's (a loaded recording's first bar line heard: `Timeline.origin`)
            band.timeline = replace(band.timeline, origin=request.timeline.origin)
            return band
        if request.mix is not None:
            band = grid_from_audio(request.mix, request.timeline, start=request.region_start)
            start_bar = request.timeline.samples_to_bar(request.region_start)
            if abs(start_bar - round(start_bar)) > 1e-3:
                raise TimelineError(f"the audio starts inside bar {int(start_bar)}",
                                    fix="capture from a bar line so the drums can be bar-aligned")
            band.grid.first_bar = int(round(start_bar))
            return band
        raise ConfigError("no input: the drum engine needs the band's MIDI or audio",
                          fix="pass --midi BAND.mid (or --audio MIX.wav)")

    def region(self, band: BandInput, request: GenerationRequest, text: str) -> tuple[int, int]:
        """0-based grid bars (first, last) of the region, or a TimelineError naming the song's bars."""
        grid = band.grid
        song_first, song_last = grid.first_bar, grid.first_bar + grid.n_bars - 1
        if text.strip():
            first, last = parse_bar_range(text)
        elif request.region_stop is not None and (request.mix is None or request.midi is not None):
            # the DAW's selection over band MIDI that starts at the session's bar 1 (the host's case)
            tl = band.timeline
            first = int(np.floor(tl.samples_to_bar(request.region_start) + 1e-6))
            last = int(np.ceil(tl.samples_to_bar(request.region_stop) - 1e-6)) - 1
        else:
            first, last = song_first, song_last
        if first < song_first or last > song_last:
            raise TimelineError(f"bars {first}-{last} are outside the song", fix=f"it has bars {song_first}-{song_last}")
        return first - grid.first_bar, last - grid.first_bar

    # generate ---------------------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, *, progress, cancel: threading.Event) -> GenerationResult:
        progress = progress or (lambda f, m: None)
        controls = self.describe().validate(preset_controls(request.preset) | dict(request.controls))
        mode = controls["mode"]
        feel = Feel.from_controls(controls)
        threshold = fill_threshold(feel.fill_amount, self.pipeline.config.locator_threshold)
        t_start = time.perf_counter()
        progress(0.0, "reading the band")
        band = self.read_input(request, controls)
        grid = band.grid
        first, last = self.region(band, request, controls["bars"])
        if controls["render"]:  # refuse before any work, not after the models ran (and in the user's words)
            tl = band.timeline
            q0 = (grid.first_bar - 1 + first) * tl.quarters_per_bar
            seconds = tl.tempo.seconds(q0 + (last - first + 1) * tl.quarters_per_bar) - tl.tempo.seconds(q0)
            if seconds > MAX_RENDER_SECONDS:
                raise ConfigError(f"bars {first + grid.first_bar}-{last + grid.first_bar} last "
                                  f"{int(seconds // 60)}:{int(seconds % 60):02d}; drum audio is rendered for at most "
                                  f"{MAX_RENDER_SECONDS // 60:.0f} minutes at a time",
                                  fix="pick a region with --bars, or add --no-render for the MIDI alone")
        user_drums = user_vel = None
        if controls["drums_midi"]:
            user_drums, user_vel = read_drum_midi(controls["drums_midi"], grid.numerator, grid.denominator, grid.n_bars)
        elif mode != "full" and grid.drums is not None and grid.drums.any():
            user_drums, user_vel = grid.drums, grid.drum_vel
        if mode != "full" and user_drums is None:
            raise ConfigError(f"mode '{mode}' works on your drum part, and none was given",
                              fix="pass --drums MYDRUMS.mid (or include a drum track in the band MIDI)")
        fill_bars = None
        if controls["fill_bars"].strip():
            fill_bars = check_bar_list(parse_bar_list(controls["fill_bars"]), grid)
            outside = [b + grid.first_bar for b in fill_bars if not first <= b <= last]
            if outside:
                raise ConfigError(f"fill bar(s) {', '.join(map(str, outside))} are outside the region "
                                  f"{first + grid.first_bar}-{last + grid.first_bar}", fix="choose bars inside the region")
        if not grid.has_ma():
            if mode == "full" or mode == "regenerate" or (controls["fills"] and fill_bars is None):
                raise ConfigError("the input holds only drums: the drum engine plays along to the band "
                                  "(piano, guitar, bass, strings)",
                                  fix="add the band's tracks, or use --mode fills with --fill-bars")
        check_cancel(cancel)
        takes = []
        n_takes = max(1, int(request.variations))
        for i in range(n_takes):
            seed = int(request.seed) + i
            t0 = time.perf_counter()
            result = self.pipeline.generate(
                grid, mode=mode, bars=(first, last), fill_bars=fill_bars,
                fills=controls["fills"] and (threshold is not None or fill_bars is not None), locator_threshold=threshold,
                user_drums=user_drums, seed=seed, variation=controls["variation"], sample=controls["sample"],
                progress=lambda f, m, i=i: progress((i + 0.8 * f) / n_takes, m), cancel=cancel)
            gen_seconds = time.perf_counter() - t0
            check_cancel(cancel)
            take = self._make_take(request, controls, band, result, user_drums, user_vel, (first, last), seed, feel,
                                   gen_seconds, progress=lambda f, m, i=i: progress((i + 0.8 + 0.2 * f) / n_takes, m),
                                   cancel=cancel)
            takes.append(take)
        report = {"engine": "drums", "mode": mode, "takes": len(takes), "seconds": round(time.perf_counter() - t_start, 3),
                  "tracks": [vars(t) for t in band.tracks], "weights": self.models.summary}
        progress(1.0, "done")
        return GenerationResult(takes, report)

    def _make_take(self, request, controls, band: BandInput, result, user_drums, user_vel, region, seed, feel: Feel,
                   gen_seconds, *, progress, cancel) -> Take:
        """The take in memory (MIDI object, rendered Audio, report); engines.takes writes it."""
        grid, tl = band.grid, band.timeline
        first, last = region
        spb = grid.steps_per_bar
        lo, hi = first * spb, (last + 1) * spb
        rng = np.random.default_rng([seed, 7])  # the feel's own stream: the models' draws stay as they were
        feel = Feel(**{k: getattr(feel, k) for k in CONTROL_NAMES})  # a fresh one per take: its notes are the take's
        result.drums = apply_pattern(result.drums, feel, numerator=grid.numerator, denominator=grid.denominator,
                                     steps_per_bar=spb, bars=[b for b in result.generated_bars if first <= b <= last],
                                     fill_bars=result.fill_bars, rng=rng)
        keep = None
        if user_drums is not None and user_vel is not None:
            keep = np.where(result.drums == user_drums, user_vel, 0)
            for b in result.generated_bars:  # re-generated bars get the rule's velocities
                keep[b * spb:(b + 1) * spb] = 0
        vel = assign_velocities(result.drums, grid.numerator, grid.denominator, spb, result.fill_bars, seed=seed,
                                keep=keep)
        generated = np.zeros(len(result.drums), bool)  # the feel's dynamics and timing touch only these steps
        for b in result.generated_bars:
            generated[b * spb:(b + 1) * spb] = True
        vel = apply_dynamics(vel, feel, rng, generated)
        drums, vel = result.drums[lo:hi], vel[lo:hi]
        start_q = (grid.first_bar - 1 + first) * tl.quarters_per_bar
        rtl = region_timeline(tl, start_q)
        step_q = np.arange(len(drums)) / STEPS_PER_QUARTER
        seconds_per_step = np.array([60.0 / rtl.tempo.bpm_at_quarter(q) for q in step_q]) / STEPS_PER_QUARTER
        offsets = timing_offsets(drums, feel, seconds_per_step, rtl.ppq / STEPS_PER_QUARTER, rng)
        offsets[~generated[lo:hi]] = 0
        pitches = np.zeros(drums.shape, np.int16)
        for b in feel.side_stick_bars:
            if first <= b <= last:
                pitches[(b - first) * spb:(b - first + 1) * spb, SNARE] = SIDE_STICK_KEY
        mid = drum_midi(drums, vel, rtl, offsets, pitches)
        stems: dict[str, Audio] = {}
        render_info = None
        if controls["render"]:
            check_cancel(cancel)
            progress(0.3, "rendering audio")
            frames = rtl.quarters_to_samples((last - first + 1) * tl.quarters_per_bar)
            if controls["vst3"]:
                audio = render_vst3(controls["vst3"], mid, frames / tl.sample_rate + 4.0, tl.sample_rate)
                audio, tail = fit_to_region(audio, frames)  # its release faded at the region's end, not cut
                render_info = {"vst3": controls["vst3"]} | tail
            else:
                with tempfile.TemporaryDirectory(prefix="backline-drums-") as tmp:
                    tmp_mid = Path(tmp) / "drums.mid"
                    mid.save(tmp_mid)
                    # on time (the kit's attack latency measured and taken off) and faded, not cut, at the end
                    audio, timing = render_take(tmp_mid, controls["soundfont"], frames=frames,
                                                sample_rate=tl.sample_rate, drums=True)
                render_info = {"soundfont": controls["soundfont"]} | timing
            band = None
            if request.mix is not None:  # the band it plays with, over the take's own span
                offset = tl.quarters_to_samples(start_q) - request.region_start
                band = request.mix.slice(offset, offset + frames) if request.mix.sample_rate == tl.sample_rate \
                    else None
            audio, render_info["balance"] = balance_take(audio, band, "drums", float(controls["level"]))
            stems["drums"] = audio
        curve = nov.novelty(result.drums, spb)
        bar_no = lambda b: int(b + grid.first_bar)  # noqa: E731
        report = {
            "mode": controls["mode"], "seed": seed, "bars": [bar_no(first), bar_no(last)],
            "meter": [tl.numerator, tl.denominator], "tempo_map": [list(p) for p in rtl.tempo.points],
            "start_sample": tl.quarters_to_samples(start_q), "sample_rate": tl.sample_rate,
            "fill_bars": [bar_no(b) for b in result.fill_bars],
            "fill_probability": {str(bar_no(b)): round(float(result.fill_probability[b]), 3)
                                 for b in range(first, last + 1) if np.isfinite(result.fill_probability[b])},
            "novelty": {str(bar_no(b)): round(float(curve[b]), 3) for b in range(first, last + 1)},
            "generated_bars": [bar_no(b) for b in result.generated_bars],
            "regrooved_bars": [bar_no(b) for b in result.regrooved_bars],
            "notes": int(drums.sum()), "notes_per_class": {c: int(drums[:, i].sum()) for i, c in enumerate(DRUM_CLASSES)},
            "generation_seconds": round(gen_seconds, 4), "render": render_info,
            "feel": {k: getattr(feel, k) for k in CONTROL_NAMES}, "feel_notes": feel.notes,
            "controls": controls,
        }
        return Take(seed=seed, stems=stems, midi=mid, start_sample=report["start_sample"], report=report)


def _has_tempo(path: str | Path) -> bool:
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except Exception:  # noqa: BLE001 - read_midi_files has already reported unreadable files
        return True
    return any(msg.type == "set_tempo" for track in mid.tracks for msg in track)
