"""Follow mode in the sound and feel of a user's reference (issue 22), measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reference_eval.py [--skip hn,speed] [--pictures DIR]

The band: the demo song without its bass (8 bars, 100 BPM, D major), listened to once. References (none of them a
preset, none rendered the way a preset was):
- held-out soundfont references: our own riff (not the presets' riff) rendered through (soundfont, GM program)
  pairs no preset uses, each through an effect chain no preset uses (phaser, bitcrush, clipping, reverb, delay);
- two contrasting synthesised references: a dark sine-like bass and a bright square/slap-like bass;
- three densities for the feel: sixteenths, eighths, whole notes (synthesised, tempo 92–104 BPM).

Tables printed:
1. Grounding ratio in follow mode (paper 000's protocol as bass_follow_eval.py measures it: the timbre embedding's
   cosine distance between a reference and the take played in its sound, over the distance to the takes played in
   the other references' sounds; the same planned line for all). Baselines: today's follow mode (the reference is
   ignored: one finger soundfont for all) and the nearest preset's GM sound.
2. Contrast: each of the two synthesised references' takes, MFCC-mean distance to its own reference and to the
   other, over several seeds (must be closer to its own every time).
3. Feel: notes per bar of the reference (true, and as measured) vs the take's; style picked; the words.
4. Build time for a 30 s reference (one thread, cache off) and the follow-mode speed (whole engine with a cached
   reference, 1 thread; render alone too).
5. Sampler vs harmonic-plus-noise (DDSP-style: 24 harmonic amplitudes + exponential decay + attack noise fitted to
   the same slices): grounding ratio and contrast with each, build time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backline.engines.core.audio import Audio, write_audio  # noqa: E402

SR = 44100
#: Held-out renders: (soundfont, GM program 1-based, chain) — no preset uses these pairs nor these effects.
HELD_OUT = [
    ("TimGM6mb", 34, [{"type": "Phaser", "rate_hz": 0.8, "depth": 0.6, "mix": 0.5}]),
    ("TimGM6mb", 37, [{"type": "Bitcrush", "bit_depth": 10}]),
    ("FluidR3_GM", 38, [{"type": "Clipping", "threshold_db": -14.0}]),
    ("MuseScore_General", 38, [{"type": "Reverb", "room_size": 0.3, "wet_level": 0.15, "dry_level": 0.9}]),
    ("TimGM6mb", 36, [{"type": "Delay", "delay_seconds": 0.09, "feedback": 0.2, "mix": 0.2}]),
    ("FluidR3_GM", 35, [{"type": "Distortion", "drive_db": 12.0}, {"type": "Phaser", "rate_hz": 2.0}]),
]


def riff(bars: int, division: int, bpm: float, low: int = 40) -> list[tuple[int, float, float, int]]:
    """(pitch, start s, length s, velocity): roots / fifths / octaves / passing notes over I–vi–IV–V in E."""
    beat = 60.0 / bpm
    roots = [low, low + 9 - 12, low + 5, low + 7]  # E C# A B (in the low octave)
    shape = [0, 0, 7, 12, 0, 10, 7, 5, 0, 0, 7, 12, 3, 5, 7, 11]
    out = []
    for bar in range(bars):
        r = roots[bar % 4]
        for k in range(division):
            iv = shape[(k * 16 // division) % 16] if division > 1 else 0
            start = bar * 4 * beat + k * 4 * beat / division
            vel = 100 if k % max(division // 4, 1) == 0 else 80
            out.append((r + iv, start, 4 * beat / division * (0.8 if division > 4 else 0.95), vel))
    return out


def synth(notes, kind: str, seconds: float) -> Audio:
    """A dark sine-like bass (sine + a little 2nd harmonic, soft attack) or a bright square/slap one."""
    y = np.zeros(int(SR * seconds) + SR, np.float64)
    rng = np.random.default_rng(1)
    for p, on, dur, vel in notes:
        f = 440.0 * 2 ** ((p - 69) / 12)
        n = int((dur + 0.05) * SR)
        t = np.arange(n) / SR
        if kind == "dark":
            s = np.sin(2 * np.pi * f * t) + 0.15 * np.sin(4 * np.pi * f * t)
            env = np.minimum(1, t / 0.008) * np.exp(-t * 1.2)
        else:
            s = 0.6 * np.sign(np.sin(2 * np.pi * f * t)) + 0.4 * np.sign(np.sin(2 * np.pi * 2 * f * t + 0.3))
            s[: int(0.004 * SR)] += rng.normal(0, 1.5, int(0.004 * SR))  # the slap's click
            env = np.minimum(1, t / 0.001) * np.exp(-t * 3.0)
        env *= np.clip((dur + 0.05 - t) / 0.02, 0, 1)
        a = int(on * SR)
        y[a:a + n] += 0.3 * vel / 100 * env * s
    return Audio(y[None, : int(SR * seconds)].astype(np.float32), SR)


def soundfont_reference(font: str, program: int, chain, notes, seconds: float) -> Audio:
    from backline.engines.core.effects import render
    from backline.engines.core.render import render_midi
    from backline.engines.core.timeline import Timeline
    from backline.engines.core.transcribe import Note, notes_to_midi

    mid = notes_to_midi([Note(p, s, s + d, v) for p, s, d, v in notes], Timeline.constant(120.0, SR),
                        program=program - 1, name="held-out reference")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.mid"
        mid.save(str(path))
        dry = render_midi(path, font, frames=int(SR * seconds))
    wet, _ = render(dry.with_channels(1), chain, target_lufs=-18.0, where="held-out chain")
    return wet


def band():
    from backline.engines.data.demo import demo_song
    from backline.engines.data.slakh import read_track

    track = read_track(Path(demo_song()))
    from backline.engines.core.audio import read_audio

    stems = [read_audio(st.audio) for st in track.audio_stems() if st.role != "bass"]
    n = min(a.frames for a in stems)
    return Audio(np.sum([a.samples[:, :n] for a in stems], axis=0).astype(np.float32), stems[0].sample_rate)


def prepare(audio: Audio, folder: Path, name: str, use_cache: bool = False):
    from backline.engines.bass.reference import prepare_reference

    path = write_audio(folder / f"{name}.flac", audio, overwrite=True, bit_depth=24)
    return prepare_reference(path, use_cache=use_cache)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", default="", help="comma list: grounding,contrast,feel,speed,hn (realdev: --realdev '')")
    ap.add_argument("--pictures", type=Path, help="write spectrograms of references and takes here (PNG)")
    ap.add_argument("--realdev", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "realdev",
                    help="real recordings to try as references (measure only)")
    ap.add_argument("--seeds", type=int, default=6, help="lines per reference in the contrast table (2-6)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from bass_eval import Embedder, distances
    from bass_speed import cpu_name

    from backline.engines.bass.follow import render_line
    from backline.engines.bass.follow_engine import build
    from backline.engines.bass.presets import list_presets, load_preset
    from backline.engines.bass.reference import plan_in_feel, render_in_reference
    from backline.engines.listen import listen

    skip = set(a.skip.split(","))
    print(f"reference evaluation on {cpu_name()} (1 thread)")
    engine = build("shipped", "cpu")
    planner = engine.planner()
    mix = band()
    lst = listen(mix)
    print(f"band: demo without bass, {mix.seconds:.1f} s, heard {lst.bpm:g} BPM, key {lst.key_pc} {lst.mode}")
    emb = Embedder("timbre")
    tmp = Path(tempfile.mkdtemp(prefix="backline-refeval-"))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    results: dict = {}
    pictures: list[tuple[str, Audio]] = []

    # 1. grounding ratio on held-out references
    refs, insts = [], []
    if "grounding" not in skip:
        notes = riff(8, 8, 96.0, low=40)
        for font, prog, chain in HELD_OUT:
            ref = soundfont_reference(font, prog, chain, notes, 20.5)
            inst, info = prepare(ref, tmp, f"{font}-{prog}")
            refs.append(ref)
            insts.append(inst)
            print(f"   held-out {font} {prog} {chain[0]['type']}: {info['learned']}  ({info['samples']} samples, "
                  f"{info['build_s']:.1f} s)")
        ref_emb = [emb(r) for r in refs]
        grounded, other, now, nearest = [], [], [], []
        finger = load_preset("finger")
        presets = [load_preset(p) for p in list_presets()]
        for i, inst in enumerate(insts):
            line, _, _ = plan_in_feel(planner, lst, lst.kicks, inst.feel, seed=7)
            takes = [emb(render_in_reference(insts[j], line, mix.frames, mix.sample_rate)[1]) for j in range(len(insts))]
            grounded.append(distances(ref_emb[i], takes[i])[0])
            other += [distances(ref_emb[i], takes[j])[0] for j in range(len(insts)) if j != i]
            now.append(distances(ref_emb[i], emb(render_line(line, finger, mix.frames, mix.sample_rate, lst.bpm)[1]))[0])
            # the nearest preset (by timbre) as a stand-in for "pick the closest preset"
            p_best = min(presets, key=lambda p: distances(ref_emb[i], emb(render_line(
                line[:12], p, int(6 * mix.sample_rate), mix.sample_rate, lst.bpm)[1]))[0])
            nearest.append(distances(ref_emb[i], emb(render_line(line, p_best, mix.frames, mix.sample_rate,
                                                                 lst.bpm)[1]))[0])
            if i < 2:
                pictures += [(f"heldout{i}-reference", refs[i]),
                             (f"heldout{i}-take", render_in_reference(inst, line, mix.frames, mix.sample_rate)[1])]
        ratio = float(np.mean(grounded) / np.mean(other))
        results["grounding_ratio"] = ratio
        print(f"\n1. grounding, follow mode, {len(insts)} held-out references: cosine distance to the reference "
              f"{np.mean(grounded):.3f} in its own sound vs {np.mean(other):.3f} in the others' — ratio {ratio:.3f} "
              f"(target <= 0.35; presets in their GM sounds: 0.72)\n"
              f"   baselines: today (reference ignored, finger soundfont) {np.mean(now):.3f} → ratio "
              f"{np.mean(now) / np.mean(other):.3f}; nearest preset's sound {np.mean(nearest):.3f} → ratio "
              f"{np.mean(nearest) / np.mean(other):.3f}")

    # 2. contrast: dark sine vs bright square/slap
    if "contrast" not in skip:
        line_notes = riff(8, 8, 100.0, low=40)
        dark, bright = synth(line_notes, "dark", 20.0), synth(line_notes, "bright", 20.0)
        (di, dinfo), (bi, binfo) = prepare(dark, tmp, "dark"), prepare(bright, tmp, "bright")
        print(f"\n2. contrast — dark: {dinfo['learned']}; bright: {binfo['learned']}")
        e_dark, e_bright = emb(dark)[:19], emb(bright)[:19]
        wins = 0
        rows = []
        # the planner is confident (top-p keeps one token most steps): vary the line by style as well as seed
        for seed, style in enumerate([None, "root_fifth", "walking", "octave", "sustained", "funk16"][:max(a.seeds, 2)]):
            for inst, own, oth, label in ((di, e_dark, e_bright, "dark"), (bi, e_bright, e_dark, "bright")):
                line, _, _ = plan_in_feel(planner, lst, lst.kicks, inst.feel, seed=seed, style=style)
                take = render_in_reference(inst, line, mix.frames, mix.sample_rate)[1]
                e = emb(take)[:19]
                d_own, d_oth = float(np.linalg.norm(e - own)), float(np.linalg.norm(e - oth))
                wins += d_own < d_oth
                rows.append((label, f"seed {seed} {style or 'from the feel'}", d_own, d_oth))
                if seed == 0:
                    pictures += [(f"{label}-reference", dark if label == "dark" else bright), (f"{label}-take", take)]
        for label, seed, d_own, d_oth in rows:
            print(f"   {label:>6} take, {seed:>20}: MFCC-mean distance to own {d_own:6.2f}, to the other {d_oth:6.2f}")
        results["contrast_wins"] = f"{wins}/{len(rows)}"
        print(f"   closer to its own reference: {wins}/{len(rows)} (target: always)")

    # 3. feel: notes per bar
    if "feel" not in skip:
        print("\n3. feel: notes per bar (4/4) of the reference (true / measured) vs the take, 3 seeds")
        errs = []
        for division, bpm, kind in ((16, 96.0, "bright"), (8, 104.0, "dark"), (1, 92.0, "dark"), (4, 100.0, "bright")):
            ref = synth(riff(8, division, bpm, low=40), kind, 8 * 4 * 60 / bpm + 0.5)
            inst, info = prepare(ref, tmp, f"feel{division}")
            f = inst.feel
            takes = []
            for seed in range(3):
                line, _, pinfo = plan_in_feel(planner, lst, lst.kicks, f, seed=seed)
                takes.append(pinfo["notes_per_bar"])
            err = (np.mean(takes) - division) / division
            errs.append(abs(err))
            print(f"   {division:>2}/bar at {bpm:g} BPM: measured {f.notes_per_bar:5.2f} at {f.bpm:g} BPM, style "
                  f"{pinfo['style']:>10}, take {np.mean(takes):5.2f} ({err:+.0%} vs true)  — \"{info['learned']}\"")
        results["feel_max_error"] = float(max(errs))
        print(f"   largest error vs the reference's true notes per bar: {max(errs):.0%} (target <= 25 %)")

    # 4. speed
    if "speed" not in skip:
        ref30 = synth(riff(12, 8, 96.0, low=40), "bright", 30.0)
        t = time.perf_counter()
        inst, info = prepare(ref30, tmp, "thirty", use_cache=True)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        inst2, info2 = prepare(ref30, tmp, "thirty", use_cache=True)
        cached_s = time.perf_counter() - t
        results["build_s"] = build_s
        print(f"\n4. build from a 30 s reference: {build_s:.1f} s (target <= 30 s), then from the cache {cached_s:.2f} s "
              f"({info2['cache']})")
        from backline.engines.core.protocol import GenerationRequest
        from backline.engines.core.timeline import Timeline

        path = tmp / "thirty.flac"
        req = GenerationRequest("bass", tmp / "out", Timeline.constant(120.0, mix.sample_rate), mix=mix,
                                region_stop=mix.frames, reference=path, seed=1)
        engine.generate(req)  # warm (planner, listener)
        t = time.perf_counter()
        res = engine.generate(req)
        wall = time.perf_counter() - t
        line = plan_in_feel(planner, lst, lst.kicks, inst.feel, seed=1)[0]
        t = time.perf_counter()
        render_in_reference(inst, line, mix.frames, mix.sample_rate)
        render_s = time.perf_counter() - t
        results["speed_x_rt"] = wall / mix.seconds
        print(f"   follow mode with the reference (cached), whole engine: {wall:.2f} s for {mix.seconds:.1f} s = "
              f"{wall / mix.seconds:.3f}x real time (target <= 0.15x); render alone {render_s / mix.seconds:.4f}x; "
              f"timings {res.report['timings_s']}")

    # 5. sampler vs harmonic-plus-noise
    if "hn" not in skip and insts:
        from hn_model import fit_hn

        t = time.perf_counter()
        hns = [fit_hn(inst) for inst in insts]
        hn_s = (time.perf_counter() - t) / len(hns)
        g, o = [], []
        ref_emb = [emb(r) for r in refs]
        for i, inst in enumerate(insts):
            line, _, _ = plan_in_feel(planner, lst, lst.kicks, inst.feel, seed=7)
            takes = [emb(hn.render(line, mix.frames, mix.sample_rate)) for hn in hns]
            g.append(distances(ref_emb[i], takes[i])[0])
            o += [distances(ref_emb[i], takes[j])[0] for j in range(len(hns)) if j != i]
        print(f"\n5. harmonic-plus-noise model on the same slices: grounding ratio {np.mean(g) / np.mean(o):.3f} "
              f"(distance to own {np.mean(g):.3f}) vs the sampler's {results.get('grounding_ratio', float('nan')):.3f}; "
              f"fit {hn_s:.2f} s per reference")

    # 6. real recordings (../shared/realdev; measured per clip, never trained on)
    if a.realdev and a.realdev.is_dir():
        from backline.engines.bass.reference import prepare_reference
        from backline.engines.core.errors import BacklineError

        print(f"\n6. real recordings as references ({a.realdev}), one line each")
        for name in ("filosax01_bass_drums.wav", "gtzan_country.wav", "cuidado_falla.flac", "simac_rallou.flac"):
            path = a.realdev / name
            if not path.is_file():
                continue
            t = time.perf_counter()
            try:
                inst, info = prepare_reference(path, use_cache=False)
                line, _, pinfo = plan_in_feel(planner, lst, lst.kicks, inst.feel, seed=1)
                take = render_in_reference(inst, line, mix.frames, mix.sample_rate)[1]
                from backline.engines.core.audio import read_audio

                d = distances(emb(read_audio(path)), emb(take))[0]
                print(f"   {name}: \"{info['learned']}\" — {inst.feel.notes_per_bar:.1f} notes/bar at "
                      f"{inst.feel.bpm:g} BPM, take {pinfo['notes_per_bar']:.1f} ({pinfo['style']}); "
                      f"{info['samples']} samples; timbre distance take–reference {d:.3f}; {time.perf_counter() - t:.1f} s")
                pictures += [(f"{name}-reference", read_audio(path)), (f"{name}-take", take)]
            except BacklineError as err:
                print(f"   {name}: refused — {err}")

    if a.pictures and pictures:
        save_spectrograms(a.pictures, pictures)
    print("\nresults:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results.items()})
    return 0


def save_spectrograms(folder: Path, items: list[tuple[str, Audio]]) -> None:
    """Log-mel spectrograms (0–4 kHz, first 8 s), each reference beside its take, one PNG (rows in `items` order,
    pairs left | right). Written with the project's own PNG encoder (no plotting library needed)."""
    from backline.engines.analysis.tagger import encode_png
    from backline.engines.core.frontend import log_mel

    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for _name, audio in items:
        x = torch.from_numpy(audio.with_channels(1).resampled(SR).samples[0][: SR * 8].copy())
        m = log_mel(x, SR, n_mels=96, f_max=4000.0).numpy()
        lo = np.percentile(m, 5)
        v = np.clip((m - lo) / max(m.max() - lo, 1e-6), 0.0, 1.0)[::-1]
        v = np.repeat(v, 2, axis=0)
        tiles.append(np.stack([v, v ** 2, 0.2 + 0.6 * v * (1 - v)], -1))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=1.0) for t in tiles]
    gap_v = np.ones((tiles[0].shape[0], 6, 3))
    rows = [np.concatenate([tiles[i], gap_v, tiles[i + 1] if i + 1 < len(tiles) else np.ones_like(tiles[i])], 1)
            for i in range(0, len(tiles), 2)]
    gap_h = np.ones((6, rows[0].shape[1], 3))
    img = np.concatenate(sum(([r, gap_h] for r in rows), [])[:-1], 0)
    path = folder / "reference_takes.png"
    path.write_bytes(encode_png((img * 255).astype(np.uint8)))
    print(f"spectrograms (left reference, right take; rows: {', '.join(n for n, _ in items[::2])}): {path}")


if __name__ == "__main__":
    sys.exit(main())
