"""Drum engine evaluation on held-out corpus songs (paper 002b's claims, as tables).

    python benchmarks/drums_eval.py [--data HELD_OUT] [--weights engines/drums/weights] [--limit N]

Without --data it renders a small synthetic corpus itself (4 songs, benchmark seed; see _common.corpus_or_render).

Prints:
1. fill-location precision / recall / F1 against the corpus's labelled fills (extras.json), for the novelty
   function (run on the song's real drums) and for the BERT locator (from the band alone);
2. onset-position distributions on the 24-step-per-quarter grid (position in the beat, 24 bins, and in the
   bar, 96 bins for 4/4) of real and generated drums, as KL(real || generated);
3. the fill-rate table: how often each system plays a fill (a bar the novelty function flags) and where —
   real drums, plain seq2seq (greedy), seq2seq with sampling, and the full pipeline;
4. generation speed: 64 bars with fills, on this machine's CPU (named in the output).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import corpus_or_render, cpu_name, x_real_time  # noqa: E402

from backline.engines.core.midi import midi_bytes  # noqa: E402
from backline.engines.drums import data as drum_data  # noqa: E402
from backline.engines.drums import novelty as nov  # noqa: E402
from backline.engines.drums.engine import drum_midi, load_models, region_timeline  # noqa: E402
from backline.engines.drums.representation import STEPS_PER_QUARTER, SongGrid  # noqa: E402
from backline.engines.drums.velocity import assign_velocities  # noqa: E402


def prf(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    return int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum())


def scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    return p, r, 2 * p * r / max(p + r, 1e-9)


def onset_hist(drums: np.ndarray, period: int) -> np.ndarray:
    steps = np.nonzero(drums.any(axis=1))[0]
    counts = np.bincount(steps % period, weights=drums[steps].sum(axis=1), minlength=period)
    return counts


def kl(p_counts: np.ndarray, q_counts: np.ndarray, eps: float = 1e-4) -> float:
    p = p_counts / max(p_counts.sum(), 1) + eps
    q = q_counts / max(q_counts.sum(), 1) + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def section_end_bars(song: drum_data.LabelledSong) -> np.ndarray:
    out = np.zeros(song.grid.n_bars, bool)
    for s in song.sections[:-1]:
        b = s["start_bar"] - 1 + s["bars"] - 1
        if 0 <= b < song.grid.n_bars:
            out[b] = True
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="held-out Slakh-layout songs (MIDI + extras.json); default: "
                                                      "render 4 synthetic songs once")
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped ones)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-runs", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)

    args.data, label = corpus_or_render(args.data, flag="--data")
    models = load_models("shipped", "cpu", args.weights)
    pipe = models.pipeline
    t0 = time.perf_counter()
    songs = [s for s in drum_data.read_corpus(args.data, limit=args.limit) if s.true_fills is not None]
    if not songs:
        print(f"no labelled songs with drums and a band under {args.data}", file=sys.stderr)
        return 2
    print(f"# Drum engine evaluation — {len(songs)} songs: {label} "
          f"({sum(s.grid.n_bars for s in songs)} bars, {int(sum(s.true_fills.sum() for s in songs))} labelled fills); "
          f"weights: {models.summary}; read in {time.perf_counter() - t0:.1f} s")
    print(f"# hardware: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with 1 thread\n")

    # 1. fill location ------------------------------------------------------------------------------------
    counts = {"novelty function (real drums)": [0, 0, 0], "BERT locator (band only)": [0, 0, 0],
              "section ends (oracle form, reference)": [0, 0, 0]}
    systems: dict[str, list[np.ndarray]] = {"real drums": [], "seq2seq (greedy)": [], "seq2seq + sampling": [],
                                            "full pipeline": []}
    predicted_fills: list[np.ndarray] = []
    for i, song in enumerate(songs):
        g, true = song.grid, song.true_fills
        for name, pred in (("novelty function (real drums)", song.novelty_fills),
                           ("section ends (oracle form, reference)", section_end_bars(song))):
            for k, v in enumerate(prf(pred, true)):
                counts[name][k] += v
        prob = pipe.fill_probability(g)
        pred = np.zeros(g.n_bars, bool)
        pred[pipe.choose_fill_bars(prob)] = True
        predicted_fills.append(pred)
        for k, v in enumerate(prf(pred, true)):
            counts["BERT locator (band only)"][k] += v
        gen = torch.Generator().manual_seed(args.seed + i)
        systems["real drums"].append(g.drums)
        systems["seq2seq (greedy)"].append(pipe.basic_pattern(g))
        systems["seq2seq + sampling"].append(pipe.basic_pattern(g, sample=True, generator=gen))
        systems["full pipeline"].append(pipe.generate(g, seed=args.seed + i).drums)

    print("## 1. Fill location vs labelled fills (exact bar)\n")
    print("| method | precision | recall | F1 |\n|---|---|---|---|")
    for name, (tp, fp, fn) in counts.items():
        p, r, f = scores(tp, fp, fn)
        print(f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} |")
    print(f"\n(locator threshold {pipe.config.locator_threshold:.2f}, novelty threshold {nov.DEFAULT_THRESHOLD}; "
          "target F1 >= 0.7)\n")

    # 2. onset positions ----------------------------------------------------------------------------------
    print("## 2. Onset-position distribution vs real drums (KL(real || generated), nats; lower is better)\n")
    print("| system | in-beat, 24 bins | in-bar, 96 bins (4/4 songs) | onsets per bar |\n|---|---|---|---|")
    real_beat = sum(onset_hist(d, STEPS_PER_QUARTER) for d in systems["real drums"])
    four = [k for k, s in enumerate(songs) if (s.grid.numerator, s.grid.denominator) == (4, 4)]
    real_bar = sum(onset_hist(systems["real drums"][k], 96) for k in four) if four else None
    for name, parts in systems.items():
        beat = sum(onset_hist(d, STEPS_PER_QUARTER) for d in parts)
        bar = sum(onset_hist(parts[k], 96) for k in four) if four else None
        per_bar = sum(int(d.sum()) for d in parts) / sum(s.grid.n_bars for s in songs)
        kl_bar = f"{kl(real_bar, bar):.4f}" if bar is not None else "n/a"
        print(f"| {name} | {kl(real_beat, beat):.4f} | {kl_bar} | {per_bar:.1f} |")
    print()

    # 3. fill-rate table ----------------------------------------------------------------------------------
    print("## 3. Fills: how often and where (a fill = a bar the novelty function flags in that system's part)\n")
    print("| system | fill rate (bars) | at labelled fill bars (precision) | labelled fills played (recall) | "
          "F1 |\n|---|---|---|---|---|")
    table = {}
    for name, parts in systems.items():
        tp = fp = fn = flagged = total = 0
        for song, d in zip(songs, parts):
            flags = nov.fill_bars(d, song.grid.steps_per_bar)
            flagged += int(flags.sum())
            total += song.grid.n_bars
            a, b, c = prf(flags, song.true_fills)
            tp, fp, fn = tp + a, fp + b, fn + c
        p, r, f = scores(tp, fp, fn)
        table[name] = (flagged / total, p, r)
        print(f"| {name} | {flagged / total:.3f} | {p:.3f} | {r:.3f} | {f:.3f} |")
    g_rate, g_p, g_r = table["seq2seq (greedy)"]
    s_rate, s_p, s_r = table["seq2seq + sampling"]
    f_rate, f_p, f_r = table["full pipeline"]
    print(f"\nReading (from the numbers above): the plain seq2seq plays {100 * g_r:.0f} % of the labelled fills; "
          f"sampling flags {100 * s_rate:.0f} % of bars as novel but only {100 * s_p:.0f} % of those are where fills "
          f"belong; the full pipeline plays {100 * f_r:.0f} % of the labelled fills, {100 * f_p:.0f} % of its fills "
          "at labelled fill bars (section ends and phrase ends).\n")

    # 4. speed ------------------------------------------------------------------------------------------
    song = max(songs, key=lambda s: s.grid.n_bars)
    g = song.grid
    reps = int(np.ceil(64 / g.n_bars))
    big = SongGrid(g.numerator, g.denominator, 64, np.concatenate([g.ma_onset] * reps, axis=1)[:, : 64 * g.steps_per_bar],
                   np.concatenate([g.ma_active] * reps, axis=1)[:, : 64 * g.steps_per_bar])
    from backline.engines.core.timeline import Timeline

    tl = Timeline.constant(120, 48000, g.numerator, g.denominator)
    pipe.generate(big)  # warm-up
    times, end_to_end, fills = [], [], 0
    for k in range(args.speed_runs):
        big.info.pop("_ma_tokens", None)  # time the band's token features too, as a fresh request would
        t = time.perf_counter()
        res = pipe.generate(big, seed=k)
        times.append(time.perf_counter() - t)
        vel = assign_velocities(res.drums, g.numerator, g.denominator, big.steps_per_bar, res.fill_bars, seed=k)
        midi_bytes(drum_midi(res.drums, vel, region_timeline(tl, 0.0)))
        end_to_end.append(time.perf_counter() - t)
        fills = len(res.fill_bars)
    print("## 4. Generation speed: 64 bars with fills (seq2seq + locator + infiller)\n")
    print(f"| {g.numerator}/{g.denominator}, 64 bars, {fills} fills | median | min | max |\n|---|---|---|---|")
    print(f"| pipeline | {statistics.median(times) * 1000:.0f} ms | {min(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms |")
    print(f"| + velocities + MIDI file | {statistics.median(end_to_end) * 1000:.0f} ms | "
          f"{min(end_to_end) * 1000:.0f} ms | {max(end_to_end) * 1000:.0f} ms |")
    audio_s = 64 * tl.quarters_per_bar * 60.0 / tl.bpm
    print(f"\n64 bars at 120 BPM last {audio_s:.0f} s: the pipeline runs at "
          f"{x_real_time(statistics.median(end_to_end), audio_s):.4f}× real time (processing s ÷ audio s)")
    print(f"(target <= 500 ms; {cpu_name()}, 1 torch thread, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs while measuring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
