"""Follow mode in the sound and the feel of the user's reference (issue 22).

A reference recording gives follow mode two things:

- **Feel** (`measure_feel`): the reference's bass line is transcribed (`engine.transcribe_bass`: basic-pitch, the
  shipped transcriber) and measured as a player would describe it: notes per bar, syncopation, note length against
  the gap to the next note (legato/staccato), rests, register and range, chord tones vs passing tones, approach
  notes, octave jumps, ghost notes. `plan_in_feel` turns that into the planner's existing conditioning (style, and
  the complexity / intensity / register / swing controls — the planner gains no new input), then closes the loop on
  density: it plans, counts the notes per bar, and moves the complexity control (bisection, a few planner runs of
  well under a second) until the take's density is the reference's. The planned lengths are then set to the
  reference's articulation.
- **Sound** (`Instrument`): an auto-sampled instrument cut from the recording itself. Each transcribed note is
  sliced from its measured attack (energy rise, not the transcriber's onset, which is up to ~30 ms off) to the
  next note's attack; per pitch and velocity layer the longest (cleanest) slices are kept, up to three for
  round-robin. A note is played by the nearest recorded pitch, varispeed-shifted (a bass sampler's own
  transposition: the tone moves with it, as on a real string), with a sustain loop when the note outlasts the slice
  and a short release tail. Each slice's attack sits exactly on the note-on sample (the slice keeps 2 ms before its
  attack, and is placed 2 ms early), so the take has no added latency.
  Chosen by measurement over a harmonic-plus-noise (DDSP-style) model fitted to the same notes: see
  benchmarks/reference_eval.py and the report of issue 22 (the sampler keeps the attack transient and the body
  noise a 24-harmonic model smooths away, and builds in a few seconds).

A reference may be a whole song: the analysis engine's presence model is asked what plays (`isolate_bass`); when it
hears drums and accompaniment besides the bass, the separation engine (`backline.engines.separate.extract`) extracts
the bass first, and the report says so (`source`). Bad input (not audio, silent, under 2 s of notes, no bass) is
refused with one line before the heavy work, and nothing is cached.

The built instrument (slices + feel) is cached per reference content (SHA-256) in
`$XDG_CACHE_HOME/backline/instruments/` as one safetensors file (float32 samples, JSON metadata), written
atomically; a second take with the same reference costs only the render.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save

from backline.engines.bass.follow import plan_line, read_line_midi, render_line
from backline.engines.bass.grid import steps_per_bar
from backline.engines.bass.presets import (
    BASS_BAND_HZ,
    MIN_BASS_SHARE,
    SILENCE_PEAK_DB,
    bass_band_share,
    file_sha256,
    instrument_cache_dir,
    load_preset,
    riff_notes,
)
from backline.engines.bass.transcription import transcribe_bass
from backline.engines.core.audio import Audio, read_audio, write_bytes_atomic
from backline.engines.core.dsp import tempo_estimate
from backline.engines.core.effects import normalise_loudness, render
from backline.engines.core.errors import AudioFileError, BacklineError, Cancelled
from backline.engines.core.frontend import stft
from backline.engines.core.protocol import ProgressFn, check_cancel
from backline.engines.core.render import attack_latency, attack_share, latency_of
from backline.engines.core.transcribe import Note

#: Bumped whenever the build changes what it stores (older cache files are rebuilt).
VERSION = 1
SR = 44100
#: A reference needs at least this many seconds of sounding notes to learn a sound and a feel from.
MIN_NOTE_SECONDS = 2.0
#: Only the first minute of a longer reference is learned from (it bounds the build time: ~0.1–0.25 s per second).
MAX_SECONDS = 60.0
PRE_S = 0.002  # kept before each slice's attack (fade-in), and the slice is placed that much early
RELEASE_S = 0.04  # release tail after the note's end
ROUND_ROBIN = 3


# --- checking and loading -----------------------------------------------------------------------------------

def load_reference_audio(path: str | Path) -> Audio:
    """Read a reference and refuse, in one line, what is not audio or is silent (before any heavy work)."""
    path = Path(path)
    audio = read_audio(path)  # AudioFileError for a text file, /etc/passwd, a folder, an empty file
    if audio.frames == 0 or audio.peak() <= 10 ** (SILENCE_PEAK_DB / 20):
        raise AudioFileError("the style reference is silent", path=path,
                             fix="give a recording of a bass playing (10–30 s is best)")
    if audio.seconds < MIN_NOTE_SECONDS:
        raise AudioFileError(f"the style reference is only {audio.seconds:.1f} s long", path=path,
                             fix=f"give at least {MIN_NOTE_SECONDS:g} s of bass notes (10–30 s is best)")
    return audio


#: Below this share of its power on the harmonics of the transcribed bass notes, a recording holds more than a bass.
#: Measured (`harmonic_share`): solo basses through phaser, bitcrush, clipping, reverb, delay, distortion, sine and
#: square synths, a real bass with drums (filosax): 0.93–0.99; the demo mix 0.81, real songs (GTZAN country, a
#: waltz, Hainsworth 001, Greek folk, classical) 0.71–0.82. A real piano with drums measures 0.91 and passes as a
#: bass (its left hand plays in the bass's range): a known miss.
SOLO_HARMONIC_SHARE = 0.87


def harmonic_share(audio: Audio, notes: list[Note]) -> float:
    """Share of the power (below 8 kHz, while notes sound) on the harmonics of the sounding bass note: a solo bass,
    even distorted, puts almost all of it there; a song's drums and chords do not."""


    x = audio.with_channels(1).resampled(SR).samples[0].astype(np.float32)
    spec = np.abs(stft(x, n_fft=4096, hop=1024)) ** 2
    freqs = np.arange(spec.shape[0]) * SR / 4096
    band = freqs < 8000
    total = on = 0.0
    for n in notes:
        a, b = int(n.start * SR / 1024) + 2, int(n.end * SR / 1024)
        if b <= a:
            continue
        best = 0.0
        for shift in (0, -12, 12, -7, 7, -5, 5):  # the transcriber's octave and fifth slips on pure tones
            f0 = 440.0 * 2 ** ((n.pitch + shift - 69) / 12)
            k = np.round(freqs / f0)
            mask = band & (k >= 1) & (np.abs(freqs - k * f0) <= np.maximum(0.03 * k * f0, 1.5 * SR / 4096))
            best = max(best, float(spec[mask, a:b].sum()))
        total += float(spec[band, a:b].sum())
        on += best
    return on / total if total > 0 else 0.0


