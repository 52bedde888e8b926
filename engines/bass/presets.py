"""Bass style presets: data files in `presets/bass/` (TOML + a reference recording), and style means.

Presets are read by the shared reader (`backline.engines.core.presets`: one class, one TOML reader, path-safe); a
bass preset TOML holds `name`, `title`, `engine = "bass"`, `reference` (an audio file beside the TOML),
`gm_program` (1-based General MIDI program the reference was rendered with, also written into the MIDI),
`[controls]` (default steps / cfg / rescale / strength), `loudness_lufs` and `[[chain]]` (a pedalboard chain,
see `backline.engines.core.effects`).

The style mean μ_t(c_style) (paper 000 §3.3: the stem-codec latents of the reference averaged over time) is
cached with the SHA-256 of the reference file and a fingerprint of the stem codec, and recomputed whenever
either changes: the release ships `<name>.style.json` beside the preset for the shipped codec (written by
`--refresh-styles`, never at run time, so a read-only install works), and anything else (an edited
reference, another codec) is cached per user in `$XDG_CACHE_HOME/backline/styles/`.

`render_references()` rebuilds the reference recordings from the corpus instruments: a fixed two-bar-pattern
bass line (written here, not taken from any song) rendered by `backline.engines.core.render` with each preset's GM
bass program (33–40, 1-based) through a General MIDI soundfont (the fonts the corpus is rendered with), dry and
loudness-normalised. The chain is *not* baked in: it is applied to the generated output.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from backline.engines.core import presets as shared
from backline.engines.core.audio import Audio, read_audio, write_audio, write_bytes_atomic
from backline.engines.core.effects import build_chain
from backline.engines.core.effects import render as render_chain
from backline.engines.core.errors import AudioFileError, ConfigError
from backline.engines.core.presets import Preset
from backline.engines.core.protocol import cache_dir
from backline.engines.core.render import render_midi

PRESET_DIR = shared.engine_preset_dir("bass")

CONTROL_KEYS = ("steps", "cfg", "rescale", "strength", "quantise", "style")


def list_presets(folder: Path | None = None) -> list[str]:
    if folder is None:
        return shared.list_presets("bass")
    return sorted(p.stem for p in Path(folder).glob("*.toml"))


def load_preset(name: str, folder: Path | None = None) -> Preset:
    """Read and check one bass preset (the shared reader, plus the bass rules); an unknown name lists the known
    ones, and a name that is not a plain name ('../../x') is refused before any file is touched."""
    if folder is None:
        preset = shared.find_preset("bass", name)
    else:
        shared.check_name(name, what="bass preset")
        path = Path(folder) / f"{name}.toml"
        if not path.is_file():
            known = list_presets(folder)
            raise ConfigError(f"unknown bass preset {name!r}",
                              fix=f"known presets: {', '.join(known) or 'none installed'}")
        preset = shared.read_preset(path, engine="bass")
    path = preset.path
    if preset.reference is None:
        raise ConfigError("preset lacks 'reference'", path=path, fix="see presets/bass/finger.toml for the format")
    if preset.gm_program is None:
        raise ConfigError("preset lacks 'gm_program'", path=path, fix="see presets/bass/finger.toml for the format")
    if not 33 <= preset.gm_program <= 40:
        raise ConfigError(f"gm_program {preset.gm_program} is not a GM bass (33–40, 1-based)", path=path)
    unknown = set(preset.controls) - set(CONTROL_KEYS)
    if unknown:
        raise ConfigError(f"unknown control(s) {', '.join(sorted(unknown))}", path=path,
                          fix=f"known: {', '.join(CONTROL_KEYS)}")
    build_chain(preset.chain, where=f"{path.name} chain")  # fail now, not after a minute of sampling
    return preset


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- checking a reference -----------------------------------------------------------------------------------
#: A reference quieter than this (peak, dBFS) is silence.
SILENCE_PEAK_DB = -60.0
#: A bass puts most of its power below this frequency...
BASS_BAND_HZ = 400.0
#: ... at least this share of it (finger/pick/slap/synth/upright renders measure 0.6–0.99; a piano melody,
#: a lead synth or a hi-hat well under 0.2).
MIN_BASS_SHARE = 0.35


def bass_band_share(audio: Audio) -> float:
    """Share of the signal's power below BASS_BAND_HZ (mono, 8192-point STFT ≈ 5 Hz bins at 44.1 kHz)."""
    from backline.engines.core.frontend import (
        stft,  # lazy: the preset listing (`--list-presets`) needs no STFT
    )

    mono = np.ascontiguousarray(audio.with_channels(1).samples[0], dtype=np.float32)
    power = (np.abs(stft(mono, n_fft=8192, hop=2048)) ** 2).sum(-1)
    freqs = np.arange(power.shape[0]) * audio.sample_rate / 8192
    total = float(power[freqs >= 20].sum())
    return float(power[(freqs >= 20) & (freqs < BASS_BAND_HZ)].sum()) / total if total > 0 else 0.0


