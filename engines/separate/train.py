"""`backline train separate`: the mask network (model.py) on augmented corpus renders (data.py).

    backline train separate --corpus runs/separate/corpus_train --val runs/separate/corpus_val \
        --run-dir runs/separate/run1 --max-minutes 35 --export engines/separate/weights/separate

Recipe: batches of 8 random 3 s crops with a random level per role (and roles left out), a loss on masked
magnitudes summed over roles (bass weighted ×2: the role the other engines need), Adam, warm-up then cosine. The
loss (`--loss`, default `DEFAULT_LOSS`): the squared error against the truncated phase-sensitive target, the
mixture-phase estimate's own error, since session 6; the magnitude L1 before (weights/TRAINING.md).
A run resumes from its own checkpoint; a fresh run starts from the shipped weights (`--init`, on by default), so
more training continues rather than restarts. Every `--eval-every` steps the held-out songs' SI-SDR improvement
per role goes to `metrics.jsonl` beside the training minutes: the learning curve in weights/TRAINING.md.

For other trainers (GPU bundles): `train_steps(model, batches, steps, device)` runs plain optimisation steps over
any iterator of (mix magnitude [B, F, T], role magnitudes [B, R, F, T]) or of waveforms (mix [B, S], stems
[B, R, S]) — `step_loss` is the one loss both use.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from backline.engines.codec.fidelity import si_sdr
from backline.engines.core.frontend import istft, stft
from backline.engines.core.training import (
    Distributed,
    TrainLoop,
    add_training_flags,
    apply_update,
    seed_everything,
)
from backline.engines.core.weights import save_weights, weight_paths
from backline.engines.separate.data import build_cache, cached_files, crops, load_cache
from backline.engines.separate.engine import load_model
from backline.engines.separate.model import (
    DEFAULT_CONFIG,
    HOP,
    KIND,
    N_FFT,
    ROLES,
    SAMPLE_RATE,
    build,
    load_narrower,
    low_leak,
    magnitude,
    masked_l1,
    masked_psa,
    mixture_phase_sisdr,
)

HELP = "train the separation mask network (bass / drums / other)"
SHIPPED = Path(__file__).with_name("weights") / "separate"
ROLE_WEIGHTS = (2.0, 1.0, 1.0)
#: `step_loss`'s targets: "magnitude" L1 on |S_k| (runs 1–8), "psa" L1 on the truncated phase-sensitive target,
#: "psa-l2" its squared error (see `masked_psa`), "sisdr" the magnitude L1 plus `SISDR_WEIGHT` × the negative
#: mixture-phase SI-SDR of each role's waveform (`mixture_phase_sisdr`); weights/TRAINING.md, session 6, measures them.
LOSSES = ("magnitude", "psa", "psa-l2", "sisdr")
#: 0.01 per dB, role-weighted like the L1: on run 8's crops the bass L1 term is ~0.18, so a 1 dB SI-SDR gain weighs
#: as much as a ~10 % lower bass L1.
SISDR_WEIGHT = 0.01
#: What `backline train separate` trains with: the loss of the shipped weights (session 6's psa2 passed the gate
#: with it; runs 1–15 used "magnitude"), so more training from them continues toward the same target.
#: `step_loss` itself keeps "magnitude" as its default: it is the only loss that also takes magnitude batches.
DEFAULT_LOSS = "psa-l2"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, required=True, action="append", help="Slakh-layout corpus; repeatable")
    parser.add_argument("--val", type=Path, help="held-out corpus for the learning curve (never trained on)")
    parser.add_argument("--cache", type=Path, help="augmented stem cache (default RUN/cache)")
    parser.add_argument("--variants", type=int, default=2, help="augmented renders per song (plus the dry one)")
    add_training_flags(parser, steps=6000, minutes=35)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--low-other", type=float, default=0.0,
                        help="probability that a crop's 'other' part is played an octave down (low piano voicings)")
    parser.add_argument("--remix", type=float, default=0.0,
                        help="probability that each role of a crop comes from another song (new combinations)")
    parser.add_argument("--shift", type=float, default=0.0,
                        help="play half the crops up to this many semitones higher or lower (0 = off)")
    parser.add_argument("--low-bank", type=Path, action="append", default=[],
                        help="cache of low 'other' lines (`python -m backline.engines.separate.data low ...`); "
                             "repeatable")
    parser.add_argument("--low-neg", type=float, default=0.0,
                        help="probability that a crop gets a low 'other' line from --low-bank beside its bass")
    parser.add_argument("--leak", type=float, default=0.0,
                        help="weight of the loss on low 'other' energy let through by the bass mask (0 = off)")
    parser.add_argument("--loss", choices=LOSSES, default=DEFAULT_LOSS,
                        help=f"training target (default {DEFAULT_LOSS}, the shipped weights'): magnitude (L1 on |S|, "
                             "runs 1–15), psa (L1 on the truncated phase-sensitive "
                             "target the mixture-phase iSTFT is scored on), psa-l2 (its squared error), sisdr (magnitude "
                             "L1 + a mixture-phase SI-SDR term on the waveforms)")
    parser.add_argument("--eval-every", type=int, default=200, help="steps between held-out evaluations")
    parser.add_argument("--init", type=Path, default=SHIPPED, help="weights a fresh run starts from ('' = random)")
    parser.add_argument("--rnn-hidden", type=int, default=None,
                        help="the GRU's width (model.py `rnn_hidden`; default: as the --init weights); wider than --init "
                             "grows it function-preserving (its masks exactly at step 0)")
    parser.add_argument("--low-bins", type=int, default=None,
                        help="bins of the long-window low band the network reads (model.py; 112 = 0–600 Hz, 0 = none; "
                             "default: as the --init weights); more than --init has start at zero (its masks exactly)")
    parser.add_argument("--low-lr-scale", type=float, default=1.0,
                        help="learning rate of the low band's input columns as a multiple of --lr (they start at zero)")
    parser.add_argument("--export", type=Path, help="write fp16 weights + JSON here at the end")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export-only", action="store_true", help="write --export from the run's checkpoint and stop")
    parser.add_argument("--no-build", action="store_true",
                        help="do not render the cache here: train on the .npy files a separate "
                             "`python -m backline.engines.separate.data` process writes, picking up new ones as they land")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--role-weights", type=float, nargs=3, default=list(ROLE_WEIGHTS), metavar=("BASS", "DRUMS", "OTHER"),
                        help="each role's weight in the loss (default %(default)s: the bass counts twice)")


def step_loss(model: torch.nn.Module, mix: torch.Tensor, target: torch.Tensor, leak: float = 0.0,
              loss: str = "magnitude", role_weights: tuple[float, ...] = ROLE_WEIGHTS) -> torch.Tensor:
    """The training loss on one batch: waveforms (mix [B, S], stems [B, R, S]) or magnitudes ([B, F, T],
    [B, R, F, T]); `leak` > 0 adds that weight of `low_leak` (low "other" energy let into the bass). `loss`
    (`LOSSES`): the phase-sensitive ones need the phases, so waveforms. A network with a low band (model.py) needs
    the waveforms too: it reads the mix's long-window STFT beside its magnitude. `role_weights`: each role's share
    of the loss (bass first; `ROLE_WEIGHTS` by default)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown separation loss {loss!r}; one of {', '.join(LOSSES)}")
    low = model.low_band(mix) if mix.dim() == 2 else None
    w = torch.tensor(role_weights[: target.shape[1]], device=mix.device)
    if loss == "sisdr":
        if mix.dim() != 2:
            raise ValueError(f"the {loss} loss needs waveforms (mix [B, S], stems [B, R, S]), not magnitudes")
        mix_spec, waves = stft(mix, N_FFT, HOP), target
        mix, target = mix_spec.abs(), magnitude(waves)
        masks = model(mix, low)
        sdr = mixture_phase_sisdr(masks, mix_spec, waves)
        present = ~torch.isnan(sdr)
        term = -(torch.nan_to_num(sdr) * w).sum() / (present * w).sum().clamp_min(1.0)
        out = masked_l1(masks, mix, target, w) + SISDR_WEIGHT * term
    elif loss != "magnitude":
        if mix.dim() != 2:
            raise ValueError(f"the {loss} loss needs waveforms (mix [B, S], stems [B, R, S]), not magnitudes")
        mix_spec, stem_specs = stft(mix, N_FFT, HOP), stft(target, N_FFT, HOP)
        mix, target = mix_spec.abs(), stem_specs.abs()
        masks = model(mix, low)
        out = masked_psa(masks, mix_spec, stem_specs, w, power=2 if loss == "psa-l2" else 1)
    else:
        if mix.dim() == 2:
            mix, target = magnitude(mix), magnitude(target)
        masks = model(mix, low)
        out = masked_l1(masks, mix, target, w)
    return out + leak * low_leak(masks, mix, target) if leak > 0 else out


