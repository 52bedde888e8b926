"""`backline train drums`: train the four drum models on corpus MIDI (or LPD-5) and export small weights.

Runs unchanged as `backline train drums ...` or
`torchrun --nproc_per_node N -m backline.engines.drums.train --run-dir DIR ...`
(DDP through backline.engines.core.training; each rank draws its own windows from a rank-seeded generator).
The models train one after another (seq2seq → locator → infiller → vae) in one run folder, with one
checkpoint (all models and optimizers, safetensors) so an interrupted run resumes where it stopped: one
`TrainLoop` over the models' steps end to end, each model with its own warm-up and cosine.

Fill class imbalance (fills are ~10–20 % of bars), handled explicitly:
- locator: **loss weighting**, BCE `pos_weight` = (#non-fill bars / #fill bars) of the training labels;
- infiller: **oversampling**, windows that contain a fill are drawn 4× as often as windows without, and in
  them the fill bars are what gets masked (70 % of the time);
- vae: trained on fill bars only;
- seq2seq: deliberately none — the paper's point is that a plain seq2seq learns the majority (groove) and
  rarely plays fills; the fill stages exist to fix exactly that, and the benchmark shows it.

Labels: by default the novelty function's (`--labels novelty`, the paper's method, also what LPD-5 gets);
`--labels extras` uses the corpus's own fill labels instead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from backline.engines.core.audio import write_bytes_atomic
from backline.engines.core.errors import ConfigError, DatasetError
from backline.engines.data.song import make_song
from backline.engines.data.synth import song_rng, track_name, write_song_files
from backline.engines.drums import data as drum_data
from backline.engines.drums import novelty as nov
from backline.engines.drums.representation import (
    CONTEXT_BARS,
    DRUM_TOKEN_DIM,
    MAX_QUARTERS_PER_BAR,
    drum_tokens,
    ma_tokens,
    meter_id,
)

HELP = "train the drum engine (seq2seq pattern, BERT fill locator, BERT infiller, MLP fill VAE) on corpus MIDI or LPD-5"

PHASES = ("seq2seq", "locator", "infiller", "vae")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT_VERSION = 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="Slakh-layout corpus folder (MIDI + extras.json); or --synth N")
    parser.add_argument("--synth", type=int, default=0, metavar="N",
                        help="instead of --data: compose N corpus songs (MIDI + labels only, no audio) into RUN/synth "
                             "with the corpus builder's composer and writer, and train on them")
    parser.add_argument("--synth-seed", type=int, default=1)
    parser.add_argument("--synth-max-bars", type=int, default=48)
    parser.add_argument("--lpd5", default=None, help="LPD-5 folder (read with backline.engines.data.lpd5); adds its songs")
    parser.add_argument("--run-dir", "--run", dest="run", default="runs/drums",
                        help="run folder for checkpoint and metrics (resumes if present); under torchrun spell it "
                             "--run-dir (torchrun reads --run as its own --run-path)")
    parser.add_argument("--size", "--config", dest="config", choices=("shipped", "debug"), default="shipped",
                        help="model size")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (and save the checkpoint) after this many minutes; every rank agrees on when")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per model")
    parser.add_argument("--vae-steps", type=int, default=None, help="steps for the VAE (default: --steps)")
    parser.add_argument("--phase-steps", default="", help="per-model steps, e.g. 'infiller=300,vae=100' (default: --steps)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--only", default="", help="train only these models (comma-separated); the others come from --init")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="train nothing: load --init, choose the locator threshold on the validation songs, export")
    parser.add_argument("--init", default=None, help="weights folder to start from (e.g. engines/drums/weights)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="override a model config value, e.g. --set locator.phrase=false (repeatable)")
    parser.add_argument("--labels", choices=("novelty", "extras"), default="novelty")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many songs")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", default=None, help="write the trained weights to this folder (e.g. engines/drums/weights)")
    parser.add_argument("--overwrite", action="store_true", help="let --export replace existing weights")
    parser.add_argument("--device", default="auto")


class Windows:
    """Song-level token arrays + an index of 11-bar windows, grouped by bar length (quarters per bar)."""

    def __init__(self, songs, labels: str, bars: int) -> None:
        self.songs = []
        self.groups: dict[int, list[tuple[int, int]]] = {}
        self.bars = bars
        for s in songs:
            g = s.grid
            if g.n_bars < bars:
                continue  # shorter songs cannot fill a context window; they are few and still used for eval
            fills = s.true_fills if labels == "extras" and s.true_fills is not None else s.novelty_fills
            idx = len(self.songs)
            self.songs.append({"ma": ma_tokens(g), "dr": drum_tokens(g.drums), "fills": fills.astype(np.float32),
                               "qpb": g.qpb, "meter": meter_id(g.numerator, g.denominator), "first_bar": g.first_bar})
            for b0 in range(g.n_bars - bars + 1):
                self.groups.setdefault(g.qpb, []).append((idx, b0))
        if not self.groups:
            raise DatasetError(f"no song is at least {bars} bars long with drums and a band", fix="check the corpus")
        self.keys = sorted(self.groups)
        self.sizes = np.array([len(self.groups[k]) for k in self.keys], float)

    def has_fill(self, idx: int, b0: int) -> bool:
        return bool(self.songs[idx]["fills"][b0:b0 + self.bars].any())

    def sample(self, rng: np.random.Generator, batch: int, oversample_fills: float = 1.0):
        qpb = self.keys[rng.choice(len(self.keys), p=self.sizes / self.sizes.sum())]
        group = self.groups[qpb]
        if oversample_fills != 1.0:
            w = np.array([oversample_fills if self.has_fill(i, b) else 1.0 for i, b in group])
            picks = rng.choice(len(group), batch, p=w / w.sum())
        else:
            picks = rng.integers(len(group), size=batch)
        ma, dr, fills, meter, first = [], [], [], [], []
        for p in picks:
            i, b0 = group[p]
            s = self.songs[i]
            t0, t1 = b0 * qpb, (b0 + self.bars) * qpb
            ma.append(s["ma"][t0:t1])
            dr.append(s["dr"][t0:t1])
            fills.append(s["fills"][b0:b0 + self.bars])
            meter.append(s["meter"])
            first.append(s["first_bar"] + b0)
        return qpb, np.stack(ma), np.stack(dr), np.stack(fills), np.array(meter), np.array(first)


def positions(qpb: int, bars: int, first_bars: np.ndarray):
    import torch

    beat = np.tile(np.arange(qpb), bars)
    bar = np.repeat(np.arange(bars), qpb)
    phrase = (bar[None, :] + first_bars[:, None] - 1) % 8
    b = len(first_bars)
    return (torch.from_numpy(np.broadcast_to(beat, (b, len(beat))).copy()).long(),
            torch.from_numpy(np.broadcast_to(bar, (b, len(bar))).copy()).long(),
            torch.from_numpy(phrase).long())


def infill_masks(rng: np.random.Generator, fills: np.ndarray, qpb: int) -> np.ndarray:
    """Mask kinds per token for a batch: fill bars as 'fill' (70 % when the window has any; then the first
    quarter of the bar after a fill as 'regenerate' half the time), else 1–3 random bars as 'regenerate'."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.drums.models import MASK_FILL, MASK_REGENERATE

    b, bars = fills.shape
    kind = np.zeros((b, bars * qpb), np.int64)
    for i in range(b):
        fb = np.nonzero(fills[i] > 0.5)[0]
        if len(fb) and rng.random() < 0.7:
            for f in fb:
                kind[i, f * qpb:(f + 1) * qpb] = MASK_FILL
                if f + 1 < bars and fills[i, f + 1] < 0.5 and rng.random() < 0.5:
                    kind[i, (f + 1) * qpb] = MASK_REGENERATE
        else:
            plain = [k for k in range(bars) if fills[i, k] < 0.5] or list(range(bars))
            for k in rng.choice(plain, size=min(len(plain), int(rng.integers(1, 4))), replace=False):
                kind[i, k * qpb:(k + 1) * qpb] = MASK_REGENERATE
    return kind


