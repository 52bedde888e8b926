"""Listening quality on held-out rendered corpus songs (mir_eval), and on the demo band without its bass.

    python benchmarks/listen_eval.py [--corpus HELD_OUT] [--limit 20] [--full-mix | --without drums]

Without --corpus it renders 4 synthetic songs itself (benchmark seed; _common.corpus_or_render) and says so.

Per song the input is the band *without* its bass (what the bass engine listens to; --full-mix uses mix.flac).
References come from extras.json (tempo, meter, chords per bar, key). Prints beat F (70 ms), downbeat F, chord
WCSR (majmin and root), key accuracy (exact), tempo error, and seconds of listening per minute of audio.
Targets (issue 13): beat F >= 0.9, downbeat F >= 0.8, majmin WCSR >= 0.8, key accuracy >= 0.9.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import mir_eval  # noqa: E402
import numpy as np  # noqa: E402

from backline.engines.core.audio import Audio, read_audio  # noqa: E402
from backline.engines.data.slakh import list_tracks, read_track  # noqa: E402
from backline.engines.listen import NOTE_NAMES, listen  # noqa: E402

MIR_QUALITY = {"maj": "maj", "min": "min", "7": "7", "maj7": "maj7", "min7": "min7", "dim": "dim", "m7b5": "hdim7",
               "sus4": "sus4"}


def references(ex: dict) -> dict:
    num, den = ex["time_signature"]
    beat_s = 60.0 / ex["tempo_bpm"] * 4.0 / den
    n = ex["bars"] * num
    beats = np.arange(n) * beat_s
    bar_s = beat_s * num
    intervals = np.array([[(c["bar"] - 1) * bar_s, c["bar"] * bar_s] for c in ex["chords"]])
    labels = [f"{NOTE_NAMES[c['root_pc']]}:{MIR_QUALITY[c['quality']]}" for c in ex["chords"]]
    key = f"{ex['key']} {ex['mode']}"
    return {"beats": beats, "downbeats": beats[::num], "intervals": intervals, "labels": labels, "key": key,
            "bpm": ex["tempo_bpm"], "meter": (num, den)}


def band_without_bass(track, role: str = "bass") -> Audio:
    """The track's stems summed without `role` (the bass: what the bass engine hears; the drums: what
    `generate drums MIX.wav` hears)."""
    stems = [s for s in track.audio_stems() if s.role != role]
    audios = [read_audio(s.audio) for s in stems]
    frames = min(a.frames for a in audios)
    return Audio(np.sum([a.samples[:, :frames] for a in audios], axis=0).astype(np.float32), audios[0].sample_rate)


def score(lst, ref: dict) -> dict:
    end = ref["intervals"][-1, 1]
    est_beats = lst.beats[lst.beats < end + 0.1]
    beat_f = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref["beats"]), mir_eval.beat.trim_beats(est_beats))
    down_f = mir_eval.beat.f_measure(ref["downbeats"], lst.downbeats[lst.downbeats < end + 0.1], f_measure_threshold=0.07)
    segs = lst.chord_segments()
    est_int = np.array([[a, b] for a, b, _ in segs])
    est_lab = [c.label for _, _, c in segs]
    est_int, est_lab = mir_eval.util.adjust_intervals(est_int, est_lab, ref["intervals"][0, 0], end,
                                                      mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    merged = mir_eval.util.merge_labeled_intervals(ref["intervals"], ref["labels"], est_int, est_lab)
    intervals, r, e = merged
    durations = mir_eval.util.intervals_to_durations(intervals)
    wcsr = {}
    for name, fn in (("majmin", mir_eval.chord.majmin), ("root", mir_eval.chord.root)):
        comps = fn(r, e)
        wcsr[name] = mir_eval.chord.weighted_accuracy(comps, durations)
    key_ok = lst.key_name == ref["key"]
    return {"beat_f": beat_f, "down_f": down_f, "majmin": wcsr["majmin"], "root": wcsr["root"], "key": float(key_ok),
            "tempo_err": abs(lst.bpm - ref["bpm"]) / ref["bpm"], "meter_ok": float((lst.numerator, lst.denominator) ==
                                                                                   tuple(ref["meter"]))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=None,
                    help="rendered held-out songs (Slakh layout); default: render 4 synthetic songs once")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--full-mix", action="store_true")
    ap.add_argument("--without", default="bass", choices=("bass", "drums"),
                    help="the part taken out of the band (default bass; drums: what drums from audio hear)")
    ap.add_argument("--no-demo", action="store_true")
    args = ap.parse_args()
    rows = []
    seconds = listen_s = 0.0
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import corpus_or_render, x_real_time

    args.corpus, label = corpus_or_render(args.corpus)
    tracks = list_tracks(args.corpus)
    if args.limit:
        tracks = tracks[: args.limit]
    for tr in tracks:
        ex = tr.extras
        ref = references(ex)
        mix = read_audio(tr.mix_path) if args.full_mix else band_without_bass(tr, args.without)
        t0 = time.perf_counter()
        lst = listen(mix)
        listen_s += time.perf_counter() - t0
        seconds += mix.seconds
        s = score(lst, ref)
        rows.append(s)
        print(f"{tr.name}: {ref['bpm']:5.0f} BPM {ref['meter'][0]}/{ref['meter'][1]} {ref['key']:<9} -> "
              f"{lst.bpm:6.1f} {lst.numerator}/{lst.denominator} {lst.key_name:<9} beatF {s['beat_f']:.2f} "
              f"downF {s['down_f']:.2f} majmin {s['majmin']:.2f} root {s['root']:.2f}", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"\n{len(rows)} songs, {label} ({'full mix' if args.full_mix else f'band without {args.without}'}), "
          f"{seconds / 60:.1f} min of audio:")
    print(f"  beat F          {mean['beat_f']:.3f}   (target >= 0.9)")
    print(f"  downbeat F      {mean['down_f']:.3f}   (target >= 0.8)")
    print(f"  chord majmin    {mean['majmin']:.3f}   (target >= 0.8; root {mean['root']:.3f})")
    print(f"  key accuracy    {mean['key']:.3f}   (target >= 0.9)")
    print(f"  meter accuracy  {mean['meter_ok']:.3f}; tempo error median {np.median([r['tempo_err'] for r in rows]):.2%}, "
          f"within 1 %: {np.mean([r['tempo_err'] < 0.01 for r in rows]):.2f}")
    print(f"  speed           {x_real_time(listen_s, seconds):.3f}× real time "
          f"({listen_s / max(seconds, 1e-9) * 60:.2f} s per minute of audio, 1 thread)")
    if not args.no_demo:
        from backline.engines.data.demo import demo_song

        tr = read_track(demo_song())
        ref = references(tr.extras)
        lst = listen(band_without_bass(tr))
        s = score(lst, ref)
        print(f"demo band without bass: {lst.bpm:.2f} BPM (true {ref['bpm']:g}, error {s['tempo_err']:.2%}), "
              f"bar one at {lst.bar_one:.3f} s (true 0.000), {lst.numerator}/{lst.denominator}, key {lst.key_name}, "
              f"majmin {s['majmin']:.2f}\n  chords: {lst.chart()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