def apply_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimiser update from `loss` (gradient norm clipped at 5): the trainer, `train_steps` and the GPU lease
    all update the network this one way. Returns the loss as a float."""
    return apply_update(opt, loss, model.parameters(), clip=5.0)


def train_steps(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int,
                device: str | torch.device = "cpu", *, lr: float = 1e-3,
                opt: torch.optim.Optimizer | None = None, loss: str = "magnitude") -> list[float]:
    """Plain optimisation steps (no checkpoint, no schedule) for callers with their own loop; returns losses.
    `loss` as `step_loss` (`DEFAULT_LOSS`, the shipped weights', needs waveform batches)."""
    model.to(device).train()
    opt = opt or torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    it = iter(batches)
    for _ in range(steps):
        mix, target = next(it)
        losses.append(apply_step(model, opt, step_loss(model, mix.to(device), target.to(device), loss=loss)))
    return losses


def heldout_sisdri(model: torch.nn.Module, songs: list[np.ndarray], seconds: float = 20.0) -> dict[str, float]:
    """Mean SI-SDR improvement per role over held-out songs (an excerpt of each from 5 s in), mixture phase."""
    was = model.training
    model.eval()
    sums = {r: [] for r in ROLES}
    with torch.no_grad():
        for s in songs:
            a = 5 * SAMPLE_RATE
            stems = np.asarray(s[:, a:a + int(seconds * SAMPLE_RATE)], dtype=np.float32)
            mix = stems.sum(axis=0)
            wave = torch.from_numpy(mix)
            spec = stft(wave, N_FFT, HOP)
            masks = model(spec.abs()[None], model.low_band(wave[None]))[0]
            est = istft(masks * spec, N_FFT, HOP, length=len(mix)).numpy()
            for i, r in enumerate(ROLES):
                if np.abs(stems[i]).max() > 1e-3:
                    sums[r].append(si_sdr(stems[i], est[i]) - si_sdr(stems[i], mix))
    model.train(was)
    return {f"sisdri_{r}": float(np.mean(v)) for r, v in sums.items() if v}


def export(model: torch.nn.Module, path: Path, training: dict) -> None:
    import copy

    half = copy.deepcopy(model).half()
    save_weights(half, path, kind=KIND, config=DEFAULT_CONFIG | model.config() | {"dtype": "float16"}, training=training,
                 overwrite=True)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    ctx = Distributed.setup("cpu")
    cache = args.cache or args.run_dir / "cache"
    def scan() -> list[Path]:
        if args.no_build:
            return [f for i in range(len(args.corpus)) for f in cached_files(cache / f"train{i}")]
        return [f for i, c in enumerate(args.corpus)
                for f in build_cache(c, cache / f"train{i}", variants=args.variants, seed=args.seed + i)]

    files = scan()
    while not files:  # the builder has not finished its first song yet
        time.sleep(10)
        files = scan()
    songs = load_cache(files)
    val = load_cache(build_cache(args.val, cache / "val", variants=0)) if args.val else []
    low_files = [f for c in args.low_bank for f in cached_files(c)]
    low_bank = load_cache(low_files)
    print(f"{len(songs)} training renders, {len(low_bank)} low 'other' lines, {len(val)} held-out songs", flush=True)

    start = load_model(args.init) if args.init and str(args.init) and weight_paths(args.init)[0].exists() else None
    low_bins = args.low_bins if args.low_bins is not None else (start.low_bins if start is not None else 0)
    rnn_hidden = args.rnn_hidden if args.rnn_hidden is not None else (start.rnn.hidden_size if start is not None else 0)
    model = build(DEFAULT_CONFIG | {"low_bins": low_bins, "rnn_hidden": rnn_hidden})
    low = [] if model.inp_low is None else list(model.inp_low.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in low)]
    opt = torch.optim.Adam([{"params": rest}] + ([{"params": low, "lr_scale": args.low_lr_scale}] if low else []),
                           lr=args.lr)
    loop = TrainLoop(ctx, args.run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=args.steps,
                     lr=args.lr, warmup=50, max_minutes=args.max_minutes, log_every=50,
                     ckpt_every=args.eval_every, desc="train separate")
    if args.export_only:
        export(model, args.export, dict(loop.extra) | {"steps": loop.step, "minutes": round(loop.elapsed_before / 60, 1)})
        print(f"exported {args.export} from step {loop.step}", flush=True)
        return 0
    if loop.step == 0 and start is not None:
        load_narrower(model, start.float().state_dict())
        print(f"starting from {args.init} ({start.low_bins} → {model.low_bins} low-band bins, GRU "
              f"{start.rnn.hidden_size} → {model.rnn.hidden_size})", flush=True)
    batches = crops(songs, args.batch, args.crop_seconds, np.random.default_rng([args.seed, loop.step]),
                    low_other=args.low_other, remix=args.remix, shift=args.shift, low_bank=low_bank,
                    low_neg=args.low_neg)

    def step_fn(step: int) -> dict[str, float]:
        mix, stems = next(batches)
        return {"loss": apply_step(model, opt, step_loss(model, mix, stems, args.leak, args.loss,
                                                        tuple(args.role_weights)))}

    def on_log(step: int) -> dict[str, float]:
        if step % args.eval_every:
            return {}
        fresh = scan()  # songs a still-running `data synth` or cache builder has finished since
        known = set(files)
        songs.extend(load_cache([f for f in fresh if f not in known]))
        files[:] = fresh
        fresh_low = [f for c in args.low_bank for f in cached_files(c)]  # a bank still being rendered beside
        low_bank.extend(load_cache([f for f in fresh_low if f not in set(low_files)]))
        low_files[:] = fresh_low
        if not val:
            return {"songs": len(songs)}
        return heldout_sisdri(model, val) | {"songs": len(songs),
                                       "train_minutes": (loop.elapsed_before + loop.clock.elapsed_s) / 60}

    result = loop.run(step_fn, on_log)
    print(f"step {result.step}, {result.elapsed_s / 60:.1f} min: {result.latest}", flush=True)
    if args.export:
        export(model, args.export, {"steps": result.step, "minutes": round(result.elapsed_s / 60, 1),
                                    "batch": args.batch, "crop_seconds": args.crop_seconds, "lr": args.lr,
                                    "variants": args.variants, "low_other": args.low_other, "remix": args.remix,
                                    "shift": args.shift, "low_neg": args.low_neg, "leak": args.leak, "loss": args.loss,
                                    "low_bins": model.low_bins, "low_lr_scale": args.low_lr_scale,
                                    "init": str(args.init), "role_weights": list(args.role_weights),
                                    "low_bank": [str(c) for c in args.low_bank],
                                    "corpus": [str(c) for c in args.corpus]})
        print(f"exported {args.export}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