def synth_midi_corpus(out: Path, songs: int, seed: int, max_bars: int, write: bool = True) -> Path:
    """Compose a MIDI-only corpus (Slakh layout, extras.json labels) with backline.engines.data's composer.

    Song i uses the corpus builder's seed sequence [seed, i], so `--synth N --synth-seed 1` composes the same
    kind of songs as `backline data synth --seed 1`, without the hour of audio rendering the drums never read.
    """
    if write:
        for i in range(songs):
            folder = out / track_name(i)
            if (folder / "extras.json").is_file():
                continue
            song = make_song(song_rng(seed, i), min_bars=24, max_bars=max_bars)
            write_song_files(song, folder, ["none"] * len(song.parts), [0.0] * len(song.parts), uid=f"{seed}/{i}")
    return out


def locator_f1(songs, locator, threshold_grid=None) -> tuple[float, dict]:
    """Choose the fill-probability threshold that maximises F1 against the songs' training labels."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.drums.pipeline import DrumPipeline

    pipe = DrumPipeline(None, locator, None)
    probs, labels = [], []
    for s in songs:
        probs.append(pipe.fill_probability(s.grid))
        labels.append(s.novelty_fills)
    results = []
    for th in threshold_grid or np.concatenate([[0.02, 0.05], np.linspace(0.1, 0.9, 17)]):
        pipe.config.locator_threshold = float(th)
        tp = fp = fn = 0
        for p, y in zip(probs, labels):
            pred = np.zeros(len(p), bool)
            pred[pipe.choose_fill_bars(p)] = True
            tp += int((pred & y).sum())
            fp += int((pred & ~y).sum())
            fn += int((~pred & y).sum())
        prec = tp / max(tp + fp, 1)
        rec = tp / max(tp + fn, 1)
        f1 = 2 * prec * rec / max(prec + rec, 1e-9)
        results.append((f1, float(th), {"precision": prec, "recall": rec, "f1": f1}))
    best = max(r[0] for r in results)
    tied = [r for r in results if r[0] >= best - 1e-9]  # a confident locator ties over a range: take its middle
    pick = tied[len(tied) // 2]
    return pick[1], pick[2] | {"tied_thresholds": [tied[0][1], tied[-1][1]]}


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # called in-process (tests, notebooks): leave the caller's setting


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be refused from the flags alone, before the corpus is read (--export included)."""
    if args.steps <= 0 or args.batch <= 0 or args.lr <= 0:
        raise ConfigError("--steps, --batch and --lr must be positive")
    if args.export:  # refused now, not after the training
        # lazy: pulls torch; keeps `backline <cmd> --help` light
        from backline.engines.core.weights import check_export

        # lazy: pulls torch; keeps `backline <cmd> --help` light
        from backline.engines.drums.engine import MODEL_NAMES

        check_export([Path(args.export) / n for n in (*MODEL_NAMES, "pipeline")], overwrite=args.overwrite)


