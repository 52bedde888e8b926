"""The `separate` engine: a mix in, the prompted parts out (`separate_{role}_seed{N}.wav`), each with its measured
presence and, on request, its MIDI at the song's heard tempo.

What runs (chosen by measurement, weights/TRAINING.md): the predictive mask network of model.py — one forward
pass gives a softmax mask per role (bass, drums, other) over the mixture's magnitude STFT; the stem is the mask
applied to the mixture's own STFT (mixture phase) in every channel at the mix's own rate. On held-out songs it
separates the bass at +8.4 dB SI-SDRi (+6.2 and +5.4 on two fresh sets of six songs; demo +7.4) where paper
003's GMSDI extractor (engines/accompany, a score model painting magnitudes, 32 sampler steps) reached +0.5 (demo
+0.7) and a 150 Hz low-pass +2.5 (demo +0.6), in one pass instead of 32, at 1/20 of HTDemucs's CPU time for all
its outputs; the mask-parametrised diffusion refinement was not trained (see TRAINING.md). A Wiener / EM
post-filter of the masks (`Separator(wiener=N)`) is there but off: it measured worse (TRAINING.md, session 4).

Roles: `bass`, `drums`, `other` (everything else: piano, guitar, strings, voice, ...; "piano", "keys",
"guitar", ... are read as `other` and the report says so), and `no-bass` / `no-drums` (the band without that part:
1 − its mask, what a musician plays along to).

Any length, bounded memory: the mix is processed in 30 s windows with 2 s cross-fades (`engines.windows`); the
peak is estimated before any work (`estimate_memory_bytes`) and a mix that would pass the limit
(BACKLINE_MEMORY_GB, default 2) is refused with the length that fits. Mixes above 48 kHz are resampled to 48 kHz
for the work and the stems back to the mix's rate.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backline.engines.core.audio import RESAMPLE_CHUNK, Audio, resample
from backline.engines.core.errors import ConfigError, DeviceError
from backline.engines.core.frontend import istft, stft
from backline.engines.core.protocol import (
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    Take,
    check_cancel,
    memory_limit_bytes,
)
from backline.engines.core.timeline import Timeline
from backline.engines.core.weights import load_weights
from backline.engines.core.wiener import wiener
from backline.engines.core.windows import overlap_add
from backline.engines.listen import kick_onsets, listen
from backline.engines.separate.description import CONTROLS, describe  # noqa: F401 - CONTROLS re-exported
from backline.engines.separate.model import (
    BINS,
    DEFAULT_CONFIG,
    HOP,
    KIND,
    N_FFT,
    ROLES,
    SAMPLE_RATE,
    MaskNet,
    magnitude,
)
from backline.engines.separate.model import build as build_model

WEIGHTS = Path(__file__).with_name("weights") / "separate"
#: Labels a musician may type → (network role, inverted?). The band without a part is 1 − that part's mask.
ROLE_WORDS: dict[str, tuple[str, bool]] = {
    "bass": ("bass", False), "drums": ("drums", False), "drum": ("drums", False), "other": ("other", False),
    "piano": ("other", False), "keys": ("other", False), "guitar": ("other", False), "strings": ("other", False),
    "lead": ("other", False), "vocals": ("other", False), "accompaniment": ("other", False),
    "no-bass": ("bass", True), "no-drums": ("drums", True),
}
#: Work rate ceiling: above it the mix is resampled down for the work and the stems back up.
MAX_WORK_RATE = 48000
WINDOW_SECONDS, HOP_SECONDS = 30.0, 28.0
#: A part whose separated energy is below this share of the mix's is reported as not there (measured: the
#: mask's leakage on mixes without that part stays under 1 %, see TRAINING.md).
PRESENT_SHARE = 0.02
#: Drums also play when they hold this share of the mix's energy above `TOP_HZ` (`plays`). Measured with the
#: shipped weights (`benchmarks/separate_presence.py`; separate/weights/TRAINING.md, "Drums that play quietly"):
#: the 16 held-out renders with drums 16-90 % (energy 15-49 %), the same songs without drums 0.0-0.4 %; real
#: recordings: filosax01's jazz kit 77-94 % (energy 0.5-0.8 %, under `PRESENT_SHARE`), Falla's voice and piano
#: 9.1 %, a Greek folk song 19.8 %, a ballroom waltz 5.8 %.
DRUMS_TOP_SHARE = 0.4
TOP_HZ = 4000.0
TOP_FRAME, TOP_FRAMES = 8192, 120
SILENT_PEAK = 10 ** (-80 / 20)
#: Peak RSS ≈ BASE + bytes held per second of mix (see `estimate_memory_bytes`); BASE is Python, torch, the model
#: and one window's work: 0.77 GB measured with /usr/bin/time on a 10 s mix.
MEMORY_BASE_BYTES = 0.8e9
#: EM iterations of the Wiener post-filter on the masks (engines.core.wiener); chosen on held-out songs,
#: weights/TRAINING.md.
WIENER_ITERATIONS = 0

def parse_roles(text: str) -> list[str]:
    """'bass, drums' → ['bass', 'drums']; an unknown label is one ConfigError naming the known ones."""
    labels = [w.strip().lower().replace(" ", "-") for w in (text or "").split(",") if w.strip()]
    if not labels:
        labels = ["bass"]
    bad = [w for w in labels if w not in ROLE_WORDS]
    if bad:
        raise ConfigError(f"cannot separate {', '.join(repr(b) for b in bad)}",
                          fix=f"known parts: {', '.join(ROLE_WORDS)}")
    return list(dict.fromkeys(labels))


def estimate_memory_bytes(seconds: float, sample_rate: int, channels: int, parts: int) -> float:
    """Peak RSS for separating `parts` parts of a mix, per channel-second in float32: the input and ~1.5 copies
    of it in transit (reading, the writer's interleaving), each part's stem, and with a mix above 48 kHz the
    work-rate copies. Fitted at or above `/usr/bin/time` on `backline separate --prompt bass` (1 thread, 44.1 kHz
    stereo): 0:10 → 0.77 GB, 3:00 → 0.93 GB, 15:00 → 1.88 GB; 0:21 of 192 kHz 8-channel → 1.56 GB."""
    work = min(sample_rate, MAX_WORK_RATE)
    per_channel_second = 4.0 * (2.5 * sample_rate + parts * work + (work + parts * sample_rate if sample_rate > work else 0))
    resampler = 34.0 * channels * RESAMPLE_CHUNK if sample_rate > work else 0.0  # torchaudio's working set per chunk
    return MEMORY_BASE_BYTES + seconds * channels * per_channel_second + resampler


def check_memory(seconds: float, sample_rate: int, channels: int, parts: int) -> float:
    need, limit = estimate_memory_bytes(seconds, sample_rate, channels, parts), memory_limit_bytes()
    if need > limit:
        per = (estimate_memory_bytes(60, sample_rate, channels, parts) - MEMORY_BASE_BYTES) / 60
        fits = max(0.0, (limit - MEMORY_BASE_BYTES) / per)
        raise DeviceError(f"separating {parts} part(s) of this {_clock(seconds)} {channels}-channel "
                          f"{sample_rate} Hz mix needs about {need / 1e9:.1f} GB of memory, over the "
                          f"{limit / 1e9:.1f} GB limit",
                          fix=f"separate up to {_clock(fits)} at a time (--bars), fewer parts, or allow more "
                              f"with BACKLINE_MEMORY_GB={math.ceil(need / 1e9)}")
    return need


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def load_model(path: str | Path = WEIGHTS) -> torch.nn.Module:
    """The mask network from fp16 safetensors + JSON (computed in float32)."""
    model, _ = load_weights(path, kind=KIND, build=build_model, reference=DEFAULT_CONFIG | {"dtype": "float16"})
    return model.float().eval()


def _native_grid(rate: int) -> tuple[int, int]:
    """(n_fft, hop) at `rate` with the model's bin width and frame period (exact at 22.05/44.1/88.2 kHz)."""
    n_fft = 2 * max(8, round(N_FFT * rate / SAMPLE_RATE / 2))
    return n_fft, max(1, round(HOP * rate / SAMPLE_RATE))


def resize_masks(masks: torch.Tensor, rate: int, n_fft: int, frames: int) -> torch.Tensor:
    """Model-grid masks [K, BINS, T] → the native STFT grid [K, n_fft/2+1, frames]: linear in time and in
    frequency (Hz), the top model bin held above 11.025 kHz."""
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float32) * rate / n_fft
    idx = (freqs / (SAMPLE_RATE / N_FFT)).clamp(max=BINS - 1)
    lo = idx.floor().long()
    hi = (lo + 1).clamp(max=BINS - 1)
    w = (idx - lo)[None, :, None]
    m = masks[:, lo] * (1 - w) + masks[:, hi] * w
    if m.shape[-1] != frames:
        m = torch.nn.functional.interpolate(m, size=frames, mode="linear", align_corners=True)
    return m


