"""The `separate` engine against the simplest things that could score the same, on held-out songs, the demo and
a real recording; its speed and its memory on a 15-minute mix.

    .venv/bin/python benchmarks/separate_eval.py --heldout DIR [--realdev ../shared/realdev] [--clip 20]
        [--gmsdi] [--memory] [--weights PATH] [--json OUT]

Held-out songs: a corpus the network never trained on, e.g. `backline data synth --songs 4 --seed 2 --out DIR`
(the shipped weights trained on seed 7). One `--clip`-second excerpt per song from 5 s in; the mixture is the
exact sum of the stems (stereo, 44.1 kHz); references are the role stems (bass, drums, other = the rest).
Everything is scored as SI-SDR improvement over the mixture (dB), on the mono mean at 44.1 kHz:

1. per role: the mix itself (0 by definition), a 150 Hz low-pass of the mix (bass) / 150 Hz high-pass
   ("no-bass": the band without the bass), the oracle ideal ratio mask (|S_k| / Σ|S_l| on a 2048/512 STFT,
   mixture phase), the mask network (this engine), and with `--gmsdi` the shipped GMSDI extractor (bass).
2. the demo song (whole), bass and no-bass, the same systems.
3. `--realdev`: filosax01, a real jazz backing recorded as two files, bass+drums and piano+drums (the same
   drums in both). Their sum is the mix; no file holds a pure part, so the honest tasks are the two files
   themselves: "bass+drums" ≈ bass + ½ drums and "piano+drums" ≈ other + ½ drums (the drums are half of each
   file's share of the mix), SI-SDR against each file, beside the mix itself and the 150 Hz low-/high-pass;
   and the measured bass presence in each file alone (the piano+drums file has no bass).
4. speed: × real time (processing s ÷ audio s) on 30 s of stereo 44.1 kHz, one thread: one part, three parts.
5. `--memory`: peak RSS of `backline separate` on a 15-minute stereo mix (the demo tiled), from the child's
   rusage.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import corpus_or_render, hardware  # noqa: E402

from backline.engines.codec.fidelity import si_sdr  # noqa: E402 - the one SI-SDR
from backline.engines.core.audio import Audio, read_audio, write_audio  # noqa: E402
from backline.engines.core.frontend import istft, stft  # noqa: E402

SR = 44100



def mono(x: Audio | np.ndarray) -> np.ndarray:
    x = x.samples if isinstance(x, Audio) else x
    return np.asarray(x, dtype=np.float64).mean(axis=0)


def improvement(ref: np.ndarray, est: np.ndarray, mix: np.ndarray) -> float:
    return si_sdr(ref, est) - si_sdr(ref, mix)


def butter(x: np.ndarray, hz: float, kind: str, rate: int = SR) -> np.ndarray:
    """4th-order Butterworth, zero phase: the '150 Hz filter' baseline."""
    from scipy.signal import butter as design
    from scipy.signal import sosfiltfilt

    return sosfiltfilt(design(4, hz, btype=kind, fs=rate, output="sos"), x, axis=-1)


def oracle_irm(stems: dict[str, np.ndarray], mix: np.ndarray) -> dict[str, np.ndarray]:
    """|S_k| / Σ|S_l| on a 2048/512 STFT of the mono signals, applied to the mono mix (mixture phase)."""
    mags = {k: stft(torch.from_numpy(mono(v).astype(np.float32)), 2048, 512).abs() for k, v in stems.items()}
    total = sum(mags.values()).clamp_min(1e-8)
    spec = stft(torch.from_numpy(mix.astype(np.float32)), 2048, 512)
    return {k: istft(m / total * spec, 2048, 512, length=len(mix)).double().numpy() for k, m in mags.items()}


def track_roles(track_dir: Path, start: int | None = None, frames: int | None = None) -> dict[str, np.ndarray]:
    """Stereo 44.1 kHz role stems (bass, drums, other) of a corpus track."""
    roles = json.loads((track_dir / "extras.json").read_text())["roles"]
    out: dict[str, np.ndarray] = {}
    for sid, role in roles.items():
        path = track_dir / "stems" / f"{sid}.flac"
        if not path.exists():
            continue
        a = read_audio(path, sample_rate=SR, channels=2, start=start or 0, frames=frames)
        r = role if role in ("bass", "drums") else "other"
        out[r] = out[r] + a.samples if r in out else a.samples.copy()
    n = max(v.shape[1] for v in out.values())
    return {k: np.pad(v, ((0, 0), (0, n - v.shape[1]))) for k, v in out.items()}


def score_song(sep, stems: dict[str, np.ndarray], gmsdi=None) -> dict[str, dict[str, float]]:
    """SI-SDRi per task and system for one song (stereo stems)."""
    mix2 = sum(stems.values())
    mix = mono(mix2)
    refs = {r: mono(s) for r, s in stems.items()}
    refs["no-bass"] = mix - refs["bass"]
    audio = Audio(mix2.astype(np.float32), SR)
    tasks = ["bass", "drums", "other", "no-bass"]
    est = sep.separate(audio, [("bass", False), ("drums", False), ("other", False), ("bass", True)])
    ideal = oracle_irm(stems, mix)
    ideal["no-bass"] = mix - ideal["bass"]
    out: dict[str, dict[str, float]] = {}
    for i, t in enumerate(tasks):
        if np.abs(refs[t]).max() < 1e-4:
            continue
        row = {"mix": 0.0, "mask network": improvement(refs[t], mono(est[i]), mix),
               "oracle IRM": improvement(refs[t], ideal[t], mix)}
        if t == "bass":
            row["150 Hz low-pass"] = improvement(refs[t], butter(mix, 150, "low"), mix)
        if t == "no-bass":
            row["150 Hz high-pass"] = improvement(refs[t], butter(mix, 150, "high"), mix)
        out[t] = row
    if gmsdi is not None and "bass" in out:
        g = gmsdi.separate(audio, ("Bass",), mode="extract", steps=32, w=2.0, seed=0)["Bass"]
        out["bass"]["GMSDI extractor (shipped)"] = improvement(refs["bass"], mono(g), mix)
    return out


def table(rows: list[dict[str, dict[str, float]]], title: str) -> dict[str, dict[str, float]]:
    systems = ["mix", "150 Hz low-pass", "150 Hz high-pass", "GMSDI extractor (shipped)", "mask network",
               "oracle IRM"]
    tasks = ["bass", "drums", "other", "no-bass"]
    means: dict[str, dict[str, float]] = {}
    short = {"150 Hz low-pass": "low-pass 150", "150 Hz high-pass": "high-pass 150", "GMSDI extractor (shipped)": "GMSDI ext.",
             "mask network": "mask net", "oracle IRM": "oracle IRM", "mix": "mix"}
    print(f"\n{title}\n  {'task':<9}" + "".join(f"{short[s]:>14}" for s in systems))
    for t in tasks:
        vals = {s: [r[t][s] for r in rows if t in r and s in r[t]] for s in systems}
        means[t] = {s: float(np.mean(v)) for s, v in vals.items() if v}
        if means[t]:
            print(f"  {t:<9}" + "".join(f"{means[t][s]:>+14.2f}" if s in means[t] else f"{'—':>14}" for s in systems))
    return means


def heldout(sep, folder: Path, clip: float, gmsdi=None) -> dict:
    rows = []
    for tr in sorted(p for p in folder.iterdir() if p.name.startswith("Track")):
        stems = track_roles(tr, 5 * SR, int(clip * SR))
        rows.append(score_song(sep, stems, gmsdi))
        print(f"  {tr.name}: " + ", ".join(f"{t} {r['mask network']:+.1f} (low-pass {r.get('150 Hz low-pass', 0):+.1f})"
                                           if t == "bass" else f"{t} {r['mask network']:+.1f}" for t, r in rows[-1].items()))
    return {"per_song": rows, "mean": table(rows, f"1. Held-out songs ({len(rows)} × {clip:g} s), SI-SDRi dB")}


def demo(sep, gmsdi=None) -> dict:
    from backline.engines.data.demo import demo_song

    stems = track_roles(demo_song())
    row = score_song(sep, stems, gmsdi)
    n = next(iter(stems.values())).shape[1]
    return {"mean": table([row], f"2. Demo song ({n / SR:.1f} s, whole), SI-SDRi dB")}


def realdev(sep, folder: Path) -> dict:
    from backline.engines.separate.engine import presence

    bd = read_audio(folder / "filosax01_bass_drums.wav", sample_rate=SR, channels=2).samples
    pd = read_audio(folder / "filosax01_piano_drums.wav", sample_rate=SR, channels=2).samples
    n = min(bd.shape[1], pd.shape[1])
    bd, pd = bd[:, :n], pd[:, :n]
    mix2 = bd + pd
    mix = mono(mix2)
    b, d, o = sep.separate(Audio(mix2, SR), [("bass", False), ("drums", False), ("other", False)])
    est_bd, est_pd = mono(b) + 0.5 * mono(d), mono(o) + 0.5 * mono(d)
    res = {
        "bass+drums file": {"mix": 0.0, "150 Hz low-pass": improvement(mono(bd), butter(mix, 150, "low"), mix),
                            "mask network (bass + ½ drums)": improvement(mono(bd), est_bd, mix)},
        "piano+drums file": {"mix": 0.0, "150 Hz high-pass": improvement(mono(pd), butter(mix, 150, "high"), mix),
                             "mask network (other + ½ drums)": improvement(mono(pd), est_pd, mix)},
    }
    shares = {}
    for name, x in (("bass+drums file", bd), ("piano+drums file (no bass)", pd), ("their sum", mix2)):
        a = Audio(x, SR)
        shares[name] = presence(sep.separate(a, [("bass", False)])[0], a)
    low = {name: float(np.sum(butter(mono(x), 150, "low") ** 2) / np.sum(mono(x) ** 2))
           for name, x in (("bass+drums file", bd), ("piano+drums file (no bass)", pd), ("their sum", mix2))}
    print(f"\n3. realdev filosax01 ({n / SR:.1f} s, one clip: a single real recording), SI-SDRi dB against each file")
    for task, row in res.items():
        print(f"  {task:<17}" + ", ".join(f"{k} {v:+.2f}" for k, v in row.items()))
    print("  bass presence (separated bass energy / mix energy): "
          + ", ".join(f"{k} {v:.1%} (energy below 150 Hz {low[k]:.1%})" for k, v in shares.items()))
    return {"si_sdri": res, "bass_presence": shares, "energy_below_150hz": low}


def speed(sep) -> dict:
    from backline.engines.data.demo import demo_song

    mix = read_audio(demo_song() / "mix.flac", sample_rate=SR, channels=2, frames=30 * SR)
    out = {}
    for label, parts in (("one part (bass)", [("bass", False)]),
                         ("three parts", [("bass", False), ("drums", False), ("other", False)])):
        t0 = time.perf_counter()
        sep.separate(mix, parts)
        out[label] = (time.perf_counter() - t0) / mix.seconds
    print(f"\n4. Speed, 30 s stereo 44.1 kHz, {torch.get_num_threads()} thread(s): "
          + ", ".join(f"{k} {v:.3f}x real time" for k, v in out.items()))
    return out


def memory(weights: Path | None) -> dict:
    from backline.engines.data.demo import demo_song

    song = read_audio(demo_song() / "mix.flac", sample_rate=SR, channels=2)
    reps = math.ceil(15 * 60 * SR / song.frames)
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "long.wav"
        write_audio(long, Audio(np.tile(song.samples, (1, reps))[:, : 15 * 60 * SR], SR))
        del song
        cmd = [str(Path(sys.executable).with_name("backline")), "separate", str(long), "--prompt", "bass",
               "--out", str(Path(tmp) / "out")] + (["--weights", str(weights)] if weights else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin"})
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"\n5. Memory, 15:00 stereo 44.1 kHz, `backline separate --prompt bass`: peak RSS {peak / 1e9:.2f} GB, "
          f"{wall:.0f} s ({wall / 900:.3f}x real time), exit {proc.returncode}"
          + (f": {proc.stderr.strip().splitlines()[-1]}" if proc.returncode else ""))
    return {"peak_rss_gb": peak / 1e9, "wall_s": wall, "returncode": proc.returncode}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--heldout", type=Path, help="held-out corpus (never trained on); without it a few synthetic "
                   "songs are rendered once and cached")
    p.add_argument("--songs", type=int, default=4, help="songs to render when no --heldout is given (0: none)")
    p.add_argument("--realdev", type=Path, help="../shared/realdev")
    p.add_argument("--clip", type=float, default=20.0)
    p.add_argument("--weights", type=Path)
    p.add_argument("--gmsdi", action="store_true", help="also the shipped GMSDI extractor (slow)")
    p.add_argument("--no-demo", action="store_true")
    p.add_argument("--speed", action="store_true")
    p.add_argument("--memory", action="store_true", help="peak RSS on a 15-minute mix (a few minutes)")
    p.add_argument("--wiener", type=int, help="EM iterations of the Wiener post-filter (default: the engine's)")
    p.add_argument("--per-channel", action="store_true", help="the Wiener post-filter channel by channel")
    p.add_argument("--exponent", type=float, default=2.0, help="the Wiener post-filter's power exponent (2: classic)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(hardware())
    from backline.engines.separate.engine import WEIGHTS, Separator, load_model

    sep = Separator(load_model(a.weights or WEIGHTS), wiener=a.wiener, spatial=not a.per_channel,
                    exponent=a.exponent)
    print(f"Wiener post-filter: {sep.wiener} EM iteration(s), exponent {a.exponent:g}"
          + (", per channel" if a.per_channel else ""))
    gmsdi = None
    if a.gmsdi:
        from backline.engines.accompany.engine import build as build_gmsdi

        gmsdi = build_gmsdi("shipped", "cpu")
    results: dict = {}
    if a.heldout or a.songs > 0:
        folder, label = corpus_or_render(a.heldout, flag="--heldout", songs=a.songs)
        print(label)
        results["heldout"] = heldout(sep, folder, a.clip, gmsdi)
    if not a.no_demo:
        results["demo"] = demo(sep, gmsdi)
    if a.realdev:
        results["realdev"] = realdev(sep, a.realdev)
    if a.speed:
        results["speed"] = speed(sep)
    if a.memory:
        results["memory"] = memory(a.weights)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
