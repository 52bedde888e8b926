"""`backline train tagger`: the hierarchical instrument tagger (paper 001), all five heads.

1. Base network: a pretrained encoder (`--base musicoder` with `--encoder` MusiCoder weights, or
   `--base simclr` with SimCLR weights).
2. λ grid (paper: λ ∈ {0.70 … 0.90}, pick the lowest *validation fine-level* loss): for every joint head the
   grid is searched with the base frozen (heads only, on cached embeddings: seconds per point), because
   five full joint trainings per head do not fit a shared 2-core CPU. Documented deviation. The chosen
   head's frozen-base fit also warm-starts step 3 (a short joint schedule then refines base and head).
3. Joint training: each head is trained together with the whole base network at its chosen λ (AdamW, weight
   decay 1e-4, linear warm-up then cosine, light SpecAugment: one time mask, one log-mel and one CQT
   channel mask), masked BCE. The flat baseline trains on fine labels only and gets GMP at inference.
4. Per-tag thresholds maximising F1 on the validation tracks (15 % of training songs, split by song) are
   stored in the weights. Metrics on the validation split are written to `run_dir/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from backline.engines.analysis import dataset
from backline.engines.analysis.common import (
    WEIGHTS_DIR,
    add_data_args,
    ensure_cache,
    load_crops,
    setup_threads,
)
from backline.engines.analysis.features import FEATURE_SLICES
from backline.engines.analysis.musicoder import build_musicoder
from backline.engines.analysis.simclr import SimCLRConfig, SimCLRModel
from backline.engines.analysis.tagger import (
    HEADS,
    LAMBDA_GRID,
    MusiCoderTaggerBase,
    SimCLRTaggerBase,
    Tagger,
    TaggerConfig,
    TaggerHead,
    build_tagger,
    coarse_from_fine,
    coarse_mask_from_fine,
    hierarchical_loss,
    macro_metrics,
    masked_bce,
    tune_thresholds,
)
from backline.engines.core.errors import ConfigError
from backline.engines.core.training import (
    Distributed,
    TrainLoop,
    apply_update,
    ramp_cosine,
    seed_everything,
)
from backline.engines.core.weights import load_weights, save_weights

HELP = "train the hierarchical instrument tagger (flat, level-wise, top-down, GMP, ResAtt heads)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_args(parser)
    parser.add_argument("--base", default="musicoder", choices=["musicoder", "simclr"])
    parser.add_argument("--encoder", type=Path, default=None, help="pretrained encoder weights (default: shipped)")
    parser.add_argument("--heads", default="flat,levelwise,topdown,gmp,resatt")
    parser.add_argument("--lam", type=float, default=None, help="skip the grid and use this λ")
    parser.add_argument("--init-tagger", type=Path, default=None,
                        help="continue from these tagger weights (one head; its λ is kept, no grid)")
    parser.add_argument("--steps", type=int, default=600, help="joint-training steps per head")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-minutes", "--minutes", dest="minutes", type=float, default=25.0,
                        help="wall-time cap for all heads together (default 25)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/analysis/tagger"),
                        help="weights tagger_<head>.*, and per head a folder with its checkpoint (resumed "
                             "automatically) and metrics.jsonl")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="steps between held-out fine-level BCE rows in metrics.jsonl (the learning curve)")
    parser.add_argument("--seed", type=int, default=0)


def load_base(base: str, path: Path | None):
    """(encoder module, its config dict) from saved weights."""
    if base == "musicoder":
        enc, meta = load_weights(path or WEIGHTS_DIR / "musicoder", kind="musicoder-encoder", build=build_musicoder)
        return enc, meta["config"]
    model, meta = load_weights(path or WEIGHTS_DIR / "simclr", kind="simclr-encoder",
                               build=lambda c: SimCLRModel(SimCLRConfig.from_dict(c)))
    return model.encoder, meta["config"]


def base_input(crops, base: str) -> torch.Tensor:
    return crops.frames if base == "musicoder" else crops.mels


def spec_augment(x: torch.Tensor, base: str, gen: torch.Generator) -> torch.Tensor:
    """One time mask (≤ 10 % of frames) and one channel mask per spectral block; on raw features the masked
    value is the CMVN mean (MusiCoder) or the per-bin mean (SimCLR), i.e. zero after normalisation."""
    x = x.clone()
    b = x.shape[0]
    for i in range(b):
        if base == "musicoder":
            t = x.shape[1]
            w = int(torch.randint(0, t // 10 + 1, (1,), generator=gen))
            s = int(torch.randint(0, t - w + 1, (1,), generator=gen))
            x[i, s : s + w] = float("nan")
            for name in ("logmel", "cqt"):
                lo, hi = FEATURE_SLICES[name]
                w = int(torch.randint(0, 17, (1,), generator=gen))
                s = int(torch.randint(lo, hi - w + 1, (1,), generator=gen))
                x[i, :, s : s + w] = float("nan")
        else:
            t = x.shape[-1]
            w = int(torch.randint(0, t // 10 + 1, (1,), generator=gen))
            s = int(torch.randint(0, t - w + 1, (1,), generator=gen))
            x[i, :, s : s + w] = float("nan")
            w = int(torch.randint(0, 13, (1,), generator=gen))
            s = int(torch.randint(0, x.shape[1] - w + 1, (1,), generator=gen))
            x[i, s : s + w] = float("nan")
    return x


def fill_masked(x: torch.Tensor, model) -> torch.Tensor:
    """Replace NaN (SpecAugment) by the normalisation mean so the masked value is 0 after normalising."""
    enc = model.base.encoder
    mean = enc.cmvn.mean if hasattr(enc, "cmvn") else enc.mel_mean[:, None]
    return torch.where(torch.isnan(x), mean.expand_as(x), x)


@torch.no_grad()
def predict(model, x: torch.Tensor, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    fine, coarse = [], []
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch].float())
        fine.append(out.fine)
        coarse.append(out.coarse)
    return torch.cat(fine).numpy(), torch.cat(coarse).numpy()


def labels(crops) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    y, m = crops.y.float(), crops.mask.float()
    return y, m, coarse_from_fine(y), coarse_mask_from_fine(y, m)


def lambda_grid(z_tr, z_va, tr_lab, va_lab, head: str, seed: int, grid=None) -> tuple[float, dict, dict]:
    """Heads only on frozen embeddings; λ with the lowest validation fine BCE (paper §4.2).

    Returns (λ, {λ: val fine BCE}, the chosen head's state dict); the state warm-starts joint training."""
    losses, states = {}, {}
    for lam in grid or LAMBDA_GRID:
        torch.manual_seed(seed)
        h = TaggerHead(head, z_tr.shape[1])
        opt = torch.optim.AdamW(h.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(300):
            idx = torch.randint(0, len(z_tr), (128,))
            loss = hierarchical_loss(h(z_tr[idx]), head, *(t[idx] for t in tr_lab), lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            losses[lam] = float(masked_bce(h(z_va).fine, va_lab[0], va_lab[1]))
        states[lam] = h.state_dict()
    best = min(losses, key=losses.get)
    return best, losses, states[best]


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    for h in heads:
        if h not in HEADS:
            raise ConfigError(f"unknown head {h!r}", fix=f"use {', '.join(HEADS)}")
    if args.steps <= 0 or args.batch <= 0 or args.eval_every <= 0:
        raise ConfigError("--steps, --batch and --eval-every must be positive")
    ctx = Distributed.setup("cpu" if not torch.cuda.is_available() else "auto")
    seed_everything(args.seed)
    if ctx.is_main:
        ensure_cache(args, "train")
    ctx.barrier()
    crops = load_crops(args, "train")
    train, val = dataset.split_by_track(crops)
    x_tr, x_va = base_input(train, args.base), base_input(val, args.base)
    tr_lab, va_lab = labels(train), labels(val)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    budget = args.minutes * 60 / max(1, len(heads))
    summary: dict = {"base": args.base, "heads": {}}

    def make(head: str, lam: float) -> Tagger:
        enc, enc_cfg = load_base(args.base, args.encoder)
        base = MusiCoderTaggerBase(enc) if args.base == "musicoder" else SimCLRTaggerBase(enc)
        return Tagger(base, head, base.dim, TaggerConfig(head=head, lam=lam, base=args.base, encoder=enc_cfg))

    # frozen embeddings for the λ grid
    probe = make("flat", 0.8)
    with torch.no_grad():
        probe.eval()
        z_tr = torch.cat([probe.base(x_tr[i : i + 64].float()) for i in range(0, len(x_tr), 64)])
        z_va = torch.cat([probe.base(x_va[i : i + 64].float()) for i in range(0, len(x_va), 64)])

    for head in heads:
        if args.init_tagger is not None:
            prev, prev_meta = load_weights(args.init_tagger, kind="tagger", build=build_tagger)
            if prev.head.kind != head:
                raise ConfigError(f"--init-tagger holds a {prev.head.kind} head, not {head}", fix=f"pass --heads {prev.head.kind}")
            lam, grid = prev_meta["config"]["lam"], {}
            tagger = make(head, lam)
            tagger.load_state_dict(prev.state_dict())
        elif head == "flat":
            lam, grid, state = lambda_grid(z_tr, z_va, tr_lab, va_lab, head, args.seed, grid=(1.0,))
            grid = {}
        elif args.lam is not None:
            lam, grid, state = lambda_grid(z_tr, z_va, tr_lab, va_lab, head, args.seed, grid=(args.lam,))
            grid = {}
        else:
            lam, grid, state = lambda_grid(z_tr, z_va, tr_lab, va_lab, head, args.seed)
        if args.init_tagger is None:
            tagger = make(head, lam)
            tagger.head.load_state_dict(state)  # warm start from the frozen-base fit, then train jointly
        inner, training = train_head(args, ctx, tagger, lam, (x_tr, tr_lab), (x_va, va_lab), run_dir / head,
                                     budget / 60)
        training = {"lam": lam, "lam_grid_val_fine_bce": grid} | training | {"train_crops": len(train),
                                                                             "val_crops": len(val)}
        val_metrics = training["val"]
        if ctx.is_main:
            save_weights(inner, run_dir / f"tagger_{head}", kind="tagger", config=inner.config.to_dict(),
                         overwrite=True, training=training)
            print(f"{head}: λ={lam} val fine PR-AUC {val_metrics['fine']['pr_auc']:.3f} "
                  f"coarse PR-AUC {val_metrics['coarse']['pr_auc']:.3f}")
        summary["heads"][head] = training
    if ctx.is_main:
        summary["minutes"] = round((time.monotonic() - started) / 60, 2)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    ctx.close()
    return 0


def train_head(args: argparse.Namespace, ctx, tagger, lam: float, train: tuple, val: tuple, run_dir: Path,
               minutes: float) -> tuple[torch.nn.Module, dict]:
    """Joint training of one head with its base on the one training loop (its own run folder: resumed from its
    checkpoint; stopped by its share of the time, every rank at the same step), then per-tag thresholds tuned on
    the validation crops. Returns (the trained tagger, its training record)."""
    (x_tr, tr_lab), (x_va, va_lab) = train, val
    head = tagger.head.kind
    model = ctx.wrap(tagger)
    inner = getattr(model, "module", model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    started = time.monotonic()
    loop = TrainLoop(ctx, run_dir, modules={"model": inner, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, lr_fn=lambda s: args.lr * ramp_cosine(s, args.steps, max(1, args.steps // 10)),
                     max_minutes=minutes, log_every=20, ckpt_every=200, desc=f"tagger/{head}")
    gen = torch.Generator().manual_seed(args.seed + 1000 * loop.step)
    last: dict[str, float] = {}

    def step_fn(step: int) -> dict[str, float]:
        model.train()
        idx = torch.randint(0, len(x_tr), (args.batch,), generator=gen)
        x = fill_masked(spec_augment(x_tr[idx].float(), args.base, gen), inner)
        with ctx.autocast():
            loss = hierarchical_loss(model(x), head, *(t[idx] for t in tr_lab), lam)
        last["loss"] = apply_update(opt, loss, model.parameters(), clip=1.0)
        return {f"{head}_loss": last["loss"]}

    def on_log(step: int) -> dict[str, float]:
        """The learning curve: held-out fine-level BCE against training minutes."""
        if step % args.eval_every and step != args.steps:
            return {}
        fine_p, _ = predict(inner, x_va)
        return {"val_fine_bce": float(masked_bce(torch.from_numpy(fine_p), va_lab[0], va_lab[1])),
                "train_minutes": loop.elapsed_s / 60}

    step = loop.run(step_fn, on_log).step
    fine_p, coarse_p = predict(inner, x_va)
    y, m, cy, cm = (t.numpy() for t in va_lab)
    inner.fine_thresholds.copy_(torch.from_numpy(tune_thresholds(fine_p, y, m)))
    inner.coarse_thresholds.copy_(torch.from_numpy(tune_thresholds(coarse_p, cy, cm)))
    val_metrics = {"fine": macro_metrics(fine_p, y, m, inner.fine_thresholds.numpy()),
                   "coarse": macro_metrics(coarse_p, cy, cm, inner.coarse_thresholds.numpy())}
    return inner, {"steps": step, "batch": args.batch, "final_loss": last.get("loss"),
                   "minutes": round((time.monotonic() - started) / 60, 2), "val": val_metrics}
