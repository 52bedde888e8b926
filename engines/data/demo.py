"""`backline demo`: the bundled demo song, rendered to stems and a mix on first use.

The repository ships only the demo's MIDI and labels (`presets/demo/`, Slakh2100 layout without audio:
8 bars of 4/4 at 100 BPM in D major, bass, drums, piano, guitar, strings/pad and a lead, intro → verse with a
drum fill in bar 4). The first call renders it with fluidsynth into the cache
(`$BACKLINE_CACHE/demo/` or `~/.cache/backline/demo/`), in a temp folder renamed into place when complete,
so two processes racing or a crash never leave half a track. The cache folder name carries a hash of the
shipped files, so an updated demo is rendered afresh.

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

from backline.engines.audio import write_bytes_atomic
from backline.engines.errors import FileExistsRefusal

HELP = "render the bundled demo song into stems and a mix and print where they are"

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
    env = os.environ.get("BACKLINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "backline"


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".mid", ".yaml", ".json")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def demo_song(*, refresh: bool = False) -> Path:
    """The rendered demo track folder (rendered into the cache on first use). Needs fluidsynth + a GM soundfont."""
    from backline.engines.data.slakh import read_metadata
    from backline.engines.data.synth import _write_yaml, missing_parts, render_track_audio
    from backline.engines.render import require_soundfonts

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
    import io

    buf = io.BytesIO()
    out.save(file=buf)
    data = buf.getvalue()
    path = Path(folder) / name
    if path.exists():
        if path.read_bytes() == data:
            return path
        raise FileExistsRefusal("already exists with other content; Backline never overwrites your files",
                                path=path, fix="pass another folder or name")
    return write_bytes_atomic(path, data)


def write_demo_preset(folder: str | Path = DEMO_DIR) -> Path:
    """Maintainer tool: recompose the shipped demo (MIDI, metadata.yaml, extras.json) into `folder`."""
    from backline.engines.data.song import make_song
    from backline.engines.data.synth import choose_fonts, song_rng, write_song_files
    from backline.engines.render import find_soundfonts

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
    parser.description = ("Render the bundled 8-bar demo song (bass, drums, piano, guitar, strings, lead) with "
                          "fluidsynth into the cache and print where its stems and mix are.")
    parser.add_argument("--refresh", action="store_true", help="render again even if the cache has it")
    parser.add_argument("--out", default=None, help="also copy the rendered track into this new folder")


def run(args: argparse.Namespace) -> int:
    track = demo_song(refresh=args.refresh)
    if args.out:
        out = Path(args.out)
        if out.exists():
            raise FileExistsRefusal("already exists; Backline never overwrites your files", path=out,
                                    fix="choose a new folder for --out")
        shutil.copytree(track, out)
        track = out
    from backline.engines.data.slakh import read_track

    tr = read_track(track)
    ex = tr.extras or {}
    print(f"demo song: {ex.get('bars')} bars, {ex.get('key')} {ex.get('mode')}, {ex.get('tempo_bpm'):g} BPM")
    print(f"mix:   {track / 'mix.flac'}")
    for stem in tr.audio_stems():
        print(f"stem:  {stem.audio}  ({stem.role}: {stem.midi_program_name})")
    print(f"MIDI:  {track / 'all_src.mid'}")
    return 0
