"""`backline train simclr`: the SimCLR encoder (paper 002a) and, with `--mode matching`, the (mix, stem) model.

simclr: batches of N tracks drawn with replacement, two 3 s log-mel snippets per track with centres < 5 s
apart, mixup (Beta(5, 2) gains) on each view, NT-Xent τ = 0.1; Adam with linear warm-up then cosine decay to
0 (paper: 2e-4 over 5k + 195k steps; here shortened, `--steps`, `--warmup`).
matching: backbone initialised from the SimCLR weights (`--init`), one (mix-without-stem, stem) pair per
distinct track per batch (bass, drums or another stem, the same 3 s window), symmetric NT-Xent τ = 0.1.
After training, the fit-score calibration sigmoid(a·cos + b) is fitted on pairs from held-out tracks
(positives: own stem; negatives: other tracks' stems). Runs under torchrun; resumes from checkpoints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from backline.engines.analysis import dataset
from backline.engines.analysis.common import add_data_args, ensure_cache, load_waves, setup_threads
from backline.engines.analysis.features import FEATURE_SR, MusiCoderFeatures, SimCLRLogMel
from backline.engines.analysis.matching import CONFIGS, AlignedMatcher
from backline.engines.analysis.simclr import (
    MatchingModel,
    SimCLRConfig,
    SimCLRModel,
    fit_calibration,
    get_config,
    mixup,
    nt_xent,
)
from backline.engines.core.training import Distributed, TrainLoop, seed_everything
from backline.engines.core.weights import load_weights, save_weights

HELP = "train the SimCLR encoder (or, with --mode matching, the mix/stem fit model)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_data_args(parser)
    parser.add_argument("--mode", default="simclr", choices=["simclr", "matching", "aligned"],
                        help="simclr encoder | matching on the SimCLR backbone | aligned: the shipped frame-aligned "
                             "fit model (matching.py)")
    parser.add_argument("--windows", type=int, default=6, help="aligned: cached 3 s windows per (song, target)")
    parser.add_argument("--size", "--config", dest="config", default="small", help="model size: small (shipped) | debug")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32, help="pairs per batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-minutes", "--minutes", dest="minutes", type=float, default=25.0,
                        help="stop (and save) after this many minutes; every rank agrees on when (default 25)")
    parser.add_argument("--init", type=Path, default=None, help="matching: SimCLR weights to start from")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    setup_threads(args.threads)
    ctx = Distributed.setup("cpu" if not torch.cuda.is_available() else "auto")
    seed_everything(args.seed + ctx.rank)
    run_dir = args.run_dir or Path(f"runs/analysis/{args.mode}")
    if ctx.is_main:
        ensure_cache(args, "train", crops=False)
    ctx.barrier()
    tracks = load_waves(args, "train")
    rng = np.random.default_rng(args.seed + 7919 * ctx.rank)
    perm = np.random.default_rng(0).permutation(len(tracks))
    n_val = max(1, int(round(0.15 * len(tracks)))) if len(tracks) > 2 else 0
    val_tracks = [tracks[i] for i in perm[:n_val]]
    train_tracks = [tracks[i] for i in perm[n_val:]] or tracks
    mel_fn = SimCLRLogMel()
    if args.mode == "aligned":
        return _train_aligned(args, ctx, run_dir, train_tracks, val_tracks, rng)

    if args.mode == "simclr":
        cfg = get_config(args.config)
        model = SimCLRModel(cfg)
        sample = np.concatenate([np.asarray(t.mel[:, ::10], np.float32) for t in train_tracks[:50]], axis=1)
        model.encoder.mel_mean.copy_(torch.from_numpy(sample.mean(1)))
        model.encoder.mel_std.copy_(torch.from_numpy(sample.std(1).clip(1e-3)))
    else:
        if args.init is not None:
            simclr, meta = load_weights(args.init, kind="simclr-encoder", build=lambda c: SimCLRModel(SimCLRConfig.from_dict(c)))
            cfg = SimCLRConfig.from_dict(meta["config"])
            model = MatchingModel(cfg)
            model.encoder.load_state_dict(simclr.encoder.state_dict())
            model.mix_head.load_state_dict(simclr.projector.state_dict())
            model.stem_head.load_state_dict(simclr.projector.state_dict())
        else:
            cfg = get_config(args.config)
            model = MatchingModel(cfg)
            sample = np.concatenate([np.asarray(t.mel[:, ::10], np.float32) for t in train_tracks[:50]], axis=1)
            model.encoder.mel_mean.copy_(torch.from_numpy(sample.mean(1)))
            model.encoder.mel_std.copy_(torch.from_numpy(sample.std(1).clip(1e-3)))
    model = ctx.wrap(model)
    inner = getattr(model, "module", model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    started = time.monotonic()
    loop = TrainLoop(ctx, run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=args.warmup, floor=0.0, max_minutes=args.minutes, log_every=10,
                     ckpt_every=100, desc=args.mode)
    gen = torch.Generator().manual_seed(args.seed + loop.step)
    model.train()
    batch = min(args.batch, len(train_tracks)) if args.mode == "matching" else args.batch

    def train_step(step: int) -> dict[str, float]:
        if args.mode == "simclr":
            a, b = dataset.simclr_pairs(train_tracks, batch, rng)
            a, b = inner.encoder.normalize(a), inner.encoder.normalize(b)
            with ctx.autocast():
                loss = nt_xent(model(mixup(a, gen), normalized=True), model(mixup(b, gen), normalized=True))
        else:
            mix, stem = dataset.matching_batch(train_tracks, batch, rng, mel_fn)
            with ctx.autocast():
                loss = model(mix.to(ctx.device), stem.to(ctx.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    step = loop.run(train_step).step
    log = loop.log
    if ctx.is_main:
        training = {"steps": step, "batch": batch, "final_loss": log.latest.get("loss"),
                    "minutes": round((time.monotonic() - started) / 60, 2), "tracks": len(train_tracks)}
        if args.mode == "simclr":
            out = args.out or run_dir / "simclr"
            save_weights(inner, out, kind="simclr-encoder", config=cfg.to_dict(), overwrite=True, training=training)
        else:
            inner.eval()
            pos, neg = [], []
            held = val_tracks if len(val_tracks) >= 2 else train_tracks
            with torch.no_grad():
                for _ in range(4):
                    mix, stem = dataset.matching_batch(held, len(held), rng, mel_fn)
                    cos = inner.embed_mix(mix) @ inner.embed_stem(stem).T
                    pos.append(cos.diag())
                    neg.append(cos[~torch.eye(len(cos), dtype=torch.bool)])
            cal = fit_calibration(torch.cat(pos), torch.cat(neg))
            inner.calib.copy_(torch.tensor([cal.a, cal.b]))
            training |= {"calibration": {"a": cal.a, "b": cal.b, "val_tracks": len(held)}}
            out = args.out or run_dir / "matching"
            save_weights(inner, out, kind="matching", config=cfg.to_dict(), overwrite=True, training=training)
        print(f"saved {out} after {step} steps (loss {log.latest.get('loss')})")
    ctx.close()
    return 0


def aligned_pairs(tracks, windows: int, rng: np.random.Generator):
    """Cached (mix frames, stem frames, track index) for `windows` 3 s windows per (song, bass|drums|other)."""
    feats = MusiCoderFeatures()
    mixes, stems, owner = [], [], []
    n = 3 * FEATURE_SR
    for ti, tr in enumerate(tracks):
        if tr.waves.shape[1] <= n:
            continue
        for target in dataset.MATCH_TARGETS:
            si = dataset.pick_stem(tr, target, rng)
            if si is None:
                continue
            for _ in range(windows):
                for _ in range(4):
                    start = int(rng.integers(0, tr.waves.shape[1] - n))
                    mix, stem = dataset.matching_pair(tr, si, start)
                    if (dataset.frame_db(stem) > dataset.PRESENT_DB).mean() >= 0.3:
                        break
                mixes.append(feats(torch.from_numpy(mix)))
                stems.append(feats(torch.from_numpy(stem)))
                owner.append(ti)
    return torch.stack(mixes), torch.stack(stems), torch.tensor(owner)


def _distinct_batch(owner: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of `batch` pairs from distinct songs (a second pair of the same song would be a false negative)."""
    perm = torch.randperm(len(owner), generator=gen)
    seen, idx = set(), []
    for i in perm.tolist():
        if int(owner[i]) not in seen:
            seen.add(int(owner[i]))
            idx.append(i)
            if len(idx) == batch:
                break
    return torch.tensor(idx)


