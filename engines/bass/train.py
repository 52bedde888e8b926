"""`backline train bass`: paper 000's latent diffusion on cached (mix, bass) latent pairs.

    backline train bass --corpus /work/corpus/train --run runs/bass --config small --steps 4000 \
        --export engines/bass/weights/bass
    torchrun --nproc_per_node 8 -m backline.engines.bass.train --corpus ... (same arguments)

Recipe (paper 000 §4, scaled by --config): v-objective with the cosine schedule, t ~ U(0, 1); 15 % of the
conditioning zeroed per example (for CFG; zero = the training-set mean after standardisation, the same null
the sampler feeds); AdamW (0.9, 0.999), weight decay 0.01, linear warm-up then cosine decay to 10 %; gradient
norm clipped at 1; an EMA of the weights (what is exported); 256-latent-frame crops (~23.8 s). Mixes are
random non-empty subsets of the other stems (see `data.py` for the cache). Per-channel latent statistics of
the cache are measured once and stored in the model's buffers. Rank 0 builds/updates the cache, then every
rank trains on its own random stream (seeded by rank); checkpoints resume exactly (`--run` folder).
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

from backline.engines.core.errors import ConfigError

HELP = "train the bass diffusion model on cached (mix, bass) latents (runs under torchrun)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, help="Slakh-layout corpus to encode into the latent cache first")
    parser.add_argument("--val-corpus", type=Path, help="held-out corpus for a validation loss (encoded too)")
    parser.add_argument("--cache", type=Path, help="latent cache root (default: ~/.cache/backline/bass_pairs)")
    parser.add_argument("--codec", default="shipped", choices=("shipped", "debug", "small"), help="codec weights")
    parser.add_argument("--codec-weights", type=Path,
                        help="folder with mix.safetensors/stem.safetensors (+ .json) to use instead of --codec")
    parser.add_argument("--init", type=Path, help="start from these exported bass weights (fine-tune; latent "
                        "statistics are re-measured on this cache, e.g. after the codec was retrained)")
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.training import add_training_flags

    add_training_flags(parser, steps=4000, sizes=("small", "debug", "paper"), size="small",
                       size_flags=("--size", "--config"), run_flags=("--run-dir", "--run"))
    parser.add_argument("--batch", type=int, default=16, help="batch per process")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--crop", type=int, default=256, help="latent frames per example (paper: 256)")
    parser.add_argument("--subsets", type=int, default=6, help="cached subset mixes per track")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--cond-dropout", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--export", type=Path, help="write the EMA weights (fp16 safetensors + JSON) here at the end")


def run(args: argparse.Namespace) -> int:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    import numpy as np
    import torch

    from backline.engines.bass.data import PairCache, cache_dir_for, encode_pairs
    from backline.engines.bass.engine import FORMAT_VERSION, KIND, codec_fingerprint, load_bass_model
    from backline.engines.bass.model import CONFIGS, UNetConfig, build_model, count_parameters
    from backline.engines.codec import load_codec
    from backline.engines.core.training import (
        Distributed,
        TrainLoop,
        progress_bar,
        seed_everything,
    )
    from backline.engines.core.weights import save_weights
    from backline.engines.diffusion import CosineSchedule
    from backline.engines.diffusion.training import v_objective_step

    if args.steps <= 0 or args.batch <= 0 or args.crop <= 0:
        raise ConfigError("--steps, --batch and --crop must be positive")
    torch.set_num_threads(max(1, args.threads))
    ctx = Distributed.setup(args.device)
    seed_everything(args.seed + ctx.rank)
    if args.codec_weights:
        mix_codec = load_codec("mix", weights=args.codec_weights / "mix")
        stem_codec = load_codec("stem", weights=args.codec_weights / "stem")
    else:
        mix_codec = load_codec("mix", args.codec)
        stem_codec = load_codec("stem", args.codec)
    fps = codec_fingerprint(mix_codec), codec_fingerprint(stem_codec)
    cache_root = args.cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backline" / "bass_pairs"
    train_dir = cache_dir_for(cache_root, *fps) / "train"
    val_dir = cache_dir_for(cache_root, *fps) / "val"
    if ctx.is_main:
        for corpus, where in ((args.corpus, train_dir), (args.val_corpus, val_dir)):
            if corpus is None:
                continue
            bar = progress_bar(0, 0, ctx, f"encoding {corpus.name}")

            def tick(n, total, name, bar=bar):
                bar.total = total
                bar.n = n
                bar.set_postfix_str(name)
                bar.refresh()

            encode_pairs(corpus, where, mix_codec, stem_codec, subsets=args.subsets, seed=args.seed, progress=tick)
            bar.close()
    ctx.barrier()
    pairs = PairCache(sorted(train_dir.glob("*.safetensors")))
    val_files = sorted(val_dir.glob("*.safetensors"))
    val = PairCache(val_files) if val_files else None

    cfg = UNetConfig.from_dict(CONFIGS[args.size].to_dict() | {"cond_dropout": args.cond_dropout, "crop": args.crop})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = build_model(cfg)
    if args.init:
        start, _ = load_bass_model(weights=args.init)
        model.load_state_dict(start.float().state_dict())
    model.set_latent_stats(*pairs.stats())
    model = model.to(ctx.device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    net = ctx.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "ema": ema, "opt": opt}, optimizers=[opt],
                     steps=args.steps, lr=args.lr, warmup=args.warmup, max_minutes=args.max_minutes,
                     log_every=args.log_every, ckpt_every=args.ckpt_every, desc="train bass")
    sched = CosineSchedule()
    rng = np.random.default_rng([args.seed, ctx.rank, loop.step])
    val_rng = np.random.default_rng(12345)
    val_batch = val.batch(32, args.crop, val_rng) if val is not None else None
    if ctx.is_main:
        print(f"bass {args.size}: {count_parameters(model) / 1e6:.2f}M parameters, {len(pairs)} tracks "
              f"({int(pairs.lengths.sum())} latent frames), val {len(val) if val else 0} tracks, device {ctx.device}")

    def train_step(step: int) -> dict[str, float]:
        bass, mix = pairs.batch(args.batch, args.crop, rng)
        bass, mix = model.norm_stem(bass.to(ctx.device)), model.norm_mix(mix.to(ctx.device))
        keep = (torch.rand(bass.shape[0], 1, 1, device=ctx.device) >= args.cond_dropout).to(mix.dtype)
        mix = mix * keep  # 15 % unconditional examples for CFG
        return {"loss": v_objective_step(net, model, ema, opt, sched, bass, mix, ctx, args.ema)}

    def on_log(step: int) -> dict[str, float]:
        return {"val_loss": _val_loss(ema, val_batch, sched, ctx.device)} if val_batch is not None else {}

    done = loop.run(train_step, on_log)
    step, stopped_early, elapsed, log = done.step, done.stopped_early, done.elapsed_s, loop.log
    if ctx.is_main and args.export:
        export = copy.deepcopy(ema).half()
        training = {
            "steps": step, "planned_steps": args.steps, "stopped_early": stopped_early, "batch": args.batch * ctx.world_size,
            "lr": args.lr, "crop": args.crop, "ema": args.ema, "cond_dropout": args.cond_dropout,
            "data": f"{len(pairs)} corpus tracks ({args.corpus or train_dir}), {args.subsets} subset mixes each",
            "codec": str(args.codec_weights or args.codec), "init": str(args.init) if args.init else None,
            "codec_fingerprints": {"mix": fps[0], "stem": fps[1]},
            "hardware": f"{ctx.device.type} x{ctx.world_size}, {torch.get_num_threads()} thread(s)",
            "wall_s": round(elapsed, 1), "final": log.latest,
        }
        config = cfg.to_dict() | {"dtype": "float16", "codec_config": "shipped" if args.codec_weights else args.codec}
        path = save_weights(export, args.export, kind=KIND, config=config, format_version=FORMAT_VERSION,
                            training=training, overwrite=True)
        print(f"exported {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    ctx.close()
    return 0


def _val_loss(model, batch, sched, device) -> float:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    import torch

    from backline.engines.diffusion import v_loss

    bass, mix = batch
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bass, mix = model.norm_stem(bass.to(device)), model.norm_mix(mix.to(device))
        t = torch.rand(bass.shape[0], generator=g).to(device)
        eps = torch.randn(bass.shape, generator=g).to(device)
        return float(v_loss(sched, model(sched.noise(bass, t, eps), t, mix), bass, t, eps))


def main() -> int:
    parser = argparse.ArgumentParser(prog="backline train bass", description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
