"""Accompaniment follow mode measured as a musician would check it (issue 20's table), against two baselines.

    .venv/bin/python benchmarks/accompany_eval.py --corpus HELDOUT [--songs 6] [--roles piano,guitar,strings]
        [--png PNG_FOLDER] [--skip demo,corpus,filosax,speed]

Cases: the demo band without its piano (`backline demo --render-only` renders it), rendered held-out songs of the
corpus composer (`backline data synth --seed 917`, never trained on) with one comping part removed, and the real
recording `../shared/realdev/filosax01` (bass+drums as the band, piano+drums as the real part, chords from the .jams).
Each case runs the engine's follow mode (listening included) and two baselines on the same listening, rendered with
the same instrument and level: random pitches on the take's own rhythm (same register), and block triads on every
beat (close position around C4, no voice leading).

Measures (take vs the real part, where there is one):
- centred-chroma cosine: CQT chroma per 0.5 s, each frame's mean over the 12 pitch classes removed, cosine of the
  whole matrices (the real part against the band on the same measure is printed as the ceiling);
- chord-tone share of note-time on the true chords (the real part's own share beside it);
- D-major share of the take's CQT chroma (demo);
- onsets: median |offset| of the take's MIDI onsets and its audio onsets from the band's beats (the nearest true
  16th-note line, moved by where the band's own audio onsets sit on it), the signed median beside it (+ = late), and
  the real part's audio onsets on the same detector as the baseline (a rendered part sounds within a few ms of the band);
- loudness vs the band minus the real part's (= take LUFS − real part LUFS);
- keys' note-time below C3 (the bass's room); voice leading: mean semitone motion between successive chords;
- the MIDI's tempo and meter; speed: wall and CPU (with fluidsynth) per second of music, one thread, end to end;
- filosax: the take's note-time on the 3 strongest pitch classes of the whole real recording, per 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backline.engines.core.audio import Audio, read_audio  # noqa: E402

ROLE_INSTRUMENT = {"piano": "piano", "guitar": "acoustic guitar", "strings": "strings"}
NOTE_PC = {n: i for i, n in enumerate(("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))}


def chroma_frames(audio: Audio, block_s: float = 0.5) -> np.ndarray:
    import librosa

    y = audio.with_channels(1).resampled(22050).samples[0]
    hop = 512
    c = np.abs(librosa.feature.chroma_cqt(y=y, sr=22050, hop_length=hop, norm=None))
    per = max(1, int(round(block_s * 22050 / hop)))
    n = c.shape[1] // per
    return c[:, : n * per].reshape(12, n, per).mean(-1)


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[1], b.shape[1])
    x = a[:, :n] - a[:, :n].mean(0, keepdims=True)
    y = b[:, :n] - b[:, :n].mean(0, keepdims=True)
    return float((x * y).sum() / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


def chord_tone_share(notes, chord_at) -> float:
    on = tot = 0.0
    for n in notes:
        for t in np.arange(n.start, n.end, 0.05):
            pcs = chord_at(t)
            if pcs:
                tot += 0.05
                on += 0.05 * (n.pitch % 12 in pcs)
    return on / tot if tot else float("nan")


def below_share(notes, pitch: int = 48) -> float:
    tot = sum(n.end - n.start for n in notes)
    return sum(n.end - n.start for n in notes if n.pitch < pitch) / tot if tot else float("nan")


def voice_motion(notes) -> float:
    """Mean semitone motion between successive different chords (attacks of >= 2 notes within 30 ms), voices
    matched from the top."""
    groups: list[list[int]] = []
    last = -1.0
    for n in sorted(notes, key=lambda n: n.start):
        if groups and n.start - last <= 0.03:
            groups[-1].append(n.pitch)
        else:
            groups.append([n.pitch])
            last = n.start
    chords = [sorted(set(g)) for g in groups if len(set(g)) >= 2]
    moves = []
    for a, b in zip(chords, chords[1:]):
        if a == b:
            continue
        k = min(len(a), len(b))
        moves.append(np.mean([abs(x - y) for x, y in zip(a[-k:], b[-k:])]))
    return float(np.mean(moves)) if moves else float("nan")


def grid_offsets_ms(times: np.ndarray, step_s: float, origin: float = 0.0) -> np.ndarray:
    """Signed offsets (ms) of onsets from the nearest line of the true 16th-note grid."""
    rel = (np.asarray(times, np.float64) - origin) / step_s
    return (rel - np.round(rel)) * step_s * 1000


def offset_vs_band_ms(times: np.ndarray, step_s: float, origin: float, band_ms: float) -> float:
    """Median |offset| of onsets from the band's beats: the true grid moved by where the band's own audio onsets sit
    on it (a rendered band sounds a few ms after its MIDI grid)."""
    return float(np.median(np.abs(grid_offsets_ms(times, step_s, origin) - band_ms))) if len(times) else float("nan")


def audio_onsets(audio: Audio) -> np.ndarray:
    import librosa

    y = audio.with_channels(1).samples[0]
    return librosa.onset.onset_detect(y=y, sr=audio.sample_rate, hop_length=128, units="time", backtrack=False)


def midi_tempo(mid) -> tuple[float, str]:
    import mido

    bpm, meter = None, None
    for msg in mid.tracks[0]:
        if msg.type == "set_tempo" and bpm is None:
            bpm = mido.tempo2bpm(msg.tempo)
        if msg.type == "time_signature" and meter is None:
            meter = f"{msg.numerator}/{msg.denominator}"
    return float(bpm or 120.0), meter or "4/4 (none written)"


def baselines(lst, take_notes, register, seed=0):
    """(random pitches on the take's rhythm, block triads on every beat) as notes."""
    from backline.engines.accompany.follow import chord_tones
    from backline.engines.core.transcribe import Note

    rng = np.random.default_rng(seed)
    lo, hi = register
    rand = [Note(int(rng.integers(lo, hi + 1)), n.start, n.end, n.velocity) for n in take_notes]
    block = []
    beat_s = lst.beat_seconds
    for b in lst.beats:
        ch = lst.chord_at(b + 1e-3)
        if ch.root < 0:
            continue
        root = 55 + (ch.root - 7) % 12  # root in G3..F#4, close position
        q = ch.quality if ch.quality in ("maj", "min", "dim", "sus4") else {"7": "maj", "maj7": "maj",
                                                                             "min7": "min"}.get(ch.quality, "maj")
        pcs = chord_tones(ch.root, q)[:3]
        pitches = [root + ((pc - ch.root) % 12) for pc in pcs]
        block += [Note(p, float(b), float(min(lst.duration, b + beat_s - 0.04)), 80) for p in pitches]
    return rand, block


def evaluate(engine, mix: Audio, inst_name: str, *, real_audio: Audio | None, real_notes, chord_at, grid_bpm: float,
             grid_origin: float = 0.0, band_midi=None, png: Path | None = None, label: str = "",
             chords: str = "") -> dict:
    from backline.engines.accompany.follow import INSTRUMENTS, render_part
    from backline.engines.core.effects import loudness_lufs
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline
    from backline.engines.core.transcribe import midi_to_notes

    req = GenerationRequest("accompany", Path("/tmp/unused"), Timeline.constant(120.0, mix.sample_rate), mix=mix,
                            prompt=inst_name, region_stop=mix.frames, midi=band_midi,
                            controls={"mode": "follow", "chords": chords})
    w0 = time.perf_counter()
    res = engine.generate(req)
    wall = time.perf_counter() - w0
    take = res.takes[0]
    (name, audio), = take.stems.items()
    part = take.report["parts"][name]
    notes = midi_to_notes(take.midi)
    bpm, meter = midi_tempo(take.midi)
    from backline.engines.accompany.engine import CONTROLS

    lst = engine.listen(req, {c.name: c.default for c in CONTROLS} | {"chords": chords}, mix)  # for the baselines
    inst = INSTRUMENTS[part["instrument"]]
    rand, block = baselines(lst, notes, tuple(part["register"]))
    band_lufs = loudness_lufs(mix)
    target = band_lufs + inst.level_db
    rows = {"take": (notes, audio)}
    for key, ns in (("random pitches", rand), ("block triads", block)):
        _d, wet, _l = render_part(ns, inst, mix.frames, mix.sample_rate, lst.bpm, target_lufs=target)
        rows[key] = (ns, wet)
    step_s = 60.0 / grid_bpm / 4
    real_chroma = chroma_frames(real_audio) if real_audio is not None else None
    band_ms = float(np.median(grid_offsets_ms(audio_onsets(mix), step_s, grid_origin)))
    out = {"label": label, "wall_per_s": wall / mix.seconds, "midi_bpm": bpm, "midi_meter": meter,
           "heard": f"{lst.bpm:.2f} BPM {lst.numerator}/{lst.denominator} {lst.key_name}", "rows": {},
           "band_ms": band_ms, "heard_bar_one": lst.bar_one}
    if real_audio is not None:
        real_on = grid_offsets_ms(audio_onsets(real_audio), step_s, grid_origin) - band_ms
        out["real_onset_audio_ms"] = float(np.median(np.abs(real_on))) if len(real_on) else float("nan")
        out["real_onset_audio_signed_ms"] = float(np.median(real_on)) if len(real_on) else float("nan")
        out["real_vs_band_cos"] = centred_cosine(real_chroma, chroma_frames(mix))
        out["real_lufs_vs_band"] = loudness_lufs(real_audio) - band_lufs
    if real_notes:
        out["real_chord"] = chord_tone_share(real_notes, chord_at)
        out["real_motion"] = voice_motion(real_notes)
        out["real_below_c3"] = below_share(real_notes)
    for key, (ns, wav) in rows.items():
        ch = chroma_frames(wav)
        r = {"chord": chord_tone_share(ns, chord_at) if chord_at else float("nan"),
             "cos": centred_cosine(ch, real_chroma) if real_chroma is not None else float("nan"),
             "d_major": float(ch[[2, 4, 6, 7, 9, 11, 1]].sum() / ch.sum()),
             "motion": voice_motion(ns), "below_c3": below_share(ns),
             "lufs_vs_real": loudness_lufs(wav) - loudness_lufs(real_audio) if real_audio is not None else float("nan"),
             "onset_midi_ms": offset_vs_band_ms(np.array([n.start for n in ns]), step_s, grid_origin, band_ms),
             "onset_audio_ms": offset_vs_band_ms(audio_onsets(wav), step_s, grid_origin, band_ms),
             "onset_audio_signed_ms": float(np.median(grid_offsets_ms(audio_onsets(wav), step_s, grid_origin)) - band_ms),
             "notes": len(ns), "_notes": ns}
        out["rows"][key] = r
    if png is not None:
        piano_roll(png, rows, lst, real_notes, label)
    return out


def piano_roll(path: Path, rows, lst, real_notes, label: str, px_s: float = 50.0) -> None:
    """A PNG (the project's encoder, `analysis.tagger.encode_png`): top, the piano roll MIDI 40-90 of the take (blue)
    over the real part (grey) with the heard chord changes (red) and C3 (a dotted line); middle, the take's CQT
    (log frequency, C2-C8, dB); bottom, its chroma per 0.5 s (C at the bottom)."""
    import librosa

    from backline.engines.analysis.tagger import encode_png

    wav = rows["take"][1]
    width = int(wav.seconds * px_s) + 1
    lo, hi, ph = 40, 90, 4
    roll = np.full(((hi - lo) * ph, width, 3), 255, np.uint8)

    def draw(notes, colour):
        for n in notes or []:
            if lo <= n.pitch < hi:
                y = (hi - 1 - n.pitch) * ph
                roll[y:y + ph - 1, int(n.start * px_s):max(int(n.start * px_s) + 1, int(n.end * px_s))] = colour

    draw(real_notes, (190, 190, 190))
    draw(rows["take"][0], (30, 90, 200))
    for s, _e, _ch in lst.chord_segments():
        roll[:, min(width - 1, int(s * px_s))] = (220, 40, 40)
    roll[(hi - 1 - 48) * ph + ph - 1, ::4] = (0, 0, 0)
    y = wav.with_channels(1).resampled(22050).samples[0]
    c = librosa.amplitude_to_db(np.abs(librosa.cqt(y, sr=22050, hop_length=512, fmin=librosa.note_to_hz("C2"),
                                                   n_bins=72)), ref=np.max)
    c = np.clip((c + 60) / 60, 0, 1)[::-1]
    cols = np.clip(np.rint(np.arange(width) / px_s * 22050 / 512).astype(int), 0, c.shape[1] - 1)
    spec = (255 * (1 - np.repeat(c[:, cols], 2, 0)))[..., None].repeat(3, -1).astype(np.uint8)
    ch = chroma_frames(wav)
    ch = ch / (ch.max() + 1e-9)
    cols = np.clip((np.arange(width) / px_s / 0.5).astype(int), 0, ch.shape[1] - 1)
    chroma = (255 * (1 - np.repeat(ch[::-1][:, cols], 8, 0)))[..., None].repeat(3, -1).astype(np.uint8)
    gap = np.full((6, width, 3), 120, np.uint8)
    path.write_bytes(encode_png(np.concatenate([roll, gap, spec, gap, chroma], 0)))
    print(f"   picture: {path} ({label})")


def print_case(r: dict) -> None:
    print(f"\n== {r['label']}: heard {r['heard']}; MIDI written at {r['midi_bpm']:.2f} BPM {r['midi_meter']}; "
          f"{r['wall_per_s']:.3f} s wall per second of music (listening included); the band's audio onsets sit "
          f"{r['band_ms']:+.1f} ms from the true grid (heard bar one {r['heard_bar_one']:.3f} s)")
    if "real_vs_band_cos" in r:
        print(f"   real part: centred-chroma cosine with the band {r['real_vs_band_cos']:.3f}, "
              f"loudness vs band {r['real_lufs_vs_band']:+.1f} dB"
              + (f", chord tones {r['real_chord']:.3f}, voice motion {r['real_motion']:.2f} st, below C3 "
                 f"{r['real_below_c3']:.3f}" if "real_chord" in r else "")
              + f", audio onsets vs the band's {r['real_onset_audio_ms']:.1f} ms ({r['real_onset_audio_signed_ms']:+.1f})")
    print(f"   {'':<15} {'cos(real)':>9} {'chord':>6} {'Dmaj':>5} {'motion':>6} {'<C3':>5} {'dB-real':>7} "
          f"{'MIDI-band':>9} {'audio-band':>10} {'(signed)':>8} {'notes':>5}")
    for key, x in r["rows"].items():
        print(f"   {key:<15} {x['cos']:>9.3f} {x['chord']:>6.3f} {x['d_major']:>5.2f} {x['motion']:>6.2f} "
              f"{x['below_c3']:>5.3f} {x['lufs_vs_real']:>+7.1f} {x['onset_midi_ms']:>7.1f}ms {x['onset_audio_ms']:>8.1f}ms "
              f"{x['onset_audio_signed_ms']:>+7.1f} {x['notes']:>5}")


def corpus_cases(engine, corpus: Path, songs: int, roles: list[str], png_dir: Path | None) -> list[dict]:
    import pretty_midi

    from backline.engines.core.transcribe import Note
    from backline.engines.data.slakh import list_tracks

    out = []
    for tr in list_tracks(corpus)[:songs]:
        ex = tr.extras
        bar_s = ex["time_signature"][0] * 4.0 / ex["time_signature"][1] * 60.0 / ex["tempo_bpm"]
        chords = {c["bar"]: set(c["pitch_classes"]) for c in ex["chords"]}
        stems = tr.audio_stems()
        for role in roles:
            part = [s for s in stems if s.role == role]
            if not part:
                continue
            audios = {s.id: read_audio(s.audio) for s in stems}
            n = min(a.frames for a in audios.values())
            band = Audio(np.sum([a.samples[:, :n] for k, a in audios.items() if k != part[0].id], 0).astype(np.float32),
                         44100)
            real = Audio(audios[part[0].id].samples[:, :n], 44100)
            pm = pretty_midi.PrettyMIDI(str(tr.path / "MIDI" / f"{part[0].id}.mid"))
            real_notes = [Note(x.pitch, x.start, x.end, x.velocity) for i in pm.instruments for x in i.notes]
            r = evaluate(engine, band, ROLE_INSTRUMENT[role], real_audio=real, real_notes=real_notes,
                         chord_at=lambda t, c=chords, b=bar_s: c.get(int(t // b) + 1, set()),
                         grid_bpm=ex["tempo_bpm"], label=f"{tr.name} without its {role} ({ex['styles'][part[0].id]})",
                         png=(png_dir / f"{tr.name}_{role}.png") if png_dir else None)
            print_case(r)
            out.append(r | {"role": role})
    return out


def demo_case(engine, png_dir: Path | None) -> dict:
    import glob

    import pretty_midi

    from backline.engines.core.transcribe import Note
    from backline.engines.data.slakh import read_track

    folders = sorted(glob.glob(str(Path.home() / ".cache/backline/demo/demo-*")))
    if not folders:
        print("demo not rendered: run `backline demo --render-only` first")
        return {}
    tr = read_track(folders[-1])
    ex = tr.extras
    stems = tr.audio_stems()
    piano = next(s for s in stems if s.role == "piano")
    audios = {s.id: read_audio(s.audio) for s in stems}
    n = min(a.frames for a in audios.values())
    band = Audio(np.sum([a.samples[:, :n] for k, a in audios.items() if k != piano.id], 0).astype(np.float32), 44100)
    pm = pretty_midi.PrettyMIDI(str(tr.path / "MIDI" / f"{piano.id}.mid"))
    real_notes = [Note(x.pitch, x.start, x.end, x.velocity) for i in pm.instruments for x in i.notes]
    bar_s = 4 * 60.0 / ex["tempo_bpm"]
    chords = {c["bar"]: set(c["pitch_classes"]) for c in ex["chords"]}
    r = evaluate(engine, band, "piano", real_audio=Audio(audios[piano.id].samples[:, :n], 44100), real_notes=real_notes,
                 chord_at=lambda t: chords.get(int(t // bar_s) + 1, set()), grid_bpm=ex["tempo_bpm"],
                 label="demo band without its piano, --prompt piano", png=(png_dir / "demo_piano.png") if png_dir else None)
    print_case(r)
    return r


def filosax_case(engine, realdev: Path, png_dir: Path | None) -> dict:
    import json

    import mir_eval

    band = read_audio(realdev / "filosax01_bass_drums.wav")
    real = read_audio(realdev / "filosax01_piano_drums.wav")
    n = min(band.frames, real.frames)
    band, real = band.slice(0, n), real.slice(0, n)
    jams = json.loads((realdev / "filosax01_annotations.jams").read_text())
    segs = []
    for a in jams["annotations"]:
        if a["namespace"] == "chord":
            for d in a["data"]:
                root, bitmap, _ = mir_eval.chord.encode(d["value"])
                segs.append((d["time"], d["time"] + d["duration"], {(root + i) % 12 for i in np.flatnonzero(bitmap)}))

    def chord_at(t):
        return next((p for s, e, p in segs if s <= t < e), set())

    beats = [d["time"] for a in jams["annotations"] if a["namespace"] == "beat" for d in a["data"]]
    bpm = 60.0 / float(np.median(np.diff(beats))) * 4 if len(beats) > 1 else 120.0  # bar lines annotated
    whole = chroma_frames(Audio(band.samples + real.samples, band.sample_rate))
    out = {}
    for chart, what in (("", "listened chords"), ("C#7 | C#7 | C7", 'the chart given: --chords "C#7 | C#7 | C7"')):
        r = evaluate(engine, band, "piano", real_audio=real, real_notes=None, chord_at=chord_at, grid_bpm=bpm,
                     grid_origin=beats[0] if beats else 0.0, chords=chart,
                     label=f"filosax01: bass+drums as the band, --prompt piano, {what}",
                     png=(png_dir / f"filosax_piano{'_chart' if chart else ''}.png") if png_dir else None)
        for x in r["rows"].values():
            x["top3"] = top3_share(x, whole)
        print_case(r)
        print("   note-time on the 3 strongest pitch classes of the real recording per 0.5 s: "
              + ", ".join(f"{k} {x['top3']:.3f}" for k, x in r["rows"].items()) + " (target >= 0.7; one 5-s clip)")
        out[chart or "listened"] = r
    return out


def top3_share(row: dict, whole: np.ndarray, block_s: float = 0.5) -> float:
    """The take's note-time (sampled every 50 ms) on the 3 strongest pitch classes of the real recording in the
    same 0.5 s frame."""
    on = tot = 0.0
    for n in row["_notes"]:
        for t in np.arange(n.start, n.end, 0.05):
            f = min(int(t / block_s), whole.shape[1] - 1)
            tot += 1
            on += n.pitch % 12 in set(np.argsort(whole[:, f])[-3:].tolist())
    return on / tot if tot else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="rendered held-out songs (backline data synth --seed 917)")
    ap.add_argument("--songs", type=int, default=6)
    ap.add_argument("--roles", default="piano", help="parts to remove and play, comma list: piano,guitar,strings")
    here = Path(__file__).resolve()
    ap.add_argument("--realdev", type=Path, default=next(
        (p / "shared" / "realdev" for p in (here.parents[2], here.parents[3]) if (p / "shared" / "realdev").is_dir()),
        here.parents[2] / "shared" / "realdev"), help="the real recordings (../shared/realdev of the checkout)")
    ap.add_argument("--png", type=Path, help="folder for piano-roll / spectrogram PNGs of the takes")
    ap.add_argument("--planner", type=Path, help="planner weights (default: shipped)")
    ap.add_argument("--skip", default="", help="comma list: demo,corpus,filosax,speed")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import corpus_or_render, hardware

    from backline.engines.accompany.engine import build
    from backline.engines.accompany.planner import load_planner

    engine = build("shipped")
    engine._planner = load_planner(a.planner) if a.planner else engine.planner()
    print(f"accompaniment follow-mode evaluation on {hardware()}")
    print(f"planner: {engine._planner.meta.get('training', {})}")
    if a.png:
        a.png.mkdir(parents=True, exist_ok=True)
    skip = set(a.skip.split(","))
    results = []
    if "demo" not in skip:
        results.append(demo_case(engine, a.png))
    if "corpus" not in skip or "speed" not in skip:
        a.corpus, label = corpus_or_render(a.corpus, songs=a.songs)  # a fresh clone renders a few songs itself
        print(label)
    if "corpus" not in skip:
        cases = corpus_cases(engine, a.corpus, a.songs, a.roles.split(","), a.png)
        summarise(cases)
    if "filosax" not in skip and (a.realdev / "filosax01_bass_drums.wav").is_file():
        filosax_case(engine, a.realdev, a.png)
    if "speed" not in skip:
        speed(engine, a.corpus)
    return 0


def summarise(cases: list[dict]) -> None:
    if not cases:
        return
    print(f"\n== held-out songs: mean over {len(cases)} parts")
    keys = ("cos", "chord", "motion", "below_c3", "lufs_vs_real", "onset_midi_ms", "onset_audio_ms",
            "onset_audio_signed_ms")
    for row in cases[0]["rows"]:
        m = {k: np.nanmean([c["rows"][row][k] for c in cases]) for k in keys}
        print(f"   {row:<15} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items()))
    print(f"   real part       chord {np.nanmean([c.get('real_chord', np.nan) for c in cases]):.3f}  motion "
          f"{np.nanmean([c.get('real_motion', np.nan) for c in cases]):.3f}  cos(real, band) "
          f"{np.nanmean([c['real_vs_band_cos'] for c in cases]):.3f}  onset_audio_ms "
          f"{np.nanmean([c['real_onset_audio_ms'] for c in cases]):.3f}  onset_audio_signed_ms "
          f"{np.nanmean([c['real_onset_audio_signed_ms'] for c in cases]):.3f}")
    for role in sorted({c["role"] for c in cases}):
        sub = [c for c in cases if c["role"] == role]
        ratio = np.nanmean([c["rows"]["take"]["chord"] for c in sub]) / np.nanmean([c["real_chord"] for c in sub])
        print(f"   {role}: chord-tone share take / real part = {ratio:.3f} (target >= 0.9), MIDI tempo error "
              f"{np.mean([abs(c['midi_bpm'] - float(c['heard'].split()[0])) for c in sub]):.3f} BPM vs heard")


def speed(engine, corpus: Path) -> None:
    import resource

    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline
    from backline.engines.data.slakh import list_tracks

    tr = next(t for t in list_tracks(corpus) if t.info()[1] / t.info()[0] >= 30.0)
    stems = [s for s in tr.audio_stems() if s.role != "piano"]
    audios = [read_audio(s.audio) for s in stems]
    n = min(a.frames for a in audios)
    mix = Audio(np.sum([a.samples[:, :n] for a in audios], 0).astype(np.float32), 44100).slice(0, 30 * 44100)

    def cpu_now() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    req = GenerationRequest("accompany", Path("/tmp/unused"), Timeline.constant(120.0, 44100), mix=mix,
                            prompt="piano", region_stop=mix.frames, controls={"mode": "follow"})
    w0, c0 = time.perf_counter(), cpu_now()
    res = engine.generate(req)
    wall, cpu = time.perf_counter() - w0, cpu_now() - c0
    print(f"\n== speed: 30 s of {tr.name} in follow mode (listen, plan, voice, render; one thread): {wall:.2f} s wall "
          f"({wall / 30:.3f} x real time on a shared machine), {cpu:.2f} s CPU incl. fluidsynth ({cpu / 30:.3f} x); "
          f"stages {res.report['timings_s']} — target <= 0.15 x")


if __name__ == "__main__":
    sys.exit(main())
