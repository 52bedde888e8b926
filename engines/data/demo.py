"""`backline demo`: the bundled demo song, rendered to stems and a mix on first use.

The repository ships only the demo's MIDI and labels (`presets/demo/`, Slakh2100 layout without audio:
8 bars of 4/4 at 100 BPM in D major, bass, drums, piano, guitar, strings/pad and a lead, intro → verse with a
drum fill in bar 4). The first call renders it with fluidsynth into the cache
(`$BACKLINE_CACHE/demo/` or `~/.cache/backline/demo/`), in a temp folder renamed into place when complete,
so two processes racing or a crash never leave half a track. The cache folder name carries a hash of the
shipped files, so an updated demo is rendered afresh.

`backline demo` then does what Backline does in a session, on the demo: it takes the band *without* its bass
as "the mix", lists the instruments the analysis hears and the parts it misses, generates a bass line for it
(shipped bass model, preset `finger`) and a drum part with fills from the band's MIDI (shipped drum models),
and prints where the WAV, MIDI and reports are (a new folder under `~/.cache/backline/takes/` unless `--takes`
names one). `--render-only` stops after rendering.

`demo_song()` returns the rendered track folder (mix.flac, stems/, MIDI/, metadata.yaml, extras.json) for
other code and tests; `demo_midi_without_drums(folder)` writes the band MIDI without its drum track, the
input the drum engine expects.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import uuid
from pathlib import Path

import mido

from backline.engines.core.audio import Audio, read_audio, write_audio, write_bytes_atomic
from backline.engines.core.errors import FileExistsRefusal
from backline.engines.core.midi import midi_bytes
from backline.engines.core.protocol import GenerationRequest, cache_dir
from backline.engines.core.render import find_soundfonts, require_soundfonts
from backline.engines.core.timeline import Timeline
from backline.engines.data.song import make_song
from backline.engines.data.synth import (
    _write_yaml,
    choose_fonts,
    missing_parts,
    render_track_audio,
    song_rng,
    write_song_files,
)
from backline.engines.registry import build_engine
from backline.engines.runner import generate_in_terminal

HELP = "the main job on the bundled demo song: render it, hear what is missing, generate bass and drums"

DEMO_DIR = Path(__file__).resolve().parents[2] / "presets" / "demo"
#: How the shipped demo was composed (see `write_demo_preset`): corpus composer, this seed and song index.
DEMO_SEED, DEMO_INDEX = 2026, 10


def _preset_dir() -> Path:
    try:
        from importlib.resources import files

        path = Path(str(files("backline.presets") / "demo"))
        if (path / "metadata.yaml").is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return DEMO_DIR


def cache_root() -> Path:
    return cache_dir("demo").parent


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".mid", ".yaml", ".json")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def demo_song(*, refresh: bool = False) -> Path:
    """The rendered demo track folder (rendered into the cache on first use). Needs fluidsynth + a GM soundfont."""
    # lazy: pulls torch; keeps the host's demo path light
    from backline.engines.data.slakh import read_metadata
    src = _preset_dir()
    final = cache_root() / "demo" / f"demo-{_fingerprint(src)}"
    if final.is_dir() and not refresh and not missing_parts(final):
        return final
    fonts = require_soundfonts()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__init__.py", "__pycache__", "README*"))
        meta = render_track_audio(tmp, read_metadata(tmp), fonts)
        _write_yaml(tmp / "metadata.yaml", meta)
        if final.exists():  # refresh, or a broken earlier render: replace it (it is our cache, not user data)
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if missing_parts(final):  # another process did not win the race either: report it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def demo_midi_without_drums(folder: str | Path, *, name: str = "demo_band.mid") -> Path:
    """Write the demo's all-parts MIDI minus the drum track (channel 10) into `folder`; return its path.

    An existing file with the same content is reused; a different one is never overwritten.
    """
    src = mido.MidiFile(str(_preset_dir() / "all_src.mid"))
    out = mido.MidiFile(type=1, ticks_per_beat=src.ticks_per_beat)
    for track in src.tracks:
        channels = {m.channel for m in track if hasattr(m, "channel")}
        if channels != {9}:
            out.tracks.append(track)
    data = midi_bytes(out)
    path = Path(folder) / name
    if path.exists():
        if path.read_bytes() == data:
            return path
        raise FileExistsRefusal("already exists with other content; Backline never overwrites your files",
                                path=path, fix="pass another folder or name")
    return write_bytes_atomic(path, data)


def write_demo_preset(folder: str | Path = DEMO_DIR) -> Path:
    """Maintainer tool: recompose the shipped demo (MIDI, metadata.yaml, extras.json) into `folder`."""
    folder = Path(folder)
    song = make_song(song_rng(DEMO_SEED, DEMO_INDEX), min_bars=8, max_bars=8, meter=(4, 4), bpm=100,
                     with_lead=True)
    fonts = find_soundfonts()
    stem_fonts = choose_fonts(song_rng(DEMO_SEED, DEMO_INDEX, 1), song, fonts) if fonts else \
        ["FluidR3_GM.sf2"] * len(song.parts)
    for sub in ("MIDI",):
        shutil.rmtree(folder / sub, ignore_errors=True)
    for f in ("all_src.mid", "extras.json", "metadata.yaml"):
        (folder / f).unlink(missing_ok=True)
    write_song_files(song, folder, stem_fonts, [0.0] * len(song.parts), uid="backline-demo")
    return folder


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("The main job on the bundled 8-bar demo song (bass, drums, piano, guitar, strings, lead): "
                          "render it with fluidsynth (cached), analyse the band without its bass, generate a bass "
                          "line for it and a drum part with fills, and print where every file is.")
    parser.add_argument("--refresh", action="store_true", help="render again even if the cache has it")
    parser.add_argument("--out", default=None, help="also copy the rendered track into this new folder")
    parser.add_argument("--render-only", action="store_true", help="only render the song; generate nothing")
    parser.add_argument("--takes", default=None,
                        help="new folder for the generated takes (default: ~/.cache/backline/takes/demo-TIME)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the generated takes")


def _takes_folder(arg: str | None) -> Path:
    if arg:
        path = Path(arg)
    else:
        import time

        root = cache_root() / "takes"
        path = root / time.strftime("demo-%Y%m%d-%H%M%S")
    if path.exists():
        raise FileExistsRefusal("already exists; Backline never overwrites your files", path=path,
                                fix="choose a new folder for --takes")
    path.mkdir(parents=True)
    return path


def generate_on_demo(track: Path, takes: Path, seed: int = 0) -> dict[str, Path]:
    """Analyse the demo band without its bass, then generate bass (from that audio) and drums (from the band's
    MIDI) into `takes`; return the written files by name. Progress goes to a bar per engine."""
    import numpy as np

    # lazy: pulls torch; keeps the host's demo path light
    from backline.engines.data.slakh import read_track
    tr = read_track(track)
    ex = tr.extras or {}
    stems = tr.audio_stems()
    audio = [(st.role, read_audio(st.audio)) for st in stems]
    frames = min(a.frames for _, a in audio)
    rate = audio[0][1].sample_rate
    mix = Audio(np.sum([a.samples[:, :frames] for r, a in audio if r != "bass"], axis=0).astype(np.float32), rate)
    # the drums play from the band's MIDI; the band's audio without drums is what their level is balanced against
    no_drums = Audio(np.sum([a.samples[:, :frames] for r, a in audio if r != "drums"], axis=0).astype(np.float32), rate)
    files: dict[str, Path] = {"band without bass": write_audio(takes / "band_without_bass.wav", mix)}

    # lazy: pulls torch; keeps the host's demo path light
    from backline.engines.analysis.api import analyze

    report = analyze(mix)
    heard = ", ".join(f"{t} {report.fine[t]:.0%}" for t in report.present_fine) or report.message
    print(f"analysis of the band without its bass ({report.analysis_seconds:.2f} s): {heard}")
    print("  parts playing: " + ", ".join(f"{p} {v:.0%}" for p, v in report.parts.items()))
    print(f"  missing parts: {', '.join(report.missing_parts) or 'none'}"
          + (f"; suggestion: {report.suggestion}" if report.suggestion else ""))

    timeline = Timeline.constant(float(ex.get("tempo_bpm", 100.0)), mix.sample_rate, *ex.get("time_signature", [4, 4]))
    jobs = (
        ("bass", GenerationRequest("bass", takes / "bass", timeline, region_start=0, region_stop=mix.frames, mix=mix,
                                   preset="finger", seed=seed)),
        ("drums", GenerationRequest("drums", takes / "drums", timeline, midi=demo_midi_without_drums(takes),
                                    mix=no_drums, seed=seed)),
    )
    for name, request in jobs:
        result = generate_in_terminal(build_engine(name), request)
        heard = result.report.get("listening")
        if heard:  # the bass engine listened for tempo, bar one, key and chords (no --bpm given)
            print(f"heard in the band: {heard['bpm']:g} BPM {heard['meter']}, bar one at {heard['bar_one_s']:.2f} s, "
                  f"{heard['key']}; chords {heard['chords']}")
        for take in result.takes:
            for stem, path in take.stems.items():
                files[file_label(name, stem)] = path
            if take.midi is not None:
                files[f"{name} MIDI"] = take.midi
            files[f"{name} report"] = Path(take.report["files"]["report"])
    return files


def file_label(engine: str, stem: str) -> str:
    """'bass audio' for the bass engine's bass stem, 'accompany piano audio' for another stem: never 'bass bass'."""
    return f"{engine} audio" if stem == engine else f"{engine} {stem} audio"


def run(args: argparse.Namespace) -> int:
    track = demo_song(refresh=args.refresh)
    if args.out:
        out = Path(args.out)
        if out.exists():
            raise FileExistsRefusal("already exists; Backline never overwrites your files", path=out,
                                    fix="choose a new folder for --out")
        shutil.copytree(track, out)
        track = out
    # lazy: pulls torch; keeps the host's demo path light
    from backline.engines.data.slakh import read_track

    tr = read_track(track)
    ex = tr.extras or {}
    print(f"demo song: {ex.get('bars')} bars, {ex.get('key')} {ex.get('mode')}, {ex.get('tempo_bpm'):g} BPM")
    print(f"mix:   {track / 'mix.flac'}")
    for stem in tr.audio_stems():
        print(f"stem:  {stem.audio}  ({stem.role}: {stem.midi_program_name})")
    print(f"MIDI:  {track / 'all_src.mid'}")
    if args.render_only:
        return 0
    takes = _takes_folder(args.takes)
    files = generate_on_demo(track, takes, seed=args.seed)
    print(f"takes: {takes}  (drag the WAV and MIDI files onto your DAW's timeline at bar 1)")
    for name, path in files.items():
        print(f"  {name:<20} {path}")
    return 0
