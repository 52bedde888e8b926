"""The separation engine: mask network bounds, the shared overlap-add helper, complementary parts summing to
the mix at its own rate, bad input refused in one line before any work, and the memory estimate."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from backline.engines.core.audio import Audio, write_audio
from backline.engines.core.errors import ConfigError, DeviceError
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.core.windows import overlap_add, windows
from backline.engines.separate import engine as sep_engine
from backline.engines.separate.engine import build, check_memory, estimate_memory_bytes, parse_roles
from backline.engines.separate.model import BINS, ROLES, MaskNet, magnitude
from backline.host.cli import main as cli_main


@pytest.fixture(scope="module")
def engine():
    return build("debug")


def test_masks_are_bounded_and_sum_to_one():
    torch.manual_seed(1)
    model = MaskNet(hidden=16, layers=1)
    mag = magnitude(torch.randn(2, 22050))
    with torch.no_grad():
        masks = model(mag)
        quiet = model(mag * 0.1)
    assert masks.shape == (2, len(ROLES), BINS, mag.shape[-1])
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    torch.testing.assert_close(masks.sum(dim=1), torch.ones_like(masks[:, 0]))
    # level-blind: the same mix 20 dB quieter gets the same masks
    torch.testing.assert_close(quiet, masks, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("window", "hop"), [(100, 80), (100, 100), (300, 150), (5000, 10), (97, 13)])
def test_overlap_add_of_a_linear_map_is_exact(window, hop):
    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    seen = []
    y = overlap_add(lambda a: np.stack([a, -2 * a]), x, window, hop, on_window=lambda i, n: seen.append((i, n)))
    np.testing.assert_allclose(y[0], x, atol=1e-6)
    np.testing.assert_allclose(y[1], -2 * x, atol=1e-5)
    spans = list(windows(1000, window, hop))
    assert spans[0][0] == 0 and spans[-1][1] == 1000 and len(seen) == len(spans)
    assert all(b - a == min(window, 1000) for a, b in spans)
    with pytest.raises(ValueError):
        list(windows(1000, 10, 20))


@pytest.mark.parametrize("rate", [44100, 48000, 96000])
def test_complementary_parts_sum_to_the_mix_at_its_own_rate(engine, rate):
    """bass + no-bass = the mix (masks that sum to one, mixture phase), same rate, channels and length, across
    a window boundary; above 48 kHz only the band the work rate holds comes back."""
    sep_engine.WINDOW_SECONDS, sep_engine.HOP_SECONDS = 2.0, 1.5  # several windows on a short signal
    try:
        t = np.arange(int(4.3 * rate)) / rate
        x = np.stack([np.sin(2 * np.pi * 55 * t), 0.5 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
        parts = engine.separator.separate(Audio(x, rate), [("bass", False), ("bass", True)])
    finally:
        sep_engine.WINDOW_SECONDS, sep_engine.HOP_SECONDS = 30.0, 28.0
    assert all(p.sample_rate == rate and p.samples.shape == x.shape for p in parts)
    err = np.abs(parts[0].samples + parts[1].samples - x)[:, rate // 10: -rate // 10].max()
    assert err < (1e-4 if rate <= 48000 else 5e-3)


def request(mix, prompt="bass", controls=None, out=Path("/nonexistent")):
    return GenerationRequest("separate", out, Timeline.constant(120, mix.sample_rate), mix=mix, prompt=prompt,
                             controls=controls or {})


def test_bad_input_is_one_clear_error_before_any_work(engine):
    started = []
    silent = Audio(np.zeros((2, 44100), np.float32), 44100)
    with pytest.raises(ConfigError, match="silent"):
        engine.generate(request(silent), progress=lambda f, m: started.append(f), cancel=threading.Event())
    noise = Audio(np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1, 44100)
    with pytest.raises(ConfigError, match="cannot separate 'kazoo'"):
        engine.generate(request(noise, "bass, kazoo"), progress=lambda f, m: started.append(f),
                        cancel=threading.Event())
    bad = noise.samples.copy()
    bad[1, 100] = np.nan
    with pytest.raises(ConfigError, match="invalid samples"):
        engine.generate(request(Audio(bad, 44100)), progress=lambda f, m: started.append(f), cancel=threading.Event())
    assert started == []
    assert parse_roles("Bass, no bass, piano") == ["bass", "no-bass", "piano"]


def _one_line_error(capsys, argv):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_cli_refuses_an_unknown_part_and_a_silent_mix_in_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "silent.wav"
    write_audio(path, Audio(np.zeros((2, 44100), np.float32), 44100))
    assert "cannot separate 'tuba'" in _one_line_error(capsys, ["separate", str(path), "--prompt", "tuba",
                                                                "--out", str(tmp_path / "o")])
    monkeypatch.setattr(sep_engine, "load_model", lambda *a, **k: MaskNet(hidden=8, layers=1))
    assert "silent" in _one_line_error(capsys, ["separate", str(path), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_memory_estimate_fits_a_15_minute_stereo_mix_and_refuses_what_cannot(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BACKLINE_MEMORY_GB", raising=False)
    assert estimate_memory_bytes(15 * 60, 44100, 2, 1) < 2e9
    with pytest.raises(DeviceError, match="fewer parts"):
        check_memory(15 * 60, 44100, 2, 3)
    with pytest.raises(DeviceError, match="over the 2.0 GB limit"):
        check_memory(15 * 60, 192000, 8, 1)
    monkeypatch.setenv("BACKLINE_MEMORY_GB", "64")
    check_memory(15 * 60, 192000, 8, 1)
    monkeypatch.delenv("BACKLINE_MEMORY_GB")
    # refused from the file's header: nothing is read and no weights are loaded
    path = tmp_path / "long.wav"
    frames, channels, rate = 60 * 60 * 8000, 8, 8000
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + frames * 2 * channels) + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16) + b"data"
                + struct.pack("<I", frames * 2 * channels))
        f.truncate(44 + frames * 2 * channels)

    def not_reached(*args, **kwargs):
        raise AssertionError("weights were loaded before the length was checked")

    monkeypatch.setattr(sep_engine, "load_model", not_reached)
    err = _one_line_error(capsys, ["separate", str(path), "--out", str(tmp_path / "o")])
    assert "needs about" in err and "GB of memory" in err and "BACKLINE_MEMORY_GB=" in err


def test_train_steps_takes_waveforms_or_magnitudes():
    from backline.engines.separate.train import train_steps

    torch.manual_seed(0)
    model = MaskNet(hidden=8, layers=1)
    stems = torch.randn(2, len(ROLES), 11025) * 0.1
    waves = [(stems.sum(1), stems)] * 2
    mags = [(magnitude(stems.sum(1)), magnitude(stems))] * 2
    losses = train_steps(model, iter(waves), 2, "cpu") + train_steps(model, iter(mags), 2, "cpu")
    losses += train_steps(model, iter(waves), 2, "cpu", loss="psa-l2")
    assert len(losses) == 6 and all(np.isfinite(losses))


def test_augmented_stems_still_sum_to_their_mix():
    from backline.engines.separate.data import augment, crops

    rng = np.random.default_rng(3)
    stems = (rng.standard_normal((len(ROLES), 22050)) * 0.1).astype(np.float32)
    out = augment(stems, rng)
    assert out.shape == stems.shape and np.isfinite(out).all() and np.abs(out).max() > 0
    mix, parts = next(crops([out], 3, 0.5, rng, low_other=1.0))
    torch.testing.assert_close(parts.sum(1), mix)


def test_remixed_and_shifted_crops_sum_to_their_mix_and_move_the_pitch():
    """Remixed crops take each role from another song; shifted crops move every part's pitch by one ratio."""
    from backline.engines.separate.data import crops

    t = np.arange(4 * 22050) / 22050
    songs = []
    for hz in (100.0, 200.0):  # song k: every role a sine at its own pitch, bass at hz
        songs.append(np.stack([np.sin(2 * np.pi * hz * (r + 1) * t) for r in range(len(ROLES))]).astype(np.float32))
    rng = np.random.default_rng(5)
    mix, parts = next(crops(songs, 64, 1.0, rng, absent=0.0, remix=1.0))
    torch.testing.assert_close(parts.sum(1), mix)
    peaks = {int(np.argmax(np.abs(np.fft.rfft(p[0].numpy())))) for p in parts}  # the bass's pitch, 1 Hz bins
    assert peaks == {100, 200}
    drums = {int(np.argmax(np.abs(np.fft.rfft(p[1].numpy())))) for p in parts}
    pairs = {(int(np.argmax(np.abs(np.fft.rfft(p[0].numpy())))), int(np.argmax(np.abs(np.fft.rfft(p[1].numpy())))))
             for p in parts}
    assert drums == {200, 400} and len(pairs) > 2  # roles drawn from different songs, not always together

    mix, parts = next(crops(songs[:1], 64, 1.0, np.random.default_rng(6), absent=0.0, shift=3.0))
    torch.testing.assert_close(parts.sum(1), mix)
    bass = np.array([np.argmax(np.abs(np.fft.rfft(p[0].numpy()))) for p in parts])
    other = np.array([np.argmax(np.abs(np.fft.rfft(p[2].numpy()))) for p in parts])
    assert (bass == 100).any() and (bass != 100).any()  # about half the crops shifted
    assert bass.min() >= 100 * 2 ** (-3 / 12) - 1 and bass.max() <= 100 * 2 ** (3 / 12) + 1
    np.testing.assert_allclose(other, 3 * bass, atol=2)  # one ratio for every role of a crop