def isolate_bass(audio: Audio, path: Path | None = None, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None, notes: list[Note] | None = None) -> tuple[Audio, dict[str, Any]]:
    """A solo bass passes as is; a whole song has its bass extracted by the separation engine; a recording with no
    bass in it is refused. Returns (bass, what was done).

    Two measures decide together. The analysis engine's presence model often hears parts that are not there in a
    solo bass (a sine bass: drums 1.00; soundfont basses and the demo's bass stem: accompaniment 0.96–1.00; a clipped
    synth bass: both) and misses the bass in a pure sine; the share of the power on the harmonics of the transcribed
    bass notes (`harmonic_share`) is 0.93–0.99 for solo basses (and a real bass with drums, filosax: 0.98) and
    0.71–0.82 for songs (the demo mix, GTZAN country, a waltz, Hainsworth 001, Greek folk, classical). So:
    a bass is there when the model hears one or the recording is one low harmonic voice; it is a song to separate
    when the model hears other parts and the recording is not one harmonic voice."""
    share = bass_band_share(audio)
    harm = harmonic_share(audio, notes) if notes else 1.0
    solo_like = harm >= SOLO_HARMONIC_SHARE
    parts: dict[str, float] = {}
    try:
        from backline.engines.analysis.api import analyze  # lazy: an optional engine, heavy models

        report = analyze(audio)
        parts = {k: round(float(v), 3) for k, v in report.parts.items()}
        heard_bass = "bass" not in report.missing_parts
        others = [p for p in ("drums", "accompaniment") if p not in report.missing_parts]
    except Exception:  # noqa: BLE001 - without the analysis weights, the spectrum decides alone
        heard_bass, others = share >= MIN_BASS_SHARE, []
    # the presence model misses some pure sine basses (measured: a sine line read as drums): a recording that is
    # one low harmonic voice vouches for itself
    has_bass = heard_bass or (solo_like and share >= MIN_BASS_SHARE)
    if not has_bass:
        heard = f"the analysis hears {' and '.join(others)}" if others else \
            f"only {share:.0%} of its power is below {BASS_BAND_HZ:.0f} Hz"
        raise AudioFileError(f"the style reference has no bass in it ({heard})", path=path,
                             fix="give a recording with a bass playing, or pick a preset (--preset finger)")
    info = {"bass_share": round(share, 3), "harmonic_share": round(harm, 3), "parts": parts}
    if not others or solo_like:
        if share < MIN_BASS_SHARE:
            raise AudioFileError(f"the style reference does not sound like a bass (only {share:.0%} of its power is "
                                 f"below {BASS_BAND_HZ:.0f} Hz)", path=path,
                                 fix="give a solo bass recording, or pick a preset (--preset finger)")
        return audio, info | {"source": "solo bass" if not others else f"bass (with {' and '.join(others)} heard)"}
    try:
        from backline.engines.separate import extract  # lazy: an optional engine, heavy models
    except ImportError as err:
        raise AudioFileError(f"the style reference is a whole song ({' and '.join(others)} with the bass), and the "
                             "separation engine that would extract its bass is not installed", path=path,
                             fix="give a solo bass recording (mute the other tracks), or pick a preset") from err

    try:
        bass, presence = extract(audio, role="bass", progress=progress, cancel=cancel)
    except Cancelled:
        raise
    except BacklineError as err:  # e.g. the separator's weights are not installed: say so in one line
        raise AudioFileError(f"the style reference is a whole song ({' and '.join(others)} with the bass), and "
                             f"extracting its bass failed ({str(err).split(' — ')[0]})", path=path,
                             fix="give a solo bass recording (mute the other tracks), or pick a preset") from err
    if float(presence) < 0.02:
        raise AudioFileError("the style reference has no bass in it (the separator finds almost none)", path=path,
                             fix="give a recording with a bass playing, or pick a preset (--preset finger)")
    return bass, info | {"source": f"bass extracted from a song ({', '.join(others)} removed)", "presence": presence}


# --- feel ---------------------------------------------------------------------------------------------------

@dataclass
class Feel:
    """How the reference's line is played (beats = the reference's quarter notes, bars of four)."""

    bpm: float
    notes_per_bar: float
    syncopation: float  # share of onsets off the 8th grid (16th off-beats) or on 8th off-beats, weighted 1 / 0.5
    legato: float  # note length / gap to the next onset (1 = tied, 0.5 = half staccato)
    length_beats: float  # median note length in beats
    rests: float  # share of the line's time with no note sounding
    mean_pitch: float
    low: int
    high: int
    velocity: float  # mean MIDI velocity
    chord_tones: float  # share of notes on the bar's root triad / seventh / octave
    approach: float  # share of notes a semitone or tone from the next, non-chord, just before a new bar's note
    octaves: float  # share of intervals that are an octave jump
    steps: float  # share of intervals of 1–2 semitones (walking, scalar lines)
    ghosts: float  # share of very short, soft notes
    swing: float  # 0 straight – 1 triplet, from the off-beat 8ths' lateness
    notes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def style(self) -> str:
        """The planner style closest to this playing."""
        if self.notes_per_bar >= 10.5:  # straight 8ths measure 7–9.5 with the transcriber's extra notes
            return "funk16"
        if self.notes_per_bar <= 2.5 and self.length_beats >= 1.0:
            return "sustained"
        if self.octaves >= 0.3 and self.notes_per_bar >= 5.0:
            return "octave"
        if 3.0 <= self.notes_per_bar <= 5.5 and self.steps >= 0.4 and self.syncopation < 0.2:
            return "walking"
        if self.syncopation >= 0.3:
            return "syncopated"
        return "root_fifth"

    def rhythm_words(self) -> str:
        npb = self.notes_per_bar
        word = ("whole notes" if npb <= 1.5 else "half notes" if npb <= 3 else "quarters" if npb <= 5.5
                else "eighths" if npb <= 10.5 else "sixteenths")
        extra = [w for w, on in (("syncopated", self.syncopation >= 0.3), ("staccato", self.legato < 0.55),
                                 ("legato", self.legato > 0.92), ("with ghost notes", self.ghosts >= 0.15),
                                 ("octave jumps", self.octaves >= 0.3), ("walking steps", self.steps >= 0.4))
                 if on]
        return ", ".join([word] + extra)

    def register_words(self) -> str:
        p = self.mean_pitch
        return "low register" if p < 43 else "middle register" if p < 52 else "high register"