def load_songs(args: argparse.Namespace, ctx) -> tuple[list, list]:
    """(training songs, validation songs) from --data / --synth / --lpd5, split by song with --seed."""
    songs = []
    if args.synth:
        args.data = str(synth_midi_corpus(Path(args.run) / "synth", args.synth, args.synth_seed, args.synth_max_bars,
                                          ctx.is_main))
        ctx.barrier()
    if args.data and Path(args.data).is_dir():
        songs += drum_data.read_corpus(args.data, limit=args.limit)
    elif not args.lpd5:
        raise DatasetError("corpus folder not found", path=args.data, fix="pass --data DIR or --lpd5 DIR")
    if args.lpd5:
        songs += drum_data.read_lpd5(args.lpd5, limit=args.limit)
    if len(songs) < 2:
        raise DatasetError(f"only {len(songs)} usable song(s) (drums + band, {CONTEXT_BARS}+ bars)",
                           path=args.data, fix="build a bigger corpus")
    order = np.random.default_rng(args.seed).permutation(len(songs))
    n_val = max(1, int(round(len(songs) * args.val_fraction)))
    return [songs[i] for i in order[n_val:]], [songs[i] for i in order[:n_val]]


def plan(args: argparse.Namespace) -> tuple[dict[str, dict], list[str], dict[str, int]]:
    """(model configs with --set applied, the models to train, steps per model) from the flags."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.drums.models import CONFIGS

    cfg = {k: dict(v) for k, v in CONFIGS[args.config].items()}
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(PHASES)
    if args.calibrate_only:
        only = []
    for item in args.set:
        key, _, value = item.partition("=")
        model, _, field = key.partition(".")
        if model not in cfg or not field or not value:
            raise ConfigError(f"--set {item!r} is not MODEL.KEY=VALUE", fix=f"models: {', '.join(PHASES)}")
        try:
            cfg[model][field] = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except json.JSONDecodeError:
            cfg[model][field] = value
    if set(only) - set(PHASES):
        raise ConfigError(f"--only {args.only!r} names unknown models", fix=f"models: {', '.join(PHASES)}")
    if len(only) < len(PHASES) and not args.init:
        raise ConfigError("--only needs --init (where the other models come from)", fix="e.g. --init engines/drums/weights")
    steps = {name: (args.steps if name in only else 0) for name in PHASES}
    if args.vae_steps is not None:
        steps["vae"] = args.vae_steps if "vae" in only else 0
    for item in filter(None, (x.strip() for x in args.phase_steps.split(","))):
        name, _, value = item.partition("=")
        if name not in steps or not value.isdigit() or int(value) <= 0:
            raise ConfigError(f"--phase-steps item {item!r} is not MODEL=STEPS", fix=f"models: {', '.join(PHASES)}")
        steps[name] = int(value)
    return cfg, only, steps


def build_models(args: argparse.Namespace, cfg: dict[str, dict], only: list[str]) -> tuple[dict, dict[str, dict]]:
    """The four models: those in --only fresh, the others from --init (their configs and training records too)."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.weights import load_weights

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.drums.models import build_model

    built, init_training = {}, {}
    for name in PHASES:
        if args.init and name not in only:  # kept as trained; the models in --only start from scratch
            built[name], meta = load_weights(Path(args.init) / name, kind=f"drums-{name}", format_version=FORMAT_VERSION,
                                             build=lambda c, n=name: build_model(n, c))
            cfg[name] = meta["config"]
            init_training[name] = meta.get("training", {})
        else:
            built[name] = build_model(name, cfg[name])
    return built, init_training