def test_octave_down_halves_the_pitch():
    from backline.engines.separate.data import octave_down

    t = np.arange(22050) / 22050
    low = octave_down(np.sin(2 * np.pi * 220 * t).astype(np.float32), 22050)
    spectrum = np.abs(np.fft.rfft(low))
    assert len(low) == 22050 and abs(np.argmax(spectrum) - 110) <= 1  # 1 Hz bins


def test_a_part_that_is_not_there_is_said_with_its_presence_and_gets_no_midi(engine, monkeypatch):
    """Below the presence line the report says so with the measured share, and no notes are transcribed."""
    monkeypatch.setattr(sep_engine, "PRESENT_SHARE", 1.01)  # every part counts as absent for this check
    t = np.arange(3 * 44100) / 44100
    mix = Audio(np.stack([np.sin(2 * np.pi * 880 * t)] * 2).astype(np.float32) * 0.2, 44100)
    result = engine.generate(request(mix, "bass", {"midi": True}), progress=lambda f, m: None,
                             cancel=threading.Event())
    rep = result.report
    assert rep["present"] == {"bass": False} and 0.0 <= rep["presence"]["bass"] <= 1.0
    assert result.takes[0].midi is None and rep["notes"] == {}
    assert any(w.startswith("there is hardly any bass in this mix") and f"{rep['presence']['bass']:.1%}" in w
               for w in rep["warnings"])