class Separator:
    """The mask network and everything around it that the engine and `extract` share.

    `wiener`: EM iterations of the multichannel Wiener post-filter (`engines.core.wiener`) applied to the
    network's masks on the mix's own STFT (0 = the masks as they are); `spatial`: a stereo mix filtered as a
    pair (its sources' places in the stereo image modelled) rather than channel by channel; `exponent`: 2 the
    classic power estimate, 1 the network's ratios kept and only the stereo image added."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", wiener: int | None = None,
                 spatial: bool = True, exponent: float = 2.0) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.wiener = WIENER_ITERATIONS if wiener is None else int(wiener)
        self.spatial, self.exponent = spatial, exponent

    @torch.inference_mode()
    def masks(self, mono22: np.ndarray) -> torch.Tensor:
        """Mono 22.05 kHz window → masks [len(ROLES), BINS, frames] (softmax over the roles)."""
        wave = torch.from_numpy(np.ascontiguousarray(mono22, dtype=np.float32)).to(self.device)[None]
        return self.model(magnitude(wave), self.model.low_band(wave))[0].float().cpu()

    @torch.inference_mode()
    def window(self, x: np.ndarray, rate: int, parts: list[tuple[str, bool]]) -> np.ndarray:
        """One window [C, n] at `rate` → stems [len(parts), C, n]: each part's mask on each channel's STFT."""
        n = x.shape[-1]
        mono = resample(x.mean(axis=0), rate, SAMPLE_RATE)
        masks = self.masks(mono)
        n_fft, hop = _native_grid(rate)
        out = np.empty((len(parts), x.shape[0], n), np.float32)
        if self.wiener <= 0:
            picked = torch.stack([1 - masks[ROLES.index(r)] if inv else masks[ROLES.index(r)] for r, inv in parts])
            for c in range(x.shape[0]):
                spec = stft(torch.from_numpy(np.ascontiguousarray(x[c])), n_fft, hop)
                m = resize_masks(picked, rate, n_fft, spec.shape[-1])
                out[:, c] = istft(m * spec, n_fft, hop, length=n).numpy()
            return out
        # each part as a row over the roles' estimates: the part itself, or every other role (the mix without it)
        combine = torch.zeros(len(parts), len(ROLES))
        for k, (r, inv) in enumerate(parts):
            combine[k] = 1.0 - torch.eye(len(ROLES))[ROLES.index(r)] if inv else torch.eye(len(ROLES))[ROLES.index(r)]
        # a stereo pair is filtered together (its spatial image is part of the model); more channels one by one
        groups = [[0, 1]] if x.shape[0] == 2 and self.spatial else [[c] for c in range(x.shape[0])]
        for g in groups:
            spec = torch.stack([stft(torch.from_numpy(np.ascontiguousarray(x[c])), n_fft, hop) for c in g])
            m = resize_masks(masks, rate, n_fft, spec.shape[-1])
            est = wiener(m, spec, self.wiener, combine=combine, exponent=self.exponent)
            del spec, m
            for i, c in enumerate(g):
                out[:, c] = istft(est[:, i], n_fft, hop, length=n).numpy()
        return out

    def separate(self, audio: Audio, parts: list[tuple[str, bool]], *, progress=None,
                 cancel: threading.Event | None = None) -> list[Audio]:
        """Every part of a whole mix (any length: 30 s windows, cross-faded), at the mix's own rate."""
        rate = audio.sample_rate
        work = min(rate, MAX_WORK_RATE)
        x = audio.samples if work == rate else resample(audio.samples, rate, work)

        def step(i: int, n: int) -> None:
            check_cancel(cancel)
            if progress is not None:
                progress((i + 1) / n, f"separating, window {i + 1} of {n}")

        check_cancel(cancel)
        y = overlap_add(lambda w: self.window(w, work, parts), x, int(WINDOW_SECONDS * work),
                        int(HOP_SECONDS * work), on_window=step)
        del x
        stems = []
        for k in range(len(parts)):
            s = y[k] if work == rate else resample(y[k], work, rate)[:, : audio.frames]
            stems.append(Audio(s, rate))
        return stems


