"""`backline train separate-gmsdi`: the mask-parametrised GMSDI score model (diffusion.py) on the separation
network's augmented renders (data.py's cache and crops, the same as `train separate`).

    backline train separate-gmsdi --cache RUN8/cache/train0 ... --run-dir RUN --max-minutes 45 \
        --export RUN/export

A fresh run starts from the shipped *predictive* weights (`--init`): the score network is the mask network with
zero-initialised conditioning layers (diffusion.from_predictive), so step 0 already denoises as well as the
predictive estimate and training only learns what the noisy source adds. The run resumes from its own
checkpoint (TrainLoop). Every `--eval-every` steps an fp16 snapshot goes to RUN/snapshots/stepN (the learning
curve is scored from them by benchmarks/separate_gmsdi_eval.py, outside the training clock) and a held-out
denoising loss at three fixed noise levels goes to metrics.jsonl.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from backline.engines.accompany.spec import mix_scale
from backline.engines.core.frontend import stft
from backline.engines.core.training import (
    Distributed,
    TrainLoop,
    add_training_flags,
    apply_update,
    seed_everything,
)
from backline.engines.core.weights import save_weights, weight_paths
from backline.engines.separate.data import cached_files, crops, load_cache
from backline.engines.separate.diffusion import (
    CONFIG,
    KIND,
    MaskScoreNet,
    build,
    denoising_loss,
    from_predictive,
    load_score_model,
)
from backline.engines.separate.engine import load_model
from backline.engines.separate.model import HOP, N_FFT, SAMPLE_RATE

HELP = "train the mask-parametrised GMSDI score model for separation (issue 21)"
SHIPPED = Path(__file__).with_name("weights") / "separate"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, required=True, action="append",
                        help="a folder of cached renders (data.py: Track*.npy); repeatable")
    parser.add_argument("--val-cache", type=Path, help="held-out renders for the in-loop denoising loss")
    add_training_flags(parser, steps=3000, minutes=45)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--low-other", type=float, default=0.3)
    parser.add_argument("--remix", type=float, default=0.3)
    parser.add_argument("--shift", type=float, default=2.0)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--init", type=Path, default=SHIPPED,
                        help="predictive weights a fresh run starts from ('' = random)")
    parser.add_argument("--init-score", type=Path,
                        help="start a fresh run from a score-network export instead of the predictive weights")
    parser.add_argument("--spread-lr", type=float, default=0.0,
                        help="give the skip's one scalar (the data spread s) its own Adam at this fixed LR; at the "
                             "network's LR it moved at Adam's top pace all through run 1 (0.50 → 0.43)")
    parser.add_argument("--export", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)


def export(model: torch.nn.Module, path: Path, training: dict) -> None:
    half = copy.deepcopy(model).half()
    size = {"hidden": model.rnn.hidden_size, "layers": model.rnn.num_layers}
    save_weights(half, path, kind=KIND, config=CONFIG | size | {"dtype": "float16"}, training=training,
                 overwrite=True)


def specs(mix: torch.Tensor, stems: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return stft(mix, N_FFT, HOP), stft(stems, N_FFT, HOP)


@torch.no_grad()
def heldout_loss(model: MaskScoreNet, songs: list[np.ndarray], seconds: float = 10.0) -> dict[str, float]:
    """Denoising L1 at σ = 0.05, 0.3, 1.5 over every role of held-out excerpts (fixed noise): cheap, and
    comparable between steps."""
    was = model.training
    model.eval()
    out = {}
    g = torch.Generator().manual_seed(0)
    batch = [np.asarray(s[:, 5 * SAMPLE_RATE:int((5 + seconds) * SAMPLE_RATE)], np.float32) for s in songs]
    stems = torch.from_numpy(np.stack(batch))
    mix_spec, stem_spec = specs(stems.sum(1), stems)
    for sigma in (0.05, 0.3, 1.5):
        out[f"val_l1_sigma{sigma:g}"] = float(_fixed_sigma_loss(model, mix_spec, stem_spec, sigma, g))
    model.train(was)
    return out


def _fixed_sigma_loss(model: MaskScoreNet, mix_spec: torch.Tensor, stem_spec: torch.Tensor, sigma: float,
                      g: torch.Generator) -> float:
    b, r = stem_spec.shape[:2]
    y = mix_spec.abs()
    scale = mix_scale(y)
    y = y * scale
    total = 0.0
    for role in range(2 * r):
        k = role % r
        src = stem_spec[:, k]
        target = ((mix_spec - src).abs() if role >= r else src.abs()) * scale
        sig = torch.full((b,), sigma)
        u = target + sigma * torch.randn(target.shape, generator=g)
        est = model.denoise(u, y, sig, torch.full((b,), role))
        total += float(((est - target).abs().mean(dim=(1, 2)) / y.mean(dim=(1, 2))).mean())
    return total / (2 * r)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    ctx = Distributed.setup("cpu")
    files = [f for c in args.cache for f in cached_files(c)]
    if not files:
        raise SystemExit(f"no cached renders (Track*.npy) in {', '.join(map(str, args.cache))}")
    songs = load_cache(files)
    val = load_cache(cached_files(args.val_cache)) if args.val_cache else []
    print(f"{len(songs)} training renders, {len(val)} held-out songs", flush=True)

    model = build(CONFIG)
    spread = [model.log_spread] if args.spread_lr > 0 else []
    opt = torch.optim.Adam([p for p in model.parameters() if all(p is not q for q in spread)], lr=args.lr)
    modules: dict = {"model": model, "opt": opt}
    opt_s = torch.optim.Adam(spread, lr=args.spread_lr) if spread else None
    if opt_s is not None:
        modules["opt_spread"] = opt_s  # not in `optimizers`: its LR stays fixed (a calibration, not a feature)
    loop = TrainLoop(ctx, args.run_dir, modules=modules, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=50, max_minutes=args.max_minutes, log_every=50,
                     ckpt_every=args.eval_every, desc="train separate-gmsdi")
    if loop.step == 0 and args.init_score:
        model.load_state_dict(load_score_model(args.init_score).state_dict())
        print(f"starting from the score network {args.init_score}", flush=True)
    elif loop.step == 0 and str(args.init) not in ("", ".") and weight_paths(args.init)[0].exists():
        model.load_state_dict(from_predictive(load_model(args.init)).state_dict())
        print(f"starting from the predictive weights {args.init}", flush=True)
    batches = crops(songs, args.batch, args.crop_seconds, np.random.default_rng([args.seed, loop.step]),
                    low_other=args.low_other, remix=args.remix, shift=args.shift)
    g = torch.Generator().manual_seed(args.seed * 100003 + loop.step)

    def step_fn(step: int) -> dict[str, float]:
        mix, stems = next(batches)
        loss = denoising_loss(model, *specs(mix, stems), generator=g)
        loss_value = apply_update([opt] if opt_s is None else [opt, opt_s], loss, model.parameters(), clip=5.0)
        return {"loss": loss_value, "spread": float(model.log_spread.detach().exp())}

    def on_log(step: int) -> dict[str, float]:
        if step % args.eval_every:
            return {}
        minutes = (loop.elapsed_before + loop.clock.elapsed_s) / 60
        export(model, args.run_dir / "snapshots" / f"step{step}", {"steps": step, "minutes": round(minutes, 2)})
        return (heldout_loss(model, val) if val else {}) | {"train_minutes": minutes}

    if loop.step == 0 and val:
        loop.log.log(0, **heldout_loss(model, val), train_minutes=0.0)
        export(model, args.run_dir / "snapshots" / "step0", {"steps": 0, "minutes": 0.0})
    result = loop.run(step_fn, on_log)
    print(f"step {result.step}, {result.elapsed_s / 60:.1f} min: {result.latest}", flush=True)
    if args.export:
        export(model, args.export, {"steps": result.step, "minutes": round(result.elapsed_s / 60, 1),
                                    "batch": args.batch, "crop_seconds": args.crop_seconds, "lr": args.lr,
                                    "low_other": args.low_other, "remix": args.remix, "shift": args.shift,
                                    "init": str(args.init), "cache": [str(c) for c in args.cache]})
        print(f"exported {args.export}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
