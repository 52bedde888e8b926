"""Listening models on held-out corpus songs: paper 001's table, the linear-probe comparison with the MusiCoder
pretraining ablation, 25×25 (mix, stem) matching top-1, and the time to analyse a 30 s mix.

    python benchmarks/analysis_eval.py [--corpus CORPUS_ROOT] [--runs runs/analysis]

CORPUS_ROOT holds train/ and test/ (Slakh layout, `backline data synth --songs N --out CORPUS_ROOT/test`). Without
--corpus a small one (4 + 4 synthetic songs, benchmark seed) is rendered once and the output says so.

Reads the tagger heads from `runs/analysis/tagger/tagger_{head}`, the MusiCoder ablation encoders from
`runs/analysis/musicoder_{cfm+ccm,cfm,ccm,none}/musicoder`, and the shipped SimCLR and matching weights.
Everything is evaluated on the corpus's *test* split (songs never seen in training). Prints the hardware.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _common
import numpy as np
import torch


def hardware() -> str:
    return _common.hardware()


def fmt(x: float) -> str:
    return "  n/a" if x != x else f"{100 * x:5.1f}"


def tagger_table(run_dir: Path, test, heads, shipped: Path | None = None) -> dict:
    from backline.engines.analysis.tagger import (
        build_tagger,
        coarse_from_fine,
        coarse_mask_from_fine,
        macro_metrics,
    )
    from backline.engines.analysis.train_tagger import base_input, predict
    from backline.engines.core.weights import load_weights

    y, m = test.y.float(), test.mask.float()
    cy, cm = coarse_from_fine(y).numpy(), coarse_mask_from_fine(y, m).numpy()
    rows = {}
    for head in heads:
        path = run_dir / f"tagger_{head}" if head != "shipped" else shipped
        if not path.with_suffix(".safetensors").exists():
            print(f"  (no weights for head {head} at {path}; train with `backline train tagger`)")
            continue
        model, meta = load_weights(path, kind="tagger", build=build_tagger)
        fine_p, coarse_p = predict(model, base_input(test, meta["config"]["base"]))
        rows[head] = {"fine": macro_metrics(fine_p, y.numpy(), m.numpy(), model.fine_thresholds.numpy()),
                      "coarse": macro_metrics(coarse_p, cy, cm, model.coarse_thresholds.numpy()),
                      "lam": meta["training"].get("lam")}
    return rows


def linear_probe(z_tr: torch.Tensor, y_tr: torch.Tensor, m_tr: torch.Tensor, z_te: torch.Tensor, y_te, m_te,
                 steps: int = 400, seed: int = 0) -> dict:
    """Logistic-regression probe (one linear layer, masked BCE) on standardised frozen embeddings."""
    from backline.engines.analysis.tagger import (
        coarse_from_fine,
        coarse_mask_from_fine,
        macro_metrics,
        masked_bce,
    )

    mu, sd = z_tr.mean(0), z_tr.std(0).clamp_min(1e-5)
    a, b = (z_tr - mu) / sd, (z_te - mu) / sd
    torch.manual_seed(seed)
    lin = torch.nn.Linear(a.shape[1], y_tr.shape[1])
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = masked_bce(torch.sigmoid(lin(a)), y_tr, m_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p = torch.sigmoid(lin(b))
    half = np.full(p.shape[1], 0.5)
    fine = macro_metrics(p.numpy(), y_te.numpy(), m_te.numpy(), half)
    coarse = macro_metrics(coarse_from_fine(p).numpy(), coarse_from_fine(y_te).numpy(),
                           coarse_mask_from_fine(y_te, m_te).numpy(), np.full(6, 0.5))
    return {"fine": fine, "coarse": coarse}


@torch.no_grad()
def embeddings(encoder, x: torch.Tensor, kind: str) -> torch.Tensor:
    from backline.engines.analysis.tagger import SimCLRTaggerBase

    encoder.eval()
    f = encoder.embed if kind == "musicoder" else SimCLRTaggerBase(encoder)
    return torch.cat([f(x[i : i + 64].float()) for i in range(0, len(x), 64)])


def matching_top1(args, n: int = 25, seconds: float = 6.0) -> dict:
    from backline.engines.analysis import dataset
    from backline.engines.analysis.api import Analyzer
    from backline.engines.analysis.common import load_waves
    from backline.engines.core.audio import Audio

    tracks = load_waves(args, "test")
    an = Analyzer("shipped", weights_dir=args.weights_dir)
    rng = np.random.default_rng(0)
    out = {}
    for target in dataset.MATCH_TARGETS:
        mixes, stems = [], []
        for tr in tracks:
            si = dataset.pick_stem(tr, target, rng)
            size = int(seconds * 16000)
            if si is None or tr.waves.shape[1] < size:
                continue
            # the window where the stem is most active in the middle half of the song
            best, best_act = None, -1.0
            for start in np.linspace(tr.waves.shape[1] * 0.2, tr.waves.shape[1] * 0.8 - size, 6).astype(int):
                act = (dataset.frame_db(np.asarray(tr.waves[si, start : start + size])) > dataset.PRESENT_DB).mean()
                if act > best_act:
                    best, best_act = int(start), act
            mix, stem = dataset.matching_pair(tr, si, best, seconds)
            mixes.append(Audio(mix[None], 16000))
            stems.append(Audio(stem[None], 16000))
            if len(mixes) == n:
                break
        p = an.match_matrix(mixes, stems)
        top1 = float((p.argmax(1) == torch.arange(len(p))).float().mean())
        cos = an.match_cosines(mixes, stems)
        fit_own = [float(an.matching.fit_from_similarity(cos[i, i])) for i in range(len(cos))]
        fit_other = [float(an.matching.fit_from_similarity(cos[i, j])) for i in range(len(cos)) for j in range(len(cos)) if i != j]
        out[target] = {"n": len(mixes), "top1": top1, "diag_mass": float(p.diag().mean()),
                       "fit_own": float(np.mean(fit_own)), "fit_other": float(np.mean(fit_other))}
    return out


def missing_table(corpus: Path, weights_dir: Path, limit: int | None = None) -> dict:
    """"Missing parts" on whole held-out songs mixed from their stems: the full band, the band without each part
    (bass, drums, accompaniment = piano + guitar + strings) and without each single instrument. Counts, per
    part, how often it is flagged missing when removed and when it still plays."""
    from backline.engines.analysis.api import Analyzer
    from backline.engines.analysis.train_presence import GROUPS
    from backline.engines.core.audio import Audio
    from backline.engines.data.slakh import list_tracks

    an = Analyzer("shipped", weights_dir=weights_dir)
    tracks = list_tracks(corpus)[:limit]
    rows: dict[str, dict[str, list[bool]]] = {}  # removal -> part -> flagged missing per song
    for tr in tracks:
        by_role: dict[str, list[np.ndarray]] = {}
        for st in tr.audio_stems():
            by_role.setdefault(st.role, []).append(tr.stem_audio(st.id, sample_rate=16000, channels=1).samples[0])
        n = min(len(a) for v in by_role.values() for a in v)
        stems = {r: np.sum([a[:n] for a in v], axis=0) for r, v in by_role.items()}
        removals = [("nothing", ())] + [(g, m) for g, m in GROUPS.items()]
        removals += [(r, (r,)) for r in stems if r not in ("bass", "drums")]
        for name, gone in removals:
            keep = [r for r in stems if r not in gone]
            mix = np.sum([stems[r][:n] for r in keep], axis=0).astype(np.float32)
            rep = an.analyze(Audio(mix[None], 16000))
            for part, members in GROUPS.items():
                plays = any(r in keep for r in members)
                rows.setdefault(name, {}).setdefault(part, []).append((plays, part in rep.missing_parts))
    return {"songs": len(tracks), "rows": rows}


def print_missing(res: dict) -> None:
    from backline.engines.analysis.train_presence import GROUPS

    print(f"\n\"Missing parts\" on {res['songs']} corpus songs (whole songs mixed from their stems), "
          "% of songs where each part is flagged missing")
    print(f"{'removed':<16}" + "".join(f"{p:>16}" for p in GROUPS))
    hit = {p: [0, 0] for p in GROUPS}    # removed part flagged missing: [flagged, total]
    false = {p: [0, 0] for p in GROUPS}  # playing part flagged missing
    for name, parts in res["rows"].items():
        cells = []
        for part in GROUPS:
            vals = parts[part]
            share = np.mean([m for _, m in vals])
            plays = vals[0][0]
            cells.append(f"{100 * share:5.1f} {'(gone)' if not plays else '      '}")
            for p_, m in vals:
                bucket = false[part] if p_ else hit[part]
                bucket[0] += m
                bucket[1] += 1
        print(f"{name:<16}" + "".join(f"{c:>16}" for c in cells))
    print("per part: missing flagged when removed (target >= 90 %) | flagged missing while it plays (target <= 5 %)")
    for part in GROUPS:
        h, f = hit[part], false[part]
        print(f"  {part:<14} {100 * h[0] / max(h[1], 1):5.1f} % of {h[1]:>3} | {100 * f[0] / max(f[1], 1):5.1f} % of {f[1]:>3}"
              f"  -> {'met' if h[0] >= 0.9 * h[1] and f[0] <= 0.05 * f[1] else 'NOT met'}")


def timing(args) -> dict:
    from backline.engines.analysis.api import Analyzer
    from backline.engines.analysis.common import load_waves
    from backline.engines.core.audio import Audio, resample

    parts, total = [], 0
    for tr in load_waves(args, "test"):  # songs back to back until 30 s
        parts.append(np.asarray(tr.waves, np.float32).sum(0)[: 30 * 16000 - total])
        total += len(parts[-1])
        if total >= 30 * 16000:
            break
    mix16 = np.concatenate(parts)
    mix = resample(np.stack([mix16, mix16]), 16000, 44100)  # a 30 s stereo 44.1 kHz mix, as a DAW sends it
    audio = Audio(mix, 44100)
    t0 = time.perf_counter()
    an = Analyzer("shipped", weights_dir=args.weights_dir)
    an.analyze(audio)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        an.analyze(audio)
        warm.append(time.perf_counter() - t0)
    return {"seconds": audio.seconds, "cold": cold, "warm_median": statistics.median(warm), "warm_min": min(warm)}


def main(argv: list[str] | None = None) -> int:
    from backline.engines.analysis.common import DEFAULT_CACHE, ensure_cache, load_crops
    from backline.engines.analysis.tagger import HEADS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", nargs="+", default=None, metavar="ROOT[:N]",
                   help="corpus root(s); ':N' = the first N training songs (for the probes), as in training")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--runs", type=Path, default=Path("runs/analysis"))
    p.add_argument("--limit-tracks", type=int, default=None, help="train songs the probes use (as in training)")
    p.add_argument("--weights-dir", type=Path, default=Path(__file__).resolve().parents[1] / "engines" / "analysis" / "weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--probe-train", type=int, default=1200, help="training crops the linear probes see")
    p.add_argument("--skip", default="", help="comma list of parts to skip: table,probe,matching,timing,missing")
    p.add_argument("--missing-corpus", type=Path, default=None,
                   help="held-out rendered songs for the missing-parts table (default: the corpus's test split)")
    p.add_argument("--missing-songs", type=int, default=30, help="songs in the missing-parts table")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    print(f"hardware: {hardware()}")
    if args.corpus is None:
        from _common import corpus_or_render

        for split in ("test", "train") if "probe" not in skip else ("test",):  # the probes train on train/
            root, label = corpus_or_render(None, split=split)
        args.corpus = [str(root)]
        print(f"corpus: {label} (train/ and test/)")
    else:
        for entry in args.corpus:
            root = entry.rsplit(":", 1)[0] if entry.rsplit(":", 1)[-1].isdigit() else entry
            if not Path(root).is_dir():
                print(f"analysis_eval.py: error: {root}: corpus folder not found — give a folder with train/ and "
                      "test/, or leave out --corpus to render a small synthetic one", file=sys.stderr)
                return 2
    if "missing" not in skip:
        corpus = args.missing_corpus or Path(args.corpus[0].split(":")[0]) / "test"
        print_missing(missing_table(corpus, args.weights_dir, args.missing_songs))
    if {"table", "probe"} - skip:
        ensure_cache(args, "test", quiet=True)  # limits apply to the training split only
        test = load_crops(args, "test")
        n_tracks = len(torch.unique(test.track))
        print(f"test-split data: {len(test)} five-second crops (random stem subsets) from {n_tracks} test songs of {args.corpus}")

    if "table" not in skip:
        rows = tagger_table(args.runs / "tagger", test, (*HEADS, "shipped"), args.weights_dir / "tagger")
        print("\nPaper 001, Table 1 on our corpus (macro %, test split; F1 with per-tag thresholds tuned on validation)")
        print(f"{'method':<34}{'λ':>5} | {'fine ROC':>8} {'PR':>6} {'F1':>6} | {'coarse ROC':>10} {'PR':>6} {'F1':>6}")
        names = {"flat": "flat + inference-time GMP (baseline)", "levelwise": "level-wise (Fig. 2a)",
                 "topdown": "top-down soft tree (Fig. 2b)", "gmp": "GMP joint training (Fig. 2c)",
                 "resatt": "ResAtt (Fig. 2d)", "shipped": "shipped: ResAtt, longer schedule"}
        for head, r in rows.items():
            lam = "-" if head == "flat" else f"{r['lam']:.2f}"
            f, c = r["fine"], r["coarse"]
            print(f"{names[head]:<34}{lam:>5} | {fmt(f['roc_auc']):>8} {fmt(f['pr_auc']):>6} {fmt(f['f1']):>6} | "
                  f"{fmt(c['roc_auc']):>10} {fmt(c['pr_auc']):>6} {fmt(c['f1']):>6}")
        if rows:
            any_row = next(iter(rows.values()))
            print(f"(macro over the {any_row['fine']['tags']} fine / {any_row['coarse']['tags']} coarse tags that occur in the test split)")
            if "flat" in rows:
                base = rows["flat"]["coarse"]["pr_auc"]
                for h in ("gmp", "resatt"):
                    if h in rows:
                        d = rows[h]["coarse"]["pr_auc"] - base
                        print(f"target: {h} vs flat coarse PR-AUC {d * 100:+.1f} points -> {'met' if d > 0 else 'NOT met'}")

    if "probe" not in skip:
        from backline.engines.analysis.train_tagger import load_base

        ensure_cache(args, "train", quiet=True)
        train = load_crops(args, "train")
        if len(train) > args.probe_train:  # a fixed random subset keeps the probes cheap on a shared CPU
            train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.probe_train])
        y_tr, m_tr, y_te, m_te = train.y.float(), train.mask.float(), test.y.float(), test.mask.float()
        print(f"\nLinear probe on frozen clip embeddings ({len(train)} training crops; fine tags; coarse = GMP of the "
              "probe's fine probabilities), test split")
        print(f"{'embedding':<40}{'dim':>5} | {'fine ROC':>8} {'PR':>6} | {'coarse ROC':>10} {'PR':>6}")
        candidates = [(f"MusiCoder, pretrained {obj.upper() if obj != 'none' else 'none (random init)'}",
                       "musicoder", args.runs / f"musicoder_{obj}" / "musicoder") for obj in ("cfm+ccm", "cfm", "ccm", "none")]
        candidates.append(("SimCLR NF-Lite (mixup, NT-Xent)", "simclr", args.weights_dir / "simclr"))
        for label, kind, path in candidates:
            if not path.with_suffix(".safetensors").exists():
                print(f"{label:<40}  (no weights at {path})")
                continue
            enc, cfg = load_base(kind, path)
            x_tr, x_te = (train.frames, test.frames) if kind == "musicoder" else (train.mels, test.mels)
            z_tr, z_te = embeddings(enc, x_tr, kind), embeddings(enc, x_te, kind)
            r = linear_probe(z_tr, y_tr, m_tr, z_te, y_te, m_te)
            print(f"{label:<40}{z_tr.shape[1]:>5} | {fmt(r['fine']['roc_auc']):>8} {fmt(r['fine']['pr_auc']):>6} | "
                  f"{fmt(r['coarse']['roc_auc']):>10} {fmt(r['coarse']['pr_auc']):>6}")

    if "matching" not in skip:
        res = matching_top1(args)
        print("\nMatching (paper 000's soft-assignment matrix): N mixes (without the stem) × their N stems, 6 s windows")
        for target, r in res.items():
            print(f"  {target:<6} N={r['n']:>2}: top-1 {r['top1']:.2f} (target >= 0.8), mean diagonal mass {r['diag_mass']:.2f}, "
                  f"fit score own stem {r['fit_own']:.2f} vs other songs' {r['fit_other']:.2f}")

    if "timing" not in skip:
        print("\nAnalysis time for a 30 s 44.1 kHz stereo mix (resample + features + tagger); target <= 1 s")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t = timing(args)
            print(f"  {threads} torch thread(s): warm median {t['warm_median']:.3f} s (min {t['warm_min']:.3f} s), "
                  f"first call incl. model load {t['cold']:.2f} s")
        print("  (on a shared, oversubscribed 2-core machine one thread is faster than two)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
