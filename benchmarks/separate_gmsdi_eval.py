"""Issue 21's comparison: the predictive mask network against the mask-parametrised GMSDI (separator, extractor,
ensemble) and the StoRM refinement, on held-out songs and the demo, with the 150 Hz filters and the oracle IRM.

    .venv/bin/python benchmarks/separate_gmsdi_eval.py --score RUN/export --heldout DIR [--clip 20] [--no-demo]
        [--systems predictive,onepass,separator,extractor,ensemble,storm-separator,storm-extractor] [--steps 8]
        [--churn 0] [--storm-sigma 0.1] [--storm-steps 4] [--speed] [--json OUT]

Scoring is benchmarks/separate_eval.py's (`score_song`: SI-SDR improvement over the mix, mono mean at 44.1 kHz,
one `--clip`-second excerpt per song from 5 s in, the whole demo), each system through the engine's windowed
Separator (`diffusion.DiffusionSeparator`), so only the masks differ. `--speed` times each system on 30 s of the
demo's stereo mix, CPU seconds of this process (one thread), for the bass alone and for bass, drums and other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import corpus_or_render, hardware  # noqa: E402
from separate_eval import score_song, track_roles  # noqa: E402

from backline.engines.core.audio import read_audio  # noqa: E402

SR = 44100
TASKS = ("bass", "drums", "other", "no-bass")


def systems(names: list[str], args: argparse.Namespace):
    from backline.engines.separate.diffusion import DiffusionSeparator, Sampling, load_score_model
    from backline.engines.separate.engine import WEIGHTS, load_model

    pred = load_model(args.weights or WEIGHTS)
    score = load_score_model(args.score) if args.score else None
    out = {}
    for name in names:
        storm = name.startswith("storm")
        s = Sampling(steps=args.storm_steps if storm else args.steps, churn=args.churn,
                     storm_sigma=args.storm_sigma if storm else 0.0, seed=args.seed)
        out[name] = DiffusionSeparator(pred, score, name, s)
    return out


def score_set(seps: dict, songs: list[dict[str, np.ndarray]], names: list[str]) -> dict:
    """Per song and system: SI-SDRi per task; plus the baselines (mix, filters, oracle) once."""
    rows = []
    for i, stems in enumerate(songs):
        row: dict[str, dict[str, float]] = {}
        for name, sep in seps.items():
            t0 = time.process_time()
            res = score_song(sep, stems)
            for task, vals in res.items():
                row.setdefault(task, {k: v for k, v in vals.items() if k != "mask network"})
                row[task][name] = vals["mask network"]
            row.setdefault("_cpu_s", {})[name] = time.process_time() - t0
        rows.append(row)
        print(f"  song {i + 1}: " + "; ".join(f"{n} bass {row['bass'][n]:+.2f}" for n in seps if "bass" in row),
              flush=True)
    return {"per_song": rows, "mean": means(rows, names)}


def means(rows: list[dict], names: list[str]) -> dict:
    cols = ["150 Hz low-pass", "150 Hz high-pass", *names, "oracle IRM"]
    out = {}
    for t in TASKS:
        out[t] = {c: float(np.mean([r[t][c] for r in rows if t in r and c in r[t]]))
                  for c in cols if any(t in r and c in r[t] for r in rows)}
    return out


def print_table(title: str, m: dict, names: list[str]) -> None:
    cols = ["150 Hz low-pass", "150 Hz high-pass", *names, "oracle IRM"]
    print(f"\n{title}\n  {'task':<8}" + "".join(f"{c[:15]:>16}" for c in cols))
    for t in TASKS:
        if t in m:
            print(f"  {t:<8}" + "".join(f"{m[t][c]:>+16.2f}" if c in m[t] else f"{'—':>16}" for c in cols))


def speed(seps: dict) -> dict:
    from backline.engines.data.demo import demo_song

    mix = read_audio(demo_song() / "mix.flac", sample_rate=SR, channels=2, frames=30 * SR)
    out = {}
    for name, sep in seps.items():
        for label, parts in (("bass", [("bass", False)]),
                             ("bass, drums, other", [("bass", False), ("drums", False), ("other", False)])):
            sep.roles = tuple(r for r, _ in parts)
            t0 = time.process_time()
            sep.separate(mix, parts)
            out[f"{name}: {label}"] = time.process_time() - t0
        sep.roles = ("bass", "drums", "other")
    print(f"\nCPU seconds per 30 s of stereo 44.1 kHz ({torch.get_num_threads()} thread):")
    for k, v in out.items():
        print(f"  {k:<42} {v:7.2f} s  ({v / 30:.3f}x real time)")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--heldout", type=Path, help="held-out corpus folder (Slakh layout), never trained on; without it "
                   "a few synthetic songs are rendered (labelled so)")
    p.add_argument("--songs", type=int, default=4, help="songs to render when no --heldout is given (0: none)")
    p.add_argument("--clip", type=float, default=20.0)
    p.add_argument("--no-demo", action="store_true")
    p.add_argument("--weights", type=Path, help="predictive weights (default: shipped)")
    p.add_argument("--score", type=Path, help="GMSDI score weights (train separate-gmsdi --export)")
    p.add_argument("--systems", default="predictive,onepass,separator,extractor,storm-separator,storm-extractor")
    p.add_argument("--steps", type=int, default=8, help="Euler steps from σ_max (separator, extractor)")
    p.add_argument("--storm-steps", type=int, default=4)
    p.add_argument("--storm-sigma", type=float, default=0.1)
    p.add_argument("--churn", type=float, default=0.0, help="Euler churn (paper 003: 20; measured worse at 8 steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", action="store_true")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(hardware())
    names = [n.strip() for n in a.systems.split(",") if n.strip()]
    seps = systems(names, a)
    results: dict = {"systems": names, "steps": a.steps, "storm_steps": a.storm_steps, "storm_sigma": a.storm_sigma,
                     "churn": a.churn, "score": str(a.score)}
    if a.heldout or a.songs > 0:
        folder, label = corpus_or_render(a.heldout, flag="--heldout", songs=a.songs)
        tracks = sorted(t for t in folder.iterdir() if t.name.startswith("Track"))
        songs = [track_roles(t, 5 * SR, int(a.clip * SR)) for t in tracks]
        results["heldout"] = score_set(seps, songs, names)
        print_table(f"{label} ({len(songs)} × {a.clip:g} s), SI-SDRi dB", results["heldout"]["mean"], names)
    if not a.no_demo:
        from backline.engines.data.demo import demo_song

        results["demo"] = score_set(seps, [track_roles(demo_song())], names)
        print_table("Demo song (whole), SI-SDRi dB", results["demo"]["mean"], names)
    if a.speed:
        results["speed_cpu_s_per_30s"] = speed(seps)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
