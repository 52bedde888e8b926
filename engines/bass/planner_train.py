"""`backline train bass-planner`: the symbolic bass planner on bass MIDI (composed corpus songs, or your own).

    backline train bass-planner --synth 3000 --run runs/planner --max-minutes 25 \
        --export engines/bass/weights/planner
    backline train bass-planner --corpus MY_SLAKH_LAYOUT --run runs/mine --export mine/planner   # your bass MIDI
    torchrun --nproc_per_node 8 -m backline.engines.bass.planner_train --synth 3000 ... (same arguments)

Recipe: teacher-forced cross-entropy on the step tokens plus 0.5 x cross-entropy on the velocity bucket of each
onset; 16-bar bar-aligned crops transposed to a random key (-5..+6 semitones: all 12 keys), style dropped to
"unknown" 10 % of the time and sections 30 % (so lines can be planned without either), kick hits dropped 8 % and
added 2 % (the listener's kick detector is not perfect); AdamW, warm-up then cosine decay, gradient clip 1.
The exported config stores the mean attributes of every style (what a 0.5 control asks for).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "train the bass planner (symbolic, chords/kick/style → bass MIDI; runs under torchrun)"


def configure(parser: argparse.ArgumentParser) -> None:
    from backline.engines.training import add_training_flags

    parser.add_argument("--synth", type=int, default=0, help="compose this many corpus songs in memory to train on")
    parser.add_argument("--synth-seed", type=int, default=7000, help="composer seed for --synth")
    parser.add_argument("--corpus", type=Path, action="append", default=[],
                        help="a Slakh-layout folder of songs with bass MIDI (repeatable)")
    parser.add_argument("--val-songs", type=int, default=64, help="composed held-out songs for a validation loss")
    add_training_flags(parser, steps=6000, sizes=("small", "debug"), size="small", size_flags=("--size", "--config"),
                       run_flags=("--run-dir", "--run"))
    parser.add_argument("--init", type=Path, help="start from these exported planner weights (fine-tune)")
    parser.add_argument("--batch", type=int, default=32, help="batch per process")
    parser.add_argument("--bars", type=int, default=16, help="bars per training crop")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--export", type=Path, help="write the weights (safetensors + JSON) here at the end")


def make_batch(examples, batch: int, bars: int, rng, *, augment: bool = True):
    import numpy as np
    import torch

    from backline.engines.bass.planner import BOS, features

    rows = [examples[int(rng.integers(len(examples)))] for _ in range(batch)]
    crops = []
    for ex in rows:
        from backline.engines.bass.planner_data import sample_crop

        grid, tok, vel, style, attrs = sample_crop(ex, bars * ex.grid.bar_steps, rng, augment=augment)
        crops.append((features(grid, style, attrs), tok, vel))
    T = max(len(t) for _, t, _ in crops)  # noqa: N806
    F = crops[0][0].shape[1]  # noqa: N806
    cond = np.zeros((batch, T, F), np.float32)
    tok = np.full((batch, T), -100, np.int64)
    vel = np.full((batch, T), -100, np.int64)
    prev = np.full((batch, T), BOS, np.int64)
    for i, (c, t, v) in enumerate(crops):
        n = len(t)
        cond[i, :n], tok[i, :n] = c, t
        vel[i, :n] = np.where(v >= 0, v, -100)
        prev[i, 1:n] = t[:-1]
    return tuple(torch.from_numpy(x) for x in (cond, prev, tok, vel))


def style_attributes(examples) -> dict[str, dict[str, float]]:
    import numpy as np

    from backline.engines.bass.planner import ATTRS, line_attributes

    by: dict[str, list[dict[str, float]]] = {}
    for ex in examples:
        a = line_attributes(ex.notes, ex.grid)
        by.setdefault(ex.style, []).append(a)
        by.setdefault("unknown", []).append(a)
    return {s: {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ATTRS} for s, rows in by.items()}


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from backline.engines.bass.planner import CONFIGS, FORMAT_VERSION, KIND, build_planner, load_planner
    from backline.engines.bass.planner_data import composed_examples, folder_examples
    from backline.engines.errors import ConfigError
    from backline.engines.training import Distributed, TrainLoop, seed_everything
    from backline.engines.weights import save_weights

    if args.synth <= 0 and not args.corpus:
        raise ConfigError("nothing to train on", fix="give --synth N (composed songs) and/or --corpus FOLDER")
    if args.batch <= 0 or args.bars <= 0:
        raise ConfigError("--batch and --bars must be positive")
    torch.set_num_threads(max(1, args.threads))
    ctx = Distributed.setup(args.device)
    seed_everything(args.seed + ctx.rank)
    t0 = time.monotonic()
    examples = composed_examples(args.synth, args.synth_seed) if args.synth > 0 else []
    for folder in args.corpus:
        examples += folder_examples(folder)
    val = composed_examples(args.val_songs, args.synth_seed + 1_000_003, min_bars=16, max_bars=32) \
        if args.val_songs else []
    if ctx.is_main:
        print(f"bass planner: {len(examples)} training songs, {len(val)} held-out, "
              f"data ready in {time.monotonic() - t0:.1f} s")
    model = build_planner(args.size)
    if args.init:
        model.load_state_dict(load_planner(args.init).model.state_dict())
    model = model.to(ctx.device)
    net = ctx.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=args.warmup, max_minutes=args.max_minutes, log_every=args.log_every,
                     ckpt_every=args.ckpt_every, desc="train bass-planner")
    rng = np.random.default_rng([args.seed, ctx.rank, loop.step])
    val_batch = make_batch(val, min(64, len(val)), args.bars, np.random.default_rng(1), augment=False) if val else None
    ce = torch.nn.functional.cross_entropy

    def step_fn(_step: int) -> dict[str, float]:
        cond, prev, tok, vel = (x.to(ctx.device) for x in make_batch(examples, args.batch, args.bars, rng))
        with ctx.autocast():
            logits, vlog, _ = net(cond, prev)
        loss = ce(logits.float().flatten(0, 1), tok.flatten(), ignore_index=-100) + \
            0.5 * ce(vlog.float().flatten(0, 1), vel.flatten(), ignore_index=-100)
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
            c, p, t, _ = (x.to(ctx.device) for x in val_batch)
            lg, _, _ = model(c, p)
            value = float(ce(lg.flatten(0, 1), t.flatten(), ignore_index=-100))
        model.train()
        return {"val_token_ce": value}

    result = loop.run(step_fn, on_log)
    if ctx.is_main and args.export:
        config = CONFIGS[args.size].to_dict() | {"style_attrs": style_attributes(examples)}
        training = {"steps": result.step, "planned_steps": args.steps, "stopped_early": result.stopped_early,
                    "batch": args.batch * ctx.world_size, "bars": args.bars, "lr": args.lr,
                    "data": f"{args.synth} composed songs (seed {args.synth_seed})"
                            + "".join(f" + {c}" for c in args.corpus),
                    "hardware": f"{ctx.device.type} x{ctx.world_size}, {torch.get_num_threads()} thread(s)",
                    "wall_s": round(result.elapsed_s, 1), "final": result.latest}
        path = save_weights(model.eval(), args.export, kind=KIND, config=config, format_version=FORMAT_VERSION,
                            training=training, overwrite=True)
        print(f"exported {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    ctx.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="backline train bass-planner", description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
