"""Bass engine speed: end-to-end seconds for a 30 s mix → bass stem at 64 DDIM steps with CFG (cond + uncond
batched in one forward), on the CPU and, where CUDA exists, on the GPU with fp32, bf16 autocast, torch.compile
and CUDA graphs (torch.compile mode="reduce-overhead" captures the U-Net step into a CUDA graph).

    .venv/bin/python benchmarks/bass_speed.py [--config shipped|debug] [--seconds 30] [--steps 64] [--threads 2]

"End to end" = mix encode + 64 guided, grounded DDIM steps + stem decode (the stem WAV as written, without the
MIDI transcription, which is timed separately because it is optional work for the DAW). Prints the hardware.
Targets (issue 4): ≤ 0.25 s on an H100; ≤ 0.5× real time (15 s for 30 s) on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name

from backline.engines.bass.engine import Sampling, build
from backline.engines.core.audio import Audio


def test_mix(seconds: float, sr: int = 44100) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 311.1)]
    x = np.zeros_like(t)
    for i, ch in enumerate(chords * int(seconds // 8 + 1)):
        seg = (t >= i * 2) & (t < (i + 1) * 2)
        x[seg] = sum(np.sin(2 * np.pi * f * t[seg]) for f in ch) * 0.15
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-np.mod(t, 0.5) * 30) * 0.5
    return Audio(np.stack([x + kick, x + kick]).astype(np.float32), sr)


def end_to_end(engine, mix: Audio, steps: int, sync=lambda: None) -> dict[str, float]:
    s = Sampling(steps=steps, cfg=2.0, rescale=0.7, strength=1.0)
    mu = np.zeros(engine.model.cfg.stem_dim, np.float32)
    t0 = time.perf_counter()
    cond = engine.mix_codec.encode(mix)
    sync()
    t1 = time.perf_counter()
    lat = engine.sample_latents(cond, [0], s, mu).latents
    sync()
    t2 = time.perf_counter()
    out = engine.stem_codec.decode(lat[0].cpu(), mix.frames, channels=2)
    sync()
    t3 = time.perf_counter()
    assert out.frames == mix.frames
    return {"encode": t1 - t0, "sample": t2 - t1, "decode": t3 - t2, "total": t3 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="shipped")
    ap.add_argument("--weights", type=Path, help="bass weights to evaluate instead of the shipped ones")
    ap.add_argument("--codec-weights", type=Path, help="folder with mix/stem codec weights (default: shipped)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--transcribe", action="store_true", help="also time the MIDI transcription (basic-pitch)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    mix = test_mix(a.seconds)
    print(f"bass_speed: {a.seconds:.0f} s mix, {a.steps} DDIM steps, CFG λ=2 φ=0.7 (batched), grounding on")
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {a.threads} thread(s)")
    engine = build(a.config, "cpu", weights=a.weights, codec_weights=a.codec_weights)
    print(f"weights: {engine.describe().weights}")
    end_to_end(engine, test_mix(4.0), 2)  # warm-up
    runs = [end_to_end(engine, mix, a.steps) for _ in range(a.repeats)]
    best = min(runs, key=lambda r: r["total"])
    print(f"{'device':<28} {'encode':>8} {'sample':>8} {'decode':>8} {'total':>8} {'x real time':>12}")
    print(f"{'cpu fp32':<28} {best['encode']:8.3f} {best['sample']:8.3f} {best['decode']:8.3f} {best['total']:8.3f} "
          f"{best['total'] / a.seconds:12.3f}")
    if a.transcribe:
        from backline.engines.bass.transcription import bass_midi
        from backline.engines.core.timeline import Timeline

        t0 = time.perf_counter()
        bass_midi(mix, Timeline.constant(120, mix.sample_rate), 0)
        print(f"MIDI transcription (basic-pitch) of {a.seconds:.0f} s: {time.perf_counter() - t0:.2f} s")
    if not torch.cuda.is_available():
        print("CUDA: not available on this machine — GPU rows skipped (run this script on a GPU host)")
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    sync = torch.cuda.synchronize
    gpu = build(a.config, "cuda", weights=a.weights, codec_weights=a.codec_weights)
    variants = [("cuda bf16 autocast", None), ("cuda bf16 + torch.compile", "default"),
                ("cuda bf16 + CUDA graphs", "reduce-overhead")]
    for label, mode in variants:
        gpu.compiled = None
        if mode is not None:
            gpu.compiled = torch.compile(gpu.model, mode=mode, dynamic=False)
        for _ in range(2):  # compile + warm-up at the benchmark shape
            end_to_end(gpu, mix, a.steps, sync)
        r = min((end_to_end(gpu, mix, a.steps, sync) for _ in range(max(3, a.repeats))), key=lambda r: r["total"])
        print(f"{label:<28} {r['encode']:8.3f} {r['sample']:8.3f} {r['decode']:8.3f} {r['total']:8.3f} "
              f"{r['total'] / a.seconds:12.4f}")


if __name__ == "__main__":
    main()
