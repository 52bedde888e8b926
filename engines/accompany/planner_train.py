"""`backline train comp-planner`: the comping planner of follow mode on the corpus composer's accompaniment parts.

    backline train comp-planner --synth 600 --run runs/comp --max-minutes 15 --export engines/accompany/weights/planner
    torchrun --nproc_per_node 8 -m backline.engines.accompany.planner_train --synth 3000 ... (same arguments)

Recipe (the bass planner's, `bass.planner_train`): teacher-forced cross-entropy on the step tokens + 0.5 × on the
voice index of single-note attacks + 0.5 × on the velocity bucket of attacks; 8-bar bar-aligned crops transposed to
a random key (all 12), style dropped to "unknown" 10 %, sections 30 %, the lead flag 50 % (audio cannot say), band
activity scaled and jittered, kick hits dropped 8 %; AdamW, warm-up then cosine decay, gradient clip 1; resumes from
its `--run` folder. The exported config stores the mean attributes of every family/style (what 0.5 asks for).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

HELP = "train the comping planner (symbolic: chords/band/style → when and how thick the accompaniment plays)"


def configure(parser: argparse.ArgumentParser) -> None:
    from backline.engines.training import add_training_flags

    parser.add_argument("--synth", type=int, default=600, help="compose this many corpus songs in memory")
    parser.add_argument("--synth-seed", type=int, default=7100, help="composer seed for --synth")
    parser.add_argument("--val-songs", type=int, default=24, help="composed held-out songs for a validation loss")
    add_training_flags(parser, steps=3000, sizes=("small", "debug"), size="small", size_flags=("--size", "--config"),
                       run_flags=("--run-dir", "--run"))
    parser.add_argument("--init", type=Path, help="start from these exported planner weights (fine-tune)")
    parser.add_argument("--batch", type=int, default=16, help="batch per process")
    parser.add_argument("--bars", type=int, default=8, help="bars per training crop")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--ckpt-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--export", type=Path, help="write the weights (safetensors + JSON) here at the end")


def make_batch(examples, batch: int, bars: int, rng, *, augment: bool = True):
    import numpy as np
    import torch

    from backline.engines.accompany.planner import BOS, features
    from backline.engines.accompany.planner_data import sample_crop

    crops = []
    for _ in range(batch):
        ex = examples[int(rng.integers(len(examples)))]
        grid, band, tok, vidx, vel, family, style, attrs = sample_crop(ex, bars * ex.grid.bar_steps, rng,
                                                                       augment=augment)
        crops.append((features(grid, family, style, attrs, band), tok, vidx, vel))
    T = max(len(c[1]) for c in crops)  # noqa: N806
    F = crops[0][0].shape[1]  # noqa: N806
    cond = np.zeros((batch, T, F), np.float32)
    tok = np.full((batch, T), -100, np.int64)
    vidx = np.full((batch, T), -100, np.int64)
    vel = np.full((batch, T), -100, np.int64)
    prev = np.full((batch, T), BOS, np.int64)
    for i, (c, t, vi, v) in enumerate(crops):
        n = len(t)
        cond[i, :n], tok[i, :n] = c, t
        vidx[i, :n] = np.where(vi >= 0, vi, -100)
        vel[i, :n] = np.where(v >= 0, v, -100)
        prev[i, 1:n] = t[:-1]
    return tuple(torch.from_numpy(x) for x in (cond, prev, tok, vidx, vel))


def style_attributes(examples) -> dict[str, dict[str, float]]:
    import numpy as np

    from backline.engines.accompany.planner import ATTRS, part_attributes

    by: dict[str, list[dict[str, float]]] = {}
    for ex in examples:
        a = part_attributes(ex.events, ex.grid, ex.mean_pitch)
        by.setdefault(f"{ex.family}/{ex.style}", []).append(a)
        by.setdefault(f"{ex.family}/unknown", []).append(a)
    return {s: {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ATTRS} for s, rows in by.items()}


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from backline.engines.accompany.planner import CONFIGS, FORMAT_VERSION, KIND, build_planner, load_planner
    from backline.engines.accompany.planner_data import composed_examples
    from backline.engines.errors import ConfigError
    from backline.engines.training import Distributed, TrainLoop, seed_everything
    from backline.engines.weights import save_weights

    if args.synth <= 0:
        raise ConfigError("nothing to train on", fix="give --synth N (composed songs)")
    if args.batch <= 0 or args.bars <= 0:
        raise ConfigError("--batch and --bars must be positive")
    torch.set_num_threads(max(1, args.threads))
    ctx = Distributed.setup(args.device)
    seed_everything(args.seed + ctx.rank)
    t0 = time.monotonic()
    examples = composed_examples(args.synth, args.synth_seed)
    val = composed_examples(args.val_songs, args.synth_seed + 1_000_003, max_bars=32) if args.val_songs else []
    if ctx.is_main:
        print(f"comp planner: {len(examples)} training parts, {len(val)} held-out, "
              f"data ready in {time.monotonic() - t0:.1f} s")
    model = build_planner(args.size)
    if args.init:
        model.load_state_dict(load_planner(args.init).model.state_dict())
    model = model.to(ctx.device)
    net = ctx.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=args.warmup, max_minutes=args.max_minutes, log_every=args.log_every,
                     ckpt_every=args.ckpt_every, desc="train comp-planner")
    rng = np.random.default_rng([args.seed, ctx.rank, loop.step])
    val_batch = make_batch(val, min(64, len(val)), args.bars, np.random.default_rng(1), augment=False) if val else None
    ce = torch.nn.functional.cross_entropy

    def losses(m, batch):
        cond, prev, tok, vidx, vel = (x.to(ctx.device) for x in batch)
        logits, vlog, velog, _ = m(cond, prev)
        tok_ce = ce(logits.float().flatten(0, 1), tok.flatten(), ignore_index=-100)
        voice_ce = ce(vlog.float().flatten(0, 1), vidx.flatten(), ignore_index=-100) if (vidx >= 0).any() \
            else torch.zeros((), device=cond.device)
        vel_ce = ce(velog.float().flatten(0, 1), vel.flatten(), ignore_index=-100)
        return tok_ce, voice_ce, vel_ce

    def step_fn(_step: int) -> dict[str, float]:
        with ctx.autocast():
            tok_ce, voice_ce, vel_ce = losses(net, make_batch(examples, args.batch, args.bars, rng))
        loss = tok_ce + 0.5 * voice_ce + 0.5 * vel_ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": float(loss.detach())}

    def on_log(_step: int) -> dict[str, float]:
        if val_batch is None:
            return {}
        model.eval()
        with torch.no_grad():
            tok_ce, voice_ce, vel_ce = losses(model, val_batch)
        model.train()
        return {"val_token_ce": float(tok_ce), "val_voice_ce": float(voice_ce), "val_vel_ce": float(vel_ce)}

    result = loop.run(step_fn, on_log)
    if ctx.is_main and args.export:
        config = CONFIGS[args.size].to_dict() | {"style_attrs": style_attributes(examples)}
        training = {"steps": result.step, "planned_steps": args.steps, "stopped_early": result.stopped_early,
                    "batch": args.batch * ctx.world_size, "bars": args.bars, "lr": args.lr,
                    "data": f"{args.synth} composed songs (seed {args.synth_seed})",
                    "hardware": f"{ctx.device.type} x{ctx.world_size}, {torch.get_num_threads()} thread(s)",
                    "wall_s": round(result.elapsed_s, 1), "final": result.latest}
        # shipped as fp16 (a quarter of a MiB; loads as fp32)
        path = save_weights(copy.deepcopy(model).half().eval(), args.export, kind=KIND, config=config,
                            format_version=FORMAT_VERSION, training=training, overwrite=True)
        print(f"exported {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    ctx.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="backline train comp-planner", description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
