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

from backline.engines.bass.planner_train import add_planner_flags, pad_batch, train_planner
from backline.engines.core.errors import ConfigError

HELP = "train the comping planner (symbolic: chords/band/style → when and how thick the accompaniment plays)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--synth", type=int, default=600, help="compose this many corpus songs in memory")
    parser.add_argument("--synth-seed", type=int, default=7100, help="composer seed for --synth")
    parser.add_argument("--val-songs", type=int, default=24, help="composed held-out songs for a validation loss")
    add_planner_flags(parser, steps=3000, batch=16, bars=8, lr=3e-3, warmup=100, log_every=25, ckpt_every=200)


def make_batch(examples, batch: int, bars: int, rng, *, augment: bool = True):
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.planner import BOS, features

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.planner_data import sample_crop
    crops = []
    for _ in range(batch):
        ex = examples[int(rng.integers(len(examples)))]
        grid, band, tok, vidx, vel, family, style, attrs = sample_crop(ex, bars * ex.grid.bar_steps, rng,
                                                                       augment=augment)
        crops.append((features(grid, family, style, attrs, band), tok, vidx, vel))
    return pad_batch(crops, BOS)


def style_attributes(examples) -> dict[str, dict[str, float]]:
    import numpy as np

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.planner import ATTRS, part_attributes

    by: dict[str, list[dict[str, float]]] = {}
    for ex in examples:
        a = part_attributes(ex.events, ex.grid, ex.mean_pitch)
        by.setdefault(f"{ex.family}/{ex.style}", []).append(a)
        by.setdefault(f"{ex.family}/unknown", []).append(a)
    return {s: {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ATTRS} for s, rows in by.items()}


def run(args: argparse.Namespace) -> int:
    import torch

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany import planner

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.accompany.planner_data import composed_examples
    if args.synth <= 0:
        raise ConfigError("nothing to train on", fix="give --synth N (composed songs)")

    def load_data():
        return (composed_examples(args.synth, args.synth_seed),
                composed_examples(args.val_songs, args.synth_seed + 1_000_003, max_bars=32) if args.val_songs else [])

    ce = torch.nn.functional.cross_entropy

    def losses(m, batch):
        cond, prev, tok, vidx, vel = batch
        logits, vlog, velog, _ = m(cond, prev)
        tok_ce = ce(logits.float().flatten(0, 1), tok.flatten(), ignore_index=-100)
        voice_ce = ce(vlog.float().flatten(0, 1), vidx.flatten(), ignore_index=-100) if (vidx >= 0).any() \
            else torch.zeros((), device=cond.device)
        vel_ce = ce(velog.float().flatten(0, 1), vel.flatten(), ignore_index=-100)
        return tok_ce, voice_ce, vel_ce

    # shipped as fp16 (a quarter of a MiB; loads as fp32)
    return train_planner(args, planner, name="comp-planner", unit="parts", load_data=load_data,
                         make_batch=make_batch, losses=losses, weights=(1.0, 0.5, 0.5),
                         val_keys=("val_token_ce", "val_voice_ce", "val_vel_ce"), style_attributes=style_attributes,
                         data=f"{args.synth} composed songs (seed {args.synth_seed})", half=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="backline train comp-planner", description=HELP)
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
