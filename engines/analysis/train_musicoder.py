"""`backline train musicoder`: masked-reconstruction pretraining (CFM + CCM, Huber) of MusiCoder.

Data: 5 s random-stem-subset crops of the corpus (feature cache, see `dataset`); CMVN statistics are fitted
on the training crops first and stored with the weights. Adam (0.9, 0.999, ε 1e-6) with the Noam schedule
(eq. 4; the warm-up is shortened for short CPU runs, `--warmup`). `--objectives` selects CFM, CCM, both or
none (none = CMVN-fitted random initialisation, the ablation's "w/o pre-training"). Runs unchanged under
torchrun; resumes from `run_dir/checkpoint.*`; `--minutes` caps wall time (a checkpoint and the weights are
written when it runs out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from backline.engines.analysis import dataset
from backline.engines.analysis.common import add_data_args, ensure_cache, load_crops, setup_threads
from backline.engines.analysis.musicoder import MusiCoderPretrainer, get_config, noam_lr
from backline.engines.core.training import Distributed, TrainLoop, seed_everything
from backline.engines.core.weights import save_weights

HELP = "pretrain MusiCoder (CFM + CCM masked reconstruction) on the corpus"


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_args(parser)
    parser.add_argument("--size", "--config", dest="config", default="small",
                        help="model size: base | large | small (shipped) | debug")
    parser.add_argument("--objectives", default="cfm+ccm", choices=["cfm+ccm", "cfm", "ccm", "none"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=250, help="frames per training sequence (50/s)")
    parser.add_argument("--warmup", type=int, default=300, help="Noam warm-up steps (paper: 8000)")
    parser.add_argument("--lr-scale", type=float, default=1.0, help="multiplies the Noam rate")
    parser.add_argument("--max-minutes", "--minutes", dest="minutes", type=float, default=25.0,
                        help="stop (and save) after this many minutes; every rank agrees on when (default 25)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/analysis/musicoder"))
    parser.add_argument("--out", type=Path, default=None, help="weights path (default: run-dir/musicoder)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    ctx = Distributed.setup("cpu" if not torch.cuda.is_available() else "auto")
    seed_everything(args.seed + ctx.rank)
    if ctx.is_main:
        ensure_cache(args, "train")
    ctx.barrier()
    crops = load_crops(args, "train")
    train, _ = dataset.split_by_track(crops)
    cfg = get_config(args.config)
    model = MusiCoderPretrainer(cfg)
    model.encoder.cmvn.fit(train.frames[:2000].float())
    model = ctx.wrap(model)
    inner = getattr(model, "module", model)
    opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.999), eps=1e-6)
    cfm, ccm = "cfm" in args.objectives, "ccm" in args.objectives
    steps = 0 if args.objectives == "none" else args.steps
    started = time.monotonic()
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=max(steps, 1),
                     lr=args.lr_scale, lr_fn=lambda s: args.lr_scale * noam_lr(s + 1, cfg.hidden, args.warmup),
                     max_minutes=args.minutes, log_every=20, ckpt_every=200, desc="musicoder")
    gen = torch.Generator().manual_seed(args.seed * 1000 + ctx.rank + loop.step)
    model.train()

    def train_step(step: int) -> dict[str, float]:
        idx = torch.randint(0, len(train), (args.batch,), generator=gen)
        t0 = int(torch.randint(0, train.frames.shape[1] - args.frames + 1, (1,), generator=gen))
        x = train.frames[idx, t0 : t0 + args.frames].float().to(ctx.device)
        with ctx.autocast():
            loss = model(x, gen, cfm=cfm, ccm=ccm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    step = loop.run(train_step).step if steps > 0 else 0
    log = loop.log
    if ctx.is_main:
        out = args.out or Path(args.run_dir) / "musicoder"
        save_weights(inner.encoder, out, kind="musicoder-encoder", config=cfg.to_dict(), overwrite=True,
                     training={"objectives": args.objectives, "steps": step, "batch": args.batch,
                               "frames": args.frames, "final_loss": log.latest.get("loss"),
                               "minutes": round((time.monotonic() - started) / 60, 2), "crops": len(train)})
        print(f"saved {out} after {step} steps (loss {log.latest.get('loss')})")
    ctx.close()
    return 0
