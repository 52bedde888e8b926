"""The bass latent engine (registered as `bass-latent`; paper 000): mix → mix-codec latents → conditional latent diffusion (DDIM, CFG with rescale,
style grounding) → stem-codec decode → render chain → WAV, plus a MIDI transcription of the generated line.

Timing and alignment: the request's mix is the DAW region [region_start, region_stop) at the DAW's rate. It is
resampled to the codec's 44.1 kHz, encoded (latent frame i = samples [4096 i, 4096 (i+1))), the bass latents are
generated frame-aligned with it, decoded to exactly the resampled length and resampled back to the DAW rate
and trimmed/padded to the region's exact sample count, so the stem starts at `region_start` to the sample.
The MIDI is written on the request's timeline with the region's offset, so it lands at the same bar.

Any length from one latent frame to a whole song runs in one pass (the U-Net is convolutional and its attention
uses Dynamic Positional Bias). If the GPU runs out of memory we retry with the variations one at a time, then
in overlapping time chunks, then on the CPU, and the report says which fallback ran.

This is the free-mode path of `backline generate bass --mode free` and of the host's bass panel: the follow engine
(`bass`, `engines/bass/follow_engine.py`) hands a free-mode request here, building this engine on first use. The
controls, the preset/reference resolution, the mix check and the transcription live once in `engines/bass/common.py`.
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

from backline.engines.bass.common import (
    LATENT_CONTROLS,
    LATENT_NAME,
    QUANTISE,
    check_memory,
    check_mix,
    listen_mix,
    panel_controls,
    resolve_controls,
)
from backline.engines.bass.model import CONFIGS, build_model
from backline.engines.bass.presets import (
    check_bass_reference,
    file_sha256,
    preset_style_mean,
    style_mean_of_audio,
    user_cache_dir,
)
from backline.engines.codec import load_codec
from backline.engines.codec.codec import latent_space_id
from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.balance import balance_take
from backline.engines.core.effects import render
from backline.engines.core.errors import BacklineError, Cancelled, ConfigError, DeviceError, WeightsError
from backline.engines.core.protocol import (
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Take,
    check_cancel,
    check_device,
)
from backline.engines.core.render import latency_cache_dir
from backline.engines.core.weights import load_weights
from backline.engines.core.windows import overlap_add_spans, windows
from backline.engines.diffusion import classifier_free, ddim_sample, style_grounding

NAME = LATENT_NAME
WEIGHTS_DIR = Path(__file__).parent / "weights"
KIND = "bass-diffusion"
FORMAT_VERSION = 1
#: Time chunk (latent frames) and overlap for the out-of-memory fallback.
OOM_CHUNK, OOM_OVERLAP = 512, 32
#: Longer than this (≈ 3 min) is sampled in overlapping windows from the start: attention memory grows with the
#: square of the length (a 15-minute mix in one pass reached 3 GB by step 5), windows keep it flat.
ONE_PASS_FRAMES, LONG_CHUNK, LONG_OVERLAP = 2048, 1024, 64
def codec_fingerprint(codec) -> str:
    """The codec's latent-space id (`codec.latent_space_id`): what the bass model, its training cache and the
    style-mean caches depend on. A decoder-only codec update keeps it."""
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
    """Paper 000 as one engine: U-Net + mix codec + stem codec, all loaded by `build`."""

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
        merged, preset, reference = resolve_controls(request, LATENT_CONTROLS)
        sampling = Sampling(int(merged["steps"]) if float(merged["steps"]).is_integer() else merged["steps"],
                            float(merged["cfg"]), float(merged["rescale"]), float(merged["strength"])).check()
        quantise = merged["quantise"]
        if quantise not in QUANTISE:
            raise ConfigError(f"quantise={quantise!r} is not a grid", fix=f"use one of {', '.join(QUANTISE)}")
        if request.variations < 1:
            raise ConfigError(f"variations={request.variations} must be >= 1")
        mix = check_mix(request.mix, getattr(self.mix_codec, "hop", 4096), self.mix_codec.sample_rate)
        if self._param_device().type == "cpu":
            check_memory(mix.seconds, request.variations)
        seeds = [int(request.seed) + k for k in range(request.variations)]

        # the MIDI's tempo: the DAW's, the user's, or heard (a plain file is not 120 BPM just because nobody said)
        timeline = request.timeline
        tempo_note = None
        if merged["tempo_from"] == "listen" and not float(merged["bpm"]):
            t0 = time.perf_counter()
            try:
                timeline = listen_mix(request, merged | {"chords": "", "key": ""}, mix).timeline(mix.sample_rate)
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
        # lazy: the MIDI tooling (mido, basic-pitch) is an optional dependency here — a bare GPU machine imports
        # this module to sample latents only (packaging/gpu_lease.py's import guard)
        from backline.engines.bass.transcription import bass_midi

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

    # --- pieces (also used by benchmarks and training) --------------------------------------------------
    def _style(self, preset, reference: Path | None) -> tuple[np.ndarray, dict[str, Any]]:
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


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    return isinstance(err, oom) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- building -----------------------------------------------------------------------------------------------

def load_bass_model(config: str = "shipped", weights: str | Path | None = None):
    """(model, meta). 'shipped' loads engines/bass/weights/bass; 'debug'/'small'/'paper' build untrained models."""
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
    """The registered builder: `ENGINE_REGISTRY['bass-latent']` (and the follow engine's free mode). 'debug' pairs
    the debug U-Net with debug codecs.

    `weights` / `codec_weights` (a folder with mix.safetensors and stem.safetensors) override the shipped files,
    for evaluating a training run before it is shipped."""
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
    """The latent engine's description without loading any weights: the command line builds its flags from it,
    the built engine adds what its weights are."""
    # lazy: the reference sampler pulls mido (core.transcribe), which the GPU lease's import guard keeps out
    from backline.engines.bass.reference import cache_dir as instrument_cache_dir

    return EngineDescription(NAME, "Bass (latent diffusion)", panel_controls(LATENT_CONTROLS), inputs=("mix",),
                             extra_inputs=("midi",), outputs=("audio", "midi"), weights=f"bass diffusion ({config})",
                             device=device, fast={"steps": 2}, caches=tuple(str(d) for d in (
                                 user_cache_dir(), instrument_cache_dir(), latency_cache_dir())))
