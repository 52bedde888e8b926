"""GMSDI accompaniment / separation engine (paper 003) on held-out corpus songs and the demo song (CPU sizes).

    .venv/bin/python benchmarks/gmsdi_eval.py [--heldout DIR] [--songs 10 --clip 6 --steps 32] [--repr] [--json OUT]

Held-out songs: a corpus rendered with a seed the model never trained on, e.g.
`backline data synth --songs 10 --seed 913 --min-bars 16 --max-bars 24 --out DIR` (the shipped model trained
on seeds 1601 and 14). One `--clip`-second excerpt per song, starting at bar 2; the mixture is the exact sum of
the stems; references are the role stems (stems of one role summed).

Tables printed:
0. (`--repr`) why the representation: relative additivity error ‖Σ_k R(x_k) − R(Σ x_k)‖ / ‖R(Σ x_k)‖ for the
   stem codec's latents (raw and standardised), linear magnitude and power spectra (16 kHz, FFT 1024).
1. Separation, SI-SDRi (dB) per role (Bass, Drums, Guitar, Piano; All = their mean) for the separator (all six
   roles, Drums constrained, Euler s_churn 20), the extractor (one role vs the concatenated labels of the
   rest), the ensemble (per role as `gmsdi.ENSEMBLE_CHOICE`), the best of both per role, and the oracle ideal
   ratio mask (|X_k| / Σ|X_l| on the 16 kHz STFT, mixture phase, carried to 44.1 kHz exactly as the engine's
   masks are) — beside the paper's figures. Scored on the mono mean at 44.1 kHz; SI-SDRi = SI-SDR(estimate) −
   SI-SDR(mixture); clips where a role is silent are skipped for that role.
2. Extractor on the demo mix, prompt "bass", against the demo's bass stem (whole song).
3. Accompaniment: the demo band without its piano, prompted "piano" (given = the other five roles):
   the matching model's fit score of the generated piano vs the real piano's; chord-tone rate of basic-pitch
   notes against the song's chords (extras.json), generated vs real; FAD (frame log-mel, as bass_eval) of the
   generated pianos vs real piano stems of the held-out songs, with the real demo piano and the real demo
   piano through Griffin-Lim as floors; hop-rate buzz (envelope modulation line at the 62.5 Hz frame rate of
   the model's STFT and at 172 Hz, the codec's, in dB over the neighbouring modulation bins); speed as × real
   time on this CPU (1 thread).
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

from _common import x_real_time  # noqa: E402

from backline.engines.accompany import spec  # noqa: E402
from backline.engines.accompany.roles import CORPUS_ROLES, ROLES  # noqa: E402
from backline.engines.codec.fidelity import si_sdr  # noqa: E402 - the one SI-SDR
from backline.engines.core.audio import Audio, resample  # noqa: E402

EVAL_ROLES = ("Bass", "Drums", "Guitar", "Piano")
PAPER = {"separator": (9.76, 15.57, 9.13, 9.57, 11.01), "extractor": (11.00, 10.55, 9.52, 10.13, 10.30),
         "ensemble": (None, None, None, None, 11.56)}



def role_stems(track, start: int, frames: int) -> dict[str, Audio]:
    out: dict[str, np.ndarray] = {}
    rate = 44100
    for stem in track.audio_stems():
        role = CORPUS_ROLES.get(stem.role)
        if role is None:
            continue
        a = track.stem_audio(stem.id, start=start, frames=frames)
        rate = a.sample_rate
        x = np.pad(a.samples, ((0, 0), (0, frames - a.frames)))
        out[role] = out.get(role, 0) + x
    return {r: Audio(x, rate) for r, x in out.items()}


def mono(a: Audio | np.ndarray) -> np.ndarray:
    x = a.samples if isinstance(a, Audio) else a
    return x.mean(axis=0)


def irm(stems: dict[str, Audio], mix: Audio) -> dict[str, np.ndarray]:
    from backline.engines.accompany.engine import apply_masks_at_rate

    names = list(stems)
    mags = torch.stack([spec.complex_spec(torch.from_numpy(
        resample(mono(stems[r]), mix.sample_rate, spec.SAMPLE_RATE).copy())).abs() for r in names])
    masks = spec.masks_from_estimates(mags, mags.sum(0))
    waves = apply_masks_at_rate(masks, mix)
    return {r: waves[i] for i, r in enumerate(names)}


def repr_table(tracks, seconds: float = 12.0) -> dict:
    from backline.engines.codec import load_codec
    from backline.engines.core.frontend import stft

    codec = load_codec("stem", "shipped")
    mu, sd = codec.latent_stats
    rows = {"codec latents (raw)": [], "codec latents (standardised)": [], "magnitude |X|": [], "power |X|^2": []}
    for tr in tracks:
        stems = role_stems(tr, 0, int(seconds * 44100))
        waves = {r: mono(a) for r, a in stems.items()}
        y = sum(waves.values())
        z = {r: codec.encode(Audio(w[None], 44100)) for r, w in waves.items()}
        zy = codec.encode(Audio(y[None], 44100))
        s = sum(z.values())
        rows["codec latents (raw)"].append(float((s - zy).norm() / zy.norm()))
        n = lambda v: (v - mu[:, None]) / sd[:, None]  # noqa: E731
        rows["codec latents (standardised)"].append(float((sum(n(v) for v in z.values()) - n(zy)).norm() / n(zy).norm()))
        X = {r: stft(torch.from_numpy(resample(w, 44100, 16000).copy())) for r, w in waves.items()}
        Y = sum(X.values())
        for key, p in (("magnitude |X|", 1), ("power |X|^2", 2)):
            total = sum(x.abs() ** p for x in X.values())
            rows[key].append(float((total - Y.abs() ** p).norm() / (Y.abs() ** p).norm()))
    print(f"\n0. Representation: relative additivity error over {len(tracks)} corpus songs (first {seconds:g} s)")
    for k, v in rows.items():
        print(f"{k:>30}  {np.mean(v):.3f}  (min {np.min(v):.3f}, max {np.max(v):.3f})")
    return {k: float(np.mean(v)) for k, v in rows.items()}


def separation(engine, tracks, clip_s: float, steps: int, w_sep: float, w_ext: float) -> dict:
    from backline.engines.core.timeline import Timeline

    results: dict[str, dict[str, list[float]]] = {k: {r: [] for r in EVAL_ROLES} for k in
                                                   ("oracle IRM", "separator", "extractor", "ensemble", "best of both")}
    t_sep = t_ext = audio_s = 0.0
    for n, tr in enumerate(tracks):
        ex = tr.extras or {}
        tl = Timeline.constant(float(ex.get("tempo_bpm", 120.0)), 44100, *ex.get("time_signature", (4, 4)))
        start, _ = tl.bar_range_to_samples(2, 2)
        frames = int(clip_s * 44100)
        stems = role_stems(tr, start, frames)
        mix = Audio(sum(a.samples for a in stems.values()), 44100)
        present = tuple(r for r in ROLES if r in stems)
        refs = {r: mono(stems[r]) for r in present}
        base = {r: si_sdr(refs[r], mono(mix)) for r in present}
        oracle = irm(stems, mix)
        t0 = time.perf_counter()
        sep = engine.separate(mix, present, mode="separate", steps=steps, w=w_sep, seed=n)
        t_sep += time.perf_counter() - t0
        t0 = time.perf_counter()
        ext = engine.separate(mix, tuple(r for r in EVAL_ROLES if r in present), mode="extract", steps=steps, w=w_ext,
                              seed=n, mix_roles=present)
        t_ext += time.perf_counter() - t0
        audio_s += clip_s
        for r in EVAL_ROLES:
            if r not in present or np.sqrt(np.mean(refs[r] ** 2)) < 1e-3:
                continue
            s_o = si_sdr(refs[r], mono(oracle[r])) - base[r]
            s_s = si_sdr(refs[r], mono(sep[r])) - base[r]
            s_e = si_sdr(refs[r], mono(ext[r])) - base[r]
            results["oracle IRM"][r].append(s_o)
            results["separator"][r].append(s_s)
            results["extractor"][r].append(s_e)
            results["ensemble"][r].append(s_s if engine.ensemble_choice[r] == "separator" else s_e)
        print(f"  {tr.name}: " + ", ".join(f"{r} sep {results['separator'][r][-1]:+.1f} ext {results['extractor'][r][-1]:+.1f} "
                                           f"irm {results['oracle IRM'][r][-1]:+.1f}"
                                           for r in EVAL_ROLES if results['separator'][r]), flush=True)
    means = {}
    for system in ("separator", "extractor", "ensemble", "oracle IRM"):
        means[system] = {r: float(np.mean(v)) if v else float("nan") for r, v in results[system].items()}
    means["best of both"] = {r: max(means["separator"][r], means["extractor"][r]) for r in EVAL_ROLES}
    print(f"\n1. Separation SI-SDRi (dB), {len(tracks)} corpus songs × {clip_s:g} s, {steps} Euler steps "
          f"(s_churn 20), w = {w_sep:g} separator / {w_ext:g} extractor")
    print(f"{'':>14} " + " ".join(f"{r:>7}" for r in EVAL_ROLES) + f" {'All':>7}   paper (B/D/G/P/All)")
    out = {}
    for system in ("separator", "extractor", "ensemble", "best of both", "oracle IRM"):
        vals = [means[system][r] for r in EVAL_ROLES]
        allv = float(np.nanmean(vals))
        out[system] = dict(zip(EVAL_ROLES, vals)) | {"All": allv}
        paper = PAPER.get(system)
        ptxt = " / ".join("–" if p is None else f"{p:.2f}" for p in paper) if paper else ""
        print(f"{system:>14} " + " ".join(f"{v:7.2f}" for v in vals) + f" {allv:7.2f}   {ptxt}")
    out["choice"] = {r: "separator" if means["separator"][r] >= means["extractor"][r] else "extractor" for r in EVAL_ROLES}
    print(f"  per-role better system here: {out['choice']}")
    out["x_real_time"] = {"separator (6 roles)": x_real_time(t_sep, audio_s),
                          "extractor (4 roles)": x_real_time(t_ext, audio_s)}
    print(f"  speed: separator {x_real_time(t_sep, audio_s):.2f}× real time (six roles at once), extractor "
          f"{x_real_time(t_ext, audio_s):.2f}× (four roles, one run each), 1 CPU thread")
    return out


def demo_extract(engine, steps: int, w: float) -> dict:
    from backline.engines.data.demo import demo_song
    from backline.engines.data.slakh import read_track

    track = read_track(demo_song())
    _, total = track.info()
    stems = role_stems(track, 0, total)
    mix = Audio(sum(a.samples for a in stems.values()), 44100)
    t0 = time.perf_counter()
    bass = engine.separate(mix, ("Bass",), mode="extract", steps=steps, w=w, seed=0)["Bass"]
    wall = time.perf_counter() - t0
    ref = mono(stems["Bass"])
    val = si_sdr(ref, mono(bass)) - si_sdr(ref, mono(mix))
    oracle = si_sdr(ref, mono(irm(stems, mix)["Bass"])) - si_sdr(ref, mono(mix))
    print(f"\n2. Demo mix, extractor prompt \"bass\" ({total / 44100:.1f} s): SI-SDRi {val:.2f} dB "
          f"(oracle IRM {oracle:.2f} dB; target >= 8), {x_real_time(wall, total / 44100):.2f}× real time")
    return {"si_sdri": val, "oracle_irm": oracle, "x_real_time": x_real_time(wall, total / 44100)}


def chord_tone_rate(audio: Audio, extras: dict) -> tuple[float, int]:
    from backline.engines.core.transcribe import transcribe_polyphonic

    notes = transcribe_polyphonic(audio)
    bpm = float(extras["tempo_bpm"])
    num, den = extras.get("time_signature", (4, 4))
    bar_s = num * (4 / den) * 60 / bpm
    chords = {c["bar"]: set(c["pitch_classes"]) for c in extras["chords"]}
    hits = total = 0
    for n in notes:
        bar = int(n.start // bar_s) + 1
        if bar in chords:
            total += 1
            hits += (n.pitch % 12) in chords[bar]
    return (hits / total if total else float("nan")), total


def buzz_db(audio: Audio, freq: float) -> float:
    """Line at `freq` in the modulation spectrum of the broadband envelope, dB over the median of the bins
    within ±15 Hz (excluding ±1.5 Hz): frame-rate artefacts show up as such a line."""
    x = mono(audio)
    hop = 32
    env = np.sqrt(np.convolve(x * x, np.ones(hop) / hop, mode="same")[::hop])
    rate = audio.sample_rate / hop
    env = env - env.mean()
    spec_ = np.abs(np.fft.rfft(env * np.hanning(len(env)))) ** 2
    f = np.fft.rfftfreq(len(env), 1 / rate)
    line = spec_[(f > freq - 1.5) & (f < freq + 1.5)].max()
    near = spec_[(np.abs(f - freq) < 15) & (np.abs(f - freq) > 1.5)]
    return float(10 * np.log10(line / (np.median(near) + 1e-20)))


def accompaniment(engine, heldout, steps: int, w: float, seeds: int) -> dict:
    from bass_eval import fad

    from backline.engines.analysis.api import fit_score
    from backline.engines.data.demo import demo_song
    from backline.engines.data.slakh import read_track

    track = read_track(demo_song())
    _, total = track.info()
    stems = role_stems(track, 0, total)
    given = tuple(r for r in ROLES if r in stems and r != "Piano")
    band = Audio(sum(stems[r].samples for r in given), 44100)
    real = stems["Piano"]
    gens, walls = [], []
    for seed in range(seeds):
        t0 = time.perf_counter()
        gens.append(engine.accompany(band, ("Piano",), given, steps=steps, w=w, seed=seed)["Piano"])
        walls.append(time.perf_counter() - t0)
    seconds = total / 44100
    fit_gen = [fit_score(band, g) for g in gens]
    fit_real = fit_score(band, real)
    ct_gen = [chord_tone_rate(g, track.extras) for g in gens]
    ct_real = chord_tone_rate(real, track.extras)
    refs = []
    for tr in heldout:
        piano = role_stems(tr, 0, int(20 * 44100)).get("Piano")
        if piano is not None and piano.rms() > 1e-3:
            refs.append(piano)
    prep = engine.prepare(real)
    gl = engine._render(prep.mag, prep.wave.shape[-1], real, 0, None)
    f_gen = fad(refs, gens)
    f_real = fad(refs, [real])
    f_gl = fad(refs, [gl])
    buzz = {f"{hz:g} Hz": {"generated": float(np.mean([buzz_db(g, hz) for g in gens])), "real": buzz_db(real, hz)}
            for hz in (62.5, 172.27)}
    print(f"\n3. Accompaniment: demo band without piano, prompt \"piano\" ({seconds:.1f} s, {seeds} seeds, {steps} ADPM2 "
          f"steps, w {w:g})")
    print(f"  fit score (matching model)   generated {np.mean(fit_gen):.3f} (per seed {', '.join(f'{v:.3f}' for v in fit_gen)})"
          f"   real piano {fit_real:.3f}")
    print(f"  chord-tone rate              generated {np.nanmean([c[0] for c in ct_gen]):.2f} "
          f"({sum(c[1] for c in ct_gen)} notes)   real piano {ct_real[0]:.2f} ({ct_real[1]} notes)   target >= 0.7")
    print(f"  FAD vs {len(refs)} corpus piano stems   generated {f_gen:.2f}   real demo piano {f_real:.2f}   "
          f"real demo piano through Griffin-Lim {f_gl:.2f}")
    for k, v in buzz.items():
        print(f"  hop-rate buzz line at {k:>9}   generated {v['generated']:+.1f} dB   real {v['real']:+.1f} dB")
    print(f"  speed: {x_real_time(float(np.mean(walls)), seconds):.2f}× real time (1 CPU thread)")
    return {"fit_generated": float(np.mean(fit_gen)), "fit_real": fit_real,
            "chord_tone_generated": float(np.nanmean([c[0] for c in ct_gen])), "chord_tone_real": ct_real[0],
            "fad_generated": f_gen, "fad_real": f_real, "fad_griffin_lim": f_gl, "buzz_db": buzz,
            "x_real_time": x_real_time(float(np.mean(walls)), seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, default=None,
                    help="held-out corpus (seed not used in training); default: render 4 synthetic songs once")
    ap.add_argument("--songs", type=int, default=10)
    ap.add_argument("--clip", type=float, default=6.0, help="seconds per held-out clip")
    ap.add_argument("--steps", type=int, default=32, help="Euler steps for separation")
    ap.add_argument("--gen-steps", type=int, default=48, help="ADPM2 steps for the accompaniment")
    ap.add_argument("--w-sep", type=float, default=1.0)
    ap.add_argument("--w-ext", type=float, default=2.0)
    ap.add_argument("--w-gen", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=2, help="generated pianos for the accompaniment table")
    ap.add_argument("--weights", type=Path, help="weights to evaluate (default: shipped)")
    ap.add_argument("--config", default="shipped", choices=("shipped", "debug"), help="debug: smoke-test the script")
    ap.add_argument("--repr", action="store_true", help="print the representation table first")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: sep,demo,acc")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from _common import corpus_or_render, hardware

    from backline.engines.accompany.engine import build
    from backline.engines.data.slakh import list_tracks

    engine = build(a.config, weights=a.weights)
    print(hardware("cpu"))
    print(f"weights: {engine.describe().weights}")
    a.heldout, label = corpus_or_render(a.heldout, flag="--heldout")
    print(f"songs: {label}")
    tracks = list_tracks(a.heldout)[: a.songs]
    skip = set(a.skip.split(","))
    results: dict = {"weights": engine.describe().weights, "hardware": hardware("cpu")}
    if a.repr:
        results["repr"] = repr_table(tracks)
    if "sep" not in skip:
        results["separation"] = separation(engine, tracks, a.clip, a.steps, a.w_sep, a.w_ext)
    if "demo" not in skip:
        results["demo_extract"] = demo_extract(engine, a.steps, a.w_ext)
    if "acc" not in skip:
        results["accompaniment"] = accompaniment(engine, tracks, a.gen_steps, a.w_gen, a.seeds)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