def check_bass_reference(audio: Audio, path: Path | str | None = None) -> float:
    """Refuse silence and things that are not a bass; returns the bass-band share (for the report)."""
    if audio.frames == 0 or audio.peak() <= 10 ** (SILENCE_PEAK_DB / 20):
        raise AudioFileError("the style reference is silent", path=path,
                             fix="give a recording of a bass playing (a few seconds is enough)")
    if audio.seconds < 0.5:
        raise AudioFileError(f"the style reference is only {audio.seconds:.2f} s long", path=path,
                             fix="give at least 0.5 s (ideally 5–20 s) of bass")
    share = bass_band_share(audio)
    if share < MIN_BASS_SHARE:
        raise AudioFileError(f"the style reference does not sound like a bass (only {share:.0%} of its power is "
                             f"below {BASS_BAND_HZ:.0f} Hz)", path=path,
                             fix="give a solo bass recording, or pick a preset (--preset finger)")
    return share


# --- style means ----------------------------------------------------------------------------------------------

def style_mean_of_audio(audio: Audio, codec) -> np.ndarray:
    """μ_t(c_style): stem-codec latents of the reference, averaged over time → [dim]."""
    latents = codec.encode(audio.resampled(codec.sample_rate))
    return latents.float().mean(dim=-1).cpu().numpy()


def user_cache_dir() -> Path:
    return cache_dir("styles")


def instrument_cache_dir() -> Path:
    """Where the instruments fitted to a reference recording are cached (`reference.py`)."""
    return user_cache_dir().parent / "instruments"


def _cache_paths(preset: Preset, fingerprint: str) -> tuple[Path, Path]:
    """(shipped cache beside the preset, read-only at run time; per-user cache, one file per codec)."""
    return preset.path.with_suffix(".style.json"), user_cache_dir() / f"bass-{preset.name}-{fingerprint}.style.json"


