"""Bass engine evaluation, paper 000's protocol on held-out corpus songs (CPU-sized sample counts).

    .venv/bin/python benchmarks/bass_eval.py [--corpus HELD_OUT] [--clips 8] [--matrix 25] [--quick]
    .venv/bin/python benchmarks/bass_eval.py --follow --corpus HELD_OUT   # follow mode: see bass_follow_eval.py

Clips: `--seconds` (8 s) from a bar start of held-out songs (one clip per song, then further clips from the
same songs if there are too few); the *mix* is the sum of every stem but the bass, the *real bass* is the
bass stem. All clips have the same length so a whole set is generated in one batched sampling run.

Tables printed:
1. FAD vs DDIM steps (8/16/32/64/128) — unconditional (λ = 0, as the paper's Fig. 2 left) and conditional
   (λ = 2, φ = 0.7).
2. FAD vs CFG λ with rescale φ = 0 and φ = 0.7 (paper Fig. 2 right), 64 steps.
3. Grounding table (paper Table 1): cosine and Euclidean distance between the embedding of each preset's style
   reference and of the output generated for the same mix/seed grounded (strength 1) vs not (strength 0), plus
   rows for the other `--strengths` (the user control). Each embedding is scored twice: against the reference
   audio (the paper's protocol) and against the reference passed through the stem codec. The second row is there
   because a small stem codec's own round trip can move the timbre embedding further than the eight presets
   differ from each other (≈ 0.07 cosine): the stem codec before its bass fine-tune did (0.26), so against raw
   references no generator on its latents could show grounding. The codec floor (0.058 for the shipped stem
   codec) is printed with the table.
4. 25×25 soft-assignment matrix (paper Fig. 3) from the (mix, bass) matching model: top-1 accuracy and mean
   diagonal probability, for generated basses and, as the ceiling, for the real basses.
5. Musical checks vs the corpus ground truth (extras.json key/chords/tempo): share of transcribed notes that are
   chord tones of their bar, share in key (major; minor = natural + raised 7th), share of onsets within 30 ms of
   the 16th grid — for generated and for real bass (both transcribed with the same CREPE transcriber).

Embeddings (documented choices):
- FAD: Fréchet distance between Gaussians fitted to *frame-level* 64-bin log-mel vectors (44.1 kHz, FFT 2048,
  hop 1024, 20 Hz–8 kHz, the project front end) of the real and the generated sets. Frame-level statistics keep
  the 64×64 covariance well conditioned with a handful of clips, which clip-level 256-d embeddings would not.
- Style distances (paper Table 1 used an off-the-shelf audio classifier's embedding): the primary embedding is
  `backline.engines.analysis.features.timbre_vector` (MFCC 1–19 mean+std over sounding frames); the SimCLR
  embedding of `backline.engines.analysis.api.embed` is reported beside it. The table first prints how well each
  embedding tells the eight presets' references apart (each reference split in halves: nearest-preset accuracy
  and between/within distance ratio) — an embedding that cannot separate the references cannot measure grounding
  (SimCLR: all basses look alike to it). Cosine distance = 1 − cos; Euclidean distance between L2-normalised
  embeddings (scale-free, in [0, 2]).
- The matching matrix needs the analysis helper's matching model; without its weights the table says so.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backline.engines.bass.data import bass_tracks
from backline.engines.bass.engine import Sampling, build
from backline.engines.bass.presets import list_presets, load_preset, style_mean_of_audio
from backline.engines.core.audio import Audio, read_audio

NOTE_PC = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7, "G#": 8,
           "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10, 11)


@dataclass
class Clip:
    name: str
    mix: Audio
    bass: Audio
    extras: dict
    start_s: float


def load_clips(corpus: Path, count: int, seconds: float, seed: int = 0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    tracks = bass_tracks(corpus)
    if not tracks:
        raise SystemExit(f"no tracks with a bass stem under {corpus}")
    clips: list[Clip] = []
    rounds = 0
    while len(clips) < count and rounds < 20:
        for tr in tracks:
            if len(clips) >= count:
                break
            extras = json.loads((tr.folder / "extras.json").read_text()) if (tr.folder / "extras.json").is_file() else {}
            bpm = float(extras.get("tempo_bpm", 120.0))
            num, den = extras.get("time_signature", [4, 4])
            bar_s = num * 4.0 / den * 60.0 / bpm
            stems = {s: read_audio(tr.folder / "stems" / f"{s}.flac") for s in (tr.bass, *tr.others)}
            sr = stems[tr.bass].sample_rate
            total_bars = int(stems[tr.bass].frames / sr / bar_s)
            last_start = max(1, int(total_bars - math.ceil(seconds / bar_s)))
            bar = int(rng.integers(1, last_start + 1)) if rounds else min(5, last_start)
            start = int(round((bar - 1) * bar_s * sr))
            frames = int(seconds * sr)
            mix = sum(stems[s].slice(start, start + frames).samples for s in tr.others)
            bass = stems[tr.bass].slice(start, start + frames)
            if bass.peak() < 1e-3:
                continue
            clips.append(Clip(f"{tr.folder.name}@bar{bar}", Audio(mix, sr), bass, extras, (bar - 1) * bar_s))
        rounds += 1
    return clips


# --- features ----------------------------------------------------------------------------------------------------

def frame_logmel(audio: Audio) -> np.ndarray:
    from backline.engines.core.frontend import log_mel

    x = torch.from_numpy(audio.resampled(44100).with_channels(1).samples[0])
    return log_mel(x, 44100, n_fft=2048, hop=1024, n_mels=64, f_min=20.0, f_max=8000.0).T.numpy()  # [frames, 64]


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg  # noqa: PLC0415 - optional heavy import

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def fad(real: list[Audio], fake: list[Audio]) -> float:
    return frechet(np.concatenate([frame_logmel(a) for a in real]), np.concatenate([frame_logmel(a) for a in fake]))


class Embedder:
    """A named clip embedding for the style-distance table (see the module docstring)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "timbre":
            from backline.engines.analysis.features import timbre_vector

            self.name, self._fn = "timbre (MFCC 1-19 stats)", timbre_vector
        elif kind == "simclr":
            from backline.engines.analysis.api import embed

            self.name, self._fn = "SimCLR (analysis)", lambda a: embed(a).float().numpy()
        else:
            raise ValueError(kind)

    def __call__(self, audio: Audio) -> np.ndarray:
        return self._fn(audio)

    def separation(self, refs: list[Audio]) -> tuple[float, float]:
        """(nearest-preset accuracy, between/within cosine-distance ratio) over reference halves."""
        halves = [(Audio(r.samples[:, : r.frames // 2].copy(), r.sample_rate),
                   Audio(r.samples[:, r.frames // 2:].copy(), r.sample_rate)) for r in refs]
        e = [(self(a), self(b)) for a, b in halves]
        d = np.array([[distances(e[i][0], e[j][1])[0] for j in range(len(e))] for i in range(len(e))])
        within = float(np.diag(d).mean())
        between = float(d[~np.eye(len(e), dtype=bool)].mean())
        return float((d.argmin(1) == np.arange(len(e))).mean()), between / max(within, 1e-9)


def distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    na, nb = a / (np.linalg.norm(a) + 1e-9), b / (np.linalg.norm(b) + 1e-9)
    return float(1 - na @ nb), float(np.linalg.norm(na - nb))


# --- musical checks ------------------------------------------------------------------------------------------------

def musical_shares(audio: Audio, clip: Clip) -> tuple[int, float, float, float]:
    from backline.engines.bass.transcription import transcribe_bass

    notes = transcribe_bass(audio)
    ex = clip.extras
    bpm = float(ex.get("tempo_bpm", 120.0))
    num, den = ex.get("time_signature", [4, 4])
    qpb = num * 4.0 / den
    key = NOTE_PC.get(str(ex.get("key", "C")), 0)
    scale = {(key + d) % 12 for d in (MINOR if ex.get("mode") == "minor" else MAJOR)}
    chords = {c["bar"]: set(c["pitch_classes"]) for c in ex.get("chords", [])}
    grid = 60.0 / bpm / 4
    if not notes:
        return 0, float("nan"), float("nan"), float("nan")
    chord_hits = key_hits = grid_hits = 0
    for n in notes:
        t = clip.start_s + n.start
        bar = int(t * bpm / 60.0 // qpb) + 1
        pc = n.pitch % 12
        chord_hits += pc in chords.get(bar, set())
        key_hits += pc in scale
        grid_hits += abs(t - round(t / grid) * grid) <= 0.030
    k = len(notes)
    return k, chord_hits / k, key_hits / k, grid_hits / k


# --- generation ----------------------------------------------------------------------------------------------------

def generate(engine, conds: torch.Tensor, lengths: list[int], steps: int, cfg: float, rescale: float,
             strength: float, mus: np.ndarray | None, seed: int = 0) -> list[Audio]:
    seeds = [seed + i for i in range(conds.shape[0])]
    lat = engine.sample_latents(conds, seeds, Sampling(steps=steps, cfg=cfg, rescale=rescale, strength=strength),
                                mus).latents
    return [engine.stem_codec.decode(lat[i].cpu(), lengths[i], channels=1) for i in range(len(seeds))]


def _grounded_label(strength: float) -> str:
    """Table row name: the paper's setting keeps the plain name so older JSON stays comparable."""
    return "grounded" if strength == 1.0 else f"grounded x{strength:g}"


def main() -> None:
    import sys

    if "--follow" in sys.argv:  # follow mode (listen → plan → render): see bass_follow_eval.py
        from bass_follow_eval import main as follow_main

        raise SystemExit(follow_main([a for a in sys.argv[1:] if a != "--follow"]))
    ap = argparse.ArgumentParser(description="bass engine evaluation (paper 000 protocol)")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="held-out Slakh-layout songs with a bass stem; default: render 4 synthetic songs once")
    ap.add_argument("--config", default="shipped")
    ap.add_argument("--weights", type=Path, help="bass weights to evaluate instead of the shipped ones")
    ap.add_argument("--codec-weights", type=Path, help="folder with mix/stem codec weights (default: shipped)")
    ap.add_argument("--clips", type=int, default=8, help="clips for the FAD sweeps")
    ap.add_argument("--matrix", type=int, default=25, help="mixes in the soft-assignment matrix")
    ap.add_argument("--grounding-mixes", type=int, default=2)
    ap.add_argument("--strengths", default="1,2,4",
                    help="grounding strengths for the table (1 = paper; the others show the user control)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cfg", type=float, default=2.0, help="CFG λ for the grounding, matrix and musical sets")
    ap.add_argument("--rescale", type=float, default=0.7, help="rescale φ for those sets")
    ap.add_argument("--quick", action="store_true", help="fewer settings (steps 8/32/64, λ 1/2.5/5)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    started = time.time()
    from _common import corpus_or_render, cpu_name

    a.corpus, label = corpus_or_render(a.corpus)
    engine = build(a.config, "cpu", weights=a.weights, codec_weights=a.codec_weights)
    results: dict = {"weights": engine.describe().weights}
    print(f"bass_eval on {cpu_name()} (CPU, {a.threads} thread), torch {torch.__version__}")
    print(f"weights: {results['weights']}")
    n_clips = max(a.clips, a.matrix, a.grounding_mixes)
    clips = load_clips(a.corpus, n_clips, a.seconds)
    print(f"{len(clips)} clips of {a.seconds:g} s from {len({c.name.split('@')[0] for c in clips})} songs: "
          f"{label}  (small sample counts: treat differences below a few FAD points as noise)")
    conds = torch.stack([engine.mix_codec.encode(c.mix) for c in clips])
    lengths = [round(c.mix.frames * 44100 / c.mix.sample_rate) for c in clips]
    real = [c.bass.resampled(44100).with_channels(1) for c in clips]
    fad_set = slice(0, min(a.clips, len(clips)))

    # 1. FAD vs steps
    steps_list = (8, 32, 64) if a.quick else (8, 16, 32, 64, 128)
    print("\n1. FAD (frame log-mel) vs DDIM steps")
    print(f"{'steps':>6} {'uncond (λ=0)':>14} {'cond (λ=2, φ=0.7)':>18}")
    results["fad_vs_steps"] = {}
    rt = [engine.stem_codec.roundtrip(c.bass).with_channels(1) for c in clips[fad_set]]
    results["fad_codec_roundtrip"] = fad(real[fad_set], rt)
    print(f"{'codec':>6} {results['fad_codec_roundtrip']:14.2f}   <- real bass through the stem codec: the floor a "
          "generator on these latents can reach")
    for k in steps_list:
        unc = generate(engine, conds[fad_set], lengths[fad_set], k, 0.0, 0.0, 0.0, None)
        con = generate(engine, conds[fad_set], lengths[fad_set], k, 2.0, 0.7, 0.0, None)
        f_u, f_c = fad(real[fad_set], unc), fad(real[fad_set], con)
        results["fad_vs_steps"][k] = {"uncond": f_u, "cond": f_c}
        print(f"{k:>6} {f_u:14.2f} {f_c:18.2f}")

    # 2. FAD vs CFG weight, with / without rescale
    lams = (1.0, 2.5, 5.0) if a.quick else (1.0, 1.5, 2.5, 4.0, 6.0)
    print("\n2. FAD vs CFG λ (64 steps)")
    print(f"{'λ':>6} {'φ=0':>10} {'φ=0.7':>10}")
    results["fad_vs_cfg"] = {}
    for lam in lams:
        row = {}
        for phi in (0.0, 0.7):
            row[phi] = fad(real[fad_set], generate(engine, conds[fad_set], lengths[fad_set], 64, lam, phi, 0.0, None))
        results["fad_vs_cfg"][lam] = row
        print(f"{lam:6.1f} {row[0.0]:10.2f} {row[0.7]:10.2f}")

    # 3. grounding table
    presets = [load_preset(n) for n in list_presets()]
    refs = [read_audio(p.reference) for p in presets]
    embedders = []
    for kind in ("timbre", "simclr"):
        try:
            embedders.append(Embedder(kind))
        except Exception as err:  # noqa: BLE001 - SimCLR weights missing → the table says so
            print(f"  ({kind} embedding unavailable: {type(err).__name__}: {err})")
    strengths = sorted({float(x) for x in a.strengths.split(",") if float(x) > 0} | {1.0})
    settings = [("free", 0.0)] + [(_grounded_label(s), s) for s in strengths]
    print(f"\n3. Style grounding ({a.grounding_mixes} mixes x {len(presets)} presets, 64 steps, λ {a.cfg:g}, φ {a.rescale:g}, "
          "strength 1 = paper vs 0 = free)")
    # Two style targets per embedding: the reference audio (the paper's protocol) and the reference passed
    # through the stem codec. A small codec's own reconstruction error can move an embedding further than the
    # presets differ from each other; the second target measures grounding net of that floor.
    refs_via_codec = [engine.stem_codec.roundtrip(r.with_channels(1)) for r in refs]
    raw_emb = {e.kind: [e(r) for r in refs] for e in embedders}
    codec_emb = {e.kind: [e(r) for r in refs_via_codec] for e in embedders}
    targets = [(e, e.kind, e.name, raw_emb[e.kind]) for e in embedders]
    targets += [(e, f"{e.kind} via codec", f"{e.name.split(' ')[0]} vs ref via codec", codec_emb[e.kind])
                for e in embedders]
    codec_floor = {kind: float(np.mean([distances(a_, b_)[0] for a_, b_ in zip(raw_emb[kind], codec_emb[kind])]))
                   for kind in raw_emb}
    mus = np.stack([style_mean_of_audio(r, engine.stem_codec) for r in refs])
    rows = {kind: {label: [] for label, _ in settings} for _, kind, _, _ in targets}
    latent_d = {label: [] for label, _ in settings}
    for m in range(min(a.grounding_mixes, len(clips))):
        c = conds[m: m + 1].expand(len(presets), -1, -1)
        ln = [lengths[m]] * len(presets)
        for label, strength in settings:
            lat = engine.sample_latents(c, [100 + m] * len(presets), Sampling(steps=64, cfg=a.cfg, rescale=a.rescale,
                                                                             strength=strength), mus).latents
            outs = [engine.stem_codec.decode(lat[i].cpu(), ln[i], channels=1) for i in range(len(presets))]
            out_emb = {e.kind: [e(o) for o in outs] for e in embedders}
            for e, kind, _, ref_emb in targets:
                rows[kind][label] += [distances(ref_emb[i], out_emb[e.kind][i]) for i in range(len(outs))]
            latent_d[label] += [float(np.linalg.norm(lat[i].mean(-1).cpu().numpy() - mus[i])) for i in range(len(presets))]
    results["grounding"] = {}
    print(f"{'embedding':>26} {'tells presets':>13} {'cos grounded':>13} {'cos free':>9} {'ratio':>6} "
          f"{'eucl grounded':>14} {'eucl free':>10}")
    separation = {e.kind: e.separation(refs) for e in embedders}
    for e, kind, name, _ in targets:
        acc, sep = separation[e.kind]
        table = {k: (float(np.mean([d[0] for d in v])), float(np.mean([d[1] for d in v]))) for k, v in rows[kind].items()}
        ratio = table["grounded"][0] / table["free"][0]
        results["grounding"][kind] = table | {"cosine_ratio": ratio, "preset_nn_accuracy": acc, "separation": sep,
                                              "cosine_ratio_by_strength": {}}
        print(f"{name:>26} {acc:7.2f} ({sep:3.1f}) {table['grounded'][0]:13.3f} {table['free'][0]:9.3f} "
              f"{ratio:6.3f} {table['grounded'][1]:14.3f} {table['free'][1]:10.3f}")
        for s in strengths:
            label = _grounded_label(s)
            r = table[label][0] / table["free"][0]
            results["grounding"][kind]["cosine_ratio_by_strength"][s] = r
            if s != 1.0:
                print(f"{'  strength ' + f'{s:g}':>26} {'':>13} {table[label][0]:13.3f} {'':>9} {r:6.3f} "
                      f"{table[label][1]:14.3f}")
    print(f"{'paper':>26} {'':>13} {0.269:13.3f} {0.644:9.3f} {0.269 / 0.644:6.3f} {0.407:14.3f} {0.836:10.3f}"
          "   (goal: ratio <= 0.35)")
    print("  'tells presets' = nearest-preset accuracy of reference halves (between/within distance ratio)")
    results["grounding"]["codec_floor_cosine"] = codec_floor
    print("  codec floor (cosine, reference vs the same reference through the stem codec): "
          + ", ".join(f"{k} {v:.3f}" for k, v in codec_floor.items()))
    latent_means = {label: float(np.mean(v)) for label, v in latent_d.items()}
    results["grounding"]["latent_mean_distance"] = latent_means
    print(f"{'latent |μ−μ_style|':>26} " + ", ".join(f"{k} {v:.4f}" for k, v in latent_means.items())
          + "   (the quantity grounding acts on, in codec space)")

    # 4. soft-assignment matrix + 5. musical checks on the same generated set
    n = min(a.matrix, len(clips))
    gen = generate(engine, conds[:n], lengths[:n], 64, a.cfg, a.rescale, 0.0, None, seed=7)
    print(f"\n4. Soft-assignment matrix {n}x{n} (matching model; 64 steps, λ {a.cfg:g}, φ {a.rescale:g})")
    try:
        from backline.engines.analysis.api import match_matrix

        mixes = [c.mix for c in clips[:n]]
        out = {}
        for label, basses in (("generated", gen), ("real (ceiling)", real[:n])):
            mat = match_matrix(mixes, basses).float().numpy()
            top1 = float((mat.argmax(1) == np.arange(n)).mean())
            out[label] = {"top1": top1, "diag_mean": float(np.diag(mat).mean())}
            print(f"{label:>16}: top-1 {top1:.2f}, mean diagonal p {np.diag(mat).mean():.3f} (chance {1 / n:.3f})")
        results["matrix"] = out
    except Exception as err:  # noqa: BLE001
        print(f"  skipped: matching model unavailable ({type(err).__name__}: {err})")
        results["matrix"] = None
    print(f"\n5. Musical checks ({n} clips, basic-pitch transcription of generated and of real bass)")
    print(f"{'':>12} {'notes':>6} {'chord tone':>11} {'in key':>8} {'16th grid':>10}")
    results["musical"] = {}
    for label, set_ in (("generated", gen), ("real", real[:n])):
        stats = [musical_shares(x, c) for x, c in zip(set_, clips[:n])]
        notes = sum(s[0] for s in stats)
        w = [s[0] for s in stats]

        def wmean(idx, stats=stats, w=w):
            vals = [(s[idx], k) for s, k in zip(stats, w) if k and not math.isnan(s[idx])]
            return sum(v * k for v, k in vals) / max(1, sum(k for _, k in vals)) if vals else float("nan")

        row = {"notes": notes, "chord_tone": wmean(1), "in_key": wmean(2), "grid16": wmean(3)}
        results["musical"][label] = row
        print(f"{label:>12} {notes:6d} {row['chord_tone']:11.2f} {row['in_key']:8.2f} {row['grid16']:10.2f}")
    results["wall_s"] = round(time.time() - started, 1)
    print(f"\ntotal {results['wall_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
