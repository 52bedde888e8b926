"""`backline train gmsdi`: paper 003's text-conditioned score model on mixtures and sub-mixtures of corpus stems.

    backline train gmsdi --corpus /work/data/corpus --run-dir runs/gmsdi --config small --steps 4000 \
        --max-minutes 30 --export engines/accompany/weights/gmsdi
    torchrun --nproc_per_node 8 -m backline.engines.accompany.train --corpus ... (same arguments; --run-dir,
        not --run, which torchrun's own parser would take for its --run-path)

Recipe: v-objective on the cosine schedule, t ~ U(0, 1); an example is a random 2 s crop, random per-stem
gains (±40 %), a random non-empty subset of the roles present summed as audio, its linear magnitude spectrum
scaled by the full mixture's gain (spec.py) and divided per bin by the model's `bin_scale` (measured at the
start on 256 full-mixture crops), and the embedding of its concatenated labels from the frozen
text encoder (table of all 63 label sets built once, shipped as labels.safetensors). With probability
`--cond-dropout` the embedding is swapped for the model's learned null embedding z* (CFG, negative prompts).
AdamW (0.9, 0.999), weight decay 0.01, linear warm-up then cosine decay to 10 %; gradient norm clipped at 1;
EMA of the weights is what gets exported (fp16). Rank 0 builds the audio cache (16 kHz mono role stems) and
every rank trains on its own random stream; checkpoints resume exactly (`--run` folder).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from backline.engines.accompany.roles import label_text
from backline.engines.core.errors import ConfigError

HELP = "train the GMSDI accompaniment/separation score model (runs under torchrun)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, required=True, action="append",
                        help="Slakh-layout corpus (backline data synth); repeat for several")
    parser.add_argument("--holdout", type=int, default=0, help="leave the last N tracks out of training")
    parser.add_argument("--cache", type=Path, help="16 kHz stem cache (default: RUN/stem_cache)")
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.training import add_training_flags

    add_training_flags(parser, steps=4000, sizes=("small", "debug"), size="small",
                       size_flags=("--size", "--config"), run_flags=("--run-dir", "--run"))
    parser.add_argument("--batch", type=int, default=12, help="batch per process")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--crop", type=int, default=0, help="frames per example (default: the config's)")
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--cond-dropout", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--ckpt-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--export", type=Path, help="write the EMA weights (fp16 safetensors + JSON) here at the end")


def label_table(texts_from_shipped: bool = True):
    """(texts, [63, 384] vectors) for every role set: the shipped table when present, else the encoder."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.data import all_subsets

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.engine import WEIGHTS_DIR

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.text import TextEncoder, load_table

    texts = [label_text(s) for s in all_subsets()]
    shipped = WEIGHTS_DIR / "labels.safetensors"
    table = load_table(shipped) if texts_from_shipped and shipped.exists() else {}
    enc = TextEncoder(table)
    import torch

    return texts, torch.as_tensor(enc.encode(texts))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.data import StemCache, build_cache, split_tracks

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.engine import FORMAT_VERSION, KIND

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.model import CONFIGS, ScoreConfig, build_model, count_parameters

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.training import (
        Distributed,
        TrainLoop,
        progress_bar,
        seed_everything,
    )

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.weights import save_weights

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.diffusion import CosineSchedule

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.diffusion.training import v_objective_step

    if args.steps <= 0 or args.batch <= 0 or args.crop < 0:
        raise ConfigError("--steps and --batch must be positive, --crop >= 0")
    torch.set_num_threads(max(1, args.threads))
    ctx = Distributed.setup(args.device)
    seed_everything(args.seed + ctx.rank)
    cache_dir = args.cache or args.run_dir / "stem_cache"
    files = []
    for corpus in args.corpus:
        train_tracks, _ = split_tracks(corpus, args.holdout)
        where = cache_dir / corpus.resolve().name
        if ctx.is_main:
            bar = progress_bar(len(train_tracks), 0, ctx, f"caching {corpus.name}")

            def tick(n, total, name, bar=bar):
                bar.n = n
                bar.set_postfix_str(name)
                bar.refresh()

            build_cache(train_tracks, where, progress=tick)
            bar.close()
        files += [where / f"{t.name}.safetensors" for t in train_tracks]
    ctx.barrier()
    data = StemCache([f for f in files if f.exists()])
    texts, table = label_table()
    table = table.to(ctx.device)

    base = CONFIGS[args.size]
    cfg = ScoreConfig.from_dict(base.to_dict() | {"cond_dropout": args.cond_dropout, "crop": args.crop or base.crop})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = build_model(cfg)
    with torch.random.fork_rng(devices=[]):
        model.bin_scale.copy_(data.mixture_profile(256, cfg.crop, np.random.default_rng(args.seed)))
    model = model.to(ctx.device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    net = ctx.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "ema": ema, "opt": opt}, optimizers=[opt],
                     steps=args.steps, lr=args.lr, warmup=args.warmup, max_minutes=args.max_minutes,
                     log_every=args.log_every, ckpt_every=args.ckpt_every, desc="train gmsdi")
    sched = CosineSchedule()
    rng = np.random.default_rng([args.seed, ctx.rank, loop.step])
    if ctx.is_main:
        print(f"gmsdi {args.size}: {count_parameters(model) / 1e6:.2f}M parameters, {len(data)} tracks, "
              f"crop {cfg.crop} frames, device {ctx.device}")
    scale = model.bin_scale[:, None].detach().cpu()

    def train_step(step: int) -> dict[str, float]:
        x, labels = data.batch(args.batch, cfg.crop, rng)
        x, labels = (x / scale).to(ctx.device), labels.to(ctx.device)
        text = table[labels]
        drop = torch.rand(x.shape[0], 1, device=ctx.device) < args.cond_dropout
        text = torch.where(drop, model.null(x.shape[0]), text)  # the learned z*, for CFG
        return {"loss": v_objective_step(net, model, ema, opt, sched, x, text, ctx, args.ema)}

    done = loop.run(train_step)
    step, stopped_early, elapsed, log = done.step, done.stopped_early, done.elapsed_s, loop.log
    if ctx.is_main and args.export:
        export = copy.deepcopy(ema).half()
        training = {
            "steps": step, "planned_steps": args.steps, "stopped_early": stopped_early,
            "batch": args.batch * ctx.world_size, "lr": args.lr, "crop": cfg.crop, "ema": args.ema,
            "cond_dropout": args.cond_dropout, "data": f"{len(data)} corpus tracks ({', '.join(map(str, args.corpus))})",
            "hardware": f"{ctx.device.type} x{ctx.world_size}, {torch.get_num_threads()} thread(s)",
            "wall_s": round(elapsed, 1), "final": log.latest,
        }
        path = save_weights(export, args.export, kind=KIND, config=cfg.to_dict() | {"dtype": "float16"},
                            format_version=FORMAT_VERSION, training=training, overwrite=True)
        print(f"exported {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    ctx.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="backline train gmsdi", description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
