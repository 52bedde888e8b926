"""Build the rendered multitrack corpus in the Slakh2100 layout.

One track folder per song::

    TrackNNNNN/
      all_src.mid          every part in one type-1 MIDI file
      MIDI/SNN.mid         one part per file (conductor track + the part)
      stems/SNN.flac       44.1 kHz stereo, 24-bit, one per part
      mix.flac             the sum of the stem files
      metadata.yaml        Slakh's fields (inst_class, program_num, is_drum, midi_program_name, ...)
      extras.json          our labels: key, tempo, meter, sections, chords per bar, fills, styles, roles

Levels (documented because the tests check `mix == sum(stems)`): each stem is rendered dry by fluidsynth
(float32), then scaled to a per-role target RMS (measured over its non-silent blocks) with a seeded ±2.5 dB
offset, then **one global gain** is applied to every stem so that neither the mix nor any stem peaks above
-1 dBFS. The stems are rounded to the 24-bit grid *before* summing, so `mix.flac` is exactly the sum of the
stem files as decoded (sums of 24-bit values are again on the grid). `metadata.yaml` records each stem's
gain (`gain`) and the global gain (`overall_gain`).

Determinism and resumption: song `i` of a run uses the seed sequence `[seed, i]` (its soundfont choice
uses `[seed, i, 1]`), so a song does not depend on which other songs were built, in which process or in
which order. A track is built in a hidden `.TrackNNNNN.partial-*` folder and renamed into place when
complete, so a crash never leaves a half track under the final name; on the next run leftovers are
removed, any TrackNNNNN folder that lacks files is reported and rebuilt, and complete tracks are kept.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml

from backline.engines.core.audio import Audio, write_audio, write_bytes_atomic
from backline.engines.core.errors import Cancelled, ConfigError, DatasetError
from backline.engines.core.render import SAMPLE_RATE, Soundfont, render_midi, require_soundfonts
from backline.engines.data.calibrate_fonts import MAX_LAG_S
from backline.engines.data.gm import inst_class, program_name
from backline.engines.data.midi import midi_seconds, part_midi_bytes, song_midi_bytes
from backline.engines.data.song import Song, make_song

GENERATOR_VERSION = 3  # v1: drum notes cut after 60 ticks (TimGM6mb hat clicks); v2: wider program choice
#: Target RMS (dBFS, over non-silent blocks) per role before the global gain.
ROLE_LEVEL_DB = {"bass": -19.0, "drums": -17.0, "piano": -22.0, "guitar": -23.0, "strings": -24.0, "lead": -21.0}
TARGET_PEAK = 10 ** (-1.0 / 20)  # -1 dBFS
SILENCE_PEAK = 1e-4
CORPUS_MANIFEST = "corpus.json"
FULL_SCALE = 2 ** 23  # 24-bit FLAC grid


def track_name(index: int) -> str:
    """Slakh numbers tracks from 1: song index 0 is Track00001."""
    return f"Track{index + 1:05d}"


def song_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(stream)]))


# ------------------------------------------------------------------------------------------ track writing
def write_song_files(song: Song, folder: Path, fonts: list[Soundfont | str], level_offsets_db: list[float],
                     *, uid: str) -> dict:
    """Write MIDI/, all_src.mid, extras.json and an audio-less metadata.yaml; return the metadata dict."""
    (folder / "MIDI").mkdir(parents=True, exist_ok=True)
    ids = [f"S{i:02d}" for i in range(len(song.parts))]
    stems = {}
    for sid, part, font, off in zip(ids, song.parts, fonts, level_offsets_db):
        write_bytes_atomic(folder / "MIDI" / f"{sid}.mid", part_midi_bytes(song, part))
        fname = font.path.name if isinstance(font, Soundfont) else str(font)
        stems[sid] = {
            "audio_rendered": False,
            "inst_class": inst_class(part.program, part.is_drum),
            "is_drum": part.is_drum,
            "midi_program_name": program_name(part.program, part.is_drum),
            "midi_saved": True,
            "plugin_name": fname,
            "program_num": int(part.program),
            "target_rms_dbfs": round(ROLE_LEVEL_DB[part.role] + off, 3),
        }
    write_bytes_atomic(folder / "all_src.mid", song_midi_bytes(song))
    write_bytes_atomic(folder / "extras.json", (json.dumps(song.extras(ids), indent=1) + "\n").encode())
    meta = {"UUID": uid, "audio_dir": "stems", "midi_dir": "MIDI", "normalized": False,
            "overall_gain": None, "target_peak": -1.0, "generator": f"backline.engines.data.synth v{GENERATOR_VERSION}",
            "stems": stems}
    _write_yaml(folder / "metadata.yaml", meta)
    return meta


def _write_yaml(path: Path, data: dict) -> None:
    if path.exists():
        path.unlink()
    write_bytes_atomic(path, yaml.safe_dump(data, sort_keys=True).encode())


def _active_rms_db(x: np.ndarray, block: int = 2048) -> float:
    mono = np.abs(x).max(axis=0)
    n = len(mono) // block
    if n == 0:
        return -120.0
    rms = np.sqrt(np.mean(np.square(x[:, : n * block].reshape(x.shape[0], n, block), dtype=np.float64), axis=(0, 2)))
    active = rms[rms > rms.max() * 10 ** (-40 / 20)]
    return float(20 * np.log10(max(np.sqrt(np.mean(np.square(active))), 1e-12)))


def _quantise(x: np.ndarray) -> np.ndarray:
    return (np.clip(np.round(x * FULL_SCALE), -FULL_SCALE, FULL_SCALE - 1) / FULL_SCALE).astype(np.float32)


def render_track_audio(folder: Path, meta: dict, fonts: dict[str, Soundfont], *,
                       sample_rate: int = SAMPLE_RATE, cancel: Callable[[], bool] | None = None) -> dict:
    """Render every stem listed in `meta` from MIDI/SNN.mid, level them, write stems/ and mix.flac.

    Returns the metadata with `audio_rendered`, `gain`, `rms_dbfs` and `overall_gain` filled in. (Slakh's
    `integrated_loudness` is left out: torchaudio's BS.1770 filter took longer than fluidsynth's render.)
    """
    frames = int(round(midi_seconds(folder / "all_src.mid") * sample_rate))
    by_file = {f.path.name: f for f in fonts.values()}
    raw: dict[str, np.ndarray] = {}
    gains: dict[str, float] = {}
    for sid, stem in meta["stems"].items():
        if cancel is not None and cancel():
            raise Cancelled()
        font = by_file.get(stem["plugin_name"]) or fonts.get(Path(stem["plugin_name"]).stem)
        if font is None:
            font = next(iter(fonts.values()))
            stem["plugin_name"] = font.path.name
        audio = render_midi(folder / "MIDI" / f"{sid}.mid", font, sample_rate=sample_rate, frames=frames)
        if audio.peak() < SILENCE_PEAK:
            raise DatasetError(f"stem {sid} ({stem['midi_program_name']}) rendered silent with {font.name}",
                               path=folder, fix="check the soundfont install (apt-get install --reinstall fluid-soundfont-gm)")
        gains[sid] = 10 ** ((stem.get("target_rms_dbfs", -20.0) - _active_rms_db(audio.samples)) / 20)
        raw[sid] = audio.samples * np.float32(gains[sid])
    mix = np.sum(list(raw.values()), axis=0)
    peak = max([float(np.abs(mix).max())] + [float(np.abs(x).max()) for x in raw.values()])
    overall = min(1.0, TARGET_PEAK / max(peak, 1e-9))
    (folder / "stems").mkdir(exist_ok=True)
    total = np.zeros((2, frames), np.float64)
    for sid, x in raw.items():
        q = _quantise(x * np.float32(overall))
        total += q
        write_audio(folder / "stems" / f"{sid}.flac", Audio(q, sample_rate), bit_depth=24)
        stem = meta["stems"][sid]
        stem["audio_rendered"] = True
        stem["gain"] = round(gains[sid] * overall, 6)
        stem["rms_dbfs"] = round(_active_rms_db(q), 2)
    write_audio(folder / "mix.flac", Audio(total.astype(np.float32), sample_rate), bit_depth=24)
    meta["overall_gain"] = round(overall, 6)
    meta["normalized"] = True
    meta["sample_rate"] = sample_rate
    return meta


#: Drum kits are judged by hand: TimGM6mb's closed hi-hat sample ends with a click ~200 ms after each hit,
#: a phantom onset between real ones (found by the onset test), so its kit is not used.
DRUM_KIT_LAGS = {"TimGM6mb": 1.0}


@functools.lru_cache(maxsize=1)
def _onset_table() -> dict[str, dict[str, float]]:
    path = Path(__file__).with_name("font_onsets.json")
    try:
        return json.loads(path.read_text())["worst_onset_error_s"]
    except (OSError, ValueError, KeyError):
        return {}


def choose_fonts(rng: np.random.Generator, song: Song, available: dict[str, Soundfont]) -> list[Soundfont]:
    """One soundfont per stem, seeded, among the installed fonts in which that program's onsets are tight.

    The table comes from `calibrate_fonts.py` (drum kits: `DRUM_KIT_LAGS`); unlisted programs may use any font.
    A program none of whose good fonts is installed falls back to any installed font.
    """
    table = _onset_table()
    names = sorted(available)
    out = []
    for part in song.parts:
        lags = DRUM_KIT_LAGS if part.is_drum else table.get(str(part.program), {})
        good = [n for n in names if n not in lags or lags[n] <= MAX_LAG_S] or names
        out.append(available[good[int(rng.integers(len(good)))]])
    return out


def build_track(out_dir: Path, index: int, seed: int, *, min_bars: int = 24, max_bars: int = 48,
                sample_rate: int = SAMPLE_RATE, fonts: dict[str, Soundfont] | None = None) -> Path:
    """Compose, write and render song `index` of the corpus for `seed`; atomically create TrackNNNNN."""
    fonts = fonts or require_soundfonts()
    name = track_name(index)
    final = out_dir / name
    song = make_song(song_rng(seed, index), min_bars=min_bars, max_bars=max_bars)
    font_rng = song_rng(seed, index, 1)
    stem_fonts = choose_fonts(font_rng, song, fonts)
    offsets = [float(font_rng.uniform(-2.5, 2.5)) for _ in song.parts]
    tmp = out_dir / f".{name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"backline-corpus/{seed}/{index}"))
        meta = write_song_files(song, tmp, stem_fonts, offsets, uid=uid)
        meta = render_track_audio(tmp, meta, fonts, sample_rate=sample_rate)
        meta["seed"], meta["index"] = int(seed), int(index)
        _write_yaml(tmp / "metadata.yaml", meta)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ----------------------------------------------------------------------------------------- completeness
def missing_parts(track: Path) -> list[str]:
    """What a Slakh-layout track folder lacks (empty list when complete)."""
    missing = [f for f in ("metadata.yaml", "all_src.mid", "mix.flac", "extras.json")
               if not (track / f).is_file() or (track / f).stat().st_size == 0]
    if "metadata.yaml" in missing:
        return missing
    try:
        meta = yaml.safe_load((track / "metadata.yaml").read_text())
        stems = meta["stems"]
    except (yaml.YAMLError, KeyError, TypeError, OSError):
        return missing + ["metadata.yaml (unreadable)"]
    for sid, stem in stems.items():
        for rel, wanted in ((f"MIDI/{sid}.mid", stem.get("midi_saved", True)),
                            (f"stems/{sid}.flac", stem.get("audio_rendered", True))):
            if wanted and (not (track / rel).is_file() or (track / rel).stat().st_size == 0):
                missing.append(rel)
    return missing


@dataclass(frozen=True)
class SynthReport:
    built: list[str]
    kept: list[str]
    rebuilt: list[str]
    seconds_rendered: float


def _check_manifest(out_dir: Path, settings: dict) -> None:
    path = out_dir / CORPUS_MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old is not None and {k: old.get(k) for k in settings} != settings:
            raise ConfigError(
                f"this corpus was made with {', '.join(f'{k}={old.get(k)}' for k in settings)}",
                path=out_dir, fix="rerun with the same settings to resume, or choose another --out folder")
        path.unlink()
    write_bytes_atomic(path, (json.dumps(settings, indent=1) + "\n").encode())


def _worker(args: tuple) -> tuple[str, float]:
    out_dir, index, seed, min_bars, max_bars, sample_rate = args
    final = build_track(Path(out_dir), index, seed, min_bars=min_bars, max_bars=max_bars, sample_rate=sample_rate)
    return final.name, midi_seconds(final / "all_src.mid")


def synthesize(out_dir: str | Path, songs: int, seed: int, *, jobs: int | None = None, min_bars: int = 24,
               max_bars: int = 48, sample_rate: int = SAMPLE_RATE, progress: bool = True,
               log: Callable[[str], None] = print) -> SynthReport:
    """Build songs 0..songs-1 into `out_dir`, resuming whatever a previous run finished."""
    if not isinstance(songs, int) or songs <= 0:
        raise ConfigError(f"--songs must be a positive number of songs, got {songs}", fix="use e.g. --songs 100")
    if min_bars < 8 or max_bars < min_bars:
        raise ConfigError(f"bar range {min_bars}..{max_bars} is not usable", fix="use 8 <= --min-bars <= --max-bars")
    jobs = os.cpu_count() or 1 if jobs is None else jobs
    if jobs <= 0:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    require_soundfonts()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError("is a file, not a folder", path=out_dir, fix="choose a folder for --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, {"seed": int(seed), "min_bars": min_bars, "max_bars": max_bars,
                              "sample_rate": sample_rate, "generator_version": GENERATOR_VERSION})
    for leftover in out_dir.glob(".Track*.partial-*"):
        log(f"removing an unfinished track from an interrupted run: {leftover.name}")
        shutil.rmtree(leftover, ignore_errors=True)
    kept, rebuilt, todo = [], [], []
    for i in range(songs):
        track = out_dir / track_name(i)
        if track.exists():
            missing = missing_parts(track)
            if not missing:
                kept.append(track.name)
                continue
            log(f"{track}: half written (missing {', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}); rebuilding it")
            shutil.rmtree(track)
            rebuilt.append(track.name)
        todo.append(i)
    from tqdm import tqdm

    bar = tqdm(total=songs, initial=len(kept), desc="rendering songs", unit="song", disable=not progress)
    built: list[str] = []
    seconds = 0.0
    tasks = [(str(out_dir), i, int(seed), min_bars, max_bars, sample_rate) for i in todo]
    try:
        if jobs == 1 or len(tasks) <= 1:
            for t in tasks:
                name, secs = _worker(t)
                built.append(name)
                seconds += secs
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=get_context("spawn")) as pool:
                pending = {pool.submit(_worker, t) for t in tasks}
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            name, secs = fut.result()
                            built.append(name)
                            seconds += secs
                            bar.update(1)
                except BaseException:
                    for fut in pending:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    return SynthReport(sorted(built), kept, rebuilt, seconds)