def _bar_grid(notes: list[Note], bpm: float) -> tuple[np.ndarray, float, float]:
    """(onset positions in 16th steps from the first beat, beat seconds, that beat's time).

    The estimated tempo is refined to the 16th period (within ±6 %) on which the onsets line up best (phase
    coherence, robust to the transcriber's ±40 ms onsets: a 1 % tempo error drifts a 16th over eight bars and would
    read as syncopation), then the beat is the one of the four 16th phases that carries the most (and loudest)
    onsets."""
    onsets = np.array([n.start for n in notes])
    vel = np.array([n.velocity for n in notes], float)
    step0 = 60.0 / bpm / 4
    cands = step0 * np.linspace(0.94, 1.06, 241)
    phases = np.exp(2j * np.pi * onsets[None, :] / cands[:, None])
    step = float(cands[int(np.argmax(np.abs(phases.mean(1))))])
    ref = float(np.angle(np.exp(2j * np.pi * onsets / step).mean())) / (2 * np.pi) * step
    t_first = ref + np.floor((onsets[0] - ref) / step + 0.5) * step  # the grid point nearest the first onset
    k = np.round((onsets - t_first) / step).astype(int)
    beat_phase = int(np.argmax([(vel * ((k - b) % 4 == 0)).sum() for b in range(4)]))
    t0 = t_first + beat_phase * step - (4 * step if beat_phase else 0.0)
    return (onsets - t0) / step, 4 * step, t0


def estimate_tempo(notes: list[Note]) -> float:
    """Tempo of a bass line from its notes: the onset train (accented where the pitch changes, or loud) through
    librosa's tempo estimator (`core.dsp.tempo_estimate`, log-normal prior at 110 BPM), folded into 70–140 BPM. A
    whole-note line only has a period of a bar; folding by octaves puts it back in a playable range."""
    hop_s = 0.01
    if len(notes) < 3:
        return 100.0
    iois = np.diff([n.start for n in notes])
    iois = iois[iois > 0.05]
    if len(iois) >= 8:
        mode = float(np.median(iois))
        if np.mean(np.abs(iois - mode) < 0.2 * mode) >= 0.6:
            # a steady stream of one note value: the autocorrelation cannot tell 4 sixteenths a beat from 3, so
            # take the commonest reading — sixteenths below 190 ms, eighths below 450 ms, else quarters or longer
            beat = mode * (4 if mode < 0.19 else 2 if mode < 0.45 else 1)
            tempo = 60.0 / beat
            while tempo < 70.0:
                tempo *= 2.0
            while tempo >= 140.0:
                tempo /= 2.0
            return tempo
    span = notes[-1].start - notes[0].start
    env = np.zeros(int(span / hop_s) + 64, np.float32)
    prev = None
    vmax = max(n.velocity for n in notes) or 1
    for n in notes:
        w = 1.0 + 0.5 * (prev is not None and n.pitch != prev) + 0.5 * n.velocity / vmax
        i = int(round((n.start - notes[0].start) / hop_s)) + 8
        env[i] += w
        prev = n.pitch
    env = np.convolve(env, np.hanning(5), mode="same")
    sr = int(round(512 / hop_s))  # so that hop_length 512 samples = 10 ms
    tempo = tempo_estimate(env, sr, 512, start_bpm=110.0, std_bpm=1.0, ac_size=min(16.0, span + 1), max_tempo=320.0)
    if not math.isfinite(tempo) or tempo <= 0:
        return 100.0
    while tempo < 70.0:
        tempo *= 2.0
    while tempo >= 140.0:
        tempo /= 2.0
    return tempo


def measure_feel(notes: list[Note], bpm: float | None = None) -> Feel:
    """Measure how a transcribed bass line is played (see `Feel`)."""
    notes = sorted(notes, key=lambda n: n.start)
    # ghost notes (short and soft: a player's dead notes, or the transcriber's fragments) are counted apart from the
    # line's notes, so they do not make a quarter-note line look like eighths
    vel_all = np.array([n.velocity for n in notes], float)
    ioi_all = np.diff([n.start for n in notes] + [notes[-1].end])
    short = np.array([n.end - n.start for n in notes]) < np.maximum(0.09, 0.35 * np.median(ioi_all))
    ghost_mask = short & (vel_all < 0.8 * np.median(vel_all))
    ghost_share = float(ghost_mask.mean())
    if (~ghost_mask).sum() >= 3:
        notes = [n for n, g in zip(notes, ghost_mask) if not g]
    bpm = float(bpm) if bpm else estimate_tempo(notes)
    pos, beat, t0 = _bar_grid(notes, bpm)
    span = max(notes[-1].end - t0, beat)
    bars = max(span / (4 * beat), 1.0 / 4)
    steps16 = np.round(pos).astype(int) % 16
    # syncopation: a note on a weak 16th / 8th with no note on the stronger position right after it (held across)
    struck = set(np.round(pos).astype(int).tolist())
    grid_pos = np.round(pos).astype(int)
    sync = np.array([float((g % 2 == 1 and g + 1 not in struck) or (g % 4 == 2 and g + 2 not in struck))
                     for g in grid_pos])
    # swing: off-beat 8ths (position 2 of 4) played late by up to 1/3 of an 8th → measured from the raw positions
    in_beat = pos % 4
    off8 = in_beat[(in_beat >= 1.6) & (in_beat <= 2.9)]
    sixteenths = np.mean((np.abs(in_beat - 1) < 0.25) | (np.abs(in_beat - 3) < 0.25)) if len(pos) else 0.0
    swing = float(np.clip(np.median((off8 - 2.0) / (2.0 / 3.0)), 0.0, 1.0)) if len(off8) and sixteenths < 0.1 else 0.0
    onsets = np.array([n.start for n in notes])
    iois = np.diff(np.append(onsets, notes[-1].end))
    lengths = np.array([n.end - n.start for n in notes])
    legato = float(np.median(np.clip(lengths[:-1] / np.maximum(iois[:-1], 1e-3), 0, 1))) if len(notes) > 1 else 1.0
    sounding = np.zeros(int(span * 100) + 1, bool)
    for n in notes:
        sounding[int((n.start - t0) * 100):int((n.end - t0) * 100)] = True
    pitches = np.array([n.pitch for n in notes])
    ints = np.abs(np.diff(pitches)) if len(notes) > 1 else np.zeros(0)
    # chord tones: the bar's root is its lowest note among those on the downbeat half, else its most-held pitch class
    bar_of = np.floor(pos / 16 + 1e-6).astype(int)
    chord = np.zeros(len(notes), bool)
    approach = np.zeros(len(notes), bool)
    for b in np.unique(bar_of):
        idx = np.flatnonzero(bar_of == b)
        held: dict[int, float] = {}
        for i in idx:
            held[notes[i].pitch % 12] = held.get(notes[i].pitch % 12, 0.0) + lengths[i] * (2.0 if steps16[i] == 0 else 1)
        root = max(held, key=held.get)
        for i in idx:
            chord[i] = (notes[i].pitch - root) % 12 in (0, 3, 4, 7, 10)
    for i in range(len(notes) - 1):
        nxt = bar_of[i + 1] != bar_of[i] or steps16[i + 1] % 4 == 0
        approach[i] = (not chord[i]) and nxt and 1 <= abs(int(pitches[i + 1]) - int(pitches[i])) <= 2
    vel = np.array([n.velocity for n in notes], float)
    return Feel(bpm=round(60.0 / beat, 2), notes_per_bar=float(len(notes) / bars), syncopation=float(sync.mean()),
                legato=legato, length_beats=float(np.median(lengths) / beat), rests=float(1.0 - sounding.mean()),
                mean_pitch=float(pitches.mean()), low=int(pitches.min()), high=int(pitches.max()),
                velocity=float(vel.mean()), chord_tones=float(chord.mean()), approach=float(approach.mean()),
                octaves=float((ints == 12).mean()) if len(ints) else 0.0,
                steps=float(((ints >= 1) & (ints <= 2)).mean()) if len(ints) else 0.0,
                ghosts=ghost_share, swing=round(swing, 3), notes=len(notes),
                seconds=float(lengths.sum()))


