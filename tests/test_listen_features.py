"""The listener's features (core.frontend's CQT/chroma/tuning/mel, core.dsp's envelope helpers) against librosa's:
the listener's fitted constants (TEMPO_WEIGHTS, the chord thresholds) were set on librosa's features, so the ports
must give the same numbers on music-like signals (librosa stays a dependency for the benchmarks; only the tests
and benchmarks import it)."""

from __future__ import annotations

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")

from backline.engines.core import dsp, frontend  # noqa: E402
from backline.engines.listen.tempo import HOP, SR  # noqa: E402

CHORDS = ((50, 54, 57), (55, 59, 62), (57, 61, 64), (47, 50, 54))  # D, G, A, Bm (MIDI)


def band(seconds: float = 12.0, bpm: float = 100.0, cents: float = -30.0, seed: int = 0) -> np.ndarray:
    """A small band at 22.05 kHz: a bass and a three-voice chord per bar (harmonic tones with a pluck envelope,
    detuned by `cents`), hi-hat noise on the eighths and a kick on the beats, with a little room noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    y = 0.002 * rng.standard_normal(n)
    beat = 60.0 / bpm
    t_note = np.arange(int(2 * beat * SR)) / SR
    pluck = np.exp(-t_note * 3.0)

    def tone(midi: int) -> np.ndarray:
        f = 440.0 * 2 ** ((midi - 69 + cents / 100) / 12)
        return sum(np.sin(2 * np.pi * f * k * t_note) / k for k in range(1, 6)) * pluck

    def add(at: float, sig: np.ndarray, gain: float) -> None:
        a = int(at * SR)
        m = min(len(sig), n - a)
        if m > 0:
            y[a:a + m] += gain * sig[:m]

    k = 0
    while k * beat < seconds:
        chord = CHORDS[(k // 4) % len(CHORDS)]
        if k % 2 == 0:
            for p in chord:
                add(k * beat, tone(p + 12), 0.08)
        add(k * beat, tone(chord[0] - 12), 0.15)
        click = np.exp(-np.arange(int(0.08 * SR)) / SR * 60.0)
        add(k * beat, np.sin(2 * np.pi * 55 * np.arange(len(click)) / SR) * click, 0.4)
        for h in (0.0, 0.5):
            add((k + h) * beat, rng.standard_normal(int(0.03 * SR)) * np.exp(-np.arange(int(0.03 * SR)) / SR * 150), 0.05)
        k += 1
    return (y / np.abs(y).max() * 0.8).astype(np.float32)


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return band()


def test_mel_onset_envelope_and_rms_match_librosa(y):
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, hop_length=HOP, n_mels=128))
    ours = dsp.power_to_db(frontend.mel_spectrogram(frontend.as_tensor(y), SR, 2048, HOP, 128, mel_scale="slaney",
                                                    norm="slaney", pad_mode="constant").numpy())
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 0.01  # dB
    freqs = frontend.mel_frequencies(128, 0.0, SR / 2)
    np.testing.assert_allclose(freqs, librosa.mel_frequencies(n_mels=128, fmax=SR / 2), rtol=1e-9)
    for band_mask in (slice(None), freqs < 200.0):
        env_ref = librosa.onset.onset_strength(S=ref[band_mask], sr=SR, hop_length=HOP)
        np.testing.assert_allclose(dsp.onset_strength(ref[band_mask], hop=HOP), env_ref, rtol=1e-5, atol=1e-5)
        env = dsp.onset_strength(ours[band_mask], hop=HOP)
        assert np.abs(env - env_ref).max() < 1e-3 * env_ref.max()
    np.testing.assert_allclose(dsp.frame_rms(y, hop=512), librosa.feature.rms(y=y, hop_length=512)[0], rtol=1e-5,
                               atol=1e-7)


def test_tempo_estimate_peak_picking_and_autocorrelation_match_librosa(y):
    env = librosa.onset.onset_strength(y=y, sr=SR, hop_length=HOP)
    assert dsp.tempo_estimate(env, SR, HOP) == pytest.approx(
        float(librosa.feature.tempo(onset_envelope=env, sr=SR, hop_length=HOP)[0]))
    for start in (60.0, 120.0, 180.0):  # the prior moves the choice between the metrical levels alike
        assert dsp.tempo_estimate(env, SR, HOP, start_bpm=start) == pytest.approx(
            float(librosa.feature.tempo(onset_envelope=env, sr=SR, hop_length=HOP, start_bpm=start)[0]))
    for ac_size in (2.5, 16.0):  # the reference learner's window (bass/reference.py), longer than the clip too
        assert dsp.tempo_estimate(env[:800], SR, HOP, start_bpm=110.0, ac_size=ac_size) == pytest.approx(
            float(librosa.feature.tempo(onset_envelope=env[:800], sr=SR, hop_length=HOP, start_bpm=110.0,
                                        ac_size=ac_size)[0]))
    ac_ref = librosa.autocorrelate(env - env.mean(), max_size=400)
    np.testing.assert_allclose(dsp.autocorrelate(env - env.mean(), max_size=400), ac_ref, atol=1e-4 * ac_ref.max())
    for pre_max, post_max, pre_avg, post_avg, share, wait in ((3, 3, 10, 10, 0.2, 4), (3, 3, 10, 10, 0.3, 8),
                                                               (1, 1, 3, 3, 0.0, 0), (5, 2, 1, 7, 0.1, 2)):
        delta = share * float(np.percentile(env, 99))
        ref = librosa.util.peak_pick(env, pre_max=pre_max, post_max=post_max, pre_avg=pre_avg, post_avg=post_avg,
                                     delta=delta, wait=wait)
        ours = dsp.peak_pick(env, pre_max, post_max, pre_avg, post_avg, delta, wait)
        assert len(ref) > 10 and np.array_equal(ours, ref)


def test_onset_envelope_and_onset_times_match_librosa(y):
    """What the accompaniment places its part on (the band's attacks at hop 128)."""
    ref = librosa.onset.onset_strength(y=y, sr=SR, hop_length=128)
    env = frontend.onset_envelope(y, SR, 128)
    assert env.shape == ref.shape and np.abs(env - ref).max() < 1e-3 * ref.max()
    times = librosa.onset.onset_detect(onset_envelope=ref, sr=SR, hop_length=128, units="time")
    assert len(times) > 20
    np.testing.assert_array_equal(dsp.onset_detect(ref, SR, 128), times)
    np.testing.assert_array_equal(dsp.onset_detect(env, SR, 128), times)


def test_backtracked_onsets_match_librosa(y):
    """Where the listener reads the band's attacks from (`listen.phase`): onsets moved back to the rise's start."""
    ref = librosa.onset.onset_strength(y=y, sr=SR, hop_length=64, n_fft=1024)
    times = librosa.onset.onset_detect(onset_envelope=ref, sr=SR, hop_length=64, units="time", backtrack=True)
    assert len(times) > 20 and (times < librosa.onset.onset_detect(onset_envelope=ref, sr=SR, hop_length=64,
                                                                  units="time")).mean() > 0.9
    np.testing.assert_array_equal(dsp.onset_detect(ref, SR, 64, backtrack=True), times)


def test_viterbi_matches_librosa():
    rng = np.random.default_rng(3)
    for states, steps in ((7, 40), (30, 90)):
        prob = rng.random((states, steps)) ** 4
        trans = rng.random((states, states)) ** 3
        trans /= trans.sum(1, keepdims=True)
        p_init = rng.random(states)
        p_init /= p_init.sum()
        ref, logp = librosa.sequence.viterbi(prob, trans, p_init=p_init, return_logp=True)
        ours, our_logp = dsp.viterbi(prob, trans, p_init)
        assert np.array_equal(ours, ref)
        assert our_logp == pytest.approx(float(np.ravel(logp)[0]), rel=1e-12)


def test_tuning_cqt_and_chroma_match_librosa(y):
    tuning = librosa.estimate_tuning(y=y, sr=SR, bins_per_octave=12)
    assert frontend.estimate_tuning(y, SR, 12) == pytest.approx(tuning, abs=0.011)  # one 0.01 histogram bin
    assert tuning == pytest.approx(-0.3, abs=0.03)  # the band is 30 cents flat
    fmin = librosa.note_to_hz("C2")
    assert frontend.midi_to_hz(36) == pytest.approx(fmin)
    ref = np.abs(librosa.cqt(y=y, sr=SR, hop_length=512, fmin=fmin, n_bins=216, bins_per_octave=36,
                             tuning=3 * tuning))
    ours = frontend.cqt_magnitude(y, SR, 512, fmin, 216, 36, 3 * tuning)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-5 * ref.max()  # float32 rounding
    loud = ref > 0.01 * ref.max()
    assert np.median(np.abs(ours - ref)[loud] / ref[loud]) < 1e-5
    chroma_ref = librosa.feature.chroma_cqt(C=ref, sr=SR, hop_length=512, fmin=fmin, bins_per_octave=36, n_octaves=6)
    np.testing.assert_allclose(frontend.chroma_from_cqt(ref, 36, fmin), chroma_ref, rtol=1e-5, atol=1e-6)
    assert np.abs(frontend.chroma_from_cqt(ours, 36, fmin) - chroma_ref).max() < 1e-3
    k = 3 * (52 - 36)
    upper_ref = librosa.feature.chroma_cqt(C=ref[k:k + 144], sr=SR, hop_length=512, fmin=librosa.midi_to_hz(52),
                                           bins_per_octave=36, n_octaves=4, norm=None)
    np.testing.assert_allclose(frontend.chroma_from_cqt(ref[k:k + 144], 36, frontend.midi_to_hz(52), normalise=False),
                               upper_ref, rtol=1e-5, atol=1e-6 * upper_ref.max())


def test_the_listener_imports_neither_librosa_nor_scipy():
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from backline.engines.core.audio import Audio\n"
            "from backline.engines.listen import listen\n"
            "t = np.arange(8 * 22050) / 22050\n"
            "y = (np.sin(2 * np.pi * 220 * t) * (np.mod(t, 0.5) < 0.1)).astype(np.float32)\n"
            "listen(Audio(y[None], 22050), bpm=120.0)\n"
            "print(sorted(m for m in ('librosa', 'scipy', 'numba') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