def phase_loss(name: str, model, batch, rng: np.random.Generator, pos_weight: float, kl_weight: float, dev):
    """The training loss of one model on one batch of windows (`Windows.sample`)."""
    import torch
    import torch.nn.functional as F

    qpb, ma, dr, fills, meter, first = batch
    beat, barpos, phrase = (t.to(dev) for t in positions(qpb, CONTEXT_BARS, first))
    ma_t, dr_t = torch.from_numpy(ma).to(dev), torch.from_numpy(dr).to(dev)
    meter_t = torch.from_numpy(meter).long().to(dev)
    valid = torch.ones(ma_t.shape[:2], dtype=torch.bool, device=dev)
    if name == "seq2seq":
        logits = model(ma_t, dr_t, beat, barpos, phrase, meter_t, valid, qpb)
        return F.binary_cross_entropy_with_logits(logits.float(), dr_t)
    if name == "locator":
        logits = model(ma_t, beat, barpos, phrase, meter_t, valid, n_bars=CONTEXT_BARS)
        return F.binary_cross_entropy_with_logits(logits.float(), torch.from_numpy(fills).to(dev),
                                                  pos_weight=torch.tensor(pos_weight, device=dev))
    if name == "infiller":
        kind = torch.from_numpy(infill_masks(rng, fills, qpb)).to(dev)
        logits = model(ma_t, dr_t, kind, beat, barpos, phrase, meter_t, valid)
        masked = (kind > 0).float()[..., None]
        bce = F.binary_cross_entropy_with_logits(logits.float(), dr_t, reduction="none")
        return (bce * masked).sum() / (masked.sum() * DRUM_TOKEN_DIM).clamp(min=1)
    # vae on fill bars: (fill, previous bar) pairs from the sampled windows
    fb = np.argwhere(fills[:, 1:] > 0.5)  # bar index >= 1 so a previous bar exists
    if len(fb) == 0:
        fb = np.array([[0, 1]])
    width = MAX_QUARTERS_PER_BAR * DRUM_TOKEN_DIM
    fill = torch.zeros(len(fb), width, device=dev)
    prev = torch.zeros(len(fb), width, device=dev)
    for j, (i, k) in enumerate(fb):
        k = k + 1
        fill[j, : qpb * DRUM_TOKEN_DIM] = dr_t[i, k * qpb:(k + 1) * qpb].reshape(-1)
        prev[j, : qpb * DRUM_TOKEN_DIM] = dr_t[i, (k - 1) * qpb:k * qpb].reshape(-1)
    recon, mu, logvar = model(fill, prev)
    rec = F.binary_cross_entropy_with_logits(recon.float()[:, : qpb * DRUM_TOKEN_DIM],
                                             fill[:, : qpb * DRUM_TOKEN_DIM], reduction="sum") / len(fb)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
    return (rec + kl_weight * kl) / (qpb * DRUM_TOKEN_DIM) * 10


