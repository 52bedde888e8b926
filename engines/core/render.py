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

Takes (every engine's generated part) go through `render_take`, one rule for all of them:
- **on time**: a soundfont sample can start tens of milliseconds after its note-on (FluidR3's finger bass: 11 ms
  on most keys, 40 ms on some); `attack_latency` measures that once per (soundfont, program) and key — render a
  probe note on every key, find where each attack begins (`audible_onsets`) — caches it, and each note is
  rendered earlier by a share of that latency (`attack_share`: the band's own parts sound a little behind their
  note-ons too, so a take plays early only by the part of its latency that makes its audible attack land with the
  band's; the take's MIDI is not moved, its note-ons stay on the grid);
- **no hard stop**: the render keeps the release; a take is exactly its region (the engine contract), so
  whatever still rings at the region's end is faded out over `TAIL_FADE_S` (raised cosine), never cut.

Soundfonts are looked up by name in the Debian locations (see `SOUNDFONT_CANDIDATES`, checked with
`dpkg -L`) and in the folders listed in `$BACKLINE_SOUNDFONT_PATH` (os.pathsep-separated), which come first.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backline.engines.core.audio import Audio, read_audio, write_bytes_atomic
from backline.engines.core.errors import AudioFileError, MissingDependencyError
from backline.engines.core.protocol import cache_dir

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
            # SDL_AUDIODRIVER=dummy: rendering to a file needs no sound card, and SDL's audio probe would
            # otherwise start a PulseAudio client that leaves ~/.config/pulse and a /tmp/pulse-* folder behind
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False,
                                  stdin=subprocess.DEVNULL, env=os.environ | {"SDL_AUDIODRIVER": "dummy"})
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


# --- takes: on time, no hard stop ------------------------------------------------------------------------------

#: A take's tail: what rings past the region's end is faded out over this long (raised cosine), not cut.
TAIL_FADE_S = 0.12
#: Below this level (dB under the take's peak) what rings past the end is silence: no fade needed.
TAIL_SILENT_DB = -60.0
#: Probe pitches per part for `attack_latency`: every key, because a soundfont's sample zones can be one key wide
#: (FluidR3's finger bass is ~1 ms late on some keys and ~45 ms on others).
_PROBE_RANGE = {"bass": range(24, 65), "drums": range(35, 82), "other": range(36, 97)}
#: Bumped when the way latency is measured changes (cached figures are then measured again).
LATENCY_VERSION = 4
#: Onset detector hop for `audible_onsets` (1.45 ms at 44.1 kHz).
ONSET_HOP = 64
#: The most a note is moved earlier (a later onset than this is the sample's character, not latency).
MAX_LATENCY_S = 0.06
#: How much of a key's own latency (vs the program's median) a note is moved by (see `latency_of`).
KEY_WEIGHT = 0.5
#: How much of its measured attack latency a take is moved earlier by (every part but the bass: `attack_share`).
#: A band's own parts sound behind their note-ons by their instruments' attack too, and a musician lines up with
#: those attacks, not with the grid, so a take keeps part of its own. Fitted jointly with the listener's grid
#: (`listen.phase`: on the band's note-ons, its period refitted through the band's attacks) on renders outside every
#: evaluation set (`backline data synth` seeds 7 and 4242; not the demo, the seed-917 held-out songs or realdev):
#: each take generated for the band without that part, its backtracked onsets (hop 32 and 128, as
#: `benchmarks/takes_eval.py`) matched to the real part's within 80 ms, the median offset per song, then the mean
#: over songs. Piano, guitar and strings (seed 7, 6 songs each): at 0.5 the takes sat −1.4 / −1.0 / 0.0 ms (hop
#: 32; hop 128 −1.9 / −1.5 / −1.9) from the real parts; at 0.3 −0.4 / +0.4 / +1.6 ms (hop 128 −0.2 / +0.5 / −0.5),
#: but the p90 of |offset| widened (piano 3.8 → 6.3 ms, guitar 11.2 → 13.2, hop 32): kept at 0.5. The drum kit's
#: was set on the demo before and is not refitted.
ATTACK_SHARE = 0.5
#: The bass's share (16 songs, 8 per seed; FluidR3 finger bass, median latency 13 ms): at 0.5 the take sat +3.1 ms
#: (hop 32) / +1.6 ms (hop 128) after the real bass, at 0.65 +1.3 / −0.2 ms, at 0.7 +0.7 / −1.4 ms (p90 of
#: |offset| 22.6 → 20.8 → 20.1 / 13.4 → 12.4 → 12.5 ms); 0.65 sits between the two hops' zeros (≈0.76 / ≈0.61).
#: Why the bass wants more than the others is not measured (its slow low attack, or a probe note alone reading
#: later than the same note in a band, are guesses).
BASS_SHARE = 0.65
#: Silence rendered before the first note so that a note at time 0 can still start early.
PRE_ROLL_S = 0.1


#: the cache `attack_latency` writes (engines that render declare it in `EngineDescription.caches`)
def latency_cache_dir() -> Path:
    return cache_dir("render")