CHUNK = 1 << 20


def energy(x: np.ndarray) -> float:
    """Σ x² in float64, a chunk at a time (a whole-signal float64 square of a 15-minute mix is 635 MB)."""
    return float(sum(np.dot(c, c) for row in x for c in (row[a:a + CHUNK].astype(np.float64)
                                                         for a in range(0, row.shape[-1], CHUNK))))


def peak(x: np.ndarray) -> float:
    """max |x|, a chunk at a time (Audio.peak() copies the whole signal)."""
    return max((float(np.abs(x[:, a:a + CHUNK]).max()) for a in range(0, x.shape[-1], CHUNK)), default=0.0)


def top_energy(x: np.ndarray, rate: int, above_hz: float = TOP_HZ) -> float:
    """Energy above `above_hz` in Hann-windowed frames of `TOP_FRAME` samples: every frame of a short mix, an even
    sample of at most `TOP_FRAMES` per channel of a longer one (over 22 s at 44.1 kHz; a share of two such
    sums is all `top_share` needs: about 0.03 CPU-s a call at any length, where the whole spectrum of every chunk
    cost 0.38 CPU-s a minute, half as much as separating)."""
    n = x.shape[-1]
    if n < TOP_FRAME:
        x = np.pad(x, ((0, 0), (0, TOP_FRAME - n)))
        n = TOP_FRAME
    hop = max(TOP_FRAME, -(-(n - TOP_FRAME) // max(1, TOP_FRAMES - 1)))
    starts = np.arange(0, n - TOP_FRAME + 1, hop)
    window = np.hanning(TOP_FRAME)
    keep = np.fft.rfftfreq(TOP_FRAME, 1.0 / rate) >= above_hz
    total = 0.0
    for row in x:
        frames = np.stack([row[a:a + TOP_FRAME] for a in starts]).astype(np.float64) * window
        total += float(np.sum(np.abs(np.fft.rfft(frames, axis=1)[:, keep]) ** 2))
    return total


def presence(stem: Audio, mix: Audio) -> float:
    """The part's share of the mix's energy (0..1): how much of what is heard it is."""
    e_mix = energy(mix.samples)
    return energy(stem.samples) / e_mix if e_mix > 0 else 0.0


def top_share(stem: Audio, mix: Audio) -> float:
    """The part's share of the mix's energy above `TOP_HZ` (0..1): where cymbals and brushes live."""
    e_mix = top_energy(mix.samples, mix.sample_rate)
    return top_energy(stem.samples, stem.sample_rate) / e_mix if e_mix > 0 else 0.0


def plays(role: str, share: float, top: float | None = None) -> bool:
    """Whether a separated part plays, from its energy share and (drums) its top-end share (`top_share`). Energy
    says it for bass and the other parts; a kit can play with under `PRESENT_SHARE` of the energy (a jazz trio's
    brushes and ride: 0.8 % of filosax01) and still own the mix's top end, so drums also play when they hold
    `DRUMS_TOP_SHARE` of the energy above `TOP_HZ`."""
    return share >= PRESENT_SHARE or (role == "drums" and top is not None and top >= DRUMS_TOP_SHARE)


def check_mix(mix: Audio | None) -> None:
    if mix is None:
        raise ConfigError("nothing to separate: no mix was given", fix="pass the mix, e.g. backline separate MIX.wav")
    if mix.frames == 0:
        raise ConfigError("the mix is empty (0 samples)", fix="export the song again from your DAW")
    if not math.isfinite(float(np.sum(mix.samples, dtype=np.float64))):  # any NaN/inf makes the sum one
        raise ConfigError("the mix holds invalid samples (NaN or infinity)", fix="export the song again")
    if peak(mix.samples) < SILENT_PEAK:
        raise ConfigError("the mix is silent (peak below -80 dBFS): there is nothing to separate",
                          fix="check the file or the DAW selection")


class SeparateEngine:
    name = "separate"

    def __init__(self, separator: Separator, weights: str, device: str = "cpu") -> None:
        self.separator, self.weights, self.device = separator, weights, device

    def describe(self) -> EngineDescription:
        return describe(device=self.device, weights=self.weights)

    def generate(self, request: GenerationRequest, *, progress, cancel: threading.Event) -> GenerationResult:
        progress = progress or (lambda f, m: None)
        t0 = time.perf_counter()
        controls = self.describe().validate(dict(request.controls))
        labels = parse_roles(request.prompt or controls["roles"])
        mix = request.mix
        check_mix(mix)
        need = check_memory(mix.seconds, mix.sample_rate, mix.channels, len(labels))
        parts = [ROLE_WORDS[w] for w in labels]
        progress(0.0, "separating")
        stems = self.separator.separate(mix, parts, progress=lambda f, m: progress(0.8 * f, m), cancel=cancel)
        t_sep = time.perf_counter() - t0
        shares = {w: presence(s, mix) for w, s in zip(labels, stems)}
        tops = {w: top_share(s, mix) for w, s in zip(labels, stems) if ROLE_WORDS[w] == ("drums", False)}
        present = {w: bool(ROLE_WORDS[w][1] or plays(ROLE_WORDS[w][0], shares[w], tops.get(w))) for w in labels}
        warnings = []
        for w, share in shares.items():
            if not present[w]:
                top = (f" and {tops[w]:.0%} of its energy above {TOP_HZ / 1000:g} kHz (a kit that plays holds "
                       f"{DRUMS_TOP_SHARE:.0%} of that)") if w in tops else ""
                warnings.append(f"there is hardly any {ROLE_WORDS[w][0]} in this mix: the separated {w} holds "
                                f"{share:.1%} of its energy (a part that plays holds {PRESENT_SHARE:.0%} or more){top}")
            if w not in ("bass", "drums", "other") and not ROLE_WORDS[w][1]:
                warnings.append(f"{w!r} is separated as 'other': everything that is neither bass nor drums")
        report: dict[str, Any] = {
            "engine": "separate", "device": self.device, "weights": self.weights, "roles": labels,
            "presence": {w: round(s, 4) for w, s in shares.items()},
            "top_presence": {w: round(s, 4) for w, s in tops.items()},
            "present": present,
            "memory_estimate_gb": round(need / 1e9, 2), "warnings": warnings,
        }
        midi = None
        if controls["midi"]:
            check_cancel(cancel)
            progress(0.8, "transcribing")
            midi, notes, heard = self.transcribe(mix, dict(zip(labels, stems)), report["present"], controls["bpm"],
                                                 cancel)
            report |= {"notes": notes, "midi_tempo": heard}
            if heard.get("why"):
                warnings.append(heard["why"])
        check_cancel(cancel)
        total = time.perf_counter() - t0
        report["timings_s"] = {"separate_s": round(t_sep, 3), "total_s": round(total, 3)}
        report["x_real_time"] = round(total / max(mix.seconds, 1e-9), 4)
        progress(1.0, "done")
        take = Take(seed=int(request.seed), stems=dict(zip(labels, stems)), midi=midi,
                    start_sample=int(request.region_start), report={})
        return GenerationResult([take], report)

    def transcribe(self, mix: Audio, stems: dict[str, Audio], present: dict[str, bool], bpm: float,
                   cancel: threading.Event | None) -> tuple[Any, dict[str, int], dict[str, Any]]:
        """One type-1 MIDI file, a track per present part, at the heard tempo with bar one on a bar line:
        bass by `bass_notes`, drums as kick hits (note 36), the rest by basic-pitch."""
        # lazy: mido, CREPE and basic-pitch; the GPU lease's separate trainer imports this module without them
        import mido

        from backline.engines.bass.transcription import bass_notes
        from backline.engines.core.transcribe import Note, notes_to_midi, transcribe_polyphonic

        wanted = [w for w in stems if present[w] and not ROLE_WORDS[w][1]]
        if not wanted:
            return None, {}, {}
        try:
            heard = listen(mix, bpm=bpm or None)
            timeline = heard.timeline(mix.sample_rate)
            bar = heard.beat_seconds * heard.numerator
            offset = (bar - heard.bar_one) % bar if heard.bar_one > 0 else 0.0
            tempo = {"bpm": round(float(heard.bpm), 2), "meter": f"{heard.numerator}/{heard.denominator}",
                     "bar_one_s": round(float(heard.bar_one), 3), "source": "given" if bpm else "heard"}
        except ConfigError as err:  # no steady beat (rubato, a drone): keep the work, say which tempo was used
            timeline, offset = Timeline.constant(bpm or 120.0, mix.sample_rate), 0.0
            tempo = {"bpm": bpm or 120.0, "meter": "4/4", "bar_one_s": 0.0, "source": "fallback",
                     "why": f"{err}; the MIDI is at {bpm or 120.0:g} BPM as played (give --bpm)"}
        files, counts = [], {}
        for w in wanted:
            check_cancel(cancel)
            stem, role = stems[w], ROLE_WORDS[w][0]
            if role == "bass":
                notes = bass_notes(stem)
                mid = notes_to_midi(notes, timeline, program=33, offset_seconds=offset, name="bass")
            elif role == "drums":
                notes = [Note(float(t), float(t) + 0.1, 36, 100) for t in kick_onsets(stem)]
                mid = notes_to_midi(notes, timeline, channel=9, offset_seconds=offset, name="drums (kick)")
            else:
                notes = transcribe_polyphonic(stem)
                mid = notes_to_midi(notes, timeline, program=0, channel=len(files), offset_seconds=offset, name=w)
            counts[w] = len(notes)
            files.append(mid)
        out = mido.MidiFile(type=1, ticks_per_beat=files[0].ticks_per_beat)
        out.tracks.append(files[0].tracks[0])
        for f in files:
            out.tracks.extend(f.tracks[1:])
        return out, counts, tempo


def build(config: str = "shipped", device: str = "cpu", weights: str | Path | None = None) -> SeparateEngine:
    """'shipped' loads weights/separate.*; 'debug' is a small random network (tests: the plumbing, not quality)."""
    if config == "debug":
        torch.manual_seed(0)
        return SeparateEngine(Separator(MaskNet(hidden=16, layers=1), device), "debug (random, untrained)", device)
    if config != "shipped":
        raise ConfigError(f"unknown config {config!r}", fix="use shipped or debug")
    path = Path(weights) if weights else WEIGHTS
    return SeparateEngine(Separator(load_model(path), device), str(path.name), device)


_SHIPPED: dict[str, Separator] = {}


def extract(audio: Audio, role: str = "bass", *, progress=None,
            cancel: threading.Event | None = None) -> tuple[Audio, float]:
    """One part of a whole song → (the separated stem at the song's rate and channels, its share of the mix's
    energy). The API other engines call (e.g. to take a reference bass sound from a record).

    Raises ConfigError for an unknown role or a silent mix, DeviceError when the memory estimate is over the
    limit — all before any heavy work. A share under `PRESENT_SHARE` means the part is (nearly) not there."""
    labels = parse_roles(role)
    if len(labels) != 1:
        raise ConfigError(f"extract takes one part, got {role!r}", fix="call it once per part")
    check_mix(audio)
    check_memory(audio.seconds, audio.sample_rate, audio.channels, 1)
    if "cpu" not in _SHIPPED:
        _SHIPPED["cpu"] = Separator(load_model(WEIGHTS))
    stem = _SHIPPED["cpu"].separate(audio, [ROLE_WORDS[labels[0]]], progress=progress, cancel=cancel)[0]
    return stem, presence(stem, audio)
