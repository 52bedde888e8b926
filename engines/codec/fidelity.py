"""What a listener hears change through a codec round trip: the measures of codec fidelity.

One place for them, so the benchmark, the tests, `backline codec roundtrip` and the stop-hook's ear agree:
- `hop_band_share`: the share of energy within ±2 Hz of the STFT hop rate (sr/256 = 172.27 Hz at 44.1 kHz) and of
  its first three harmonics. A decoder whose phase does not advance repeats one grain per hop, a buzz right there.
- `loudness_change`: integrated loudness (BS.1770) of the round trip minus the input's, in LU.
- `chroma_cosine`: how well the pitch classes survive. Chroma from an 8192-point STFT (5.4 Hz bins: a bass's low
  notes still resolve), averaged over ~0.37 s (8 frames) so the measure is about which notes sound, not about
  frame-level phase texture; the mean cosine over those windows weighted by the input's chroma energy.
- `si_sdr`: scale-invariant SDR in dB (waveform fidelity; needs phase coherent with the input to be high).
- `bass_note_f1`: onset F1 (mir_eval, 50 ms, pitch within 50 cents) of a bass transcription against its MIDI.
"""

from __future__ import annotations

import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.effects import loudness_lufs
from backline.engines.core.frontend import mr_stft_distance

HOP_BAND_HZ = 2.0
STFT_HOP = 256


def _mono(x: Audio | np.ndarray) -> np.ndarray:
    samples = x.samples if isinstance(x, Audio) else np.asarray(x, np.float32)
    return samples.mean(0) if samples.ndim > 1 else samples


def hop_band_share(audio: Audio, hop: int = STFT_HOP, harmonics: int = 4) -> float:
    """Energy within ±2 Hz of sr/hop·k (k = 1 … `harmonics`) as a share of all energy (0 … 1)."""
    x = _mono(audio).astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / audio.sample_rate)
    total = power.sum()
    if total <= 0:
        return 0.0
    band = sum(power[np.abs(freqs - k * audio.sample_rate / hop) <= HOP_BAND_HZ].sum() for k in range(1, harmonics + 1))
    return float(band / total)


def loudness_change(reference: Audio, estimate: Audio) -> float:
    """LU gained (+) or lost (−) by the estimate; 0 when both are silent."""
    a, b = loudness_lufs(reference), loudness_lufs(estimate)
    if not np.isfinite(a) and not np.isfinite(b):
        return 0.0
    return float(b - a) if np.isfinite(a) and np.isfinite(b) else float("-inf") if np.isfinite(a) else float("inf")


def chroma(audio: Audio, smooth: int = 8) -> np.ndarray:
    """[12, windows] chroma power, smoothed over `smooth` frames of 2048 samples."""
    import librosa

    c = librosa.feature.chroma_stft(y=_mono(audio).astype(np.float32), sr=audio.sample_rate, n_fft=8192,
                                    hop_length=2048, norm=None)
    if smooth > 1 and c.shape[1] >= smooth:
        kernel = np.ones(smooth) / smooth
        c = np.stack([np.convolve(row, kernel, mode="valid") for row in c])
    return c


def chroma_cosine(reference: Audio, estimate: Audio) -> float:
    """Energy-weighted mean cosine between the two signals' smoothed chroma (1 = same pitch classes)."""
    a, b = chroma(reference), chroma(estimate)
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    weight = na * (na > 1e-3 * na.max()) if n and na.max() > 0 else na
    if weight.sum() <= 0:
        return 1.0 if nb.sum() <= 0 else 0.0
    cos = (a * b).sum(0) / np.maximum(na * nb, 1e-12)
    return float((cos * weight).sum() / weight.sum())


def si_sdr(reference: Audio | np.ndarray, estimate: Audio | np.ndarray) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019) in dB over the mono downmix."""
    ref, est = _mono(reference).astype(np.float64), _mono(estimate).astype(np.float64)
    n = min(len(ref), len(est))
    ref, est = ref[:n] - ref[:n].mean(), est[:n] - est[:n].mean()
    scale = np.dot(est, ref) / max(np.dot(ref, ref), 1e-12)
    target = scale * ref
    noise = est - target
    return float(10 * np.log10(max(np.dot(target, target), 1e-12) / max(np.dot(noise, noise), 1e-12)))


def note_f1(reference: list, estimate: list, onset_tolerance: float = 0.05) -> float:
    """Onset-only note F1 (mir_eval.transcription, pitch within 50 cents) of two `transcribe.Note` lists."""
    import mir_eval

    def arrays(notes: list) -> tuple[np.ndarray, np.ndarray]:
        if not notes:
            return np.zeros((0, 2)), np.zeros(0)
        iv = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in notes])
        return iv, np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes])

    (ri, rp), (ei, ep) = arrays(reference), arrays(estimate)
    if len(ri) == 0 or len(ei) == 0:
        return 1.0 if len(ri) == len(ei) else 0.0
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=onset_tolerance,
                                                                     offset_ratio=None)
    return float(f1)


def bass_note_f1(audio: Audio, reference_notes: list) -> float:
    """Transcribe a bass stem the way the bass engine does and score it against the notes it should play."""
    # lazy: basic-pitch and mido; the codec and separate trainers import this module on the bare GPU machine
    from backline.engines.bass.transcription import transcribe_bass

    return note_f1(reference_notes, transcribe_bass(audio))


def fidelity(reference: Audio, estimate: Audio) -> dict[str, float]:
    """Every listener-facing measure of a round trip at once (both at the same rate and length)."""
    n = min(reference.frames, estimate.frames)
    ref, est = reference.slice(0, n), estimate.slice(0, n)
    return {"hop_band_in": hop_band_share(ref), "hop_band_out": hop_band_share(est),
            "loudness_change_lu": loudness_change(ref, est), "chroma_cosine": chroma_cosine(ref, est),
            "si_sdr_db": si_sdr(ref, est),
            "mr_stft": mr_stft_distance(ref.with_channels(1).samples, est.with_channels(1).samples)}