def _latency_cache() -> Path:
    return latency_cache_dir() / "attack_latency.json"


def _font_path(font: Soundfont | str | Path) -> Path:
    if isinstance(font, Soundfont):
        return font.path
    if isinstance(font, str) and font in SOUNDFONT_CANDIDATES:
        return soundfont(font).path
    return Path(font)


def _probe_midi(path: Path, program: int, drums: bool, pitches: range) -> tuple[list[float], list[int]]:
    """Every key once, in a line as a part plays it: a note every 0.3 s, each released 60 ms before the next
    (the bass planner's damping), the keys in a scattered order so each follows a different neighbour's release.
    Returns (note-on seconds, keys) in playing order."""
    import mido

    keys = list(pitches)
    order = [keys[(7 * k) % len(keys)] for k in range(len(keys))] if len(keys) % 7 else keys
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000))  # 120 BPM: 960 ticks = 1 s
    channel = 9 if drums else 0
    if not drums:
        track.append(mido.Message("program_change", program=program, channel=channel))
    times, now = [], 0
    for k, pitch in enumerate(order):
        on = 240 + 288 * k  # 0.3 s apart
        track.append(mido.Message("note_on", note=pitch, velocity=96, channel=channel, time=on - now))
        track.append(mido.Message("note_off", note=pitch, velocity=0, channel=channel, time=230))  # 0.24 s
        now = on + 230
        times.append(on / 960)
    mid.save(str(path))
    return times, order


def attack_latency(font: Soundfont | str | Path, program: int = 0, *, drums: bool = False,
                   role: str = "other") -> dict[int, float]:
    """Seconds from a note-on to where its attack audibly begins, per key, for one (soundfont, 0-based GM
    program) (`drums`: the channel-10 kit), measured once and cached in `$BACKLINE_CACHE/attack_latency.json`.

    Every key of the part's range (`role`: bass, drums or other) is probed (`audible_onsets`: librosa's
    backtracked onsets, the timing protocol of benchmarks/takes_eval.py); keys outside the range take the
    nearest measured one (`latency_of`)."""
    path = _font_path(font)
    part = "drums" if drums else role if role in _PROBE_RANGE else "other"
    key = (f"v{LATENCY_VERSION}|{path.name}|{path.stat().st_size if path.is_file() else 0}|"
           f"{'kit' if drums else int(program)}|{part}")
    cache = _latency_cache()
    table: dict = {}
    try:
        table = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(table, dict) and isinstance(table.get(key), dict):
            return {int(k): float(v) for k, v in table[key].items()}
    except (OSError, ValueError, AttributeError, TypeError):
        table = {}
    pitches = _PROBE_RANGE[part]
    with tempfile.TemporaryDirectory(prefix="backline-latency-") as tmp:
        probe = Path(tmp) / "probe.mid"
        times, order = _probe_midi(probe, int(program), drums, pitches)
        audio = render_midi(probe, path)
    found = audible_onsets(audio)
    result = {}
    for pitch, t in zip(order, times):
        near = found[(found > t - 0.01) & (found < t + MAX_LATENCY_S + 0.02)]
        if len(near):  # a key with no sample (silent) is skipped: its neighbours stand in for it
            result[int(pitch)] = round(float(np.clip(near[0] - t, 0.0, MAX_LATENCY_S)), 5)
    table = {k: v for k, v in (table if isinstance(table, dict) else {}).items() if isinstance(v, dict)}
    table[key] = {str(p): v for p, v in result.items()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cache, (json.dumps(table, indent=1, sort_keys=True) + "\n").encode(), overwrite=True)
    except OSError:
        pass  # a read-only cache costs a re-measure next time, nothing else
    return result


def audible_onsets(audio: Audio) -> np.ndarray:
    """Where notes audibly begin (seconds): librosa's onset detector with backtracking (the start of each
    attack's rise), at a fine hop — the protocol the takes benchmark measures timing with."""
    import librosa

    y = audio.with_channels(1).samples[0]
    return librosa.onset.onset_detect(y=y, sr=audio.sample_rate, hop_length=ONSET_HOP, backtrack=True, units="time")


def attack_share(role: str = "other", drums: bool = False) -> float:
    """How much of its attack latency a part of this `role` is played early by (see `ATTACK_SHARE`)."""
    return BASS_SHARE if role == "bass" and not drums else ATTACK_SHARE