def _train_aligned(args, ctx, run_dir: Path, train_tracks, val_tracks, rng) -> int:
    cfg = CONFIGS["debug" if args.config == "debug" else "small"]
    mix, stem, owner = aligned_pairs(train_tracks, args.windows, rng)
    model = AlignedMatcher(cfg)
    model.cmvn.fit(torch.cat([mix, stem])[:, ::5])
    model = ctx.wrap(model)
    inner = getattr(model, "module", model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    started = time.monotonic()
    loop = TrainLoop(ctx, run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=args.warmup, floor=0.0, max_minutes=args.minutes, log_every=10,
                     ckpt_every=200, desc="aligned")
    gen = torch.Generator().manual_seed(args.seed + loop.step + 1000 * ctx.rank)
    batch = min(args.batch, len(set(owner.tolist())))

    def train_step(step: int) -> dict[str, float]:
        idx = _distinct_batch(owner, batch, gen)
        loss = model(mix[idx].to(ctx.device), stem[idx].to(ctx.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    step = loop.run(train_step).step
    log = loop.log
    if ctx.is_main:
        inner.eval()
        held = val_tracks if len(val_tracks) >= 2 else train_tracks
        vmix, vstem, vowner = aligned_pairs(held, 2, rng)
        with torch.no_grad():
            u, v = inner.encode(vmix, vstem)
            sim = inner.similarity(u, v)
        same = vowner[:, None] == vowner[None, :]
        cal = fit_calibration(sim.diag(), sim[~same])
        inner.calib.copy_(torch.tensor([cal.a, cal.b]))
        training = {"steps": step, "batch": batch, "final_loss": log.latest.get("loss"), "pairs": len(owner),
                    "minutes": round((time.monotonic() - started) / 60, 2), "tracks": len(train_tracks),
                    "calibration": {"a": cal.a, "b": cal.b, "val_tracks": len(held), "val_pairs": len(vowner)}}
        out = args.out or run_dir / "matching"
        save_weights(inner, out, kind="aligned-matching", config=cfg.to_dict(), overwrite=True, training=training)
        print(f"saved {out} after {step} steps (loss {log.latest.get('loss')})")
    ctx.close()
    return 0
