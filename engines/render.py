"""The one MIDI → audio renderer: the fluidsynth command-line program with a General MIDI soundfont.

Every part of Backline that turns MIDI into sound (the corpus builder, the demo song, drum and bass
previews) calls `render_midi`. We run the `fluidsynth` program rather than a Python binding because it is
what Debian ships (`apt-get install fluidsynth fluid-soundfont-gm`), it renders faster than real time
offline (`-F`, no audio device needed, so it works in CI) and its output is reproducible.

Rendering choices, and why:
- float32 WAV out (`-O float`), so nothing clips or is quantised before we set levels ourselves;
- reverb and chorus off by default (`-R 0 -C 0`): dry stems keep note onsets sharp (the corpus tests check
  them to 15 ms) and a mix engineer adds space afterwards;
- `synth.dynamic-sample-loading=1`: only the samples a song uses are loaded, which cuts the start-up of the
  86 MB compressed MuseScore soundfont from ~4 s to ~1.5 s;
- fluidsynth renders until the last voice has died away, so its output length varies; callers ask for an
  exact frame count and get the audio trimmed or zero-padded to it (sample-exact alignment between stems).

Soundfonts are looked up by name in the Debian locations (see `SOUNDFONT_CANDIDATES`, checked with
`dpkg -L`) and in the folders listed in `$BACKLINE_SOUNDFONT_PATH` (os.pathsep-separated), which come first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backline.engines.audio import Audio, read_audio
from backline.engines.errors import AudioFileError, MissingDependencyError

SAMPLE_RATE = 44100
INSTALL_FIX = "install them with: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont"

#: name -> file names tried, in order, in each soundfont folder (real paths from `dpkg -L` on Debian 12).
SOUNDFONT_CANDIDATES: dict[str, tuple[str, ...]] = {
    "FluidR3_GM": ("sf2/FluidR3_GM.sf2", "FluidR3_GM.sf2"),
    "TimGM6mb": ("sf2/TimGM6mb.sf2", "TimGM6mb.sf2"),
    "MuseScore_General": ("sf3/MuseScore_General.sf3", "sf3/MuseScore_General_Full.sf3",
                          "MuseScore_General.sf3", "MuseScore_General.sf2"),
}
SOUNDFONT_DIRS = ("/usr/share/sounds", "/usr/local/share/sounds", "/usr/share/soundfonts")


@dataclass(frozen=True)
class Soundfont:
    name: str
    path: Path


def _search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("BACKLINE_SOUNDFONT_PATH", "").split(os.pathsep) if p]
    return extra + [Path(d) for d in SOUNDFONT_DIRS]


def find_soundfonts() -> dict[str, Soundfont]:
    """The GM soundfonts installed here, by name (possibly empty). Order follows `SOUNDFONT_CANDIDATES`."""
    found: dict[str, Soundfont] = {}
    for name, files in SOUNDFONT_CANDIDATES.items():
        for folder in _search_dirs():
            hit = next((folder / f for f in files if (folder / f).is_file()), None)
            if hit is not None:
                found[name] = Soundfont(name, hit)
                break
    return found


def require_soundfonts() -> dict[str, Soundfont]:
    """Like `find_soundfonts` but raise a one-line error naming the fix when fluidsynth or all fonts are missing."""
    fluidsynth_path()
    found = find_soundfonts()
    if not found:
        raise MissingDependencyError("no General MIDI soundfont found (looked for "
                                     + ", ".join(SOUNDFONT_CANDIDATES) + " in /usr/share/sounds)",
                                     fix=INSTALL_FIX)
    return found


def soundfont(name: str) -> Soundfont:
    """One soundfont by name, or a one-line error saying which package provides it."""
    found = find_soundfonts()
    if name not in found:
        package = {"FluidR3_GM": "fluid-soundfont-gm", "TimGM6mb": "timgm6mb-soundfont",
                   "MuseScore_General": "musescore-general-soundfont"}.get(name, "a GM soundfont")
        raise MissingDependencyError(f"soundfont '{name}' is not installed",
                                     fix=f"install it with: apt-get install {package}")
    return found[name]


def fluidsynth_path() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MissingDependencyError("the 'fluidsynth' program is not installed", fix=INSTALL_FIX)
    return exe


def render_midi(
    midi_path: str | Path,
    font: Soundfont | str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    frames: int | None = None,
    gain: float = 0.5,
    reverb: bool = False,
    chorus: bool = False,
    timeout_s: float = 600.0,
) -> Audio:
    """Render a MIDI file to stereo float32 audio at `sample_rate`.

    `frames` fixes the output length (trim or zero-pad) so that stems of one song line up sample for sample;
    sample 0 is MIDI time 0. `font` is a `Soundfont`, a soundfont name from `SOUNDFONT_CANDIDATES` or a path.
    """
    exe = fluidsynth_path()
    midi_path = Path(midi_path)
    if not midi_path.is_file():
        raise AudioFileError("MIDI file not found", path=midi_path, fix="check the path")
    if isinstance(font, Soundfont):
        font_path = font.path
    elif isinstance(font, str) and font in SOUNDFONT_CANDIDATES:
        font_path = soundfont(font).path
    else:
        font_path = Path(font)
        if not font_path.is_file():
            raise MissingDependencyError("soundfont file not found", path=font_path, fix=INSTALL_FIX)
    with tempfile.TemporaryDirectory(prefix="backline-render-") as tmp:
        out = Path(tmp) / "out.wav"
        cmd = [exe, "-ni", "-q", "-F", str(out), "-T", "wav", "-O", "float", "-r", str(int(sample_rate)),
               "-g", f"{gain:g}", "-R", "1" if reverb else "0", "-C", "1" if chorus else "0",
               "-o", "synth.dynamic-sample-loading=1", "-o", "synth.cpu-cores=1",
               "-o", "synth.polyphony=512", str(font_path), str(midi_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as err:
            raise AudioFileError(f"fluidsynth took longer than {timeout_s:.0f} s to render", path=midi_path,
                                 fix="render a shorter MIDI file") from err
        if "not a SoundFont" in proc.stderr or "Failed to load SoundFont" in proc.stderr:
            # fluidsynth carries on with no instrument (exit 0, silent output): refuse instead
            raise MissingDependencyError("fluidsynth cannot load this soundfont", path=font_path,
                                         fix="reinstall it: " + INSTALL_FIX.split(": ", 1)[1])
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            detail = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise AudioFileError(f"fluidsynth could not render it ({detail[-1] if detail else proc.returncode})",
                                 path=midi_path, fix="check that the MIDI file and the soundfont are valid")
        audio = read_audio(out, channels=2)
    if audio.sample_rate != sample_rate:  # fluidsynth honours -r; guard against a build that does not
        audio = audio.resampled(sample_rate)
    if frames is not None:
        audio = audio.slice(0, int(frames))
    samples = np.nan_to_num(audio.samples, nan=0.0, posinf=0.0, neginf=0.0)
    return Audio(samples, sample_rate)