def latency_of(latencies: dict[int, float], pitch: int, share: float = ATTACK_SHARE) -> float:
    """How early to play `pitch`: `share` (`attack_share`) of a blend of its key's measured latency (or the nearest
    measured key's) and the program's median, KEY_WEIGHT of each, because one probe note per key is a noisy figure.
    KEY_WEIGHT chosen on the demo and three rendered songs (hop-128 onsets, take vs real bass / real drums, median/p90
    ms): the key's own figure −8.7/20 and −4.4/14.5 on the demo, half-way −5.8/14.5 and −4.4/14.5, the median alone
    −2.9/14.5 and 0/17.1; on the 16 calibration songs of `BASS_SHARE` (at a share of 0.7) the key's own figure against
    half-way gave p90 19.5 vs 20.1 ms (hop 32) and 11.0 vs 12.5 ms (hop 128), medians +0.7 / −0.7 vs +0.7 / −2.2 ms:
    within the songs' spread, so it stays where the demo set it."""
    if not latencies:
        return 0.0
    key = latencies[pitch] if pitch in latencies else latencies[min(latencies, key=lambda p: (abs(p - pitch), p))]
    return share * (KEY_WEIGHT * key + (1.0 - KEY_WEIGHT) * float(np.median(list(latencies.values()))))


def _on_time_midi(src: Path, dst: Path, latencies: dict[int, float], pre_roll: float,
                  share: float = ATTACK_SHARE) -> None:
    """A copy of `src` for rendering only: everything `pre_roll` later, each note `latency_of(pitch)` earlier (its
    whole sound moves, note-off too), so that its attack begins where the original note-on is."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(src))
    for inst in pm.instruments:
        for note in inst.notes:
            shift = pre_roll - latency_of(latencies, note.pitch, share)
            note.start, note.end = note.start + shift, note.end + shift
        for event in list(inst.control_changes) + list(inst.pitch_bends):
            event.time += pre_roll
    pm.write(str(dst))


def fit_to_region(audio: Audio, frames: int, *, fade_s: float = TAIL_FADE_S) -> tuple[Audio, dict]:
    """`audio` (from sample 0, with its full release) → exactly `frames` long. What still rings at the end is
    faded out over `fade_s` (raised cosine, so neither a click nor an abrupt stop); silence is left alone."""
    frames = int(frames)
    out = audio.slice(0, frames)
    rest = audio.samples[:, frames:]
    peak = float(np.max(np.abs(audio.samples))) if audio.frames else 0.0
    ring = float(np.max(np.abs(rest))) if rest.size else 0.0
    end = float(np.max(np.abs(out.samples[:, -max(1, int(0.005 * audio.sample_rate)):]))) if out.frames else 0.0
    loud = max(ring, end)
    info = {"tail_cut_db": round(20 * math.log10(loud / peak), 1) if loud > 0 and peak > 0 else None, "faded": False}
    if peak > 0 and loud > peak * 10 ** (TAIL_SILENT_DB / 20) and out.frames:
        n = min(out.frames, max(1, int(round(fade_s * audio.sample_rate))))
        samples = out.samples.copy()
        samples[:, -n:] *= (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
        out = Audio(samples, audio.sample_rate)
        info["faded"] = True
    return out, info


def render_take(midi_path: str | Path, font: Soundfont | str | Path, *, frames: int | None, sample_rate: int,
                program: int = 0, drums: bool = False, role: str = "other", gain: float = 0.5,
                tail_s: float = 4.0) -> tuple[Audio, dict]:
    """A generated part's MIDI → its audio, on time and without a hard stop (the rule every engine's takes
    follow; see the module docstring). The MIDI file itself is not changed: a render-only copy starts each note
    its key's measured attack latency early, after a pre-roll that is cut off again. `frames` None: the take
    ends when its release has died away (at most `tail_s` after the last event). Returns (audio, report)."""
    latencies = attack_latency(font, program, drums=drums, role=role)
    pre = int(round(PRE_ROLL_S * sample_rate))
    with tempfile.TemporaryDirectory(prefix="backline-take-") as tmp:
        shifted = Path(tmp) / "on_time.mid"
        _on_time_midi(Path(midi_path), shifted, latencies, pre / sample_rate, attack_share(role, drums))
        raw = render_midi(shifted, font, sample_rate=sample_rate, gain=gain)
    audio = raw.slice(pre, max(pre, raw.frames))
    values = sorted(latencies.values())
    report = {"attack_latency_ms": round(float(np.median(values)) * 1000, 1) if values else 0.0,
              "attack_latency_max_ms": round(values[-1] * 1000, 1) if values else 0.0}
    if frames is None:
        end = min(_release_end(audio), audio.frames, int((_last_event_s(midi_path) + tail_s) * sample_rate))
        return audio.slice(0, end), report | {"tail_s": round(end / sample_rate, 3)}
    out, tail = fit_to_region(audio, frames)
    return out, report | tail


def _last_event_s(midi_path: str | Path) -> float:
    import mido

    return float(mido.MidiFile(str(midi_path)).length)


def _release_end(audio: Audio) -> int:
    """The frame after which `audio` stays below TAIL_SILENT_DB of its peak (its last note's release)."""
    mono = np.max(np.abs(audio.samples), axis=0) if audio.frames else np.zeros(0)
    if not len(mono) or mono.max() <= 0:
        return audio.frames
    above = np.nonzero(mono > mono.max() * 10 ** (TAIL_SILENT_DB / 20))[0]
    return int(min(audio.frames, above[-1] + 1 + int(0.01 * audio.sample_rate)))
