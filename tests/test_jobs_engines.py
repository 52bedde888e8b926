"""Test-only engines for the job worker and host tests, implementing the Engine protocol for real.

- `sine`: returns a stem (a sine per beat, pitch from the seed) exactly as long as the region, plus MIDI with
  one note per beat (in memory, like every engine: `engines.takes.write_takes` writes them). `step_seconds` paces it so cancel can be tested deterministically.
- `crash`: reports some progress, then kills its own process with `os._exit` (what a segfaulting model does).
- `broken`: raises a plain exception (an engine bug) inside generate.

They are registered into `ENGINE_REGISTRY` by `register()`; the job worker copies the host's registry, so the
spawned worker process finds them too (tests/ is on the path it inherits).
"""

from __future__ import annotations

import os
import threading
import time

import mido
import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.protocol import (
    Control,
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    Take,
    check_cancel,
)
from backline.engines.core.timeline import Timeline
from backline.engines.registry import ENGINE_REGISTRY


class SineEngine:
    name = "sine"

    def __init__(self, config: str = "debug", device: str = "cpu") -> None:
        self.config, self.device = config, device

    def describe(self) -> EngineDescription:
        return EngineDescription(
            name=self.name, title="Sine", device=self.device, weights="no weights (test engine)",
            controls=(
                Control("steps", "int", 8, "Steps", 1, 200, 1),
                Control("step_seconds", "float", 0.0, "Step time", 0.0, 5.0, 0.01),
                Control("octave", "choice", "low", "Octave", choices=("low", "high")),
                Control("legato", "bool", False, "Legato"),
                Control("report_fit", "bool", True, "Report a fit", help="off: let the worker score the fit"),
                Control("parts", "int", 1, "Parts", 1, 3, help="stems per take (an octave-up copy each)"),
                Control("reference", "audio", "", "Style reference"),
                Control("seed", "int", 0, "Seed", 0, 2**31 - 1),
            ))

    def generate(self, request: GenerationRequest, *, progress, cancel: threading.Event) -> GenerationResult:
        controls = self.describe().validate(request.controls)
        tl: Timeline = request.timeline
        start, stop = request.region_start, request.region_stop
        takes = []
        for v in range(request.variations):
            seed = request.seed + v
            for i in range(controls["steps"]):
                check_cancel(cancel)
                time.sleep(controls["step_seconds"])
                progress((i + 1) / controls["steps"] * (v + 1) / request.variations, f"step {i + 1}")
            check_cancel(cancel)
            base = 33 + seed % 12 + (12 if controls["octave"] == "high" else 0)
            frames = stop - start
            t = np.arange(frames) / tl.sample_rate
            beat = tl.quarters_to_samples(tl.samples_to_quarters(start) + 1) - start
            pitch = base + (np.arange(frames) // max(beat, 1)) % 3 * 7
            wave = 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t)
            stems = {}
            for part in range(controls["parts"]):
                octave = np.sin(2 * np.pi * 440 * 2 ** ((pitch + 12 * part - 69) / 12) * t) * 0.3 if part else wave
                name = "sine" if part == 0 else f"octave{part}"
                stems[name] = Audio(octave.astype(np.float32)[None], tl.sample_rate)
            mid = mido.MidiFile(ticks_per_beat=480)
            track = mido.MidiTrack()
            mid.tracks.append(track)
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tl.bpm)))
            for b in range(max(1, int(frames / max(beat, 1)))):
                note = int(base + b % 3 * 7)
                track.append(mido.Message("note_on", note=note, velocity=90, time=0))
                track.append(mido.Message("note_off", note=note, velocity=0, time=480))
            report = {"fit": 0.5 + (seed % 10) / 20} if controls["report_fit"] else {}
            takes.append(Take(seed=seed, stems=stems, midi=mid, start_sample=start, report=report))
        return GenerationResult(takes, {"engine": self.name})


class CrashEngine(SineEngine):
    name = "crash"

    def describe(self) -> EngineDescription:
        return EngineDescription(name=self.name, title="Crash", device=self.device, controls=(
            Control("steps", "int", 4, "Steps", 1, 10),))

    def generate(self, request, *, progress, cancel):
        progress(0.25, "about to crash")
        time.sleep(0.3)  # let the progress message leave the process
        os._exit(3)


class BrokenEngine(SineEngine):
    name = "broken"

    def describe(self) -> EngineDescription:
        return EngineDescription(name=self.name, title="Broken", device=self.device, controls=())

    def generate(self, request, *, progress, cancel):
        raise ZeroDivisionError("division by zero in the test engine")


def build_sine(config: str = "debug", device: str = "cpu") -> SineEngine:
    return SineEngine(config, device)


def build_crash(config: str = "debug", device: str = "cpu") -> CrashEngine:
    return CrashEngine(config, device)


def build_broken(config: str = "debug", device: str = "cpu") -> BrokenEngine:
    return BrokenEngine(config, device)


TEST_ENGINES = {"sine": f"{__name__}:build_sine", "crash": f"{__name__}:build_crash",
                "broken": f"{__name__}:build_broken"}


def register() -> None:
    ENGINE_REGISTRY.update(TEST_ENGINES)


def unregister() -> None:
    for name in TEST_ENGINES:
        ENGINE_REGISTRY.pop(name, None)


def test_sine_engine_writes_region_aligned_stem_and_midi(tmp_path):
    """The test engine itself behaves like an engine: outputs exactly cover the region, MIDI has notes."""
    from backline.engines.core.audio import read_audio
    from backline.engines.core.takes import write_takes

    tl = Timeline.constant(120.0, 8000)
    start, stop = tl.bar_range_to_samples(3, 4)
    request = GenerationRequest(engine="sine", out_dir=tmp_path, timeline=tl, region_start=start, region_stop=stop,
                                seed=7, variations=2, controls={"steps": 2})
    seen = []
    result = SineEngine().generate(request, progress=lambda f, m: seen.append(f), cancel=threading.Event())
    assert not any(tmp_path.iterdir())  # generate() is pure
    result = write_takes(result, tmp_path)
    assert [t.seed for t in result.takes] == [7, 8]
    audio = read_audio(result.takes[0].stems["sine"])
    assert audio.frames == stop - start and audio.peak() > 0.2
    assert result.takes[0].start_sample == start
    assert len(mido.MidiFile(result.takes[0].midi).tracks[0]) > 4
    assert seen[-1] == 1.0
