"""`backline train presence`: fit the per-part presence model (presence.py) on rendered songs.

Every song is mixed several ways from its stems: the full band, the band without each part (bass, drums, the
accompaniment = piano + guitar + strings), without each single instrument, and a few random subsets with
random stem gains (±6 dB). Each mix is cut into the analysis's 5 s windows; a window's label for a part is
"one of the part's stems is audible in it" (RMS ≥ −50 dBFS). One logistic regression per part is fitted on the
window features (sklearn, L2). The clip thresholds come from *out-of-fold* clip probabilities (5 folds split by
song): the highest threshold at which at most `--max-false-missing` of clips with the part are flagged missing,
so the shipped thresholds are not tuned on the songs the regression saw.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELP = "fit the part-presence model that decides which parts are missing (bass, drums, accompaniment)"
GROUPS = {"bass": ("bass",), "drums": ("drums",), "accompaniment": ("piano", "guitar", "strings")}
AUDIBLE_DB = -50.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, nargs="+", required=True, help="rendered corpus folder(s)")
    parser.add_argument("--out", type=Path, default=Path("runs/analysis/presence"), help="weights path (no suffix)")
    parser.add_argument("--random-mixes", type=int, default=3, help="random stem subsets per song")
    parser.add_argument("--max-false-missing", type=float, default=0.02,
                        help="share of clips that have the part that may be flagged missing (out-of-fold)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--hidden", type=int, default=0, help="hidden units of a one-layer MLP (0 = logistic regression)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="window features as .npz: read when it exists, else written after collecting")


def song_mixes(track, rng: np.random.Generator, random_mixes: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(name, {stem role: 16 kHz mono samples}) for every mix configuration of one song."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.features import FEATURE_SR

    stems = {}
    for st in track.audio_stems():
        a = track.stem_audio(st.id, sample_rate=FEATURE_SR, channels=1)
        stems.setdefault(st.role, []).append(a.samples[0])
    n = min(len(x) for v in stems.values() for x in v)
    role_audio = {r: np.sum([x[:n] for x in v], axis=0) for r, v in stems.items()}
    roles = list(role_audio)
    configs = [("full", roles)]
    configs += [(f"no {g}", [r for r in roles if r not in members]) for g, members in GROUPS.items()]
    configs += [(f"no {r}", [x for x in roles if x != r]) for r in roles if r not in ("bass", "drums")]
    for k in range(random_mixes):
        keep = [r for r in roles if rng.random() < 0.6] or [roles[int(rng.integers(len(roles)))]]
        configs.append((f"random {k}", keep))
    out = []
    for name, keep in configs:
        gains = {r: 10 ** (rng.uniform(-6, 6) / 20) if name.startswith("random") else 1.0 for r in keep}
        out.append((name, {r: role_audio[r] * gains[r] for r in keep}))
    return out


def window_rows(analyzer, parts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Features [W, F] and labels [W, 3] for one mix given as {role: samples}."""

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.api import SILENCE_DB, WINDOW_S

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.features import FEATURE_SR, loudness

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.presence import with_tags

    mix = np.sum(list(parts.values()), axis=0).astype(np.float32)
    size = int(WINDOW_S * FEATURE_SR)
    starts = [s for s in analyzer._windows(len(mix), size) if loudness(mix[s : s + size]).rms_db >= SILENCE_DB]
    if not starts:
        return np.zeros((0, 0), np.float32), np.zeros((0, 3), np.float32)
    fine, coarse, _, hand = analyzer.window_table(mix, starts)
    x = np.stack([with_tags(h, f, c) for h, f, c in zip(hand, fine, coarse)])
    y = np.zeros((len(starts), len(GROUPS)), np.float32)
    for j, members in enumerate(GROUPS.values()):
        for i, s in enumerate(starts):
            y[i, j] = any(r in parts and loudness(parts[r][s : s + size].astype(np.float32)).rms_db
                          >= AUDIBLE_DB for r in members)
    return x, y


def clip_prob(p: np.ndarray) -> np.ndarray:
    """Top-quarter mean over windows, as api._aggregate."""
    k = max(1, int(np.ceil(len(p) / 4)))
    return np.sort(p, axis=0)[-k:].mean(0)


def collect(corpus: list[Path], analyzer, random_mixes: int, seed: int, log=print) -> list[dict]:
    """One row per (song, mix): window features/labels and the clip label (part's stems in the mix)."""
    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.data.slakh import list_tracks

    rng = np.random.default_rng(seed)
    rows = []
    tracks = [t for root in corpus for t in list_tracks(root)]
    t0 = time.perf_counter()
    for i, tr in enumerate(tracks):
        for name, parts in song_mixes(tr, rng, random_mixes):
            x, y = window_rows(analyzer, parts)
            if len(x):
                clip = np.array([any(r in parts for r in m) for m in GROUPS.values()], np.float32)
                rows.append({"song": i, "name": name, "x": x, "y": y, "clip": clip})
        log(f"  {i + 1}/{len(tracks)} songs, {len(rows)} mixes, {time.perf_counter() - t0:.0f} s")
    return rows


