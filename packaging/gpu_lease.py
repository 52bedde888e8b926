#!/usr/bin/env python3
"""The GPU lease: one prepared run that turns a short, rare lease on a GPU machine into better shipped models.

    python packaging/gpu_lease.py bundle --out build/gpu-bundle   # here: render + encode the training inputs
    bash packaging/gpu-lease.sh                                    # there: the whole plan (see docs/GPU.md)
    bash packaging/gpu-lease.sh --smoke                            # here / CI: the same plan on the CPU, tiny
    python packaging/gpu_accept.py RETURNED_DIR                    # here: judge and install what came back

Why it looks like this: a lease lasts minutes, its machine has torch but no fluidsynth, soundfonts or package
registry, and at most 64 MiB travel with the repository. So everything that needs the project's full
dependencies (rendering, reading FLAC, loudness) happens here, into a *bundle* of fp16 tensors; the lease path
imports only the standard library, torch, numpy, safetensors and the repository's pure-python modules (it sets
up the `backline.*` namespace from this checkout, nothing is installed there), and says so in one line when
something is missing. The plan is a small registry (`TASKS`): each entry is one model with a fixed time budget,
trained from the shipped weights through the project's one training loop (`engines/core/training.py` TrainLoop,
bf16 autocast on CUDA), judged on the bundle's held-out split before and after, and written to $OUT as soon as
it is done, so a lease cut short still returns what finished.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: What the lease path may import besides the standard library and the repository (the GPU machine has torch;
#: the rest are torch's own dependencies, imported by torch itself).
LEASE_PACKAGES = ("torch", "numpy", "safetensors")
TORCH_DEPS = ("torchgen", "functorch", "einops", "typing_extensions", "sympy", "mpmath", "networkx", "jinja2",
              "markupsafe", "filelock", "fsspec", "triton", "nvidia", "setuptools", "pkg_resources",
              "_distutils_hack", "packaging", "optree", "opt_einsum", "cuda")
FORMAT = "backline-gpu-lease"
VERSION = 1
#: The device time a lease may plan for (the device tool allows 10 min per command and 15 min per session,
#: machine start included): training budgets add up to at most TRAIN_LIMIT_MIN, the whole plan to PLAN_LIMIT_MIN.
TRAIN_LIMIT_MIN = 8.0
PLAN_LIMIT_MIN = 9.0
MAX_OUT_FILES = 8
MAX_FILE_BYTES = 16 * 2**20
BUNDLE_LIMIT_BYTES = 40 * 2**20
#: Minutes the plan reserves around the training: imports, CUDA start, held-out evaluations, writing.
OVERHEAD_MIN = 0.6
BENCH_MIN = 1.0
REHEARSE_SCALE = 0.04
#: Seconds of training between two held-out checkpoint evaluations on the GPU (each costs well under a second).
SELECT_EVERY_S = 15.0


def say(msg: str) -> None:
    print(f"gpu-lease: {msg}", flush=True)


# --- importing the repository on a machine where nothing is installed ------------------------------------------

def bootstrap() -> None:
    """Make `backline.*` import from this checkout: a namespace package whose path is the repository root, so
    `backline.engines` is `engines/` (the mapping setup.py installs). Done before anything imports backline, so
    here too the lease runs the files of this checkout rather than whatever is installed."""
    if "backline" in sys.modules:
        return
    pkg = types.ModuleType("backline")
    pkg.__path__ = [str(REPO)]
    sys.modules["backline"] = pkg


def missing_packages() -> list[str]:
    return [name for name in LEASE_PACKAGES if importlib.util.find_spec(name) is None]


#: Field packages the project uses elsewhere that a bare GPU machine may lack: the smoke run makes them absent.
ABSENT_THERE = ("torchaudio", "librosa", "pedalboard", "scipy", "tqdm", "yaml", "mido", "pretty_midi", "soundfile",
                "mir_eval", "basic_pitch", "torchcrepe", "sklearn", "numba", "pyloudnorm", "PySide6", "matplotlib",
                "music21", "fluidsynth", "sentence_transformers", "transformers", "huggingface_hub")


class LeaseImportGuard(importlib.abc.MetaPathFinder):
    """The smoke run's stand-in for the bare GPU machine (this one has everything installed).

    Importing one of ABSENT_THERE fails as it would there; code with a fallback takes it, code without fails here
    rather than in the middle of a lease. Optional probes (`find_spec`) of other packages pass through, and
    `foreign()` lists whatever third-party module got imported all the same, so the run can refuse it."""

    allowed = set(LEASE_PACKAGES) | set(TORCH_DEPS) | {"backline", "gpu_lease", "cython_runtime"}  # last: Cython

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        # only an import statement is refused; torch probes packages with importlib.util.find_spec (answered as
        # usual: the probe alone loads nothing)
        importing = sys._getframe(2).f_code.co_name == "_find_and_load_unlocked"
        if importing and name.split(".")[0] in ABSENT_THERE:
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machine)", name=name)
        return None

    def foreign(self) -> list[str]:
        tops = {name.split(".")[0] for name, mod in list(sys.modules.items()) if mod is not None}
        return sorted(t for t in tops if t not in sys.stdlib_module_names and t not in self.allowed
                      and not t.startswith("_") and t != "__main__")


# --- the bundle (built here) ------------------------------------------------------------------------------------

#: fp16 bytes per packed byte (pack_pcm) assumed when sizing a part of the bundle; the builder checks the result.
PACK_RATIO = 3.5
CROP = 16 * 4096  # the codec trainer's crop (engines/codec/train.py CROP)
SEGMENT = 2 * CROP  # stored training segments: random CROP-long crops are cut from them on the GPU


@dataclass
class BundleSpec:
    songs: int = 14
    seed: int = 2411
    heldout_songs: int = 3
    heldout_seed: int = 2412
    min_bars: int = 16
    max_bars: int = 28
    stem_mib: float = 3.0  # packed (pcm_pack): ~4x the audio of fp16
    separate_mib: float = 2.5  # role stems (bass / drums / other) at 22.05 kHz, packed
    separate_variants: int = 1  # pedalboard-augmented renders per song besides the dry one
    mix_mib: float = 0.0  # the optional codec-mix task's segments; 0 = none (room is short, see bundle_limit)
    heldout_crops: int = 8  # per task: the select and report halves get 4 each
    subsets: int = 2


#: One 8-bar song, split in time would be fairer, but the smoke run proves the machinery, not quality: its held-out
#: split is the same song (heldout_songs=0), which halves the rendering CI waits for.
SMOKE_BUNDLE = BundleSpec(songs=1, seed=2421, heldout_songs=0, heldout_seed=2421, min_bars=8, max_bars=8,
                          stem_mib=0.15, mix_mib=0.0, heldout_crops=2, subsets=2, separate_mib=0.15,
                          separate_variants=0)
#: What travels to the device machine: tracked + untracked files + carried paths, 64 MiB in all.
TRAVEL_LIMIT_BYTES = 64 * 2**20
TRAVEL_MARGIN_BYTES = 2 * 2**20


def tree_bytes() -> int | None:
    """Bytes of the files that travel with the working tree anyway (tracked, and untracked but not ignored)."""
    import subprocess

    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((REPO / n.decode()).stat().st_size for n in names if n and (REPO / n.decode()).is_file())


def bundle_limit() -> int:
    """The bundle may take what the tree leaves of the 64 MiB that travel (minus a margin), at most 40 MiB."""
    tree = tree_bytes()
    if tree is None:
        return BUNDLE_LIMIT_BYTES
    return max(0, min(BUNDLE_LIMIT_BYTES, TRAVEL_LIMIT_BYTES - TRAVEL_MARGIN_BYTES - tree))


def build_bundle(out: Path, spec: BundleSpec, corpus: Path | None = None, heldout: Path | None = None,
                 work: Path | None = None, log: Callable[[str], None] = say) -> Path:
    """Render (or read) a corpus and write the lease's training inputs to `out` (see docs/GPU.md)."""
    from backline.engines.core.errors import ConfigError
    from backline.engines.data.synth import synthesize

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty", fix="remove it or choose another --out (a bundle is "
                          "built whole, never merged into an old one)")
    work = work or out.parent / (out.name + "-corpus")
    if corpus is None:
        corpus = work / "train"
        log(f"rendering {spec.songs} songs (seed {spec.seed}) into {corpus} (resumable)")
        synthesize(corpus, spec.songs, spec.seed, jobs=1, min_bars=spec.min_bars, max_bars=spec.max_bars,
                   progress=False, log=log)
    if heldout is None and spec.heldout_songs == 0:
        heldout = corpus
    if heldout is None:
        heldout = work / "heldout"
        log(f"rendering {spec.heldout_songs} held-out songs (seed {spec.heldout_seed}) into {heldout}")
        synthesize(heldout, spec.heldout_songs, spec.heldout_seed, jobs=1, min_bars=spec.min_bars,
                   max_bars=spec.max_bars, progress=False, log=log)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=False)
    try:
        return _fill_bundle(tmp, out, spec, corpus, heldout, work, log)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # a half-built bundle never sits where a run would find it
        raise