def _run(args: argparse.Namespace) -> int:
    import torch

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.training import (
        Distributed,
        TrainLoop,
        apply_update,
        ramp_cosine,
        seed_everything,
    )
    check_args(args)
    cfg, only, steps = plan(args)
    torch.set_num_threads(max(1, args.threads))
    ctx = Distributed.setup(args.device)
    seed_everything(args.seed + ctx.rank)
    started = time.monotonic()
    train, val = load_songs(args, ctx)
    windows = Windows(train, args.labels, CONTEXT_BARS)
    fill_rate = float(np.mean(np.concatenate([s["fills"] for s in windows.songs])))
    pos_weight = (1 - fill_rate) / max(fill_rate, 1e-3)
    if ctx.is_main:
        print(f"drums: {len(train)} training songs, {len(val)} validation, "
              f"{sum(len(g) for g in windows.groups.values())} windows, fill rate {fill_rate:.3f} "
              f"(locator pos_weight {pos_weight:.2f})")
    built, init_training = build_models(args, cfg, only)
    models = {name: ctx.wrap(built[name]) for name in PHASES}
    opts = {name: torch.optim.AdamW(models[name].parameters(), lr=args.lr, weight_decay=0.01) for name in PHASES}
    # the models train one after another: global step -> (model, its first step, its steps)
    spans, offset = [], 0
    for name in PHASES:
        spans.append((name, offset, steps[name]))
        offset += steps[name]

    def phase_at(step: int) -> tuple[str, int, int]:
        name, first, n = next(span for span in spans if span[1] <= step < span[1] + span[2])
        return name, step - first, n

    def lr_at(step: int) -> float:  # each model has its own warm-up and cosine
        _, local, n = phase_at(step)
        return args.lr * ramp_cosine(local, n, max(1, n // 20))

    final_losses: dict[str, float] = {}
    stopped_early = False
    if offset:  # --calibrate-only trains nothing: no loop, the --init models as they are
        loop = TrainLoop(ctx, args.run, modules={**models, **{f"opt_{k}": v for k, v in opts.items()}},
                         optimizers=list(opts.values()), steps=offset, lr=args.lr, lr_fn=lr_at,
                         max_minutes=args.max_minutes, log_every=25, ckpt_every=500, desc="train drums")
        rng = np.random.default_rng([args.seed, ctx.rank] + ([loop.step] if loop.step else []))

        def step_fn(step: int) -> dict[str, float]:
            name, local, n = phase_at(step)
            model = models[name].train()
            batch = windows.sample(rng, args.batch, 4.0 if name == "infiller" else 1.0)
            with ctx.autocast():
                loss = phase_loss(name, model, batch, rng, pos_weight, min(1.0, local / max(1, n // 2)), ctx.device)
            final_losses[name] = apply_update(opts[name], loss, model.parameters(), clip=1.0)
            return {f"{name}_loss": final_losses[name]}

        stopped_early = loop.run(step_fn).stopped_early  # --max-minutes: every rank agrees; the next run resumes

    if ctx.is_main:
        plain = {k: getattr(m, "module", m).eval() for k, m in models.items()}
        threshold, val_scores = locator_f1(val, plain["locator"])
        summary = {"songs": len(train), "validation_songs": len(val), "labels": args.labels,
                   "steps": steps, "batch": args.batch, "lr": args.lr, "world_size": ctx.world_size,
                   "threads": args.threads, "seconds": round(time.monotonic() - started, 1),
                   "stopped_early": stopped_early, "final_losses": final_losses,
                   "locator_threshold": threshold, "locator_validation": val_scores,
                   "fill_rate": fill_rate, "data": str(args.data), "lpd5": args.lpd5}
        print(json.dumps(summary, indent=1))
        (Path(args.run) / "summary.json").write_text(json.dumps(summary, indent=1))
        if args.export:
            export(plain, Path(args.export), cfg, init_training, summary, threshold, args)
    ctx.close()
    return 0


def export(models: dict, out: Path, cfg: dict[str, dict], init_training: dict[str, dict], summary: dict,
           threshold: float, args: argparse.Namespace) -> None:
    """The four models (fp32 safetensors + JSON) and pipeline.json; models kept from --init keep their record."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.weights import check_export, save_weights
    check_export([out / n for n in (*models, "pipeline")], overwrite=args.overwrite)  # again: time has passed
    out.mkdir(parents=True, exist_ok=True)
    for name, m in models.items():
        save_weights(m, out / name, kind=f"drums-{name}", config=cfg[name], format_version=FORMAT_VERSION,
                     training=init_training.get(name, summary), overwrite=args.overwrite)
    pipeline = {"format_version": FORMAT_VERSION, "config": args.config, "locator_threshold": threshold,
                "novelty_threshold": nov.DEFAULT_THRESHOLD, "training": summary}
    write_bytes_atomic(out / "pipeline.json", json.dumps(pipeline, indent=1).encode(), overwrite=args.overwrite)
    print(f"weights written to {out}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m backline.engines.drums.train", description=HELP)
    configure(parser)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
