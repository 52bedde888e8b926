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
6. Real recordings (../shared/realdev) as references, one line each (measured, never trained on).
7. Matching (`--corpus`, 25 held-out songs, one 8-s clip each): the analysis engine's (mix, bass) matching model's
   25×25 soft-assignment matrix over the follow-mode takes, top-1 = the share of bands whose own take scores highest
   (paper 000's measure, as bass_follow_eval.py prints it). Rows: the real basses (ceiling); the take as the engine
   makes it by default (`engine.generate`, finger preset, follow mode) and as it made it before this change (the
   GM soundfont, no lock to the kick); the take with a user reference (the held-out references of table 1 in turn,
   `engine.generate(reference=...)`: planned in their feel, in their sound), with and without the lock; the
   settings of the 0.76 row (root_fifth through the finger soundfont, no balance); and the trivial baselines: the heard key's tonic held
   every bar, and random pitches (in the heard key, bass register) on the default take's own rhythm.
8. Presets (`presets`): each preset's line (its own style) on the demo band through the GM soundfont (the old
   default) and through the instrument sampled from the preset's reference (+ its chain): the grounding ratio among
   the presets (timbre distance to the preset's reference in its own sound over the other presets' sounds), render
   fidelity (basic-pitch on the rendered take vs the planned notes: pitch-class agreement, note F1), the build time
   of the eight instruments (cache off) and the cached load, and the render time.
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

from backline.engines.core.audio import Audio, read_audio, write_audio  # noqa: E402

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
    ap.add_argument("--skip", default="", help="comma list: grounding,contrast,feel,speed,hn,matching (realdev: --realdev '')")
    ap.add_argument("--pictures", type=Path, help="write spectrograms of references and takes here (PNG)")
    ap.add_argument("--realdev", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "realdev",
                    help="real recordings to try as references (measure only)")
    ap.add_argument("--seeds", type=int, default=6, help="lines per reference in the contrast table (2-6)")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="held-out rendered songs for the matching table (25 songs: one clip each); default: the "
                         "benchmark's 4 synthetic songs (several clips per song, so not the issue's figure)")
    ap.add_argument("--clips", type=int, default=25, help="clips (songs) in the matching matrix")
    ap.add_argument("--clip-seconds", type=float, default=8.0, help="clip length for the matching matrix")
    ap.add_argument("--per-song", type=int, default=1,
                    help="adjacent clips per song in the matching matrix (2: the harder protocol, see song_clips)")
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
    if {"grounding", "matching"} - skip:
        notes = riff(8, 8, 96.0, low=40)
        for font, prog, chain in HELD_OUT:
            ref = soundfont_reference(font, prog, chain, notes, 20.5)
            inst, info = prepare(ref, tmp, f"{font}-{prog}", use_cache=True)  # the engine reuses it (table 7)
            refs.append(ref)
            insts.append(inst)
            print(f"   held-out {font} {prog} {chain[0]['type']}: {info['learned']}  ({info['samples']} samples, "
                  f"{info['build_s']:.1f} s)")
    if "grounding" not in skip:
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
                line, _, pinfo = plan_in_feel(planner, lst, lst.kicks, f, seed=seed, lock_to_kick=True)  # as the engine
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
    if str(a.realdev) not in ("", ".") and a.realdev.is_dir():
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

    # 8. presets: soundfont vs their reference instrument
    if "presets" not in skip:
        results |= presets_table(engine, lst, mix, emb, distances)

    # 7. matching top-1 on held-out songs
    if "matching" not in skip:
        results |= matching_table(engine, a.corpus, a.clips, a.clip_seconds, tmp,
                                  [tmp / f"{font}-{prog}.flac" for font, prog, _ in HELD_OUT] if insts else [],
                                  a.per_song)

    if a.pictures and pictures:
        save_spectrograms(a.pictures, pictures)
    print("\nresults:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results.items()})
    return 0


def presets_table(engine, lst, mix: Audio, emb, distances) -> dict:
    """Table 8 (see the module docstring)."""
    from bass_follow_eval import fidelity

    from backline.engines.bass.follow import plan_line, render_line
    from backline.engines.bass.presets import list_presets, load_preset
    from backline.engines.bass.reference import preset_instrument, render_preset

    presets = [load_preset(p) for p in list_presets()]
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="backline-presets-")  # an empty cache: built here
    t = time.perf_counter()
    insts = [preset_instrument(p)[0] for p in presets]
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    for p in presets:
        preset_instrument(p)
    cached_s = (time.perf_counter() - t) / len(presets)
    refs = [emb(read_audio(p.reference)) for p in presets]
    out: dict = {}
    print(f"\n8. presets on the demo band: soundfont vs the instrument sampled from the preset's reference; building "
          f"the {len(presets)} instruments {build_s:.1f} s (cache off), cached load {cached_s * 1e3:.0f} ms each")
    for method in ("soundfont", "reference instrument"):
        own, other, agree, f1, secs = [], [], [], [], 0.0
        for i, p in enumerate(presets):
            style = p.controls.get("style") or "root_fifth"
            octave = int((p.render or {}).get("octave", 0))
            notes, _, _ = plan_line(engine.planner(), lst, lst.kicks, style=style, seed=1, octave=octave)
            takes = []
            for j, q in enumerate(presets):
                t = time.perf_counter()
                dry, wet, _ = (render_line(notes, q, mix.frames, mix.sample_rate, lst.bpm) if method == "soundfont"
                               else render_preset(insts[j], q, notes, mix.frames, mix.sample_rate))
                secs += time.perf_counter() - t
                takes.append(emb(wet))
                if j == i:
                    a, f = fidelity(notes, dry)
                    agree.append(a)
                    f1.append(f)
            own.append(distances(refs[i], takes[i])[0])
            other += [distances(refs[i], takes[j])[0] for j in range(len(presets)) if j != i]
        ratio = float(np.mean(own) / np.mean(other))
        out[f"preset_grounding[{method}]"] = ratio
        out[f"preset_f1[{method}]"] = float(np.mean(f1))
        print(f"   {method:>20}: grounding ratio {ratio:.3f} (distance to own reference {np.mean(own):.3f}, to the "
              f"others' {np.mean(other):.3f}); render fidelity pc {np.mean(agree):.3f}, note F1 {np.mean(f1):.3f}; "
              f"render {secs / (len(presets) ** 2 * mix.seconds):.4f}x real time")
    # the whole engine, default preset (finger), follow mode: wall and CPU (this process and fluidsynth's children)
    import resource

    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline

    def cpu_now() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    for sound in ("soundfont", "reference"):
        req = GenerationRequest("bass", Path(tempfile.mkdtemp()), Timeline.constant(120.0, mix.sample_rate), mix=mix,
                                region_stop=mix.frames, seed=1, controls={"sound": sound})
        engine.generate(req)  # warm: planner, listener, the instrument's cache
        w, c = time.perf_counter(), cpu_now()
        res = engine.generate(req)
        w, c = time.perf_counter() - w, cpu_now() - c
        out[f"follow_x_rt[{sound}]"] = c / mix.seconds
        print(f"   whole engine, finger preset, sound={sound}: {c / mix.seconds:.3f}x real time CPU ({w / mix.seconds:.3f}x "
              f"wall, shared machine; target <= 0.15x); stages {res.report['timings_s']}")
    return out