# --- planning in the reference's feel -----------------------------------------------------------------------

def _notes_per_bar(notes: list[Note], bar_s: float, span_s: float) -> float:
    return len(notes) / max(span_s / bar_s, 1e-6)


def plan_in_feel(planner, lst, kicks: np.ndarray, feel: Feel, *, seed: int = 0, lock_to_kick: bool = False,
                 style: str | None = None, octave: int = 0, iterations: int = 6) -> tuple[list[Note], Any, dict]:
    """Plan a line on what was heard, played like the reference: its style, register, intensity and swing, the
    complexity control searched so the take's notes per bar match the reference's, lengths at its articulation."""
    style = style or feel.style()
    base = planner.style_attrs.get(style) or planner.style_attrs.get("unknown") or {}
    register = float((feel.mean_pitch - 36.0) / 12.0 - base.get("register", 0.2))
    intensity = float(np.clip(0.5 + (feel.velocity / 127.0 - base.get("intensity", 0.7)) / 0.5, 0.0, 1.0))
    bar_s = 60.0 / lst.bpm * steps_per_bar(lst.numerator, lst.denominator) / 4.0
    span = max(lst.duration - max(lst.bar_one - bar_s, 0.0), bar_s)
    target = feel.notes_per_bar * steps_per_bar(lst.numerator, lst.denominator) / 16.0  # per bar of the mix's meter
    # the lock to the kick (the engine's default) only where the reference plays at least as many notes as the kick
    # hits: a whole-note player does not strike every kick, and the reference's density wins
    kicks_per_bar = len(kicks) / max(span / bar_s, 1e-6) if kicks is not None else 0.0
    lock_to_kick = bool(lock_to_kick and target >= kicks_per_bar)
    lo, hi = 0.0, 1.0
    complexity = float(np.clip(0.5 + (min(target / 12.0, 1.0) - base.get("complexity", 0.4)) / 0.8, 0.0, 1.0))
    best: tuple[float, list[Note], Any, dict, float] | None = None
    for _ in range(iterations):
        notes, grid, attrs = plan_line(planner, lst, kicks, style=style, complexity=complexity, intensity=intensity,
                                       register=register, swing=feel.swing, lock_to_kick=lock_to_kick, seed=seed,
                                       octave=octave)
        npb = _notes_per_bar(notes, bar_s, span)
        err = abs(npb - target) / max(target, 1e-6)
        if best is None or err < best[0]:
            best = (err, notes, grid, attrs, complexity)
        if err <= 0.1:
            break
        if npb < target:
            lo = complexity
        else:
            hi = complexity
        complexity = 0.5 * (lo + hi)
    _, notes, grid, attrs, complexity = best
    step_s = 60.0 / lst.bpm / 4.0
    if _notes_per_bar(notes, bar_s, span) < 0.85 * target:
        notes = restrike(notes, int(round(target * span / bar_s)) - len(notes), step_s)
    notes = articulate(notes, feel, 60.0 / lst.bpm)
    info = {"style": style, "from_reference": True, "target_notes_per_bar": round(target, 2), "lock_to_kick": lock_to_kick,
            "notes_per_bar": round(_notes_per_bar(notes, bar_s, span), 2),
            "controls": {"complexity": round(complexity, 3), "intensity": round(intensity, 3),
                         "register": round(register, 3), "swing": feel.swing},
            "attributes": {k: round(v, 3) for k, v in attrs.items()}, "kick_hits": int(grid.kick.sum())}
    return notes, grid, info


def restrike(notes: list[Note], extra: int, step_s: float) -> list[Note]:
    """Re-strike the planned notes with the longest time to the next onset on the 16th grid until `extra` notes are
    added: the planner's density attribute saturates at 12 notes a bar (its training range), a sixteenth-note
    reference plays 16. Re-struck notes keep the planned pitch (a funk or rock player's repeated root) and are a
    little softer than the note they repeat."""
    out = sorted(notes, key=lambda n: n.start)
    while extra > 0 and out:
        spans = [(out[k + 1].start if k + 1 < len(out) else out[k].end) - out[k].start for k in range(len(out))]
        i = int(np.argmax(spans))
        slots = int(round(spans[i] / step_s))
        if slots < 2:
            break
        n = out[i]
        k = min(slots, extra + 1)
        piece = spans[i] / k
        out[i:i + 1] = [Note(n.pitch, n.start + j * piece, n.start + (j + 1) * piece - min(0.02, piece * 0.2),
                             n.velocity if j == 0 else max(1, int(n.velocity * 0.85))) for j in range(k)]
        extra -= k - 1
    return out