def fit(rows: list[dict], c: float = 0.5, hidden: int = 0, seed: int = 0):
    """Standardisation + one logistic regression per part (hidden=0) or a one-hidden-layer MLP (multi-label)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x = np.concatenate([r["x"] for r in rows])
    y = np.concatenate([r["y"] for r in rows])
    mean, std = x.mean(0), x.std(0) + 1e-5
    z = (x - mean) / std
    if hidden:
        mlp = MLPClassifier((hidden,), alpha=1e-2, max_iter=600, early_stopping=False, random_state=seed).fit(z, y)
        return mean, std, mlp
    return mean, std, [LogisticRegression(C=c, max_iter=2000).fit(z, y[:, j]) for j in range(y.shape[1])]


def predict_clip(mean, std, models, x: np.ndarray) -> np.ndarray:
    z = (x - mean) / std
    if not isinstance(models, list):
        return clip_prob(models.predict_proba(z))
    return clip_prob(np.stack([m.predict_proba(z)[:, 1] for m in models], axis=1))


def thresholds(rows: list[dict], max_false_missing: float, folds: int = 5, hidden: int = 0) -> tuple[np.ndarray, dict]:
    """Per part: the highest clip threshold that flags at most `max_false_missing` of the clips that have the part,
    from out-of-fold probabilities; also the out-of-fold missing recall at that threshold."""
    songs = sorted({r["song"] for r in rows})
    probs, labels = [], []
    for k in range(folds):
        held = set(songs[k::folds])
        mean, std, models = fit([r for r in rows if r["song"] not in held], hidden=hidden)
        for r in rows:
            if r["song"] in held:
                probs.append(predict_clip(mean, std, models, r["x"]))
                labels.append(r["clip"])
    p, y = np.stack(probs), np.stack(labels)
    th, stats = np.zeros(p.shape[1]), {}
    for j, part in enumerate(GROUPS):
        present = np.sort(p[y[:, j] == 1, j])
        k = int(np.floor(max_false_missing * len(present)))
        th[j] = float(present[k]) if len(present) else 0.5  # clips strictly below are flagged missing
        absent = p[y[:, j] == 0, j]
        stats[part] = {"threshold": round(th[j], 4), "oof_missing_recall": round(float((absent < th[j]).mean()), 4),
                       "oof_false_missing": round(float((present < th[j]).mean()), 4),
                       "clips_present": int(len(present)), "clips_absent": int(len(absent))}
    return th, stats


def run(args: argparse.Namespace) -> int:
    import torch

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.api import Analyzer

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.analysis.presence import N_FEATURES, PARTS
    from backline.engines.analysis.presence_model import PresenceModel

    # lazy: pulls torch; keeps `backline <cmd> --help` light
    from backline.engines.core.weights import check_export, save_weights

    check_export(args.out, overwrite=args.overwrite, flag="--out")  # refused now, not after the fitting
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    analyzer = Analyzer("shipped")
    if args.cache is not None and args.cache.exists():
        data = np.load(args.cache)
        rows = [{"song": int(s), "x": data[f"x{i}"], "y": data[f"y{i}"], "clip": data[f"c{i}"]}
                for i, s in enumerate(data["songs"])]
        print(f"read {len(rows)} mixes from {args.cache}")
    else:
        rows = collect(args.corpus, analyzer, args.random_mixes, args.seed)
        if args.cache is not None:
            arrays = {"songs": np.array([r["song"] for r in rows])}
            for i, r in enumerate(rows):
                arrays |= {f"x{i}": r["x"], f"y{i}": r["y"], f"c{i}": r["clip"]}
            np.savez_compressed(args.cache, **arrays)
    th, stats = thresholds(rows, args.max_false_missing, hidden=args.hidden)
    mean, std, models = fit(rows, hidden=args.hidden, seed=args.seed)
    model = PresenceModel(N_FEATURES, PARTS, args.hidden)
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(mean))
        model.std.copy_(torch.from_numpy(std))
        if args.hidden:
            model.hidden.weight.copy_(torch.from_numpy(models.coefs_[0].T).float())
            model.hidden.bias.copy_(torch.from_numpy(models.intercepts_[0]).float())
            model.linear.weight.copy_(torch.from_numpy(models.coefs_[1].T).float())
            model.linear.bias.copy_(torch.from_numpy(models.intercepts_[1]).float())
        else:
            model.linear.weight.copy_(torch.from_numpy(np.concatenate([m.coef_ for m in models])).float())
            model.linear.bias.copy_(torch.from_numpy(np.concatenate([m.intercept_ for m in models])).float())
        model.threshold.copy_(torch.from_numpy(th).float())
    training = {"corpus": [str(c) for c in args.corpus], "songs": len({r["song"] for r in rows}), "mixes": len(rows),
                "windows": int(sum(len(r["x"]) for r in rows)), "random_mixes": args.random_mixes,
                "max_false_missing": args.max_false_missing, "hidden": args.hidden, "parts": stats,
                "minutes": round((time.perf_counter() - t0) / 60, 2)}
    path = save_weights(model, args.out, kind="presence",
                        config={"n_features": N_FEATURES, "parts": list(PARTS), "hidden": args.hidden},
                        training=training, overwrite=args.overwrite)
    print(f"presence model: {path}")
    for part, s in stats.items():
        print(f"  {part:<14} threshold {s['threshold']:.3f}  out-of-fold: missing flagged {s['oof_missing_recall']:.1%}"
              f" of {s['clips_absent']} clips without it, present flagged missing {s['oof_false_missing']:.1%}"
              f" of {s['clips_present']}")
    return 0
