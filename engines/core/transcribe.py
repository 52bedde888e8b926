"""The one audio → MIDI module of Backline.

- `transcribe_polyphonic(audio)`: Spotify's basic-pitch (ICASSP 2022 model) through onnxruntime. The ONNX
  model ships inside the basic-pitch wheel, so it runs offline. basic-pitch is installed with `--no-deps`
  (its wheel pins TensorFlow, which we never load; see packaging/requirements-nodeps.txt); we feed it our own
  resampled mono audio instead of letting it read files with librosa, so the one resampler stays ours.
- `transcribe_monophonic(audio)`: torchcrepe (CREPE pitch tracker, weights ship in the wheel and are loaded by
  torchcrepe with torch's `weights_only` loader, no arbitrary unpickling). Pitch + periodicity per 10 ms frame
  become notes: voiced = periodicity above a threshold and level above a gate; a note starts where voicing
  starts, where the rounded pitch changes for longer than a short hold, or where the level jumps (a
  re-struck note at the same pitch, common in bass lines), and ends where voicing stops.
- `notes_to_midi(notes, timeline, ...)`: a type-1 MIDI file (tempo map + meter on track 0, notes on track 1),
  optionally quantised to a grid, at the timeline's PPQ.

Note times are seconds from the first sample of the audio passed in; `offset_seconds` in `notes_to_midi`
says where that audio sits on the DAW timeline (e.g. the start of the captured region).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import mido
import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.errors import AudioFormatError, ConfigError, MissingDependencyError
from backline.engines.core.timeline import Timeline

#: basic-pitch works at 22.05 kHz; CREPE at 16 kHz with a 10 ms hop.
BASIC_PITCH_RATE = 22050
CREPE_RATE = 16000
CREPE_HOP = 160


@dataclass(frozen=True)
class Note:
    """One transcribed note: MIDI pitch, start/end in seconds from the audio's first sample, MIDI velocity."""

    pitch: int
    start: float
    end: float
    velocity: int = 100

    @property
    def duration(self) -> float:
        return self.end - self.start


def _mono(audio: Audio, rate: int) -> np.ndarray:
    if not isinstance(audio, Audio):
        raise AudioFormatError(f"expected an Audio, got {type(audio).__name__}")
    mono = audio.with_channels(1).resampled(rate).samples[0]
    return np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


# --- polyphonic: basic-pitch ------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _basic_pitch_model():
    """Load basic-pitch's ONNX model once. Its import logs a warning per missing backend (TF, CoreML,
    TFLite): we only use ONNX, so those warnings are silenced."""
    # onnxruntime's telemetry would write a device id and an event store under ~/.cache/Microsoft and a file
    # in the temp folder on the first session: off (Backline is offline and writes nothing it does not declare)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import basic_pitch
        from basic_pitch import inference
    except ImportError as err:
        raise MissingDependencyError("basic-pitch is not installed",
                                     fix="pip install --no-deps basic-pitch==0.4.0 onnxruntime") from err
    finally:
        root.setLevel(level)
    if not getattr(basic_pitch, "ONNX_PRESENT", False):
        raise MissingDependencyError("onnxruntime is not installed (basic-pitch needs it here)",
                                     fix="pip install onnxruntime")
    model_path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    return inference.Model(model_path)