def test_shipped_weights_load_small_and_extract_returns_the_stem_and_its_share():
    from backline.engines.core.weights import weight_paths
    from backline.engines.separate import extract
    from backline.engines.separate.engine import WEIGHTS

    tensors, config = weight_paths(WEIGHTS)
    assert tensors.stat().st_size <= 7 * 2**20 and config.exists()  # 6.3 MiB since the GRU grew to 288 (session 7)
    rate = 48000
    t = np.arange(3 * rate) / rate
    bass = 0.3 * np.sign(np.sin(2 * np.pi * 55 * t)) * np.exp(-3 * (t % 0.5))  # a plucked low note each half beat
    hats = np.random.default_rng(0).standard_normal(len(t)) * 0.05 * (t % 0.25 < 0.03)
    mix = Audio(np.stack([bass + hats, bass + 0.8 * hats]).astype(np.float32), rate)
    stem, share = extract(mix, "bass")
    assert stem.sample_rate == rate and stem.samples.shape == mix.samples.shape
    assert 0.0 <= share <= 1.0
    with pytest.raises(ConfigError, match="one part"):
        extract(mix, "bass, drums")


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_wiener_post_filter_sharpens_soft_masks_and_keeps_the_sum(channels):
    """Two noises in overlapping bands, panned apart; soft masks (what a network gives) → one EM step of the
    Wiener filter separates them better, the estimates still sum to the mix, and a row of `combine` is the mix
    without that source. Iterations 0 is the plain masking."""
    from backline.engines.core.frontend import istft, stft
    from backline.engines.core.wiener import wiener

    rng = np.random.default_rng(0)
    n, sr = 22050 * 2, 22050
    f = np.fft.rfftfreq(n, 1 / sr)
    low = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * (f < 3000), n)
    high = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * (f > 2000), n)
    pan = np.linspace(0.9, 0.1, channels)[:, None] if channels > 1 else np.full((1, 1), 0.5)
    src = np.stack([low * pan, high * (1 - pan)]).astype(np.float32)  # [J, C, n]
    x = torch.from_numpy(src.sum(0))
    spec = torch.stack([stft(x[c], 1024, 256) for c in range(channels)])
    mags = torch.stack([stft(torch.from_numpy(src[j].mean(0)), 1024, 256).abs() for j in range(2)])
    masks = (0.5 + 0.6 * (mags / mags.sum(0).clamp_min(1e-9) - 0.5))  # soft: ideal ratios squashed to 0.2..0.8

    def wave(y: torch.Tensor) -> np.ndarray:  # [K, C, F, T] → [K, C, n]
        return np.stack([[istft(y[k, c], 1024, 256, length=n).numpy() for c in range(channels)]
                         for k in range(y.shape[0])])
    plain, refined = wave(wiener(masks, spec, 0)), wave(wiener(masks, spec, 1))
    torch.testing.assert_close(wiener(masks, spec, 0), masks[:, None] * spec[None])
    np.testing.assert_allclose(refined.sum(0)[:, 1024:-1024], x.numpy()[:, 1024:-1024], atol=1e-3)
    for j in range(2):
        assert _sdr(src[j], refined[j]) > _sdr(src[j], plain[j]) + 1.0
    without = wave(wiener(masks, spec, 1, combine=torch.tensor([[0.0, 1.0]])))[0]
    np.testing.assert_allclose(without, refined[1], atol=1e-4)