def song_clips(corpus: Path, count: int, seconds: float, per_song: int) -> list:
    """`per_song` adjacent, non-overlapping clips from each song (from bar 1, whole bars), `count` in all: the
    harder matching protocol, where a band's own take must also win over the takes made for its song's other bars
    (same key, instruments and chords, other moments)."""
    import json
    import math

    from bass_eval import Clip

    from backline.engines.bass.data import bass_tracks

    clips = []
    for tr in bass_tracks(corpus):
        extras = json.loads((tr.folder / "extras.json").read_text())
        num, den = extras.get("time_signature", [4, 4])
        bar_s = num * 4.0 / den * 60.0 / float(extras.get("tempo_bpm", 120.0))
        stems = {s: read_audio(tr.folder / "stems" / f"{s}.flac") for s in (tr.bass, *tr.others)}
        sr = stems[tr.bass].sample_rate
        span = math.ceil(seconds / bar_s)
        for k in range(per_song):
            if len(clips) >= count:
                return clips
            bar = 1 + k * span
            start, frames = int(round((bar - 1) * bar_s * sr)), int(seconds * sr)
            if start + frames > stems[tr.bass].frames:
                break
            mix = sum(stems[s].slice(start, start + frames).samples for s in tr.others)
            bass = stems[tr.bass].slice(start, start + frames)
            clips.append(Clip(f"{tr.folder.name}@bar{bar}", Audio(mix, sr), bass, extras, (bar - 1) * bar_s))
    return clips


