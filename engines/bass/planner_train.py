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

from backline.engines.core.errors import ConfigError

HELP = "train the bass planner (symbolic, chords/kick/style → bass MIDI; runs under torchrun)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--synth", type=int, default=0, help="compose this many corpus songs in memory to train on")
    parser.add_argument("--synth-seed", type=int, default=7000, help="composer seed for --synth")
    parser.add_argument("--corpus", type=Path, action="append", default=[],
                        help="a Slakh-layout folder of songs with bass MIDI (repeatable)")
    parser.add_argument("--val-songs", type=int, default=64, help="composed held-out songs for a validation loss")
    add_planner_flags(parser, steps=6000, batch=32, bars=16, lr=2e-3, warmup=200, log_every=50, ckpt_every=500)


def add_planner_flags(parser: argparse.ArgumentParser, *, steps: int, batch: int, bars: int, lr: float, warmup: int,
                      log_every: int, ckpt_every: int) -> None:
    """The flags every planner trainer takes (`train_planner` reads them); both planners declare them here so the
    two command lines cannot drift. Defaults are each planner's own."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.training import add_training_flags

    add_training_flags(parser, steps=steps, sizes=("small", "debug"), size="small", size_flags=("--size", "--config"),
                       run_flags=("--run-dir", "--run"))
    parser.add_argument("--init", type=Path, help="start from these exported planner weights (fine-tune)")
    parser.add_argument("--batch", type=int, default=batch, help="batch per process")
    parser.add_argument("--bars", type=int, default=bars, help="bars per training crop")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=log_every)
    parser.add_argument("--ckpt-every", type=int, default=ckpt_every)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--export", type=Path, help="write the weights (safetensors + JSON) here at the end")


def make_batch(examples, batch: int, bars: int, rng, *, augment: bool = True):
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.bass.planner import BOS, features
    from backline.engines.bass.planner_data import sample_crop

    rows = [examples[int(rng.integers(len(examples)))] for _ in range(batch)]
    crops = []
    for ex in rows:
        grid, tok, vel, style, attrs = sample_crop(ex, bars * ex.grid.bar_steps, rng, augment=augment)
        crops.append((features(grid, style, attrs), tok, vel))
    return pad_batch(crops, BOS)


def pad_batch(crops, bos: int):
    """[(cond [T, F], tokens [T], *labels [T])] of varied T → tensors (cond, previous tokens, tokens, *labels),
    padded to the longest crop; padding and labels < 0 (no attack) read -100, which the losses ignore. Shared by
    both planners' `make_batch`."""
    import numpy as np
    import torch

    batch = len(crops)
    T = max(len(c[1]) for c in crops)  # noqa: N806
    F = crops[0][0].shape[1]  # noqa: N806
    cond = np.zeros((batch, T, F), np.float32)
    tok = np.full((batch, T), -100, np.int64)
    labels = [np.full((batch, T), -100, np.int64) for _ in crops[0][2:]]
    prev = np.full((batch, T), bos, np.int64)
    for i, (c, t, *ls) in enumerate(crops):
        n = len(t)
        cond[i, :n], tok[i, :n] = c, t
        for out, v in zip(labels, ls):
            out[i, :n] = np.where(v >= 0, v, -100)
        prev[i, 1:n] = t[:-1]
    return tuple(torch.from_numpy(x) for x in (cond, prev, tok, *labels))


def style_attributes(examples) -> dict[str, dict[str, float]]:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    import numpy as np

    from backline.engines.bass.planner import ATTRS, line_attributes

    by: dict[str, list[dict[str, float]]] = {}
    for ex in examples:
        a = line_attributes(ex.notes, ex.grid)
        by.setdefault(ex.style, []).append(a)
        by.setdefault("unknown", []).append(a)
    return {s: {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ATTRS} for s, rows in by.items()}