def test_engine_with_the_wiener_post_filter_keeps_complementary_parts_summing_to_the_mix(engine):
    rate = 44100
    t = np.arange(3 * rate) / rate
    x = np.stack([np.sin(2 * np.pi * 55 * t), 0.5 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
    before = engine.separator.wiener
    engine.separator.wiener = 1
    try:
        parts = engine.separator.separate(Audio(x, rate), [("bass", False), ("bass", True), ("drums", False)])
    finally:
        engine.separator.wiener = before
    assert all(p.samples.shape == x.shape and np.isfinite(p.samples).all() for p in parts)
    err = np.abs(parts[0].samples + parts[1].samples - x)[:, rate // 10: -rate // 10].max()
    assert err < 1e-3


def test_left_hand_doubles_the_lowest_chord_notes_into_the_low_register():
    import mido

    from backline.engines.separate.data import LEFT_HAND, _left_hand

    track = mido.MidiTrack([mido.Message("program_change", channel=1, program=0, time=0)])
    for chord in ([60, 64, 67], [62, 65, 69]):  # two chords in the middle register, 480 ticks each
        track += [mido.Message("note_on", channel=1, note=p, velocity=80, time=0) for p in chord]
        track += [mido.Message("note_off", channel=1, note=p, velocity=0, time=480 if i == 0 else 0)
                  for i, p in enumerate(chord)]
    before = [m.note for m in track if m.type == "note_on"]
    _left_hand(track, np.random.default_rng(0))
    after = [m.note for m in track if m.type == "note_on"]
    added = sorted(set(after) - set(before))
    assert len(after) > len(before) and all(LEFT_HAND[0] <= p < LEFT_HAND[1] + 12 for p in added)
    assert {p % 12 for p in added} <= {p % 12 for p in before}  # octaves of the chord's own notes
    t, active = 0, {}
    for m in track:  # every added note ends with its chord
        t += m.time
        if m.type == "note_on" and m.note in added:
            active[m.note] = t
        elif m.type == "note_off" and m.note in active:
            assert t - active.pop(m.note) == 480
    assert not active and track[-1].type == "end_of_track"


def test_left_hand_alone_leaves_only_the_low_line_in_the_bass_register():
    import mido

    from backline.engines.separate.data import LOW_SPAN, _left_hand

    track = mido.MidiTrack([mido.Message("program_change", channel=1, program=0, time=0)])
    for chord in ([60, 64, 67], [62, 65, 69]):
        track += [mido.Message("note_on", channel=1, note=p, velocity=80, time=0) for p in chord]
        track += [mido.Message("note_off", channel=1, note=p, velocity=0, time=480 if i == 0 else 0)
                  for i, p in enumerate(chord)]
    _left_hand(track, np.random.default_rng(1), span=LOW_SPAN, alone=True)
    notes = [m.note for m in track if m.type == "note_on"]
    assert notes and all(LOW_SPAN[0] <= p < LOW_SPAN[1] + 12 for p in notes)
    assert {p % 12 for p in notes} <= {0, 4, 7, 2, 5, 9} and track[0].type == "program_change"


def test_low_bank_crops_put_a_low_other_line_beside_the_bass_and_still_sum_to_the_mix():
    """Crops with a low line: "other" gains energy below 150 Hz (the bass's register), the bass is untouched."""
    from backline.engines.separate.data import crops, low_share

    t = np.arange(4 * 22050) / 22050
    song = np.stack([np.sin(2 * np.pi * 80 * t), np.sin(2 * np.pi * 3000 * t),
                     np.sin(2 * np.pi * 400 * t)]).astype(np.float32) * 0.1
    line = np.zeros_like(song)
    line[ROLES.index("other")] = 0.2 * np.sin(2 * np.pi * 70 * t)
    plain = next(crops([song], 16, 1.0, np.random.default_rng(0), absent=0.0))[1]
    mix, parts = next(crops([song], 16, 1.0, np.random.default_rng(0), absent=0.0, low_bank=[line], low_neg=1.0))
    torch.testing.assert_close(parts.sum(1), mix)
    o = ROLES.index("other")
    assert max(low_share(p[o].numpy()) for p in plain) < 0.01
    assert all(0.3 < low_share(p[o].numpy()) < 0.9 for p in parts)  # the line at −3…+6 dB against the rest
    assert all(low_share(p[ROLES.index("bass")].numpy()) > 0.99 for p in parts)


def test_low_leak_charges_the_bass_mask_on_low_other_energy_only():
    from backline.engines.separate.model import LEAK_BINS, low_leak

    mix = torch.ones(1, BINS, 4)
    target = torch.zeros(1, len(ROLES), BINS, 4)
    target[:, ROLES.index("other"), :LEAK_BINS] = 1.0
    masks = torch.zeros(1, len(ROLES), BINS, 4)
    masks[:, ROLES.index("other")] = 1.0
    assert float(low_leak(masks, mix, target)) == 0.0  # the low "other" went to "other"
    masks[:, ROLES.index("bass"), LEAK_BINS:] = 1.0
    assert float(low_leak(masks, mix, target)) == 0.0  # the bass mask above 300 Hz is not this term's business
    masks[:, ROLES.index("bass"), :LEAK_BINS] = 1.0
    assert float(low_leak(masks, mix, target)) == pytest.approx(LEAK_BINS / BINS)


def test_wiener_with_exponent_one_keeps_the_ratios_and_adds_only_the_stereo_image():
    """Exponent 1: on one channel (or a mono recording in two) the network's ratio masks come back unchanged; on
    two sources panned apart with the same spectrum, soft masks that only lean the right way are refined by the
    stereo model (where each source sits) well beyond what the masks give."""
    from backline.engines.core.frontend import istft, stft
    from backline.engines.core.wiener import wiener

    rng = np.random.default_rng(1)
    n = 22050
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    src = np.stack([np.stack([0.9 * a, 0.1 * a]), np.stack([0.1 * b, 0.9 * b])]).astype(np.float32)
    x = torch.from_numpy(src.sum(0))
    spec = torch.stack([stft(x[c], 1024, 256) for c in range(2)])
    masks = torch.full((2,) + tuple(spec.shape[1:]), 0.5)
    mono = spec[:1].repeat(2, 1, 1)  # a mono recording read as stereo
    same = masks[:, None] * mono[None]
    assert float((wiener(masks, mono, 1, exponent=1.0) - same).abs().norm() / same.abs().norm()) < 1e-3
    same = masks[:, None] * spec[:1][None]
    assert float((wiener(masks, spec[:1], 1, exponent=1.0) - same).abs().norm() / same.abs().norm()) < 1e-3
    mags = torch.stack([stft(torch.from_numpy(src[j].mean(0)), 1024, 256).abs() for j in range(2)])
    soft = 0.5 + 0.4 * (mags / mags.sum(0).clamp_min(1e-9) - 0.5)  # ratios that lean the right way, 0.3..0.7
    y = wiener(soft, spec, 2, exponent=1.0)
    est = np.stack([[istft(y[j, c], 1024, 256, length=n).numpy() for c in range(2)] for j in range(2)])
    for j in range(2):
        plain = np.stack([istft(soft[j] * spec[c], 1024, 256, length=n).numpy() for c in range(2)])
        assert _sdr(src[j], est[j]) > _sdr(src[j], plain) + 3.0


def _bass_and_band(seconds: float = 2.0, f0: float = 49.0) -> torch.Tensor:
    """Mono 22.05 kHz: a bright low bass note (harmonics to 1 kHz) under a mid chord and a little noise."""
    t = torch.arange(int(seconds * 22050)) / 22050
    bass = sum(0.3 / k * torch.sin(2 * torch.pi * f0 * k * t) for k in range(1, 21))
    chord = 0.1 * sum(torch.sin(2 * torch.pi * f * t) for f in (261.6, 329.6, 392.0))
    return bass + chord + 0.01 * torch.randn(t.shape[0], generator=torch.Generator().manual_seed(0))


def test_widened_network_starts_with_the_shipped_masks_and_then_reads_the_low_band():
    from backline.engines.separate.engine import WEIGHTS, load_model
    from backline.engines.separate.model import LOW_BINS, build, load_narrower

    shipped = load_model(WEIGHTS)
    assert shipped.low_bins == 0 and shipped.inp_low is None  # a JSON without "low_bins": the narrow network
    wide = build(shipped.config() | {"low_bins": LOW_BINS}).eval()
    load_narrower(wide, shipped.state_dict())
    wave = _bass_and_band()[None]
    low = wide.low_band(wave)
    assert low.shape == (1, LOW_BINS, magnitude(wave).shape[-1])  # the long window's frames are the mask frames
    with torch.no_grad():
        before, after = shipped(magnitude(wave)), wide(magnitude(wave), low)
        assert float((after - before).abs().max()) <= 1e-6  # function-preserving: the shipped masks at step 0
        wide.inp_low.weight.copy_(0.05 * torch.randn(wide.inp_low.weight.shape))
        moved = wide(magnitude(wave), low)
        quiet = wide(magnitude(wave * 0.1), wide.low_band(wave * 0.1))
    assert float((moved - before).abs().max()) > 1e-2  # the new columns do reach the masks
    torch.testing.assert_close(quiet, moved, atol=1e-4, rtol=1e-4)  # and the low band is level-blind too
    with pytest.raises(ValueError, match="low band"):
        wide(magnitude(wave))


def test_a_wider_gru_grown_from_the_shipped_weights_gives_their_masks_then_learns(tmp_path):
    from backline.engines.separate.engine import WEIGHTS, load_model
    from backline.engines.separate.model import build, load_narrower
    from backline.engines.separate.train import export

    shipped = load_model(WEIGHTS).float().eval()
    torch.manual_seed(0)
    wide = build(shipped.config() | {"rnn_hidden": shipped.rnn.hidden_size + 24}).eval()
    load_narrower(wide, shipped.state_dict())
    mag = magnitude(_bass_and_band()[None])
    with torch.no_grad():
        before = shipped(mag)
        assert float((wide(mag) - before).abs().max()) <= 1e-5  # the old units and the head see no new unit
        h = shipped.rnn.hidden_size
        new = slice((h + 24) + h, None)  # the head's columns [forward h+24 | backward h+24]: the backward new units
        wide.out.weight[:, new].copy_(0.05 * torch.randn(wide.out.weight[:, new].shape))
        assert float((wide(mag) - before).abs().max()) > 1e-3  # the new units do reach the masks once they learn
    export(wide, tmp_path / "w", {"steps": 0})
    again = load_model(tmp_path / "w")
    assert again.rnn.hidden_size == shipped.rnn.hidden_size + 24 and again.rnn.input_size == shipped.rnn.input_size
    with pytest.raises(ValueError, match="wider"):
        load_narrower(build(shipped.config()), again.float().state_dict())


def test_low_band_network_trains_on_waveforms_and_round_trips_through_export(tmp_path):
    from backline.engines.separate.engine import Separator, load_model
    from backline.engines.separate.model import LOW_BINS
    from backline.engines.separate.train import export, step_loss, train_steps

    torch.manual_seed(0)
    model = MaskNet(hidden=8, layers=1, low_bins=LOW_BINS)
    with torch.no_grad():
        model.inp_low.weight.zero_()  # as a widened network starts
    stems = torch.stack([_bass_and_band(1.0), 0.1 * torch.randn(22050), 0.1 * torch.randn(22050)])[None]
    losses = train_steps(model, iter([(stems.sum(1), stems)] * 3), 3, "cpu")
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert float(model.inp_low.weight.detach().abs().max()) > 0  # the zero columns learn
    with pytest.raises(ValueError, match="low band"):
        step_loss(model, magnitude(stems.sum(1)), magnitude(stems))  # magnitudes alone cannot feed it
    assert torch.isfinite(step_loss(model, stems.sum(1), stems, loss="psa-l2"))  # the shipped weights' loss too
    export(model, tmp_path / "wide", {"steps": 3})
    loaded = load_model(tmp_path / "wide")
    assert loaded.low_bins == LOW_BINS and loaded.config() == model.config()
    masks = Separator(loaded).masks(_bass_and_band(1.5).numpy())
    assert masks.shape == (len(ROLES), BINS, 1 + int(1.5 * 22050) // 256)
    torch.testing.assert_close(masks.sum(0), torch.ones_like(masks[0]))


def _overlapping_stems() -> torch.Tensor:
    """Three parts sharing bins with different phases: a 110 Hz tone with harmonics, the same partials a quarter
    period later at another level (a second instrument on the same note), and noise."""
    g = torch.Generator().manual_seed(4)
    t = torch.arange(22050) / 22050
    bass = sum(torch.sin(2 * torch.pi * 110 * k * t) / k for k in range(1, 6))
    other = 0.7 * sum(torch.sin(2 * torch.pi * 110 * k * t + 1.3 * k) / k for k in range(1, 6))
    return torch.stack([bass, 0.3 * torch.randn(22050, generator=g), other])[None].float()


def test_phase_sensitive_targets_are_what_a_mixture_phase_mask_is_scored_on():
    from backline.engines.codec.fidelity import si_sdr
    from backline.engines.core.frontend import istft, stft
    from backline.engines.separate.model import HOP, N_FFT, masked_psa, psa_targets

    stems = _overlapping_stems()
    x, s = stft(stems.sum(1), N_FFT, HOP), stft(stems, N_FFT, HOP)
    psa = psa_targets(x, s)
    # the roles' targets sum to the mixture magnitude in every bin (what softmax masks sum to); magnitudes more
    torch.testing.assert_close(psa.sum(1), x.abs(), atol=1e-3, rtol=1e-4)
    assert float((s.abs().sum(1) - x.abs()).mean()) > 0.05 * float(x.abs().mean())
    # the bin-wise identity behind it: |M|X|e^{i∠X} − S|² = (M|X| − psa)² + (|S|² − psa²), for any real mask
    m = torch.rand(psa.shape, generator=torch.Generator().manual_seed(1))
    complex_err = (m * x.unsqueeze(1) - s).abs() ** 2
    torch.testing.assert_close(complex_err, (m * x.abs().unsqueeze(1) - psa) ** 2 + s.abs() ** 2 - psa ** 2,
                               atol=1e-2, rtol=1e-3)
    # the oracle truncated-PSA mask costs nothing; the ideal ratio mask (magnitude targets) does, and scores lower
    oracle = torch.minimum(psa.clamp_min(0), x.abs().unsqueeze(1)) / x.abs().clamp_min(1e-5).unsqueeze(1)
    irm = s.abs() / s.abs().sum(1, keepdim=True).clamp_min(1e-5)
    assert float(masked_psa(oracle, x, s)) < 1e-6
    assert float(masked_psa(irm, x, s)) > 0.02
    for p in (1, 2):
        assert float(masked_psa(oracle, x, s, power=p)) < float(masked_psa(irm, x, s, power=p))

    def bass_sisdr(mask: torch.Tensor) -> float:
        est = istft(mask[0, 0] * x[0], N_FFT, HOP, length=stems.shape[-1])
        return si_sdr(stems[0, 0].numpy(), est.numpy())

    assert bass_sisdr(oracle) > bass_sisdr(irm) + 0.3  # measured +3.84 against +3.29


def test_step_loss_phase_sensitive_needs_waveforms_and_trains():
    from backline.engines.separate.train import LOSSES, configure, step_loss

    torch.manual_seed(0)
    model = MaskNet(hidden=8, layers=1)
    stems = _overlapping_stems()[..., :11025]
    for name in LOSSES:
        loss = step_loss(model, stems.sum(1), stems, loss=name)
        loss.backward()
        value = float(loss.detach())
        assert loss.dim() == 0 and value > 0 and np.isfinite(value)
    assert model.out.weight.grad is not None and float(model.out.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="needs waveforms"):
        step_loss(model, magnitude(stems.sum(1)), magnitude(stems), loss="psa")
    with pytest.raises(ValueError, match="unknown separation loss"):
        step_loss(model, stems.sum(1), stems, loss="sdr")
    import argparse

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--corpus", "c", "--run-dir", "r"])
    # more training from the shipped weights continues with the loss they were trained with (their JSON says)
    import json

    from backline.engines.separate.train import DEFAULT_LOSS, SHIPPED

    shipped = json.loads(SHIPPED.with_suffix(".json").read_text())["training"]
    assert args.loss == DEFAULT_LOSS == shipped["loss"]
    assert parser.parse_args(["--corpus", "c", "--run-dir", "r", "--loss", "magnitude"]).loss == "magnitude"


def test_mixture_phase_sisdr_is_the_benchmark_figure_and_skips_absent_roles():
    from backline.engines.codec.fidelity import si_sdr
    from backline.engines.core.frontend import istft, stft
    from backline.engines.separate.model import HOP, N_FFT, mixture_phase_sisdr

    stems = _overlapping_stems()
    stems = torch.cat([stems, stems * torch.tensor([1.0, 1.0, 0.0])[:, None]])  # the 2nd crop has no "other"
    x = stft(stems.sum(1), N_FFT, HOP)
    masks = torch.rand((2, 3, *x.shape[-2:]), generator=torch.Generator().manual_seed(2))
    masks = (masks / masks.sum(1, keepdim=True)).requires_grad_()
    sdr = mixture_phase_sisdr(masks, x, stems)
    assert bool(torch.isnan(sdr[1, 2])) and not bool(torch.isnan(sdr[:, :2]).any())
    est = istft(masks[0, 0].detach() * x[0], N_FFT, HOP, length=stems.shape[-1])
    assert abs(float(sdr[0, 0].detach()) - si_sdr(stems[0, 0].numpy(), est.numpy())) < 0.05
    torch.nan_to_num(sdr).sum().backward()
    assert torch.isfinite(masks.grad).all() and float(masks.grad.abs().sum()) > 0


@pytest.mark.parametrize("program", [32, 33])  # acoustic (upright) and finger bass
def test_bass_midi_keeps_a_low_walking_line_where_crepe_loses_the_pitch(tmp_path, program):
    """TimGM6mb's upright is one of the timbres where CREPE's confidence collapses (0 notes; so does realdev's
    real upright): the separated bass's MIDI still carries the line, E1–E2 in quarters."""
    import mido

    from backline.engines.bass.transcription import bass_notes
    from backline.engines.core.render import render_midi, soundfont

    line = [28, 31, 33, 35, 36, 35, 33, 31, 28, 40, 38, 36, 33, 31, 29, 28]
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000))
    track.append(mido.Message("program_change", program=program))
    for p in line:
        track.append(mido.Message("note_on", note=p, velocity=100, time=0))
        track.append(mido.Message("note_off", note=p, velocity=0, time=456))
        track.append(mido.Message("note_on", note=p, velocity=0, time=24))
    midi.save(tmp_path / "line.mid")
    stem = render_midi(tmp_path / "line.mid", soundfont("TimGM6mb"))
    notes = bass_notes(stem)
    found = sum(any(abs(n.start - i * 0.5) < 0.07 and n.pitch == p for n in notes) for i, p in enumerate(line))
    assert found >= 13 and len(notes) <= 2 * len(line), [(round(n.start, 2), n.pitch) for n in notes]


def _gm(tmp_path: Path, name: str, parts: list[tuple[int, bool, list[tuple[float, float, int, int]]]]) -> Audio:
    """Render (program, is_drum, [(start, end, pitch, velocity)]) parts through FluidR3 GM."""
    import pretty_midi

    from backline.engines.core.render import render_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=150)
    for program, drum, notes in parts:
        inst = pretty_midi.Instrument(program, is_drum=drum)
        inst.notes = [pretty_midi.Note(v, p, s, e) for s, e, p, v in notes]
        pm.instruments.append(inst)
    pm.write(str(tmp_path / f"{name}.mid"))
    return render_midi(tmp_path / f"{name}.mid", "FluidR3_GM", frames=6 * 44100)


def test_a_quiet_jazz_kit_plays_though_it_holds_little_energy(tmp_path):
    """A trio's ride and hi-hat hold under 2 % of the energy but own the top end: the drums are said to play
    (the shipped weights; filosax01's real kit is the case measured). The same band without its kit is said to
    have hardly any drums."""
    q = 0.4  # a quarter at 150 BPM
    walk = [(i * q, i * q + 0.95 * q, p, 110) for i, p in enumerate([36, 40, 43, 45, 46, 45, 43, 40] * 2)]
    comp = [(i * 2 * q + 0.6 * q, i * 2 * q + 1.4 * q, p, 100) for i in range(7) for p in (60, 64, 67, 70)]
    ride = [(i * q + d, i * q + d + 0.1, 51, 90) for i in range(14) for d in ((0.0, 2 * q / 3) if i % 2 else (0.0,))]
    hat = [(i * q, i * q + 0.1, 44, 40) for i in range(1, 14, 2)]
    band = _gm(tmp_path, "band", [(32, False, walk), (0, False, comp)])
    kit = _gm(tmp_path, "kit", [(0, True, ride + hat)])
    trio = Audio(band.samples + kit.samples, band.sample_rate)
    engine = build("shipped")

    def drums(mix: Audio) -> dict:
        return engine.generate(request(mix, "drums"), progress=lambda f, m: None, cancel=threading.Event()).report

    with_kit, without = drums(trio), drums(band)
    assert with_kit["presence"]["drums"] < sep_engine.PRESENT_SHARE  # quiet by energy, as on the real record
    assert with_kit["present"] == {"drums": True} and not with_kit["warnings"]
    assert without["present"] == {"drums": False}
    assert any(w.startswith("there is hardly any drums") for w in without["warnings"])
