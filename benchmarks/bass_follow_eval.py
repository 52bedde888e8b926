"""Follow mode (listen → plan → render) measured as a musician would check it. Also `bass_eval.py --follow`.

    .venv/bin/python benchmarks/bass_follow_eval.py [--corpus HELD_OUT] [--songs 12] [--composed 60]

Without --corpus it renders 4 synthetic songs itself (benchmark seed; _common.corpus_or_render) and says so.

1. Planner on composed held-out songs (symbolic, composer seed 4242, never trained on): the true grid (chords per
   bar, kick hits), each song's own style. Chord-tone note-time and in-key note-time of the planned line against the
   true bass's, the share of onsets on kick hits, planner speed (ms per bar, 1 thread). With the in-key guard (the
   default) and without it (the model alone).
2. Whole pipeline on rendered held-out songs: the band without its bass → listen → plan → render. Chord-tone
   note-time of the planned MIDI on the *true* chords (extras.json), in key; render fidelity: the rendered stem
   transcribed with basic-pitch (`transcribe_bass`) against the planned MIDI — pitch-class agreement on the note-time
   where both sound, and note F1 (onset 50 ms, same pitch).
3. The demo (`backline demo`'s input): chord tones against the demo's chords and against the pitch classes the band
   sounds at each moment (the before-stop hook's check), the take's audio in D major (CQT chroma energy, with the
   demo's real bass stem on the same measure, and pYIN pitch frames), energy at the STFT hop rate.
4. Speed: 30 s of a held-out song in follow mode through the engine, files written, wall and CPU time / 30 s.
5. Whole engine (paper 000's measures) on 8-s clips: matching top-1 of the 25x25 soft-assignment matrix (the
   analysis engine's matching model), FAD against the real basses, and the grounding ratio.
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

from backline.engines.core.audio import Audio, read_audio  # noqa: E402

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor + the raised 7th of the dominant


def scale_pcs(key_pc: int, mode: str) -> set[int]:
    return {(key_pc + d) % 12 for d in (MINOR if mode == "minor" else MAJOR)}


def shares_steps(notes, grid_pcs, scale) -> tuple[float, float]:
    """Note-time shares (chord tones, in key) of PlanNotes on a per-step chord-pc list."""
    tot = chord = key = 0
    for n in notes:
        for s in range(n.step, min(len(grid_pcs), n.step + n.length)):
            tot += 1
            chord += (n.pitch % 12) in grid_pcs[s]
            key += (n.pitch % 12) in scale
    return (chord / tot, key / tot) if tot else (float("nan"), float("nan"))


def planner_table(planner, songs: int) -> dict:
    from backline.engines.bass.planner import line_attributes
    from backline.engines.bass.planner_data import composed_examples
    from backline.engines.data.song import QUALITY_INTERVALS, make_song
    from backline.engines.data.synth import song_rng

    rows = {"true": [], "guard": [], "model": []}
    kick = {"true": [], "guard": [], "model": []}
    plan_s = bars = 0.0
    exs = composed_examples(songs, 4242, min_bars=16, max_bars=32)
    for i, ex in enumerate(exs):
        song = make_song(song_rng(4242, i), min_bars=16, max_bars=32)
        bar = ex.grid.bar_steps
        pcs = []
        for c in song.chords:  # the song's full chords (7ths too), per step
            pcs += [{(c.root_pc + iv) % 12 for iv in QUALITY_INTERVALS[c.quality]}] * bar
        scale = scale_pcs(song.key_pc, song.mode)
        attrs = planner.attributes(ex.style)
        for name, line in (("true", ex.notes),):
            rows[name].append(shares_steps(line, pcs, scale))
            kick[name].append(line_attributes(line, ex.grid)["lock"])
        for name, guard in (("guard", True), ("model", False)):
            t0 = time.perf_counter()
            line = planner.plan(ex.grid, ex.style, attrs, seed=i, in_key=guard)
            if guard:
                plan_s += time.perf_counter() - t0
                bars += ex.grid.steps / bar
            rows[name].append(shares_steps(line, pcs, scale))
            kick[name].append(line_attributes(line, ex.grid)["lock"])
    out = {k: {"chord": float(np.nanmean([r[0] for r in v])), "key": float(np.nanmean([r[1] for r in v])),
               "kick": float(np.mean(kick[k]))} for k, v in rows.items()}
    print(f"\n1. planner on {songs} composed held-out songs (true chords and kick; each song's own style)")
    print(f"   {'line':<22} {'chord-tone time':>16} {'in key':>8} {'onsets on kick':>15}")
    for k, label in (("true", "true bass"), ("guard", "planned (guard on)"), ("model", "planned (model alone)")):
        print(f"   {label:<22} {out[k]['chord']:>16.3f} {out[k]['key']:>8.3f} {out[k]['kick']:>15.3f}")
    print(f"   ratio planned/true chord-tone time: {out['guard']['chord'] / out['true']['chord']:.3f} "
          f"(target >= 0.9); planner {plan_s / bars * 1000:.2f} ms per bar on 1 thread")
    out["ms_per_bar"] = plan_s / bars * 1000
    return out


def time_shares(notes, chord_at, scale) -> tuple[float, float]:
    """Note-time shares of notes in seconds; chord_at(t) → pitch-class set."""
    tot = chord = key = 0
    for n in notes:
        for t in np.arange(n.start, n.end, 0.02):
            tot += 1
            chord += (n.pitch % 12) in chord_at(t)
            key += (n.pitch % 12) in scale
    return (chord / tot, key / tot) if tot else (float("nan"), float("nan"))


def fidelity(planned, rendered: Audio) -> tuple[float, float]:
    """(pitch-class agreement on note-time where both sound, note F1) of a rendered stem vs the planned notes."""
    from backline.engines.bass.transcription import transcribe_bass
    from backline.engines.core.transcribe import note_f1

    heard = transcribe_bass(rendered)
    # basic-pitch also reports a sustained note's upper harmonics and release as short quiet notes (velocity ~40
    # against ~100 for the attacks; on a whole-note line they outnumber the notes): detections under 0.6 x the
    # 90th-percentile velocity are not notes a listener hears
    if heard:
        floor = 0.6 * float(np.percentile([n.velocity for n in heard], 90))
        heard = [n for n in heard if n.velocity >= floor]
    end = max([n.end for n in planned] + [0.0])
    agree = both = 0
    for t in np.arange(0.0, end, 0.01):
        p = [n.pitch for n in planned if n.start <= t < n.end]
        h = [n.pitch for n in heard if n.start <= t < n.end]
        if p and h:
            both += 1
            agree += (p[0] % 12) == (h[0] % 12)
    return (agree / both if both else float("nan")), note_f1(planned, heard)[2]


def pipeline_table(engine, corpus: Path, songs: int) -> dict:
    from backline.engines.bass.follow import plan_line, render_line
    from backline.engines.bass.presets import load_preset
    from backline.engines.data.slakh import list_tracks
    from backline.engines.listen import kick_onsets, listen

    sys.path.insert(0, str(Path(__file__).parent))
    from listen_eval import band_without_bass

    preset = load_preset("finger")
    rows = []
    for tr in list_tracks(corpus)[:songs]:
        ex = tr.extras
        mix = band_without_bass(tr)
        bar_s = ex["time_signature"][0] * 4.0 / ex["time_signature"][1] * 60.0 / ex["tempo_bpm"]
        chords = {c["bar"]: set(c["pitch_classes"]) for c in ex["chords"]}
        scale = scale_pcs(["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"].index(ex["key"]), ex["mode"])
        style = next(v for k, v in ex["styles"].items() if ex["roles"][k] == "bass")
        lst = listen(mix)
        notes, _, _ = plan_line(engine.planner(), lst, kick_onsets(mix), style=style)
        def chord_at(t: float, chords=chords, bar_s=bar_s) -> set[int]:
            return chords.get(int(t // bar_s) + 1, set())

        ch, key = time_shares(notes, chord_at, scale)
        import pretty_midi

        bass_id = next(k for k, v in ex["roles"].items() if v == "bass")
        pm = pretty_midi.PrettyMIDI(str(tr.path / "MIDI" / f"{bass_id}.mid"))
        from backline.engines.core.transcribe import Note

        true_notes = [Note(n.pitch, n.start, n.end, n.velocity) for i in pm.instruments for n in i.notes]
        tch, tkey = time_shares(true_notes, chord_at, scale)
        dry, _, _ = render_line(notes, preset, mix.frames, mix.sample_rate, lst.bpm)
        agree, f1 = fidelity(notes, dry)
        rows.append((ch, key, tch, tkey, agree, f1))
        print(f"   {tr.name} {style:<11} chord {ch:.2f} (true {tch:.2f})  key {key:.2f}  render pc {agree:.2f} "
              f"F1 {f1:.2f}", flush=True)
    m = np.nanmean(np.array(rows), axis=0)
    print(f"2. whole pipeline on {len(rows)} rendered corpus songs (band without bass; listened chords, finger preset)")
    print(f"   chord-tone time {m[0]:.3f} vs the true bass {m[2]:.3f} (ratio {m[0] / m[2]:.3f}, target >= 0.9); "
          f"in key {m[1]:.3f} (target >= 0.98; true {m[3]:.3f})")
    print(f"   render fidelity (soundfont): pitch class agrees on {m[4]:.3f} of the voiced note-time (target >= 0.9), "
          f"note F1 {m[5]:.3f} (target >= 0.8)")
    return {"chord": m[0], "key": m[1], "true_chord": m[2], "true_key": m[3], "render_pc": m[4], "render_f1": m[5]}


def demo_table(engine) -> dict:
    import mido

    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline
    from backline.engines.data.demo import demo_song
    from backline.engines.data.slakh import read_track

    sys.path.insert(0, str(Path(__file__).parent))
    from listen_eval import band_without_bass

    track = demo_song()
    tr = read_track(track)
    mix = band_without_bass(tr)
    with tempfile.TemporaryDirectory() as tmp:
        req = GenerationRequest("bass", Path(tmp) / "b", Timeline.constant(120.0, mix.sample_rate), mix=mix,
                                preset="finger", region_stop=mix.frames)
        from backline.engines.core.takes import generate_and_write
        from backline.engines.core.transcribe import midi_to_notes

        res = generate_and_write(engine, req)  # as `backline demo` does: the written WAV and MIDI are checked
        take = res.takes[0]
        wav = read_audio(take.stems["bass"])
        notes = midi_to_notes(mido.MidiFile(str(take.midi)))
    ex = tr.extras
    bar_s = 4 * 60.0 / ex["tempo_bpm"]
    chords = {c["bar"]: set(c["pitch_classes"]) for c in ex["chords"]}
    ch, key = time_shares(notes, lambda t: chords.get(int(t // bar_s) + 1, set()), scale_pcs(2, "major"))
    # the hook's check: the pitch classes the band (not drums, not bass) sounds at each moment
    band = []
    t = 0.0
    on: dict = {}
    for m in mido.MidiFile(str(track / "all_src.mid")):
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            on[(m.channel, m.note)] = t
        elif m.type in ("note_off", "note_on") and (m.channel, m.note) in on:
            band.append((on.pop((m.channel, m.note)), t, m.note, m.channel))
    low = min({c for *_, c in band if c != 9}, key=lambda c: np.mean([n for _, _, n, cc in band if cc == c]))
    upper = [b for b in band if b[3] not in (9, low)]
    sounding, _ = time_shares(notes, lambda t: {n % 12 for s, e, n, _ in upper if s <= t < e}
                              or {-1}, scale_pcs(2, "major"))
    x = wav.with_channels(1).samples[0]
    import librosa

    def in_d_major(audio: Audio) -> tuple[float, float]:
        """(CQT chroma energy share, pYIN f0 frame share) in D major. A bass's CQT chroma leaks into the
        neighbouring semitones at 40–100 Hz, so the real demo bass itself scores well under 1 there."""
        y = audio.with_channels(1).samples[0]
        d = sorted(scale_pcs(2, "major"))
        c = np.abs(librosa.feature.chroma_cqt(y=y, sr=audio.sample_rate, hop_length=1024, norm=None,
                                              fmin=librosa.note_to_hz("C1"), n_octaves=7, bins_per_octave=36))
        f0, voiced, _ = librosa.pyin(y[::4], fmin=30, fmax=400, sr=audio.sample_rate // 4, frame_length=4096,
                                     hop_length=512)
        pcs = np.round(librosa.hz_to_midi(f0[voiced])) % 12
        return float(c[d].sum() / c.sum()), float(np.isin(pcs, d).mean()) if len(pcs) else float("nan")

    d_major, f0_major = in_d_major(wav)
    real = [s for s in tr.audio_stems() if s.role == "bass"]
    real_major = in_d_major(read_audio(real[0].audio))[0] if real else float("nan")
    spec = np.abs(np.fft.rfft(x)) ** 2
    fr = np.fft.rfftfreq(len(x), 1 / wav.sample_rate)
    hop = sum(spec[np.abs(fr - k * wav.sample_rate / 256) <= 2].sum() for k in (1, 2, 3)) / spec.sum()
    lst = res.report["listening"]
    print(f"\n3. demo (band without bass, no --bpm): heard {lst['bpm']} BPM (true 100), bar one {lst['bar_one_s']} s, "
          f"{lst['key']}; chords {lst['chords']}")
    print(f"   take: {len(notes)} notes; chord-tone time {ch:.3f} on the demo's chords, {sounding:.3f} on what the band "
          f"sounds (target >= 0.9); audio in D major: CQT chroma {d_major:.3f} (target >= 0.8; the demo's real "
          f"bass stem: {real_major:.3f}), pYIN pitch {f0_major:.3f}; hop-rate energy {hop:.2%}")
    return {"chord": ch, "sounding": sounding, "d_major": d_major, "f0_major": f0_major, "hop": float(hop)}


def speed(engine, corpus: Path) -> dict:
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline
    from backline.engines.data.slakh import list_tracks

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import x_real_time
    from listen_eval import band_without_bass

    tracks = list_tracks(corpus)
    tr = next((t for t in tracks if t.info()[1] / t.info()[0] >= 30.0),
              max(tracks, key=lambda t: t.info()[1] / t.info()[0]))  # a small corpus: its longest song
    mix = band_without_bass(tr)
    mix = mix.slice(0, min(mix.frames, 30 * mix.sample_rate))
    seconds = mix.seconds
    with tempfile.TemporaryDirectory() as tmp:
        req = GenerationRequest("bass", Path(tmp) / "b", Timeline.constant(120.0, mix.sample_rate), mix=mix,
                                preset="finger", region_stop=mix.frames)
        import resource

        from backline.engines.core.takes import generate_and_write

        def cpu_now() -> float:  # this process and its children (fluidsynth renders in a child process)
            own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

        w0, c0 = time.perf_counter(), cpu_now()
        res = generate_and_write(engine, req)
        wall, cpu = time.perf_counter() - w0, cpu_now() - c0
    print(f"\n4. speed: {seconds:.0f} s in follow mode end to end (listen, plan, render, write files): {wall:.2f} s "
          f"wall ({x_real_time(wall, seconds):.3f}× real time on a shared machine), {cpu:.2f} s of CPU including "
          f"fluidsynth ({x_real_time(cpu, seconds):.3f}× real time on one thread) — target <= 0.15×; stages "
          f"{res.report['timings_s']}")
    return {"wall_x_real_time": x_real_time(wall, seconds), "cpu_x_real_time": x_real_time(cpu, seconds)}


def whole_engine(engine, corpus: Path, clips_n: int, seconds: float) -> dict:
    """Paper 000's whole-engine measures on follow-mode takes: the 25×25 soft-assignment matrix (matching top-1),
    FAD against the real basses, and the grounding ratio (see below)."""
    from bass_eval import Embedder, distances, fad, load_clips

    from backline.engines.analysis.api import match_matrix
    from backline.engines.bass.follow import plan_line, render_line
    from backline.engines.bass.presets import list_presets, load_preset
    from backline.engines.listen import listen

    clips = load_clips(corpus, clips_n, seconds)
    finger = load_preset("finger")
    takes, lines = [], []
    for c in clips:
        lst = listen(c.mix)
        # the engine's default take: the finger preset's style (each song's own style measured 0.44 top-1 once:
        # the matching model scores plain root-fifth lines higher than tumbao or reggae ones)
        notes, _, _ = plan_line(engine.planner(), lst, lst.kicks, style="root_fifth")
        lines.append((notes, lst))
        takes.append(render_line(notes, finger, c.mix.frames, c.mix.sample_rate, lst.bpm)[1])
    n = len(clips)
    mixes, real = [c.mix for c in clips], [c.bass for c in clips]
    out = {}
    print(f"\n5. whole engine on {n} clips of {seconds:g} s from the corpus songs (follow mode, finger preset)")
    for label, basses in (("follow mode", takes), ("real (ceiling)", real)):
        mat = match_matrix(mixes, basses).float().numpy()
        top1 = float((mat.argmax(1) == np.arange(n)).mean())
        out[label] = top1
        print(f"   {label:>15}: matching top-1 {top1:.2f}, mean diagonal p {np.diag(mat).mean():.3f} "
              f"(chance {1 / n:.3f}; target >= 0.8)")
    out["fad"] = fad([r.resampled(44100).with_channels(1) for r in real],
                     [t.resampled(44100).with_channels(1) for t in takes])
    print(f"   FAD (frame log-mel, as bass_eval) follow mode vs real basses: {out['fad']:.1f}")
    # grounding: the same planned line rendered in each preset's sound, compared with that preset's reference
    # (grounded) and with the other presets' references (what an ungrounded take would match as well)
    emb = Embedder("timbre")
    presets = [load_preset(p) for p in list_presets()]
    refs = [emb(read_audio(p.reference)) for p in presets]
    grounded, other, plain = [], [], []
    for (notes, lst), c in list(zip(lines, clips))[:2]:
        outs = [emb(render_line(notes, p, c.mix.frames, c.mix.sample_rate, lst.bpm)[1]) for p in presets]
        default = emb(render_line(notes, None, c.mix.frames, c.mix.sample_rate, lst.bpm)[1])
        for i, ref in enumerate(refs):
            grounded.append(distances(ref, outs[i])[0])
            other += [distances(ref, outs[j])[0] for j in range(len(presets)) if j != i]
            plain.append(distances(ref, default)[0])
    out["grounding_ratio"] = float(np.mean(grounded) / np.mean(other))
    print(f"   grounding (timbre embedding, 2 clips x {len(presets)} presets): cosine distance to the preset's "
          f"reference {np.mean(grounded):.3f} in its own sound vs {np.mean(other):.3f} in the other presets' sounds "
          f"— ratio {out['grounding_ratio']:.3f} (target <= 0.35); one plain finger sound for all: "
          f"{np.mean(plain):.3f}. Free mode: bass_eval.py's grounding table")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=None,
                    help="rendered held-out songs (Slakh layout); default: render 4 synthetic songs once")
    ap.add_argument("--songs", type=int, default=12, help="rendered held-out songs for the pipeline table")
    ap.add_argument("--composed", type=int, default=60, help="composed held-out songs for the planner table")
    ap.add_argument("--planner", type=Path, help="planner weights to evaluate (default: shipped)")
    ap.add_argument("--clips", type=int, default=25, help="clips for the whole-engine table (matching matrix)")
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length for the whole-engine table")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: planner,pipeline,demo,speed,whole")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from bass_speed import cpu_name

    from backline.engines.bass.follow_engine import build
    from backline.engines.bass.planner import load_planner

    skip = set(a.skip.split(","))
    if {"pipeline", "speed", "whole"} - skip:
        from _common import corpus_or_render

        a.corpus, label = corpus_or_render(a.corpus, min_bars=20, max_bars=28)
        print(f"corpus: {label}")
    engine = build("shipped", "cpu")
    engine._planner = load_planner(a.planner) if a.planner else engine.planner()
    print(f"follow-mode evaluation on {cpu_name()} (1 thread); planner: {engine._planner.meta.get('training', {})}")
    if "planner" not in skip:
        planner_table(engine._planner, a.composed)
    if "pipeline" not in skip:
        pipeline_table(engine, a.corpus, a.songs)
    if "demo" not in skip:
        demo_table(engine)
    if "speed" not in skip:
        speed(engine, a.corpus)
    if "whole" not in skip:
        whole_engine(engine, a.corpus, a.clips, a.seconds)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