def run(args: argparse.Namespace) -> int:
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    import torch

    from backline.engines.bass import planner
    from backline.engines.bass.planner_data import composed_examples, folder_examples

    if args.synth <= 0 and not args.corpus:
        raise ConfigError("nothing to train on", fix="give --synth N (composed songs) and/or --corpus FOLDER")

    def load_data():
        examples = composed_examples(args.synth, args.synth_seed) if args.synth > 0 else []
        for folder in args.corpus:
            examples += folder_examples(folder)
        val = composed_examples(args.val_songs, args.synth_seed + 1_000_003, min_bars=16, max_bars=32) \
            if args.val_songs else []
        return examples, val

    ce = torch.nn.functional.cross_entropy

    def losses(m, batch):
        cond, prev, tok, vel = batch
        logits, vlog, _ = m(cond, prev)
        return (ce(logits.float().flatten(0, 1), tok.flatten(), ignore_index=-100),
                ce(vlog.float().flatten(0, 1), vel.flatten(), ignore_index=-100))

    return train_planner(args, planner, name="bass-planner", unit="songs", load_data=load_data,
                         make_batch=make_batch, losses=losses, weights=(1.0, 0.5), val_keys=("val_token_ce",),
                         style_attributes=style_attributes,
                         data=f"{args.synth} composed songs (seed {args.synth_seed})"
                         + "".join(f" + {c}" for c in args.corpus))


def train_planner(args: argparse.Namespace, planner, *, name: str, unit: str, load_data, make_batch, losses,
                  weights: tuple[float, ...], val_keys: tuple[str, ...], style_attributes, data: str,
                  half: bool = False) -> int:
    """The training body both planners share (bass here, comping in `accompany.planner_train`), so recipe fixes
    land in both: `planner` is the planner module (build/load, CONFIGS, KIND, FORMAT_VERSION); `losses(model,
    batch)` → the cross-entropies, summed with `weights` for the step and logged under `val_keys` on the held-out
    batch; AdamW, TrainLoop (warm-up, cosine, resume), gradient clip 1; exported with the per-style attribute
    means (fp16 when `half`)."""
    import copy

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    import numpy as np
    import torch

    from backline.engines.core.training import Distributed, TrainLoop, seed_everything
    from backline.engines.core.weights import save_weights

    if args.batch <= 0 or args.bars <= 0:
        raise ConfigError("--batch and --bars must be positive")
    torch.set_num_threads(max(1, args.threads))
    ctx = Distributed.setup(args.device)
    seed_everything(args.seed + ctx.rank)
    t0 = time.monotonic()
    examples, val = load_data()
    if ctx.is_main:
        print(f"{name.replace('-', ' ')}: {len(examples)} training {unit}, {len(val)} held-out, "
              f"data ready in {time.monotonic() - t0:.1f} s")
    model = planner.build_planner(args.size)
    if args.init:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in planner.load_planner(args.init).weights.items()})
    model = model.to(ctx.device)
    net = ctx.wrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=args.warmup, max_minutes=args.max_minutes, log_every=args.log_every,
                     ckpt_every=args.ckpt_every, desc=f"train {name}")
    rng = np.random.default_rng([args.seed, ctx.rank, loop.step])
    val_batch = make_batch(val, min(64, len(val)), args.bars, np.random.default_rng(1), augment=False) if val else None

    def step_fn(_step: int) -> dict[str, float]:
        batch = tuple(x.to(ctx.device) for x in make_batch(examples, args.batch, args.bars, rng))
        with ctx.autocast():
            parts = losses(net, batch)
        loss = sum(w * p for w, p in zip(weights, parts))
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
            parts = losses(model, tuple(x.to(ctx.device) for x in val_batch))
        model.train()
        return {k: float(p) for k, p in zip(val_keys, parts)}

    result = loop.run(step_fn, on_log)
    if ctx.is_main and args.export:
        config = planner.CONFIGS[args.size].to_dict() | {"style_attrs": style_attributes(examples)}
        training = {"steps": result.step, "planned_steps": args.steps, "stopped_early": result.stopped_early,
                    "batch": args.batch * ctx.world_size, "bars": args.bars, "lr": args.lr, "data": data,
                    "hardware": f"{ctx.device.type} x{ctx.world_size}, {torch.get_num_threads()} thread(s)",
                    "wall_s": round(result.elapsed_s, 1), "final": result.latest}
        path = save_weights((copy.deepcopy(model).half() if half else model).eval(), args.export, kind=planner.KIND,
                            config=config, format_version=planner.FORMAT_VERSION, training=training, overwrite=True)
        print(f"exported {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    ctx.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="backline train bass-planner", description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