def transcribe_polyphonic(audio: Audio, *, onset_threshold: float = 0.5, frame_threshold: float = 0.3,
                          min_note_ms: float = 58.0, min_hz: float | None = None,
                          max_hz: float | None = None) -> list[Note]:
    """Polyphonic audio → notes with basic-pitch (defaults are basic-pitch's, except the minimum note
    length, which we lower from 128 ms to 58 ms so 16th notes at 120 BPM (125 ms) and faster survive)."""
    model = _basic_pitch_model()  # first: it imports basic_pitch with its backend warnings silenced
    from basic_pitch import constants as bpc
    from basic_pitch import inference, note_creation

    mono = _mono(audio, BASIC_PITCH_RATE)
    if mono.size == 0 or not np.any(mono):
        return []
    n_overlap = 30
    overlap_len = n_overlap * bpc.FFT_HOP
    hop_size = bpc.AUDIO_N_SAMPLES - overlap_len
    padded = np.concatenate([np.zeros(overlap_len // 2, np.float32), mono])
    outputs: dict[str, list[np.ndarray]] = {"note": [], "onset": [], "contour": []}
    for window, _ in inference.window_audio_file(padded, hop_size):
        for key, value in model.predict(window[None, ...].astype(np.float32)).items():
            outputs[key].append(value)
    unwrapped = {k: inference.unwrap_output(np.concatenate(v), mono.size, n_overlap) for k, v in outputs.items()}
    min_frames = max(1, int(round(min_note_ms / 1000 * (bpc.AUDIO_SAMPLE_RATE / bpc.FFT_HOP))))
    _, events = note_creation.model_output_to_notes(
        unwrapped, onset_thresh=onset_threshold, frame_thresh=frame_threshold, min_note_len=min_frames,
        min_freq=min_hz, max_freq=max_hz, include_pitch_bends=False, melodia_trick=True)
    notes = [Note(int(p), float(s), float(e), _velocity(float(a))) for s, e, p, a, *_ in events if e > s]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def _velocity(amplitude: float) -> int:
    """basic-pitch's note amplitude (0–1 activation) → MIDI velocity, the same mapping basic-pitch uses."""
    return int(np.clip(round(127 * amplitude), 1, 127))


# --- monophonic: torchcrepe ------------------------------------------------------------------------------

def transcribe_monophonic(audio: Audio, *, model: str = "tiny", fmin: float = 32.71, fmax: float = 1000.0,
                          periodicity_threshold: float = 0.5, gate_db: float = -45.0,
                          min_note_ms: float = 50.0, pitch_hold_ms: float = 40.0,
                          onset_jump_db: float = 6.0) -> list[Note]:
    """Monophonic audio (a bass line, a lead) → notes with CREPE.

    Defaults suit bass: `fmin` 32.71 Hz (C1) is the bottom of CREPE's pitch range, so a 5-string's low B
    (30.9 Hz) reads as C1 or an octave up. `model='tiny'` runs ~20x faster than 'full' on a CPU and tracks
    clean bass lines well ('full' is for noisier sources). `gate_db` is relative
    to the loudest 10 ms frame, so quiet recordings are not dropped entirely.
    """
    try:
        import torch
        import torchcrepe
    except ImportError as err:
        raise MissingDependencyError("torchcrepe is not installed", fix="pip install torchcrepe==0.0.24") from err
    if model not in ("tiny", "full"):
        raise ConfigError(f"CREPE model {model!r} does not exist", fix="use 'tiny' or 'full'")
    if not 0 < fmin < fmax:
        raise ConfigError(f"pitch range {fmin}–{fmax} Hz is empty", fix="give 0 < fmin < fmax")
    mono = _mono(audio, CREPE_RATE)
    if mono.size < CREPE_HOP * 2 or not np.any(mono):
        return []
    with torch.inference_mode():
        pitch, periodicity = torchcrepe.predict(
            torch.from_numpy(mono)[None], CREPE_RATE, CREPE_HOP, fmin, fmax, model=model,
            decoder=torchcrepe.decode.viterbi, return_periodicity=True, batch_size=512, device="cpu", pad=True)
        periodicity = torchcrepe.filter.median(periodicity, 3)
    pitch = pitch[0].numpy().astype(np.float64)
    periodicity = periodicity[0].numpy()
    n = pitch.shape[0]
    # frame level in dB (centred 20 ms windows, matching CREPE's centred frames)
    padded = np.pad(mono, (CREPE_HOP, CREPE_HOP))
    rms = np.array([np.sqrt(np.mean(padded[i * CREPE_HOP: i * CREPE_HOP + 2 * CREPE_HOP] ** 2) + 1e-12)
                    for i in range(n)])
    level = 20 * np.log10(rms + 1e-9)
    level -= level.max()
    voiced = (periodicity >= periodicity_threshold) & (level > gate_db)
    midi = 69 + 12 * np.log2(np.maximum(pitch, 1e-3) / 440.0)
    return _segment(midi, voiced, level, frame_s=CREPE_HOP / CREPE_RATE, min_note_ms=min_note_ms,
                    pitch_hold_ms=pitch_hold_ms, onset_jump_db=onset_jump_db)


def _segment(midi: np.ndarray, voiced: np.ndarray, level: np.ndarray, *, frame_s: float, min_note_ms: float,
             pitch_hold_ms: float, onset_jump_db: float) -> list[Note]:
    """Frame-wise (pitch, voiced, level) → notes. Split on voicing edges, held pitch changes and level jumps."""
    n = len(midi)
    hold = max(1, int(round(pitch_hold_ms / 1000 / frame_s)))
    min_len = max(1, int(round(min_note_ms / 1000 / frame_s)))
    rounded = np.round(midi).astype(int)
    # level jumps: rise over the last 3 frames above onset_jump_db, taken at the local peak of the rise
    rise = np.zeros(n)
    for i in range(1, n):
        rise[i] = level[i] - level[max(0, i - 3):i].min()
    onset = (rise > onset_jump_db) & (np.r_[rise[1:], 0] <= rise)
    notes: list[Note] = []
    start = None
    current = None
    peak_level = -120.0

    def close(end: int) -> None:
        if start is not None and end - start >= min_len:
            segment = rounded[start:end]
            pitch = int(np.bincount(segment - segment.min()).argmax() + segment.min())  # the held pitch
            vel = int(np.clip(round(127 * 10 ** (peak_level / 40)), 20, 127))  # -40 dB → 12 → 20, 0 dB → 127
            notes.append(Note(pitch, start * frame_s, end * frame_s, vel))

    i = 0
    while i < n:
        if not voiced[i]:
            if start is not None:
                close(i)
                start = None
            i += 1
            continue
        if start is None:
            start, current, peak_level = i, rounded[i], level[i]
        elif rounded[i] != current and np.all(rounded[i:i + hold] == rounded[i]) and i + hold <= n:
            close(i)
            start, current, peak_level = i, rounded[i], level[i]
        elif onset[i] and i - start >= min_len:
            close(i)
            start, current, peak_level = i, rounded[i], level[i]
        peak_level = max(peak_level, level[i])
        i += 1
    if start is not None:
        close(n)
    return notes


# --- notes → MIDI ----------------------------------------------------------------------------------------

def _tempo_meta(timeline: Timeline) -> list[tuple[int, mido.MetaMessage]]:
    events = [(0, mido.MetaMessage("time_signature", numerator=timeline.numerator,
                                   denominator=timeline.denominator, time=0))]
    for quarter, bpm in timeline.tempo.points:
        events.append((int(round(quarter * timeline.ppq)), mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
    return events


def events_to_track(events: Iterable[tuple[int, mido.Message | mido.MetaMessage]], name: str = "") -> mido.MidiTrack:
    """Absolute-tick (tick, message) pairs → a delta-time track. Note-offs sort before note-ons at a tick so
    a re-struck note is not cut by its predecessor's off."""
    def order(item: tuple[int, mido.Message | mido.MetaMessage]) -> tuple[int, int]:
        msg = item[1]
        rank = 0 if msg.is_meta else (1 if msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0) else 2)
        return item[0], rank

    track = mido.MidiTrack()
    if name:
        track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, msg in sorted(events, key=order):
        track.append(msg.copy(time=max(0, tick - now)))
        now = max(now, tick)
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def notes_to_midi(notes: Sequence[Note], timeline: Timeline, *, quantise: int | None = None, program: int = 0,
                  channel: int = 0, offset_seconds: float = 0.0, name: str = "") -> mido.MidiFile:
    """Notes → a type-1 MIDI file at `timeline.ppq` with its tempo map and meter.

    `quantise` is grid lines per quarter note (4 = 16ths, 6 = 16th triplets, None = as played); onsets snap
    to the grid and offsets to the grid too, keeping at least one grid step. `channel` is 0-based (mido):
    drums use 9. `offset_seconds` places the audio's first sample on the timeline.
    """
    if quantise is not None and (not isinstance(quantise, int) or quantise <= 0):
        raise ConfigError(f"quantise={quantise!r} is not a grid", fix="use a positive grid per quarter, e.g. 4, or None")
    if not 0 <= channel <= 15 or not 0 <= program <= 127:
        raise ConfigError(f"channel {channel} / program {program} out of range", fix="channel 0–15, program 0–127")
    ppq = timeline.ppq
    events: list[tuple[int, mido.Message | mido.MetaMessage]] = []
    if channel != 9:
        events.append((0, mido.Message("program_change", program=program, channel=channel)))
    for note in notes:
        q0 = timeline.seconds_to_quarters(max(0.0, note.start + offset_seconds))
        q1 = timeline.seconds_to_quarters(max(0.0, note.end + offset_seconds))
        if quantise:
            g0 = round(q0 * quantise)
            g1 = max(g0 + 1, round(q1 * quantise))
            t0, t1 = int(round(g0 * ppq / quantise)), int(round(g1 * ppq / quantise))
        else:
            t0, t1 = int(round(q0 * ppq)), max(int(round(q0 * ppq)) + 1, int(round(q1 * ppq)))
        pitch = int(np.clip(note.pitch, 0, 127))
        vel = int(np.clip(note.velocity, 1, 127))
        events.append((t0, mido.Message("note_on", note=pitch, velocity=vel, channel=channel)))
        events.append((t1, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    mid.tracks.append(events_to_track(_tempo_meta(timeline), name="tempo"))
    mid.tracks.append(events_to_track(events, name=name))
    return mid


def midi_to_notes(mid: mido.MidiFile, *, channel: int | None = None) -> list[Note]:
    """The inverse, for tests and round trips: every note (optionally of one 0-based channel), in seconds."""
    notes: list[Note] = []
    active: dict[tuple[int, int], list[tuple[float, int]]] = {}
    now = 0.0
    for msg in mid:  # merged, times in seconds through the tempo map
        now += msg.time
        if msg.is_meta or msg.type not in ("note_on", "note_off"):
            continue
        if channel is not None and msg.channel != channel:
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            active.setdefault(key, []).append((now, msg.velocity))
        elif active.get(key):
            start, vel = active[key].pop(0)
            notes.append(Note(msg.note, start, now, vel))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def note_f1(reference: Sequence[Note], estimate: Sequence[Note], *, onset_tolerance: float = 0.05,
            match_pitch_class: bool = False) -> tuple[float, float, float]:
    """Greedy note matching (onset within tolerance, same pitch or pitch class) → precision, recall, F1.

    The mir_eval convention without offsets; used by tests and benchmarks to score transcriptions.
    """
    used = [False] * len(estimate)
    hits = 0
    for ref in sorted(reference, key=lambda n: n.start):
        best, best_dt = -1, math.inf
        for j, est in enumerate(estimate):
            if used[j]:
                continue
            same = (ref.pitch % 12 == est.pitch % 12) if match_pitch_class else ref.pitch == est.pitch
            dt = abs(est.start - ref.start)
            if same and dt <= onset_tolerance and dt < best_dt:
                best, best_dt = j, dt
        if best >= 0:
            used[best] = True
            hits += 1
    precision = hits / len(estimate) if estimate else 0.0
    recall = hits / len(reference) if reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1