def articulate(notes: list[Note], feel: Feel, beat_s: float) -> list[Note]:
    """Set each note's length to the reference's legato (share of the gap to the next note that sounds); the last
    note keeps its planned length."""
    out = []
    for i, n in enumerate(notes):
        if i + 1 < len(notes):
            gap = notes[i + 1].start - n.start
            end = n.start + max(0.03, min(gap * min(feel.legato, 0.97), max(gap - 0.01, 0.03)))
            end = min(end, n.start + max(feel.length_beats * beat_s * 1.5, n.end - n.start))
        else:
            end = n.end
        out.append(Note(n.pitch, n.start, float(end), n.velocity))
    return out


# --- sound: the auto-sampled instrument ---------------------------------------------------------------------

def _energy(x: np.ndarray, hop: int = 64, win: int = 256) -> np.ndarray:
    """Trailing-window energy: e[j] = energy of x[j·hop − win, j·hop) (frame j *ends* at sample j·hop)."""
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    ends = np.arange(0, len(x) + 1, hop)
    return c[ends] - c[np.maximum(ends - win, 0)]


def find_attack(x: np.ndarray, near: int, sr: int = SR, before_s: float = 0.05, after_s: float = 0.05) -> int:
    """The sample where a note's energy rises most steeply, within ±50 ms of the transcriber's onset."""
    hop = 64
    e = np.log10(_energy(x, hop) + 1e-10)
    a, b = max(1, (near - int(before_s * sr)) // hop), min(len(e) - 1, (near + int(after_s * sr)) // hop)
    if b <= a:
        return near
    d = e[a:b + 1] - e[a - 1:b]
    return int((a + int(np.argmax(d))) * hop - hop // 2)


def merge_splits(notes: list[Note], x: np.ndarray, sr: int = SR, min_rise_db: float = 4.0) -> list[Note]:
    """Join a note the transcriber split in two: the same pitch again within 30 ms, with no new attack in the audio
    (energy rising less than `min_rise_db` across the second onset). A phaser, a tremolo or a soundfont's attack
    transient splits notes like this; a player's repeated note has a fresh attack and stays two notes."""
    out: list[Note] = []
    win = int(0.012 * sr)
    for n in sorted(notes, key=lambda n: n.start):
        if out and out[-1].pitch == n.pitch and 0.0 <= n.start - out[-1].end < 0.03:
            a = find_attack(x, int(n.start * sr), sr, 0.05, 0.06)  # basic-pitch onsets run up to 45 ms early
            before = float(np.mean(x[max(0, a - 2 * win):a - win // 2] ** 2)) + 1e-12
            after = float(np.mean(x[a:a + win] ** 2)) + 1e-12
            if 10 * np.log10(after / before) < min_rise_db:
                p = out[-1]
                out[-1] = Note(p.pitch, p.start, n.end, max(p.velocity, n.velocity))
                continue
        out.append(n)
    return out


def pitch_agrees(seg: np.ndarray, pitch: int, sr: int = SR) -> bool:
    """Does a slice sound at its transcribed pitch? Its body (10–210 ms after the attack) must put most of its power
    on that pitch's harmonics, some of it on the fundamental and odd harmonics (a slice labelled an octave too low
    has none there, one labelled an octave too high misses the odd harmonics of the real note). A mislabelled slice
    played at another pitch is the sampler's worst artefact: a note in the wrong octave or timbre."""
    body = seg[int(0.01 * sr):int(0.21 * sr)].astype(np.float64)
    if len(body) < 2048:
        return True  # too short to judge: let the length score decide
    spec = np.abs(np.fft.rfft(body * np.hanning(len(body)))) ** 2
    freqs = np.fft.rfftfreq(len(body), 1 / sr)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    band = (freqs > 20) & (freqs < 4000)
    k = np.round(freqs / f0)
    near = band & (k >= 1) & (np.abs(freqs - k * f0) <= np.maximum(0.03 * k * f0, 2.5 * sr / len(body)))
    total = float(spec[band].sum()) + 1e-18
    odd = float(spec[near & (k % 2 == 1)].sum())
    sub = float(spec[band & (np.abs(freqs - f0 / 2) <= 0.03 * f0)].sum())  # a real note an octave lower
    return spec[near].sum() / total >= 0.5 and odd / total >= 0.05 and sub / total < 0.2


@dataclass
class Slice:
    pitch: int
    velocity: int
    layer: int
    offset: int  # into the sample blob
    length: int
    attack: int  # samples from the slice start to its attack
    gain: float  # 1 / the slice's attack RMS: every slice plays at one level before velocity


@dataclass
class Instrument:
    """An instrument sampled from a reference recording (see the module docstring)."""

    samples: np.ndarray  # float32 mono blob at SR
    slices: list[Slice]
    feel: Feel
    tone: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    build_s: float = 0.0

    def describe(self) -> str:
        """What was learned, in a musician's words, e.g. 'finger style, eighths, low register, dark tone'."""
        words = f"{self.tone['technique']}, {self.feel.rhythm_words()}, {self.feel.register_words()}, " \
                f"{self.tone['word']} tone"
        return words + (" (the bass extracted from the song)" if "extracted" in str(self.source.get("source")) else "")

    def summary(self) -> dict[str, Any]:
        pitches = sorted({s.pitch for s in self.slices})
        return {"learned": self.describe(), "feel": self.feel.to_dict(), "tone": self.tone, "source": self.source,
                "sha256": self.sha256, "samples": len(self.slices), "pitches": pitches,
                "build_s": round(self.build_s, 2)}

    # -- rendering --
    def _choose(self, pitch: int, loud: bool, counters: dict, need: int = 0) -> Slice:
        """The slice to play `pitch` from: nearest recorded pitch (from above on a tie), round-robin among the
        slices whose recording lasts the note (`need` samples after the attack, at the played pitch), else the
        longest: a slice looped past its end re-attacks audibly (basic-pitch heard an extra note at the loop point
        in 7 of 33 scale notes of the finger preset, note F1 0.90; 1.00 through the soundfont)."""
        layers = sorted({s.layer for s in self.slices})
        layer = layers[-1] if loud else layers[0]
        pool = [s for s in self.slices if s.layer == layer] or self.slices
        best = min(abs(s.pitch - pitch) for s in pool)
        # prefer sampling from above (shifting down keeps the tone darker and natural), then nearest
        cands = [s for s in pool if abs(s.pitch - pitch) == best]
        top = max(s.pitch for s in cands)
        cands = [s for s in cands if s.pitch == top]
        ratio = 2.0 ** ((pitch - top) / 12.0)  # varispeed: a slice lasts length / ratio at the played pitch
        lasting = [s for s in cands if (s.length - s.attack) / ratio >= need]
        cands = lasting or [max(cands, key=lambda s: s.length - s.attack)]
        k = counters.get((top, layer), 0)
        counters[(top, layer)] = k + 1
        return cands[k % len(cands)]

    def _voice(self, s: Slice, pitch: int, need: int) -> tuple[np.ndarray, int]:
        """The slice shifted to `pitch`, at least `need` samples from its attack; returns (audio, attack index)."""
        x = self.samples[s.offset:s.offset + s.length] * s.gain
        ratio = 2.0 ** ((pitch - s.pitch) / 12.0)
        if ratio != 1.0:
            pos = np.arange(0.0, len(x) - 1, ratio)
            x = np.interp(pos, np.arange(len(x)), x).astype(np.float32)
        attack = int(round(s.attack / ratio))
        x = _sustain_loop(x, attack, need + attack, 440.0 * 2 ** ((pitch - 69) / 12))
        return x, attack

    def render(self, notes: list[Note], frames: int, sample_rate: int) -> Audio:
        """Notes (seconds from sample 0) → a dry mono bass at `sample_rate`; each attack lands on its note-on."""
        total = int(math.ceil(frames * SR / sample_rate)) + 1
        out = np.zeros(total + int(SR * 0.5), np.float32)
        counters: dict = {}
        rel = int(RELEASE_S * SR)
        # the planner's velocities and the transcriber's are different scales: a note above the line's median takes
        # the loud layer (recorded at or above the reference's median)
        median = float(np.median([n.velocity for n in notes])) if notes else 0.0
        for n in sorted(notes, key=lambda n: n.start):
            length = max(int((n.end - n.start) * SR), int(0.03 * SR))
            s = self._choose(int(n.pitch), n.velocity > median, counters, length + rel)
            x, attack = self._voice(s, int(n.pitch), length + rel)
            x = x[:attack + length + rel].copy()
            fade = np.ones(len(x), np.float32)
            tail = min(rel, len(x) - attack - 1)
            if tail > 0:
                fade[-tail:] = np.linspace(1.0, 0.0, tail, dtype=np.float32)
            pre = min(attack, int(PRE_S * SR))
            if pre > 0:
                fade[attack - pre:attack] *= np.linspace(0.0, 1.0, pre, dtype=np.float32)
            x = x[attack - pre:] * fade[attack - pre:] * (max(n.velocity, 1) / 100.0) ** 1.5
            a = int(round(n.start * SR)) - pre
            if a < 0:
                x, a = x[-a:], 0
            b = min(len(out), a + len(x))
            out[a:b] += x[:b - a]
        dry = Audio(out[None, :total], SR)
        dry = dry.resampled(sample_rate) if sample_rate != SR else dry
        return dry.slice(0, frames) if dry.frames >= frames else Audio(
            np.pad(dry.samples, ((0, 0), (0, frames - dry.frames))), sample_rate)

    # -- storage (safetensors, never pickle) --
    def to_bytes(self) -> bytes:

        meta = {"version": VERSION, "slices": [asdict(s) for s in self.slices], "feel": asdict(self.feel),
                "tone": self.tone, "source": self.source, "sha256": self.sha256, "build_s": self.build_s}
        return save({"samples": np.ascontiguousarray(self.samples, np.float32)},
                    metadata={"backline": json.dumps(meta, default=_jsonable)})

    @classmethod
    def from_file(cls, path: Path) -> Instrument:

        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {})["backline"])
        if meta.get("version") != VERSION:
            raise ValueError("old instrument cache")
        samples = load_file(str(path))["samples"]
        return cls(samples, [Slice(**s) for s in meta["slices"]], Feel(**meta["feel"]), meta["tone"],
                   meta.get("source", {}), meta.get("sha256", ""), float(meta.get("build_s", 0.0)))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _sustain_loop(x: np.ndarray, attack: int, need: int, f0: float) -> np.ndarray:
    """Extend a slice whose note stops sounding (or whose recording stops) before `need` samples by crossfaded
    repeats of a whole number of periods from its later body."""
    period = SR / max(f0, 20.0)
    seg = max(int(round(period * max(1, round(0.08 * SR / period)))), 64)
    # the body ends where the note is still sounding (a slice may run on into a rest before the next note)
    hop = int(0.01 * SR)
    frames = x[attack:attack + (len(x) - attack) // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1)) if len(frames) else np.zeros(1)
    loud = np.flatnonzero(rms >= 0.3 * rms.max()) if rms.max() > 0 else np.zeros(1, int)
    body_end = min(len(x) - int(0.01 * SR), attack + (int(loud[-1]) + 1) * hop)
    if body_end >= need:  # the recorded note sounds long enough: play it as it is
        return x
    start = max(attack + int(0.05 * SR), body_end - seg)
    if body_end - start < 64:
        return np.pad(x, (0, max(0, need - len(x))))  # no body to loop (a staccato slice)
    loop = x[start:body_end].copy()
    # flatten the segment's own decay (repeating a decaying piece would pump at the loop rate), hold the level the
    # body ends on, and let it keep decaying gently across the repeats
    q = max(len(loop) // 4, 1)
    r0 = float(np.sqrt(np.mean(loop[:q] ** 2)) + 1e-9)
    r1 = float(np.sqrt(np.mean(loop[-q:] ** 2)) + 1e-9)
    loop *= np.linspace(r1 / r0, 1.0, len(loop), dtype=np.float32)
    per_loop = float(np.clip((r1 / r0) ** 0.5, 0.7, 1.0))
    xf = min(len(loop) // 4, int(0.01 * SR))
    ramp = np.linspace(0.0, 1.0, xf, dtype=np.float32)
    out = [x[:body_end]]
    have = body_end
    level = 1.0
    while have < need:
        level *= per_loop
        piece = loop * level
        prev_tail = out[-1][-xf:].copy()
        out[-1] = out[-1][:-xf]
        piece[:xf] = piece[:xf] * ramp + prev_tail * (1.0 - ramp)
        out.append(piece)
        have += len(piece) - xf
    return np.concatenate(out).astype(np.float32)


def tone_of(bass: np.ndarray, notes: list[Note]) -> dict[str, Any]:
    """Brightness (spectral centroid over the harmonic index), attack sharpness → words for the tone and the
    technique it suggests (a description, not a classifier: 'finger style' is the plain electric default)."""


    spec = np.abs(stft(bass.astype(np.float32), n_fft=4096, hop=1024)) ** 2
    freqs = np.arange(spec.shape[0]) * SR / 4096
    energy = spec.sum(0)
    active = energy >= energy.max() * 1e-3
    centroid = float((freqs[:, None] * spec[:, active]).sum() / max(spec[:, active].sum(), 1e-12))
    f0 = float(np.median([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes]))
    harmonic = centroid / max(f0, 1.0)  # power centroid in harmonics: 1 = a pure sine
    rises = []
    for n in notes[:64]:
        i = int(n.start * SR)
        seg = np.abs(bass[max(0, i - int(0.03 * SR)):i + int(0.08 * SR)])
        if len(seg) < 32 or seg.max() <= 0:
            continue
        env = np.convolve(seg, np.ones(32) / 32, mode="same")
        pk = int(np.argmax(env))
        below = np.flatnonzero(env[:pk] < 0.1 * env[pk])
        rises.append((pk - (below[-1] if len(below) else 0)) / SR)
    rise = float(np.median(rises)) if rises else 0.01
    # calibrated on the presets' references: upright 1.05, fretless 1.5, synth 1.7–2.1, finger 2.0, slap 2.6, pick 2.8
    word = "dark" if harmonic < 1.6 else "warm" if harmonic < 2.4 else "bright" if harmonic < 4.0 else "very bright"
    technique = ("round, sine-like (sub or upright)" if harmonic < 1.25
                 else "pick or slap style" if harmonic >= 2.3 and rise < 0.003 else "finger style")
    return {"centroid_hz": round(centroid, 1), "harmonic_centroid": round(harmonic, 2), "attack_ms": round(rise * 1e3, 1),
            "word": word, "technique": technique}


def build_instrument(bass: Audio, notes: list[Note], feel: Feel) -> Instrument:
    """Slice the transcribed notes from the recording and keep the cleanest per pitch and velocity layer."""
    t0 = time.perf_counter()
    bass, _ = normalise_loudness(bass.with_channels(1).resampled(SR), -18.0)
    x = bass.samples[0].astype(np.float32)
    notes = sorted(notes, key=lambda n: n.start)
    attacks = [find_attack(x, int(n.start * SR)) for n in notes]
    split = int(np.median([n.velocity for n in notes])) + 1 if len({n.velocity for n in notes}) > 1 else 0
    cands: dict[tuple[int, int], list[tuple[float, int, int, Note]]] = {}
    for i, n in enumerate(notes):
        a = attacks[i]
        nxt = attacks[i + 1] - int(0.003 * SR) if i + 1 < len(notes) else len(x)
        end = min(nxt, int(n.end * SR) + int(0.25 * SR), len(x))
        if end - a < int(0.04 * SR):
            continue
        if not pitch_agrees(x[a:end], n.pitch):
            continue
        layer = int(split > 0 and n.velocity >= split)
        # cleanest = longest (more sustain to play from), then loudest (furthest above noise and bleed)
        score = min((end - a) / SR, 1.5) + 0.002 * n.velocity
        cands.setdefault((n.pitch, layer), []).append((score, a, end, n))
    if not cands:
        raise AudioFileError("the style reference has no bass note long enough to sample (40 ms)",
                             fix="give a recording with held bass notes")
    blob: list[np.ndarray] = []
    slices: list[Slice] = []
    offset = 0
    pre = int(PRE_S * SR)
    for (pitch, layer), items in sorted(cands.items()):
        for _score, a, end, n in sorted(items, key=lambda t: -t[0])[:ROUND_ROBIN]:
            seg = x[max(0, a - pre):end].copy()
            att = a - max(0, a - pre)
            rms = float(np.sqrt(np.mean(seg[att:att + int(0.1 * SR)] ** 2)) + 1e-9)
            blob.append(seg)
            slices.append(Slice(int(pitch), int(n.velocity), layer, offset, len(seg), att, round(0.1 / rms, 6)))
            offset += len(seg)
    tone = tone_of(x, notes) | {"layer_split": split}
    inst = Instrument(np.concatenate(blob).astype(np.float32), slices, feel, tone)
    inst.build_s = time.perf_counter() - t0
    return inst


# --- the whole step, cached -------------------------------------------------------------------------------

def cache_dir() -> Path:
    return instrument_cache_dir()


def cache_path(sha256: str) -> Path:
    return cache_dir() / f"bass-{sha256[:32]}-v{VERSION}.safetensors"


def prepare_reference(path: str | Path, *, progress: ProgressFn | None = None,
                      cancel: threading.Event | None = None, use_cache: bool = True) -> tuple[Instrument, dict]:
    """A reference file → (its instrument, info with what was learned). Cached per file content; bad input is
    refused with one line before any heavy work, and nothing is cached for it."""
    progress = progress or (lambda f, m: None)
    path = Path(path)
    t0 = time.perf_counter()
    audio = load_reference_audio(path)  # cheap checks first
    digest = file_sha256(path)
    cache = cache_path(digest)
    if use_cache and cache.is_file():
        try:
            inst = Instrument.from_file(cache)
            return inst, inst.summary() | {"reference": str(path), "cache": str(cache), "cached": True}
        except Exception:  # noqa: BLE001 - an old or damaged cache is rebuilt
            pass

    if audio.seconds > MAX_SECONDS:  # a minute shows the sound and the feel; a whole song would cost minutes
        audio = audio.slice(0, int(MAX_SECONDS * audio.sample_rate))
    low = bass_band_share(audio)
    if low < 0.1:  # cheap, before the transcriber: nothing in the bass's range at all
        raise AudioFileError(f"the style reference has no bass in it (only {low:.0%} of its power is below "
                             f"{BASS_BAND_HZ:.0f} Hz)", path=path,
                             fix="give a recording with a bass playing, or pick a preset (--preset finger)")
    progress(0.0, "transcribing the style reference")
    notes = transcribe_bass(audio)
    check_cancel(cancel)
    progress(0.3, "listening to the style reference")
    bass, source = isolate_bass(audio, path, progress, cancel, notes=notes)
    check_cancel(cancel)
    if bass is not audio:  # a song's separated bass: transcribe what the separator left
        notes = transcribe_bass(bass)
    notes = merge_splits(notes, normalise_loudness(bass.with_channels(1).resampled(SR), -18.0)[0].samples[0])
    sounding = float(sum(n.end - n.start for n in notes))
    if sounding < MIN_NOTE_SECONDS or len(notes) < 3:
        raise AudioFileError(f"the style reference has only {sounding:.1f} s of bass notes in {len(notes)} notes",
                             path=path, fix=f"give at least {MIN_NOTE_SECONDS:g} s of bass notes (10–30 s is best)")
    check_cancel(cancel)
    progress(0.7, "sampling the style reference")
    feel = measure_feel(notes)
    inst = build_instrument(bass, notes, feel)
    inst.sha256, inst.source = digest, source | {"file": path.name, "seconds_used": round(audio.seconds, 2)}
    inst.build_s = time.perf_counter() - t0
    where = None
    if use_cache:
        try:
            write_bytes_atomic(cache, inst.to_bytes(), overwrite=True)
            where = str(cache)
        except OSError:  # a read-only home: rebuild next time, still play now
            pass
    progress(1.0, "style reference learned")
    return inst, inst.summary() | {"reference": str(path), "cache": where, "cached": False}


def render_in_reference(inst: Instrument, notes: list[Note], frames: int, sample_rate: int,
                        lufs: float = -18.0, chain: Any = (), where: str = "reference instrument"
                        ) -> tuple[Audio, Audio, dict]:
    """(dry, wet, level report) like follow.render_line, in the reference's own sound. A user's reference has its
    effects in the samples already (no chain); a preset's reference is recorded dry, so its chain is added."""
    dry = inst.render(notes, frames, sample_rate)
    wet, level = render(dry.with_channels(2), chain, target_lufs=lufs, where=where)
    return dry, wet, level


def preset_instrument(preset, *, progress: ProgressFn | None = None,
                      cancel: threading.Event | None = None) -> tuple[Instrument, dict]:
    """A preset is "a reference + how it is played": its sound is the instrument sampled from its reference
    recording, its feel the preset's style. A shipped preset's reference was rendered from a known riff
    (`presets.render_reference`), so its notes are known: no transcription, ~0.2 s to build instead of 3–5 s.
    A preset with a recording of its own (no `[render] soundfont`) is built like a user's reference. Either way
    the instrument is cached per content in the user's cache (a read-only home rebuilds it per process)."""
    if not (preset.render or {}).get("soundfont"):
        return prepare_reference(preset.reference, progress=progress, cancel=cancel)
    digest = file_sha256(preset.reference)
    cache = cache_dir() / f"preset-{digest[:32]}-v{VERSION}.safetensors"
    info = {"reference": str(preset.reference), "preset": preset.name}
    if cache.is_file():
        try:
            inst = Instrument.from_file(cache)
            return inst, inst.summary() | info | {"cache": str(cache), "cached": True}
        except Exception:  # noqa: BLE001 - an old or damaged cache is rebuilt
            pass
    t0 = time.perf_counter()
    progress = progress or (lambda f, m: None)
    progress(0.0, f"sampling the {preset.name} preset's reference")
    notes = riff_notes(preset)
    inst = build_instrument(read_audio(preset.reference), notes, measure_feel(notes, bpm=100.0))
    inst.sha256 = digest
    inst.source = {"source": "preset reference (its riff's notes)", "file": Path(preset.reference).name}
    inst.build_s = time.perf_counter() - t0
    where = None
    try:
        write_bytes_atomic(cache, inst.to_bytes(), overwrite=True)
        where = str(cache)
    except OSError:
        pass
    check_cancel(cancel)
    return inst, inst.summary() | info | {"cache": where, "cached": False}


def preset_lag(preset, pitch: int) -> float:
    """Seconds a preset's sampled note sounds after its note-on: what its soundfont take keeps of the GM program's
    attack latency (`engines.render`: a take keeps (1 − `attack_share("bass")`) of it, as the band's own parts sound behind
    their note-ons). The sampler puts each attack on its note-on; without this lag the preset takes sat 11.6 ms
    before the real bass on the demo (hop 512 and 128, benchmarks/takes_eval.py --sound reference), with it where
    the soundfont take sits (measured once per program, cached)."""
    font = (preset.render or {}).get("soundfont", "FluidR3_GM")
    lat = attack_latency(font, preset.gm_program - 1, role="bass")
    if not lat:
        return 0.0
    own = lat[pitch] if pitch in lat else lat[min(lat, key=lambda p: (abs(p - pitch), p))]
    return max(0.0, own - latency_of(lat, pitch, attack_share("bass")))


def render_preset(inst: Instrument, preset, notes: list[Note], frames: int, sample_rate: int
                  ) -> tuple[Audio, Audio, dict]:
    """A line in a preset's sound: its reference instrument (each note `preset_lag` after its note-on), then its
    chain at its loudness (as `render_line`)."""
    lags = {p: preset_lag(preset, p) for p in {n.pitch for n in notes}}
    notes = [Note(n.pitch, n.start + lags[n.pitch], n.end + lags[n.pitch], n.velocity) for n in notes]
    dry, wet, level = render_in_reference(inst, notes, frames, sample_rate, lufs=preset.loudness_lufs,
                                          chain=preset.chain, where=f"{preset.name} chain")
    return dry, wet, level | {"lag_ms": round(1e3 * float(np.median(list(lags.values()))), 2) if lags else 0.0}


def preview_midi(midi: str | Path, *, reference: str | Path | None = None, preset: str | None = None,
                 sound: str = "reference", sample_rate: int = SR, lead_s: float = 0.1) -> Audio:
    """A bass MIDI line (a take's, or the one the musician edited and drags back) in the take's sound: its user
    reference's instrument, else its preset's (`sound`: "reference" = the preset's reference instrument,
    "soundfont" = its GM program) — the host's MIDI preview. Instruments are cached from the take's generation,
    so this costs the render. The line starts `lead_s` after the preview's first sample (a take's MIDI sits at its
    bars' place on the DAW timeline)."""
    notes, _ = read_line_midi(midi)
    shift = notes[0].start - lead_s
    notes = [Note(n.pitch, n.start - shift, n.end - shift, n.velocity) for n in notes]
    frames = int((max(n.end for n in notes) + RELEASE_S + 0.2) * sample_rate)
    if reference:
        inst, _ = prepare_reference(reference)
        return render_in_reference(inst, notes, frames, sample_rate)[1]
    p = load_preset(preset or "finger")
    if sound == "soundfont":
        return render_line(notes, p, frames, sample_rate, 120.0)[1]
    inst, _ = preset_instrument(p)
    return render_preset(inst, p, notes, frames, sample_rate)[1]


__all__ = ["Feel", "Instrument", "build_instrument", "estimate_tempo", "load_reference_audio", "measure_feel",
           "plan_in_feel", "prepare_reference", "preset_instrument", "preset_lag", "preview_midi", "render_in_reference",
           "render_preset"]