def _fill_bundle(tmp: Path, out: Path, spec: BundleSpec, corpus: Path, heldout: Path, work: Path,
                 log: Callable[[str], None]) -> Path:
    import numpy as np
    import torch

    from backline.engines.bass.data import encode_pairs
    from backline.engines.codec import load_codec
    from backline.engines.codec.codec import latent_space_id
    from backline.engines.core.errors import ConfigError
    from backline.engines.data.slakh import list_tracks

    rng = np.random.default_rng(spec.seed)
    train_tracks, held_tracks = list_tracks(corpus), list_tracks(heldout)
    manifest: dict[str, Any] = {"format": FORMAT + "-bundle", "version": VERSION, "created": _utc(),
                                "train_corpus": str(corpus), "heldout_corpus": str(heldout),
                                "train_tracks": [t.name for t in train_tracks],
                                "heldout_tracks": [t.name for t in held_tracks], "spec": spec.__dict__}
    # codec decoders: bass-stem segments (the stem codec's only consumer is the bass engine) and mix segments
    stem_n = max(2, int(spec.stem_mib * 2**20 * PACK_RATIO // (SEGMENT * 2)))
    stem_train = _segments(train_tracks, "stem", stem_n, SEGMENT, rng)
    stem_held = _segments(held_tracks, "stem", spec.heldout_crops, CROP, np.random.default_rng(1))
    save_packed({"train": stem_train, "heldout": stem_held}, tmp / "codec_stem.safetensors")
    manifest["tensors"] = {"codec_stem": {"train": list(stem_train.shape), "heldout": list(stem_held.shape)}}
    if spec.mix_mib > 0:
        mix_n = max(2, int(spec.mix_mib * 2**20 * PACK_RATIO // (SEGMENT * 4)))
        mix_train = _segments(train_tracks, "mix", mix_n, SEGMENT, rng)
        mix_held = _segments(held_tracks, "mix", spec.heldout_crops, CROP, np.random.default_rng(2))
        save_packed({"train": mix_train, "heldout": mix_held}, tmp / "codec_mix.safetensors")
        manifest["tensors"]["codec_mix"] = {"train": list(mix_train.shape), "heldout": list(mix_held.shape)}
    # separation masks: the separate trainer's role stems (dry + one augmented render per song), 6 s windows
    if spec.separate_mib > 0:
        sep_train, sep_held = _separate_segments(corpus, heldout, work / "separate-cache", spec, rng)
        save_packed({"train": sep_train, "heldout": sep_held}, tmp / "separate.safetensors", bits=SEPARATE_BITS)
        manifest["tensors"]["separate"] = {"train": list(sep_train.shape), "heldout": list(sep_held.shape)}
    # bass U-Net: the bass trainer's own pair cache (stem-codec latents of the bass, mix-codec latents of subsets)
    mix_codec, stem_codec = load_codec("mix"), load_codec("stem")
    with torch.inference_mode():
        encode_pairs(corpus, tmp / "bass" / "train", mix_codec, stem_codec, subsets=spec.subsets, seed=spec.seed)
        encode_pairs(heldout, tmp / "bass" / "heldout", mix_codec, stem_codec, subsets=1, seed=spec.heldout_seed)
    for f in (tmp / "bass").rglob("*.safetensors"):
        _to_fp16(f)  # the trainer reads them back as float32; fp16 halves what travels
    manifest["latent_space"] = {"mix": latent_space_id(mix_codec), "stem": latent_space_id(stem_codec)}
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    manifest["bytes"] = size
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    limit = bundle_limit()
    if size > limit:
        raise ConfigError(f"the bundle came to {size / 2**20:.1f} MiB, over the {limit / 2**20:.1f} MiB the "
                          f"working tree leaves of the {TRAVEL_LIMIT_BYTES // 2**20} MiB that travel",
                          fix="lower --stem-mib or the number of songs")
    if out.exists():
        out.rmdir()  # empty (checked above)
    tmp.rename(out)
    log(f"bundle {out}: {size / 2**20:.1f} MiB (room {limit / 2**20:.1f}); audio {manifest['tensors']}, "
        f"bass pairs {len(train_tracks)} + {len(held_tracks)} held-out tracks")
    return out


def _segments(tracks: list, kind: str, n: int, length: int, rng) -> Any:
    """`n` non-silent fp16 segments [n, channels, length]: bass stems (mono) or mixes (stereo; half the full mix,
    half a random subset of the stems, as the codec trainer draws them), spread over the tracks."""
    import numpy as np

    from backline.engines.core.errors import DatasetError

    candidates = []
    for track in tracks:
        rate, frames = track.info()
        if rate != 44100 or frames < length:
            continue
        bass = [s.id for s in track.audio_stems() if s.role == "bass"]
        if kind == "stem" and not bass:
            continue
        candidates.append((track, bass, frames))
    if not candidates:
        raise DatasetError(f"no track is usable for {kind} segments of {length} samples")
    out = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        track, bass, frames = candidates[len(out) % len(candidates)] if tries <= n else \
            candidates[int(rng.integers(len(candidates)))]
        start = int(rng.integers(0, frames - length + 1))
        if kind == "stem":
            x = track.stem_audio(bass[0], channels=1, start=start, frames=length).samples
        elif rng.random() < 0.5:
            x = track.mix_audio(channels=2, start=start, frames=length).samples
        else:
            stems = [s.id for s in track.audio_stems()]
            chosen = rng.choice(stems, size=int(rng.integers(1, len(stems) + 1)), replace=False)
            x = sum(track.stem_audio(s, channels=2, start=start, frames=length).samples for s in chosen)
        if np.sqrt(np.mean(np.square(x))) > 1e-3:
            out.append(np.clip(x, -4.0, 4.0))
    if not out:
        raise DatasetError(f"every {kind} segment drawn was silent")
    return np.stack(out).astype(np.float32)


SEPARATE_WINDOW_S = 6.0
SEPARATE_BITS = 12
SEPARATE_PACK_RATIO = 3.0  # measured: 16-bit role stems pack 1.9x (drums), 12-bit ~3x
SEPARATE_CROP_S = 3.0  # the separate trainer's crop


def _separate_segments(corpus: Path, heldout: Path, cache: Path, spec: BundleSpec, rng) -> tuple[Any, Any]:
    """Role stems [n, 3, samples] at the separation model's rate, from the separate trainer's own cache
    (engines/separate/data.py: dry renders and pedalboard-augmented ones): training windows and held-out crops."""
    import numpy as np

    from backline.engines.separate.data import build_cache, load_cache
    from backline.engines.separate.model import ROLES, SAMPLE_RATE

    songs = load_cache(build_cache(corpus, cache / "train", variants=spec.separate_variants, seed=spec.seed))
    held = load_cache(build_cache(heldout, cache / "heldout", variants=0)) if heldout != corpus else songs
    per = int(SEPARATE_WINDOW_S * SAMPLE_RATE)
    n = max(2, int(spec.separate_mib * 2**20 * SEPARATE_PACK_RATIO // (per * len(ROLES) * 2)))

    def windows(pool, count: int, length: int, r) -> Any:
        out = []
        for k in range(count):
            s = pool[k % len(pool)] if k < len(pool) else pool[int(r.integers(len(pool)))]
            start = int(r.integers(0, max(1, s.shape[1] - length)))
            w = np.zeros((len(ROLES), length), np.float32)
            part = np.asarray(s[:, start:start + length], dtype=np.float32)
            w[:, :part.shape[1]] = part
            out.append(w)
        return np.stack(out)

    return windows(songs, n, per, rng), windows(held, spec.heldout_crops, int(SEPARATE_CROP_S * SAMPLE_RATE),
                                               np.random.default_rng(3))


def pack_pcm(x: Any, bits: int = 16) -> tuple[Any, dict[str, str]]:
    """Audio [..., T] (float, |x| ≤ scale) → (uint8 tensor, metadata): 16-bit PCM, first differences along time,
    low and high byte planes apart, lzma. Lossless at 16 bits and ~4× smaller than fp16 on bass stems (measured on
    this bundle: 7.3 MB → 1.7 MB), with only the standard library and numpy on both sides — what travels is capped
    at 64 MiB, and the GPU machine has no FLAC decoder. `bits` < 16 quantises coarser (12 bits: 72 dB SNR, ample for
    the separation masks' magnitude loss; drums and mixes pack only ~2x at 16 bits)."""
    import lzma

    import numpy as np
    import torch

    x = np.asarray(x, dtype=np.float32)
    scale = float(max(1.0, np.abs(x).max()))
    levels = 2 ** (bits - 1) - 1
    pcm = np.round(np.clip(x / scale, -1.0, 1.0) * levels).astype(np.int16)
    delta = np.diff(pcm, axis=-1, prepend=np.zeros(pcm.shape[:-1] + (1,), np.int16)).astype(np.int16)
    planes = np.ascontiguousarray(delta.view(np.uint8).reshape(-1, 2).T)
    blob = lzma.compress(planes.tobytes(), preset=6)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8), {"codec": "pcm16-delta-planes-lzma",
                                                                   "shape": json.dumps(list(x.shape)),
                                                                   "scale": repr(scale), "levels": str(levels)}


def unpack_pcm(blob: Any, meta: dict[str, str]) -> Any:
    """The inverse of `pack_pcm`: a float16 tensor of the stored shape."""
    import lzma

    import numpy as np
    import torch

    shape = tuple(json.loads(meta["shape"]))
    planes = np.frombuffer(lzma.decompress(blob.numpy().tobytes()), np.uint8).reshape(2, -1)
    delta = np.ascontiguousarray(planes.T).view(np.int16).reshape(shape)
    pcm = np.cumsum(delta, axis=-1, dtype=np.int16)  # wraps exactly as the int16 differences did
    levels = int(meta.get("levels", 32767))
    return torch.from_numpy(pcm.astype(np.float32) * (float(meta["scale"]) / levels)).to(torch.float16)


def save_packed(tensors: dict[str, Any], path: Path, bits: int = 16) -> None:
    """{name: audio array} → one safetensors file of packed uint8 tensors, each one's metadata under its name."""
    from safetensors.torch import save_file

    packed, meta = {}, {}
    for name, x in tensors.items():
        packed[name], m = pack_pcm(x, bits)
        meta |= {f"{name}.{k}": v for k, v in m.items()}
    save_file(packed, str(path), metadata=meta)


def _to_fp16(path: Path) -> None:
    """Rewrite a safetensors file with its floating tensors in fp16, metadata kept."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".fp16")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- the plan: one registry entry per model ---------------------------------------------------------------------

@dataclass
class Lease:
    """What every task sees: device context, bundle, output folder, smoke flag, the clock."""

    ctx: Any
    bundle: Path
    out: Path
    smoke: bool
    compile: bool
    deadline_min: float = PLAN_LIMIT_MIN  # minutes after `started` by which the plan means to be done
    started: float = field(default_factory=time.monotonic)

    @property
    def cuda(self) -> bool:
        return self.ctx.device.type == "cuda"

    def elapsed_min(self) -> float:
        return (time.monotonic() - self.started) / 60


HELD_OUT_PARTS = ("select", "report")


@dataclass
class Job:
    """One model's training, ready to run: TrainLoop's pieces plus held-out evaluation and export.

    The held-out split has two halves: `evaluate("select")` picks the checkpoint that is exported (a short
    fine-tune on a small bundle can overfit: the best one seen, the start included, is kept), and
    `evaluate("report")`, never used for choosing, gives the before/after figures."""

    modules: dict[str, Any]
    optimizers: list[Any]
    lr: float
    step: Callable[[int], dict[str, float]]
    evaluate: Callable[[str], dict[str, float]]
    snapshot: Callable[[], dict[str, Any]]  # the exported weights, copied to the CPU
    restore: Callable[[dict[str, Any]], None]
    export: Callable[[Path, dict[str, Any]], list[Path]]
    batch: int
    warmup_frac: float = 0.05
    note: str = ""


@dataclass(frozen=True)
class Task:
    name: str
    minutes: float  # training budget on the GPU
    smoke_minutes: float  # and in the CPU smoke run
    outputs: tuple[str, ...]  # file names written to $OUT
    install: dict[str, str]  # output stem -> repository weights path (without suffix), for gpu_accept
    prepare: Callable[[Lease, Path | None], Job]  # (lease, weights to start from or None = shipped)
    why: str
    default: bool = True  # in the plan unless --tasks names others


def _bundle_tensors(lease: Lease, name: str) -> dict[str, Any]:
    """A bundle file's tensors, packed audio (see `pack_pcm`) unpacked to float16."""
    from safetensors import safe_open

    from backline.engines.core.errors import DatasetError

    path = lease.bundle / f"{name}.safetensors"
    if not path.is_file():
        raise DatasetError("is missing from the bundle", path=path, fix="rebuild it: python packaging/gpu_lease.py "
                           "bundle --out build/gpu-bundle")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        out = {}
        for name in f.keys():
            t = f.get_tensor(name)
            if f"{name}.codec" in meta:
                t = unpack_pcm(t, {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith(name + ".")})
            out[name] = t
    return out


def _cosine_by_time(lease_loop, lr: float, warmup_frac: float) -> Callable[[int], float]:
    """LR by the fraction of the time budget used (warm-up, then cosine to 10 %): a time-boxed run does not know
    its step count in advance, and a fine-tune from shipped weights should end on a low LR."""
    from backline.engines.core.training import warmup_cosine

    def lr_at(step: int) -> float:
        clock = lease_loop["loop"].clock if "loop" in lease_loop else None
        frac = min(1.0, clock.elapsed_s / clock.limit_s) if clock is not None and clock.limit_s > 0 else 0.0
        return lr * warmup_cosine(int(frac * 1000), 1000, int(warmup_frac * 1000))

    return lr_at


# codec decoders -----------------------------------------------------------------------------------------------

def codec_decoder_job(role: str) -> Callable[[Lease, Path | None], Job]:
    """Decoder-only fine-tune of the shipped mix or stem codec (`--freeze-encoder` of the codec trainer): the
    latent space, and so the bass model and every cache keyed by it, stays valid. Objective = the trainer's
    magnitude-only terms (25·rec + 25·sc + 5·energy), no critics."""

    def prepare(lease: Lease, weights: Path | None) -> Job:
        import torch

        from backline.engines.codec.codec import FORMAT_VERSION, KIND, load_codec
        from backline.engines.codec.train import generator_losses
        from backline.engines.core.errors import DatasetError
        from backline.engines.core.weights import save_weights

        codec = load_codec(role, weights=weights)
        model = codec.model.to(lease.ctx.device)
        model.train()
        model.encoder.requires_grad_(False)
        model.decoder.requires_grad_(True)
        data = _bundle_tensors(lease, f"codec_{role}")
        train, held = data["train"].to(lease.ctx.device), data["heldout"]
        batch = 2 if lease.smoke else (48 if role == "stem" else 24)
        lr = 3e-4 if role == "stem" else 2e-4
        opt = torch.optim.Adam(model.decoder.parameters(), lr=lr, betas=(0.5, 0.9))
        gen = torch.Generator(device="cpu").manual_seed(0)

        def step(i: int) -> dict[str, float]:
            idx = torch.randint(0, train.shape[0], (batch,), generator=gen)
            offs = torch.randint(0, train.shape[-1] - CROP + 1, (batch,), generator=gen)
            x = torch.stack([train[j, :, o:o + CROP] for j, o in zip(idx.tolist(), offs.tolist())]).float()
            with lease.ctx.autocast():
                total, logs, _ = generator_losses(model, None, x, use_adv=False)
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.decoder.parameters(), 1.0)
            opt.step()
            return logs

        @torch.no_grad()
        def evaluate(part: str) -> dict[str, float]:
            """Mean generator terms on one half of the held-out crops (even / odd), in fp32."""
            crops = held[HELD_OUT_PARTS.index(part)::2]
            model.eval()
            sums: dict[str, float] = {}
            for k in range(0, crops.shape[0], 4):
                x = crops[k:k + 4].to(lease.ctx.device).float()
                _, logs, _ = generator_losses(model, None, x, use_adv=False)
                for key, v in logs.items():
                    sums[key] = sums.get(key, 0.0) + v * x.shape[0]
            model.train()
            return {k: round(v / crops.shape[0], 5) for k, v in sums.items()}

        def snapshot() -> dict[str, Any]:
            return {k: v.detach().to("cpu", copy=True) for k, v in model.decoder.state_dict().items()}

        def restore(state: dict[str, Any]) -> None:
            model.decoder.load_state_dict(state)

        def export(out: Path, training: dict[str, Any]) -> list[Path]:
            record = dict(codec.meta.get("training", {})) | {"gpu_lease": training}
            path = save_weights(model, out / role, kind=KIND, config=model.cfg.to_dict(), format_version=FORMAT_VERSION,
                                training=record, overwrite=True)
            return [path, path.with_suffix(".json")]

        if held.shape[0] < 2:
            raise DatasetError("the bundle's held-out split needs at least 2 crops", path=lease.bundle)
        return Job({"model": model, "opt": opt}, [opt], lr, step, evaluate, snapshot, restore, export, batch,
                   note=f"{role} decoder, encoder frozen; {tuple(train.shape)} fp16 segments")

    return prepare


# bass U-Net ---------------------------------------------------------------------------------------------------

def bass_job(lease: Lease, weights: Path | None) -> Job:
    """Free-mode bass U-Net (paper 000), fine-tuned from the shipped EMA weights on the bundle's pair cache with
    the bass trainer's recipe (v-objective, 15 % condition dropout, AdamW, EMA), at a GPU batch."""
    import copy

    import numpy as np
    import torch

    from backline.engines.bass.data import PairCache
    from backline.engines.bass.engine import FORMAT_VERSION, KIND, load_bass_model
    from backline.engines.core.errors import DatasetError
    from backline.engines.core.weights import save_weights
    from backline.engines.diffusion import CosineSchedule, v_loss
    from backline.engines.diffusion.training import v_objective_step

    manifest = json.loads((lease.bundle / "manifest.json").read_text())
    model, meta = load_bass_model(weights=weights)
    want = meta.get("training", {}).get("codec_fingerprints", {})
    have = manifest.get("latent_space", {})
    if want and (want.get("mix"), want.get("stem")) != (have.get("mix"), have.get("stem")):
        raise DatasetError(f"the bundle's bass pairs were encoded with codecs {have}, the bass model expects {want}",
                           fix="rebuild the bundle with the shipped codecs")
    pairs = PairCache(sorted((lease.bundle / "bass" / "train").glob("*.safetensors")))
    val = PairCache(sorted((lease.bundle / "bass" / "heldout").glob("*.safetensors")))
    dev = lease.ctx.device
    model = model.to(dev).train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    batch = 2 if lease.smoke else 128
    lr, ema_decay, dropout = 3e-4, 0.998, 0.15
    crop = 64 if lease.smoke else int(model.cfg.crop)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=0.01)
    net = model
    if lease.compile and lease.cuda:
        net = torch.compile(model)  # fixed shapes (batch, crop): one compile, then fused kernels
    sched = CosineSchedule()
    rng = np.random.default_rng(0)
    # the held-out set: fixed crops × fixed noise levels and noise, the same before and after
    g = torch.Generator().manual_seed(0)
    vb, vm = val.batch(2 if lease.smoke else 64, crop, np.random.default_rng(12345))  # halves: select, report
    ts = torch.linspace(0.05, 0.95, 3 if lease.smoke else 12)
    eps = torch.randn((len(ts),) + tuple(vb.shape), generator=g)

    current = {"net": net}

    def step(i: int) -> dict[str, float]:
        bass, mix = pairs.batch(batch, crop, rng)
        bass, mix = model.norm_stem(bass.to(dev)), model.norm_mix(mix.to(dev))
        keep = (torch.rand(bass.shape[0], 1, 1, device=dev) >= dropout).to(mix.dtype)
        try:
            loss = v_objective_step(current["net"], model, ema, opt, sched, bass, mix * keep, lease.ctx, ema_decay)
        except Exception as err:  # noqa: BLE001 - compilation fails at the first forward, before any update
            if current["net"] is model:
                raise
            say(f"bass: torch.compile failed ({type(err).__name__}: {str(err)[:200]}); eager from here")
            current["net"] = model
            loss = v_objective_step(model, model, ema, opt, sched, bass, mix * keep, lease.ctx, ema_decay)
        return {"loss": loss}

    @torch.no_grad()
    def evaluate(part: str) -> dict[str, float]:
        half = slice(0, len(vb) // 2) if part == HELD_OUT_PARTS[0] else slice(len(vb) // 2, len(vb))
        b, m = ema.norm_stem(vb[half].to(dev)), ema.norm_mix(vm[half].to(dev))
        losses = []
        for k, t in enumerate(ts):
            tt = torch.full((b.shape[0],), float(t), device=dev)
            e = eps[k][half].to(dev)
            losses.append(float(v_loss(sched, ema(sched.noise(b, tt, e), tt, m), b, tt, e)))
        return {"loss": round(float(np.mean(losses)), 5)}

    def snapshot() -> dict[str, Any]:
        return {k: v.detach().to("cpu", copy=True) for k, v in ema.state_dict().items()}

    def restore(state: dict[str, Any]) -> None:
        ema.load_state_dict(state)

    def export(out: Path, training: dict[str, Any]) -> list[Path]:
        record = dict(meta.get("training", {})) | {"gpu_lease": training}
        path = save_weights(copy.deepcopy(ema).half(), out / "bass", kind=KIND, config=meta["config"],
                            format_version=FORMAT_VERSION, training=record, overwrite=True)
        return [path, path.with_suffix(".json")]

    if len(pairs) == 0:
        raise DatasetError("the bundle holds no bass pairs", path=lease.bundle)
    return Job({"model": model, "ema": ema, "opt": opt}, [opt], lr, step, evaluate, snapshot, restore, export, batch,
               warmup_frac=0.05,
               note=f"{len(pairs)} tracks ({int(pairs.lengths.sum())} latent frames), held-out {len(val)}")


# separation mask network --------------------------------------------------------------------------------------

def separate_job(lease: Lease, weights: Path | None) -> Job:
    """The mask network of engines/separate (bass / drums / other), fine-tuned from its shipped weights (from a
    seeded start when none are shipped yet) with its trainer's loss (`train.step_loss`, the shipped weights' `DEFAULT_LOSS`) on the bundle's role
    stems: 3 s crops, a random level per role (±9 dB) and 10 % of roles left out, as `data.crops` draws them."""
    import torch

    from backline.engines.core.errors import DatasetError
    from backline.engines.core.weights import weight_paths
    from backline.engines.separate.model import DEFAULT_CONFIG, SAMPLE_RATE, build
    from backline.engines.separate.train import DEFAULT_LOSS, SHIPPED, apply_step, step_loss
    from backline.engines.separate.train import export as export_separate

    start = weights if weights is not None else (SHIPPED if weight_paths(SHIPPED)[0].exists() else None)
    if start is not None:
        from backline.engines.separate.engine import load_model

        model = load_model(start)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build(DEFAULT_CONFIG)
    dev = lease.ctx.device
    model = model.to(dev).train()
    data = _bundle_tensors(lease, "separate")
    train, held = data["train"].to(dev), data["heldout"]
    if held.shape[0] < 2:
        raise DatasetError("the bundle's separation held-out split needs at least 2 crops", path=lease.bundle)
    n = int(SEPARATE_CROP_S * SAMPLE_RATE)
    batch = 2 if lease.smoke else 64
    lr = 5e-4
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(0)
    precision = {"autocast": lease.cuda}

    def step(i: int) -> dict[str, float]:
        idx = torch.randint(0, train.shape[0], (batch,), generator=gen)
        offs = torch.randint(0, max(1, train.shape[-1] - n), (batch,), generator=gen)
        stems = torch.stack([train[j, :, o:o + n] for j, o in zip(idx.tolist(), offs.tolist())]).float()
        gains = 10 ** (torch.empty(batch, stems.shape[1], 1, device=dev).uniform_(-9, 9) / 20)
        gains = gains * (torch.rand(batch, stems.shape[1], 1, device=dev) >= 0.1)
        stems = stems * gains
        mix = stems.sum(dim=1)
        try:
            with lease.ctx.autocast() if precision["autocast"] else contextlib.nullcontext():
                loss = step_loss(model, mix, stems, loss=DEFAULT_LOSS)
        except RuntimeError as err:  # a kernel without bf16 support: fp32 from here (nothing was updated yet)
            if not precision["autocast"]:
                raise
            say(f"separate: bf16 autocast failed ({str(err)[:200]}); fp32 from here")
            precision["autocast"] = False
            loss = step_loss(model, mix, stems, loss=DEFAULT_LOSS)
        return {"loss": apply_step(model, opt, loss)}

    @torch.no_grad()
    def evaluate(part: str) -> dict[str, float]:
        """The trainer's loss on one half of the held-out crops (dry mixes, every role at its own level)."""
        crops = held[HELD_OUT_PARTS.index(part)::2].float()
        model.eval()
        total = 0.0
        for k in range(0, crops.shape[0], 4):
            stems = crops[k:k + 4].to(dev)
            total += float(step_loss(model, stems.sum(dim=1), stems, loss=DEFAULT_LOSS)) * stems.shape[0]
        model.train()
        return {"loss": round(total / crops.shape[0], 5)}

    def snapshot() -> dict[str, Any]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore(state: dict[str, Any]) -> None:
        model.load_state_dict(state)

    def export(out: Path, training: dict[str, Any]) -> list[Path]:
        stem = out / "separate"
        export_separate(model, stem, {"gpu_lease": training, "init": str(start) if start else "seeded start"})
        return list(weight_paths(stem))

    return Job({"model": model, "opt": opt}, [opt], lr, step, evaluate, snapshot, restore, export, batch,
               note=f"{tuple(train.shape)} role-stem windows, {'from ' + str(start) if start else 'no shipped weights: seeded start'}")


TASKS: list[Task] = [
    Task("codec-stem", 2.0, 0.08, ("stem.safetensors", "stem.json"), {"stem": "engines/codec/weights/stem"},
         codec_decoder_job("stem"),
         "the bass engine decodes every take with it; chroma and note F1 were still climbing (TRAINING.md)"),
    Task("bass", 3.0, 0.08, ("bass.safetensors", "bass.json"), {"bass": "engines/bass/weights/bass"}, bass_job,
         "free-mode U-Net: val loss still falling after 3,000 CPU steps (run 5); ~100x the steps per minute here"),
    Task("separate", 1.5, 0.06, ("separate.safetensors", "separate.json"),
         {"separate": "engines/separate/weights/separate"}, separate_job,
         "mask network (engines/separate): +8.7 dB SI-SDRi after 10 CPU minutes (model.py); a bidirectional GRU, "
         "fast in cuDNN"),
    Task("codec-mix", 1.5, 0.06, ("mix.safetensors", "mix.json"), {"mix": "engines/codec/weights/mix"},
         codec_decoder_job("mix"), "mix decoder: same curve as the stem codec, but no engine decodes with it and "
         "its segments do not fit beside the tree (bundle --mix-mib N, then --tasks ...,codec-mix)", default=False),
]
EXTRA_OUTPUTS = ("metrics.json", "lease.log")


def planned_minutes(tasks: list[Task]) -> float:
    return sum(t.minutes for t in tasks) + BENCH_MIN + OVERHEAD_MIN


def check_plan(tasks: list[Task]) -> None:
    """The registry's own limits, checked before anything heavy (also by the tests)."""
    from backline.engines.core.errors import ConfigError

    train = sum(t.minutes for t in tasks)
    files = sum(len(t.outputs) for t in tasks) + len(EXTRA_OUTPUTS)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names repeat: {names}")
    if train > TRAIN_LIMIT_MIN:
        raise ConfigError(f"training budgets add up to {train:g} min, over {TRAIN_LIMIT_MIN:g}")
    if planned_minutes(tasks) > PLAN_LIMIT_MIN:
        raise ConfigError(f"the plan needs {planned_minutes(tasks):.1f} min of device time, over {PLAN_LIMIT_MIN:g}")
    if files > MAX_OUT_FILES:
        raise ConfigError(f"the plan writes {files} files to $OUT, over {MAX_OUT_FILES}")


# --- speed -------------------------------------------------------------------------------------------------------

class Timer:
    """CUDA events on the GPU (what the kernels took, read after a synchronise), wall clock on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        import torch

        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0, out
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out


def bench(lease: Lease, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Warm inference speed of the shipped engines' model paths: bass mix → stem (encode, 64 guided DDIM steps,
    decode), GMSDI extraction of the bass from 12 s, codec encode + decode of 30 s. Best of 3 after a warm-up at
    the same shape. The audio is the bundle's held-out mixes, tiled to length (speed does not depend on it)."""
    import numpy as np
    import torch

    from backline.engines.accompany.engine import build as build_accompany
    from backline.engines.bass.engine import Sampling
    from backline.engines.bass.engine import build as build_bass
    from backline.engines.core.audio import Audio

    device = str(lease.ctx.device)
    timer = Timer(lease.cuda)
    held = _bundle_tensors(lease, "codec_stem")["heldout"].float()  # bass stems: the speed is all that counts
    tape = held.permute(1, 0, 2).reshape(1, -1).repeat(2, 1).numpy()

    def mix_of(seconds: float, rate: int = 44100, mono: bool = False) -> Audio:
        n = int(seconds * rate)
        x = np.tile(tape, (1, n // tape.shape[1] + 1))[:, :n]
        return Audio(x.mean(0, keepdims=True) if mono else x, rate)

    smoke = lease.smoke
    rows: list[dict[str, Any]] = []
    repeats = 1 if smoke else 3

    def measure(name: str, seconds: float, run: Callable[[], dict[str, float]], detail: str) -> None:
        try:
            if not smoke:
                run()  # warm-up (and compile) at this shape
            best = min((run() for _ in range(repeats)), key=lambda r: r["total"])
        except Exception as err:  # noqa: BLE001 - one engine failing must not cost the other rows
            log(f"speed {name}: FAILED ({type(err).__name__}: {str(err)[:300]})")
            traceback.print_exc(file=sys.stdout)
            rows.append({"what": name, "audio_s": seconds, "error": f"{type(err).__name__}: {err}"[:500]})
            return
        rows.append({"what": name, "audio_s": seconds, "detail": detail, "device": device,
                     "clock": "cuda events" if lease.cuda else "wall"} | {k: round(v, 4) for k, v in best.items()})
        log(f"speed {name}: {best['total']:.4f} s for {seconds:g} s of audio ({detail})")

    engine = build_bass("shipped", device)
    steps = 2 if smoke else 64
    sampling = Sampling(steps=steps, cfg=2.0, rescale=0.7, strength=1.0)
    mu = np.zeros(engine.model.cfg.stem_dim, np.float32)

    def bass_run(mix: Audio) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            t_enc, cond = timer(lambda: engine.mix_codec.encode(mix))
            t_smp, lat = timer(lambda: engine.sample_latents(cond, [0], sampling, mu).latents)
            t_dec, _ = timer(lambda: engine.stem_codec.decode(lat[0], mix.frames, channels=2))
            return {"encode": t_enc, "model": t_smp, "decode": t_dec, "total": t_enc + t_smp + t_dec}
        return run

    bass_s = 4.0 if smoke else 30.0
    precision = "bf16 autocast" if lease.cuda else "fp32"
    measure("bass", bass_s, bass_run(mix_of(bass_s)), f"{steps} DDIM steps, CFG batched, {precision}")
    measure("bass first bar", 2.0, bass_run(mix_of(2.0)), "one 4/4 bar at 120 BPM")

    acc = build_accompany("shipped", device)
    gm_s = 2.0 if smoke else 12.0
    gm_steps = 2 if smoke else 32
    prep = acc.prepare(mix_of(gm_s, 16000, mono=True))

    def gm_run() -> dict[str, float]:
        t, _ = timer(lambda: acc.estimates(prep, ("Bass",), mode="extract", steps=gm_steps, w=2.0, seed=0))
        return {"model": t, "total": t}

    measure("gmsdi extract", gm_s, gm_run, f"bass from the mix, {gm_steps} steps")

    from backline.engines.codec import load_codec

    codec = load_codec("mix", device=device)
    codec_s = 4.0 if smoke else 30.0
    mix = mix_of(codec_s)

    def codec_run() -> dict[str, float]:
        t_enc, z = timer(lambda: codec.encode(mix))
        t_dec, _ = timer(lambda: codec.decode(z, mix.frames, channels=2))
        return {"encode": t_enc, "decode": t_dec, "total": t_enc + t_dec}

    measure("codec mix roundtrip", codec_s, codec_run, "encode + decode (SPSI phase)")
    # last, and only with time to spare: the U-Net under torch.compile (a compile takes tens of seconds)
    if lease.cuda and lease.compile and lease.elapsed_min() < lease.deadline_min - 1.0:
        try:
            engine.compiled = torch.compile(engine.model, dynamic=False)
            measure("bass compiled", bass_s, bass_run(mix_of(bass_s)), f"{steps} DDIM steps, torch.compile")
        except Exception as err:  # noqa: BLE001 - a compile failure must not cost the rest of the lease
            log(f"speed bass compiled: failed ({type(err).__name__}: {str(err)[:300]}); skipped")
        engine.compiled = None
    return rows


def speed_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'what':<26} {'audio s':>7} {'encode':>8} {'model':>8} {'decode':>8} {'total':>8} {'x real time':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "total" not in r:
            lines.append(f"{r['what']:<26} {r['audio_s']:7g} FAILED: {r.get('error', '?')[:60]}")
            continue
        cells = " ".join(f"{r[k]:8.4f}" if k in r else f"{'':>8}" for k in ("encode", "model", "decode", "total"))
        lines.append(f"{r['what']:<26} {r['audio_s']:7g} {cells} {r['total'] / r['audio_s']:11.4f}")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------------------------------

class Tee:
    """Everything printed also goes to $OUT/lease.log (the device tool returns only the last 12,000 characters)."""

    def __init__(self, path: Path, stream) -> None:  # noqa: ANN001
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
        self.stream = stream

    def write(self, s: str) -> int:
        self.file.write(s)
        self.file.flush()
        return self.stream.write(s)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def environment(smoke: bool) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    # the version from the package metadata, without importing it: the lease does not use torchaudio
    from importlib.metadata import PackageNotFoundError, version

    try:
        info["torchaudio"] = version("torchaudio")
    except PackageNotFoundError:
        info["torchaudio"] = "not installed"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = p.name
        info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["gpu"] = None
        info["cpu_threads"] = torch.get_num_threads()
    return info


def run(args: argparse.Namespace) -> int:
    # no tqdm bars: thousands of redraws would bury the speed table in the 12,000 characters the device tool
    # returns; TrainLoop then uses its silent bar and progress is the lines printed at each held-out check
    sys.modules.setdefault("tqdm", None)
    guard = None
    if args.smoke or args.strict_imports:
        guard = LeaseImportGuard()
        sys.meta_path.insert(0, guard)
    missing = missing_packages()
    if missing:
        say(f"this machine lacks {', '.join(missing)}; the lease needs python with {', '.join(LEASE_PACKAGES)} "
            "(nothing else is installed or downloaded there)")
        return 2
    bootstrap()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if any(p.name in {n for t in TASKS for n in t.outputs} | set(EXTRA_OUTPUTS) for p in out.iterdir()):
        say(f"{out} already holds lease outputs; give an empty folder (nothing was overwritten)")
        return 2
    sys.stdout = Tee(out / "lease.log", sys.stdout)
    try:
        code = _run(args, out)
    except ModuleNotFoundError as err:
        traceback.print_exc(file=sys.stdout)
        say(f"the lease path needs the python package {err.name!r}, which the GPU machine may not have "
            f"(allowed: {', '.join(LEASE_PACKAGES)}); {err}")
        return 3
    foreign = guard.foreign() if guard is not None else []
    if foreign:
        say(f"the lease path imported {', '.join(foreign)}, beyond {', '.join(LEASE_PACKAGES)} and torch's own "
            "dependencies: the GPU machine may not have them")
        return 3
    return code


def _run(args: argparse.Namespace, out: Path) -> int:
    import torch

    from backline.engines.core.training import Distributed, TrainLoop, seed_everything

    tasks = [t for t in TASKS if t.name in args.tasks.split(",")] if args.tasks else [t for t in TASKS if t.default]
    unknown = set(args.tasks.split(",")) - {t.name for t in TASKS} if args.tasks else set()
    if unknown or not tasks:
        say(f"unknown task(s) {sorted(unknown)}; the plan has {', '.join(t.name for t in TASKS)}")
        return 2
    check_plan(tasks)
    smoke = args.smoke
    rehearse = args.rehearse and not smoke
    scale = REHEARSE_SCALE if rehearse else 1.0
    budget = {t.name: (t.smoke_minutes if smoke else t.minutes * scale) for t in tasks}
    planned = planned_minutes(tasks)
    mode = " (SMOKE: tiny budgets on the CPU)" if smoke else \
        f" (REHEARSAL: real sizes on the CPU, budgets x{REHEARSE_SCALE:g})" if rehearse else ""
    say(f"plan{mode}: " +
        ", ".join(f"{t.name} {budget[t.name]:g} min" for t in tasks) +
        f"; speed table ~{BENCH_MIN:g} min; start-up, evaluation and writing ~{OVERHEAD_MIN:g} min")
    say(f"planned device time {planned:.1f} min (limit {PLAN_LIMIT_MIN:g}); files to $OUT: "
        f"{sum(len(t.outputs) for t in tasks) + len(EXTRA_OUTPUTS)} (limit {MAX_OUT_FILES})")
    env = environment(smoke)
    say("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    if not smoke and not rehearse and not env["cuda_available"]:
        say("no CUDA device here; the real run needs the GPU (use --smoke for the CPU rehearsal)")
        return 2
    if not env["torch"].startswith("2.11"):
        say(f"note: torch {env['torch']} here; the lease was prepared for 2.11 (APIs used are stable since 2.4)")
    bundle = Path(args.bundle)
    if not (bundle / "manifest.json").is_file():
        say(f"no bundle at {bundle} (manifest.json missing): build it here with `python packaging/gpu_lease.py "
            "bundle --out build/gpu-bundle` and carry it")
        return 2
    manifest = json.loads((bundle / "manifest.json").read_text())
    say(f"bundle {bundle}: {manifest.get('bytes', 0) / 2**20:.1f} MiB, {len(manifest.get('train_tracks', []))} "
        f"train / {len(manifest.get('heldout_tracks', []))} held-out songs, built {manifest.get('created')}")
    if smoke or rehearse:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    ctx = Distributed.setup("cpu" if smoke or rehearse else "cuda")
    lease = Lease(ctx, bundle, out, smoke, compile=not args.no_compile and ctx.device.type == "cuda",
                  deadline_min=planned)
    metrics: dict[str, Any] = {"format": FORMAT, "version": VERSION, "smoke": smoke, "rehearsal": rehearse,
                               "started": _utc(),
                               "environment": env, "planned_minutes": round(planned, 2),
                               "plan": {t.name: {"minutes": budget[t.name], "why": t.why, "files": list(t.outputs),
                                                 "install": t.install} for t in tasks},
                               "bundle": {k: manifest.get(k) for k in ("created", "bytes", "train_tracks",
                                                                       "heldout_tracks", "latent_space")},
                               "tasks": {}, "speed": []}
    write_json_atomic(out / "metrics.json", metrics)
    deadline_min = planned  # training budgets shrink if an earlier step overran, so the whole plan keeps its time
    for i, task in enumerate(tasks):
        later = sum(budget[t.name] for t in tasks[i + 1:])
        left = (deadline_min - lease.elapsed_min() - BENCH_MIN - OVERHEAD_MIN / 2) - later
        minutes = budget[task.name] if smoke else min(budget[task.name], left)
        entry: dict[str, Any] = {"status": "running", "budget_min": round(minutes, 3), "files": []}
        metrics["tasks"][task.name] = entry
        if minutes < (0.02 if smoke or rehearse else 0.25):
            entry["status"] = "skipped: no time left"
            say(f"{task.name}: skipped, {minutes:.2f} min left for it")
            continue
        t0 = time.monotonic()
        try:
            seed_everything(1234 + i)
            job = task.prepare(lease, None)
            before = job.evaluate("report")
            best = {"loss": job.evaluate("select")["loss"], "step": 0, "state": job.snapshot(), "at": time.monotonic()}
            say(f"{task.name}: {job.note}; batch {job.batch}; held-out before {before}")
            every_s = 0.0 if smoke or rehearse else SELECT_EVERY_S

            def on_log(step: int, job=job, best=best, every_s=every_s, name=task.name) -> dict[str, float]:
                """Checkpoint selection on the held-out 'select' half, at most every `every_s` seconds."""
                if time.monotonic() - best["at"] < every_s:
                    return {}
                loss = job.evaluate("select")["loss"]
                best["at"] = time.monotonic()
                if loss < best["loss"]:
                    best.update(loss=loss, step=step, state=job.snapshot())
                say(f"  {name} step {step}: held-out (select) {loss:.4f}, best {best['loss']:.4f} at step "
                    f"{best['step']}")
                return {"select_loss": loss}

            holder: dict[str, Any] = {}
            run_dir = Path(tempfile.mkdtemp(prefix=f"gpu-lease-{task.name}-"))  # never in $OUT (8 files back)
            loop = TrainLoop(ctx, run_dir, modules=job.modules, optimizers=job.optimizers, steps=10**9, lr=job.lr,
                             max_minutes=minutes, log_every=5 if smoke or rehearse else 50, ckpt_every=10**9,
                             desc=f"lease {task.name}", lr_fn=_cosine_by_time(holder, job.lr, job.warmup_frac))
            holder["loop"] = loop
            result = loop.run(job.step, on_log)
            on_log(result.step, every_s=0.0)
            job.restore(best["state"])
            after = job.evaluate("report")
            curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] \
                if (run_dir / "metrics.jsonl").exists() else []
            _remove_tree(run_dir)
            improved = after["loss"] < before["loss"]
            training = {"device": env.get("gpu") or "cpu", "torch": env["torch"], "steps": result.step,
                        "batch": job.batch, "minutes": round(result.elapsed_s / 60, 2), "lr": job.lr,
                        "bundle": manifest.get("created"), "heldout_before": before, "heldout_after": after,
                        "selected_step": best["step"], "select_loss": best["loss"],
                        "smoke": smoke, "date": _utc()}
            files = job.export(out, training)
            entry.update(status="done", steps=result.step, batch=job.batch, train_s=round(result.elapsed_s, 1),
                         before=before, after=after, improved=improved, files=[p.name for p in files],
                         selected_step=best["step"], select_loss=best["loss"],
                         curve=[{k: row[k] for k in ("step", "time_s", "loss", "select_loss") if k in row}
                                for row in curve][-60:],
                         install=task.install)
            say(f"{task.name}: {result.step} steps × {job.batch} in {result.elapsed_s:.0f} s; kept step "
                f"{best['step']} (select {best['loss']:.4f}); held-out loss {before['loss']:.4f} → "
                f"{after['loss']:.4f} ({'better' if improved else 'NOT better'})")
        except Exception as err:  # noqa: BLE001 - one task failing must not cost the others their lease time
            entry.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
            say(f"{task.name}: FAILED ({type(err).__name__}: {str(err)[:300]}); going on with the rest")
            traceback.print_exc(file=sys.stdout)
        entry["wall_s"] = round(time.monotonic() - t0, 1)
        write_json_atomic(out / "metrics.json", metrics)
    try:
        rows = [] if args.no_bench else bench(lease, say)
        metrics["speed"] = rows
        if rows:
            print(speed_table(rows), flush=True)
    except Exception as err:  # noqa: BLE001 - the weights are written already; say what broke
        metrics["speed_error"] = f"{type(err).__name__}: {err}"[:2000]
        say(f"speed table FAILED ({type(err).__name__}: {str(err)[:300]})")
        traceback.print_exc(file=sys.stdout)
    metrics["wall_min"] = round(lease.elapsed_min(), 2)
    metrics["finished"] = _utc()
    write_json_atomic(out / "metrics.json", metrics)
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    too_big = [n for n, s in sizes.items() if s > MAX_FILE_BYTES]
    say(f"done in {lease.elapsed_min():.1f} min; $OUT holds {len(sizes)} files "
        f"({sum(sizes.values()) / 2**20:.1f} MiB){'; OVER 16 MiB: ' + ', '.join(too_big) if too_big else ''}")
    for name, entry in metrics["tasks"].items():
        say(f"  {name:<11} {entry['status']:<8} " + (f"held-out {entry['before']['loss']:.4f} → "
                                                    f"{entry['after']['loss']:.4f}" if entry.get("after") else ""))
    failed = [n for n, e in metrics["tasks"].items() if e["status"] == "failed"]
    return 1 if failed or too_big or len(sizes) > MAX_OUT_FILES else 0


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def bundle_main(args: argparse.Namespace) -> int:
    bootstrap()
    from backline.engines.core.errors import BacklineError

    spec = SMOKE_BUNDLE if args.smoke else BundleSpec()
    if args.stem_mib is not None:
        spec.stem_mib = args.stem_mib
    if args.mix_mib is not None:
        spec.mix_mib = args.mix_mib
    try:
        build_bundle(Path(args.out), spec, Path(args.corpus) if args.corpus else None,
                     Path(args.heldout) if args.heldout else None)
    except BacklineError as err:
        say(str(err))
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_lease.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the lease plan (on the GPU machine, or --smoke here)")
    r.add_argument("--bundle", default="build/gpu-bundle", help="the bundle folder (default build/gpu-bundle)")
    r.add_argument("--out", default=os.environ.get("OUT") or "build/gpu-out", help="where the files go (default $OUT)")
    r.add_argument("--smoke", action="store_true", help="the same plan on the CPU with tiny budgets")
    r.add_argument("--tasks", default="", help="comma list of tasks (default: the whole plan)")
    r.add_argument("--no-compile", action="store_true", help="no torch.compile (eager only)")
    r.add_argument("--no-bench", action="store_true", help="skip the speed table")
    r.add_argument("--rehearse", action="store_true", help="the real plan's sizes (real bundle, batches, held-out "
                   f"sets) on the CPU, budgets x{REHEARSE_SCALE:g}: checks what --smoke shrinks")
    r.add_argument("--strict-imports", action="store_true", help="refuse imports outside the lease packages "
                   "(always on with --smoke)")
    b = sub.add_parser("bundle", help="build the data bundle here (renders songs unless --corpus is given)")
    b.add_argument("--out", default="build/gpu-bundle")
    b.add_argument("--corpus", help="Slakh-layout training corpus (default: render one)")
    b.add_argument("--heldout", help="Slakh-layout held-out corpus (default: render one)")
    b.add_argument("--smoke", action="store_true", help="a tiny bundle (one 8-bar song each) for the smoke run")
    b.add_argument("--stem-mib", type=float, default=None, help="MiB of bass-stem segments (default 7)")
    b.add_argument("--mix-mib", type=float, default=None, help="MiB of mix segments for the optional codec-mix task "
                   "(default 0: none)")
    pl = sub.add_parser("plan", help="print the plan and its device time, check the registry's limits")
    del pl
    args = p.parse_args(argv)
    if args.cmd == "bundle":
        return bundle_main(args)
    if args.cmd == "plan":
        bootstrap()
        plan = [t for t in TASKS if t.default]
        check_plan(plan)
        for t in TASKS:
            print(f"{t.name:<11} {t.minutes:4.1f} min {'' if t.default else '(optional) '}{', '.join(t.outputs):<36} "
                  f"{t.why}")
        print(f"planned device time {planned_minutes(plan):.1f} min (limit {PLAN_LIMIT_MIN:g}); bundle room "
              f"{bundle_limit() / 2**20:.1f} MiB beside this working tree")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
