"""CaptureRing without a device: passes, gaps, overflows, newest-pass-wins, bounded memory, rate epochs.

The ring is fed exactly as the audio callback feeds it (blocks + stamps); the JACK tests in
test_bridge_jack.py feed it from a real device.
"""


import numpy as np
import pytest

from backline.bridge.capture import FLAG_OVERFLOW, CaptureRing, LoopbackCapture
from backline.bridge.transport import Transport
from backline.engines.core.errors import AudioFormatError

SR, BLOCK = 48000, 256


def ramp(start: int, n: int) -> np.ndarray:
    """Frames whose value is their own DAW position (scaled): alignment errors show as wrong values."""
    v = (np.arange(start, start + n, dtype=np.float64) / 1e7).astype(np.float32)
    return np.stack([v, -v], axis=1)


def feed(ring: CaptureRing, daw_start: int, blocks: int, *, t0: float = 10.0, jitter: float = 0.0,
         playing: bool = True, flags_at: dict | None = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k in range(blocks):
        daw = daw_start + k * BLOCK
        stamp = daw + (rng.normal(0, jitter) if jitter else 0.0)
        ring.write(ramp(daw, BLOCK), stamp, playing, t0 + ring.written / ring.sample_rate,
                   (flags_at or {}).get(k, 0))


def test_extract_is_exact_despite_stamp_jitter():
    ring = CaptureRing(SR, 2, seconds=10)
    feed(ring, 96000, 400, jitter=40.0)  # ±40-sample OSC jitter on every block
    ex = ring.extract(100000, 150000)
    assert ex.gaps == [] and ex.passes == 1 and ex.coverage == 1.0
    expected = ramp(100000, 50000).T
    assert np.allclose(ex.audio.samples, expected, atol=2e-7 * 8)  # within ~8 samples of truth
    assert ex.audio.frames == 50000 and ex.audio.sample_rate == SR


def test_locate_starts_a_new_pass_and_the_newest_wins():
    ring = CaptureRing(SR, 2, seconds=10)
    feed(ring, 0, 200)                       # bars 1.. once
    feed(ring, 96000, 100, playing=False)    # stopped: not part of the timeline
    for k in range(100):                     # played again from 0 with different audio
        ring.write(ramp(k * BLOCK, BLOCK) + 1.0, k * BLOCK, True, 20.0 + k * BLOCK / SR)
    ex = ring.extract(0, 200 * BLOCK)
    assert ex.passes == 2 and ex.gaps == []
    assert np.all(ex.audio.samples[0, : 100 * BLOCK] >= 1.0)       # newest take
    assert np.all(ex.audio.samples[0, 100 * BLOCK:] < 1.0)         # older take where the new one stops


def test_overflow_and_lost_frames_are_reported_as_gaps():
    ring = CaptureRing(SR, 2, seconds=10)
    feed(ring, 0, 50)
    # 3 blocks lost: the next block's stamp (and ADC time) jump ahead; its overflow flag is set
    for k in range(53, 100):
        ring.write(ramp(k * BLOCK, BLOCK), k * BLOCK, True, 10.0 + k * BLOCK / SR,
                   FLAG_OVERFLOW if k == 53 else 0)
    ex = ring.extract(0, 100 * BLOCK)
    assert ex.gaps == [(50 * BLOCK, 53 * BLOCK)]
    assert ex.overflows == 1 and ex.coverage == pytest.approx(0.97)
    assert np.all(ex.audio.samples[:, 50 * BLOCK:53 * BLOCK] == 0)
    assert np.allclose(ex.audio.samples[:, 53 * BLOCK:], ramp(53 * BLOCK, 47 * BLOCK).T)


def test_ring_is_bounded_and_old_audio_becomes_a_gap():
    ring = CaptureRing(SR, 2, seconds=1.0)
    before = ring.samples.nbytes
    feed(ring, 0, 600)  # 3.2 s into a 1 s ring
    assert ring.samples.nbytes == before
    ex = ring.extract(0, 600 * BLOCK)
    assert ex.gaps and ex.gaps[0][0] == 0
    assert ex.gaps[-1][1] >= 600 * BLOCK - SR - BLOCK  # only the last second survives
    assert ex.coverage == pytest.approx(SR / (600 * BLOCK), abs=0.01)
    tail = ring.extract(600 * BLOCK - 1000, 600 * BLOCK)
    assert tail.gaps == [] and np.allclose(tail.audio.samples, ramp(600 * BLOCK - 1000, 1000).T)


def test_empty_and_reversed_ranges_are_refused():
    ring = CaptureRing(SR, 2, seconds=1)
    with pytest.raises(AudioFormatError):
        ring.extract(10, 10)
    assert ring.extract(0, 100).gaps == [(0, 100)]  # nothing captured: all gap, honest


def test_rate_change_keeps_the_old_buffer_and_resamples_it():
    """A device back at 44.1 kHz: a new epoch; bars captured before come from the kept 48 kHz ring."""
    tr = Transport(SR)
    cap = LoopbackCapture(tr, seconds=5)   # never started: fed the way its callback feeds it
    tone = np.sin(2 * np.pi * 441 * np.arange(SR) / SR).astype(np.float32)
    for k in range(SR // BLOCK):
        blk = np.stack([tone[k * BLOCK:(k + 1) * BLOCK]] * 2, axis=1)
        cap.ring.write(blk, k * BLOCK, True, 1.0 + k * BLOCK / SR)
    old = cap.ring
    cap._new_epoch(44100)
    assert cap.epochs == [old] and cap.ring.sample_rate == 44100 and cap.ring.daw_rate == SR
    n = 44100 // 2
    t = np.arange(n) / 44100
    later = np.sin(2 * np.pi * 441 * t).astype(np.float32)
    cap.ring.write(np.stack([later] * 2, axis=1), 2 * SR, True, 3.0)  # DAW 2 s .. 2.5 s
    ex = cap.extract(0, int(2.5 * SR))
    assert ex.gaps == [(SR // BLOCK * BLOCK, 2 * SR)]  # between the two epochs: nothing was captured
    second = ex.audio.samples[0, 2 * SR + 1000:2 * SR + 20000]
    ref = np.sin(2 * np.pi * 441 * (np.arange(1000, 20000) / SR)).astype(np.float32)
    assert np.max(np.abs(second - ref)) < 0.02  # resampled to the DAW rate, in place
    assert np.allclose(ex.audio.samples[0, :SR - 256], tone[:SR - 256])