def matching_table(engine, corpus: Path | None, clips_n: int, seconds: float, tmp: Path, refs: list[Path],
                   per_song: int = 1) -> dict:
    """Table 7 (see the module docstring): matching top-1 of follow-mode takes against their own bands."""
    from _common import corpus_or_render
    from bass_eval import load_clips

    from backline.engines.analysis.api import match_matrix
    from backline.engines.bass.follow import plan_line, render_line
    from backline.engines.bass.presets import load_preset
    from backline.engines.core.balance import balance_take
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline
    from backline.engines.core.transcribe import Note
    from backline.engines.listen import listen

    corpus, label = corpus_or_render(corpus, min_bars=20, max_bars=28)
    clips = load_clips(corpus, clips_n, seconds) if per_song == 1 else song_clips(corpus, clips_n, seconds, per_song)
    songs = len({c.name.split("@")[0] for c in clips})
    print(f"\n7. matching: {len(clips)} clips of {seconds:g} s from {songs} songs ({label}"
          + (f"; {per_song} adjacent clips per song: each band must be told from its own song's other bars)"
             if per_song > 1 else ")"))
    finger = load_preset("finger")
    rng = np.random.default_rng(0)
    rows: dict[str, list[Audio]] = {k: [] for k in (
        "real bass (ceiling)", "engine default", "soundfont, lock", "reference instrument, lock",
        "before: soundfont, no lock", "with a reference",
        "with a reference, no lock", "0.76 settings", "held tonic", "random pitches, same rhythm")}
    t_default = 0.0
    for i, c in enumerate(clips):
        mix = c.mix
        rows["real bass (ceiling)"].append(c.bass)

        def take_of(controls: dict, reference: Path | None = None, mix=mix):
            req = GenerationRequest("bass", tmp / "out", Timeline.constant(120.0, mix.sample_rate), mix=mix,
                                    region_stop=mix.frames, seed=1, controls=controls, reference=reference)
            return engine.generate(req).takes[0]

        t = time.perf_counter()
        take = take_of({})
        t_default += time.perf_counter() - t
        rows["engine default"].append(take.stems["bass"])
        rows["soundfont, lock"].append(take_of({"sound": "soundfont", "lock_to_kick": True}).stems["bass"])
        rows["reference instrument, lock"].append(take_of({"sound": "reference", "lock_to_kick": True}).stems["bass"])
        rows["before: soundfont, no lock"].append(take_of({"sound": "soundfont", "lock_to_kick": False}).stems["bass"])
        lst = listen(mix)
        if refs:
            rows["with a reference"].append(take_of({}, refs[i % len(refs)]).stems["bass"])
            rows["with a reference, no lock"].append(take_of({"lock_to_kick": False}, refs[i % len(refs)]).stems["bass"])
        notes, _, _ = plan_line(engine.planner(), lst, lst.kicks, style="root_fifth")
        rows["0.76 settings"].append(render_line(notes, finger, mix.frames, mix.sample_rate, lst.bpm)[1])
        bar_s = 4 * 60.0 / lst.bpm
        tonic = 36 + (lst.key_pc - 36) % 12
        held = [Note(tonic, t0, min(t0 + bar_s - 0.05, mix.seconds), 90)
                for t0 in np.arange(max(lst.bar_one - bar_s * np.ceil(lst.bar_one / bar_s), 0.0), mix.seconds, bar_s)]
        rows["held tonic"].append(balance_take(render_line(held, finger, mix.frames, mix.sample_rate, lst.bpm)[1],
                                               mix, "bass")[0])
        scale = [(lst.key_pc + d) % 12 for d in ((0, 2, 3, 5, 7, 8, 10) if lst.mode == "minor" else
                                                 (0, 2, 4, 5, 7, 9, 11))]
        line = default_notes(take)
        rnd = [Note(int(36 + (scale[rng.integers(len(scale))] - 36) % 12 + 12 * rng.integers(0, 2)), n.start, n.end,
                    n.velocity) for n in line]
        rows["random pitches, same rhythm"].append(balance_take(render_line(rnd, finger, mix.frames, mix.sample_rate,
                                                                            lst.bpm)[1], mix, "bass")[0])
    mixes = [c.mix for c in clips]
    out = {}
    for name, takes in rows.items():
        if len(takes) != len(clips):
            continue
        mat = match_matrix(mixes, takes).float().numpy()
        top1 = float((mat.argmax(1) == np.arange(len(clips))).mean())
        out[f"matching_top1[{name}{', 2 per song' if per_song > 1 else ''}]"] = top1
        print(f"   {name:>28}: top-1 {top1:.2f}, mean diagonal p {np.diag(mat).mean():.3f} (chance "
              f"{1 / len(clips):.3f}; target >= 0.8)")
    print(f"   engine default: {t_default / sum(c.mix.seconds for c in clips):.3f}x real time wall per clip "
          f"(listen, plan, render, balance; shared machine)")
    return out


def default_notes(take) -> list:
    """The notes of a take's MIDI (seconds from the region's first sample)."""
    import io

    import pretty_midi

    from backline.engines.core.transcribe import Note

    midi = take.midi
    if not isinstance(midi, pretty_midi.PrettyMIDI):
        buf = io.BytesIO()
        midi.save(file=buf) if hasattr(midi, "save") else buf.write(midi)
        buf.seek(0)
        midi = pretty_midi.PrettyMIDI(buf)
    return [Note(n.pitch, n.start, n.end, n.velocity) for inst in midi.instruments for n in inst.notes]


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