def preset_style_mean(preset: Preset, codec, codec_fingerprint: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The preset's cached style mean, recomputed (and re-cached) if the reference or the codec changed."""
    if not preset.reference.is_file():
        raise AudioFileError("the preset's reference recording is missing", path=preset.reference,
                             fix="reinstall Backline or run python -m backline.engines.bass.presets --render")
    digest = file_sha256(preset.reference)
    shipped, user = _cache_paths(preset, codec_fingerprint)
    for cache in (shipped, user):
        try:
            data = json.loads(cache.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("reference_sha256") == digest and data.get("codec") == codec_fingerprint:
            return np.asarray(data["mu"], np.float32), {"cache": str(cache), "recomputed": False}
    audio = read_audio(preset.reference)
    check_bass_reference(audio, preset.reference)
    mu = style_mean_of_audio(audio, codec)
    where = None
    try:
        write_style_cache(user, preset, digest, codec_fingerprint, mu)
        where = str(user)
    except OSError:  # a read-only home: recompute next time, still generate now
        pass
    return mu, {"cache": where, "recomputed": True}


def write_style_cache(path: Path, preset: Preset, digest: str, fingerprint: str, mu: np.ndarray) -> Path:
    payload = json.dumps({"preset": preset.name, "reference": preset.reference.name, "reference_sha256": digest,
                          "codec": fingerprint, "mu": [float(x) for x in mu]}, indent=1).encode()
    return write_bytes_atomic(path, payload, overwrite=True)


def refresh_shipped_caches(codec, fingerprint: str, folder: Path | None = None) -> list[Path]:
    """Write `<name>.style.json` beside every preset for the given (shipped) stem codec — a release step."""
    out = []
    for name in list_presets(folder):
        preset = load_preset(name, folder)
        audio = read_audio(preset.reference)
        check_bass_reference(audio, preset.reference)
        mu = style_mean_of_audio(audio, codec)
        out.append(write_style_cache(preset.path.with_suffix(".style.json"), preset, file_sha256(preset.reference),
                                     fingerprint, mu))
    return out


# --- rendering the references ------------------------------------------------------------------------------
#: A two-bar riff (beats, MIDI pitch, length in beats) played twice over A–F–C–G at 100 BPM: roots, fifths,
#: octaves, a passing note and staccato 8ths, so the reference shows each instrument's attack and sustain.
_RIFF = [(0, 45, 1.0), (1, 45, 0.5), (1.5, 52, 0.5), (2, 57, 0.75), (3, 55, 0.5), (3.5, 52, 0.5),
         (4, 41, 1.5), (5.5, 48, 0.5), (6, 53, 1.0), (7, 52, 0.5), (7.5, 50, 0.5),
         (8, 48, 1.0), (9, 48, 0.5), (9.5, 55, 0.5), (10, 60, 1.0), (11, 55, 1.0),
         (12, 43, 0.5), (12.5, 43, 0.5), (13, 50, 1.0), (14, 55, 0.5), (14.5, 47, 0.5), (15, 43, 1.0)]


def riff_notes(preset: Preset, bpm: float = 100.0) -> list:
    """The notes of a preset's reference recording as `render_reference` plays them (seconds): what its instrument
    is sampled from, with no transcription needed."""
    # lazy: core.transcribe pulls mido, which the bass engine (importing this module) keeps out for the GPU lease
    from backline.engines.core.transcribe import Note

    beat, octave = 60.0 / bpm, int((preset.render or {}).get("octave", 0))
    return [Note(pitch + 12 * octave, b * beat, (b + length * 0.95) * beat, 100) for b, pitch, length in _RIFF]


def _riff_midi(path: Path, program_1based: int, octave: int = 0, bpm: float = 100.0) -> None:
    import mido

    ppq = 480
    mid = mido.MidiFile(type=0, ticks_per_beat=ppq)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.Message("program_change", program=program_1based - 1, channel=0, time=0))
    events = []
    for beat, pitch, length in _RIFF:
        p = pitch + 12 * octave
        events.append((int(beat * ppq), 1, mido.Message("note_on", note=p, velocity=100, channel=0)))
        events.append((int((beat + length * 0.95) * ppq), 0, mido.Message("note_off", note=p, velocity=0, channel=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    mid.save(path)


def render_reference(preset: Preset) -> Audio:
    """Render the preset's reference from its GM program (see the module docstring)."""
    font = preset.render.get("soundfont", "FluidR3_GM")
    octave = int(preset.render.get("octave", 0))
    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp) / "riff.mid"
        _riff_midi(midi, preset.gm_program, octave)
        audio = render_midi(midi, font, frames=int(44100 * 10.0))  # 16 beats at 100 BPM = 9.6 s + release
    # dry: the chain is applied to generated output, so baking it into the reference would apply it twice
    audio, _ = render_chain(audio.with_channels(1), (), target_lufs=preset.loudness_lufs)
    return audio


def render_references(folder: Path | None = None, overwrite: bool = False) -> list[Path]:
    """(Re)render every preset's reference recording as 16-bit mono FLAC."""
    out = []
    for name in list_presets(folder):
        preset = load_preset(name, folder)
        audio = render_reference(preset)
        check_bass_reference(audio, preset.reference)
        out.append(write_audio(preset.reference, audio, overwrite=overwrite, bit_depth=16))
    return out


if __name__ == "__main__":  # python -m backline.engines.bass.presets --render [--overwrite]
    import argparse

    ap = argparse.ArgumentParser(description="render the bass presets' reference recordings")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--refresh-styles", action="store_true", help="recompute the shipped style-mean caches")
    a = ap.parse_args()
    if a.render:
        for p in render_references(overwrite=a.overwrite):
            print(p)
    if a.refresh_styles:
        from backline.engines.bass.engine import codec_fingerprint
        from backline.engines.codec import load_codec

        stem = load_codec("stem", "shipped")
        for p in refresh_shipped_caches(stem, codec_fingerprint(stem)):
            print(p)
    if not (a.render or a.refresh_styles):
        print("\n".join(list_presets()))
