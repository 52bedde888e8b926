"""The bass engine end to end on the debug config (untrained U-Net + debug codecs): files, alignment, bad input."""

import json
import shutil
import threading
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from backline.engines.bass import engine as bass_engine
from backline.engines.bass.engine import Sampling, build
from backline.engines.bass.presets import (
    PRESET_DIR,
    bass_band_share,
    check_bass_reference,
    list_presets,
    load_preset,
)
from backline.engines.bass.transcription import bass_line, bass_midi
from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import (
    AudioFileError,
    AudioFormatError,
    Cancelled,
    ConfigError,
)
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.registry import build_engine
from backline.host.cli import main as cli_main

SR = 48000  # a DAW rate that is not the codec's 44.1 kHz, so resampling and alignment are exercised


@pytest.fixture(scope="module")
def engine():
    return build("debug")


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _mix(seconds: float, sr: int = SR) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * 0.2
    clicks = (np.sin(2 * np.pi * 2000 * t) * (np.mod(t, 0.5) < 0.01)) * 0.3
    return Audio(np.stack([chord + clicks, chord - clicks]).astype(np.float32), sr)


def _request(out, mix, **kw):
    """A request to the latent engine (paper 000's diffusion path, the follow engine's mode=free; follow mode is
    tested in test_bass_follow.py)."""
    kw["controls"] = kw.get("controls", {"steps": 3})
    defaults = dict(timeline=Timeline.constant(120, mix.sample_rate if mix else SR), mix=mix, preset="finger")
    return GenerationRequest("bass-latent", Path(out), **(defaults | kw))


def test_cli_full_path_writes_aligned_stem_midi_and_report(tmp_path):
    mix_path = tmp_path / "mix.wav"
    write_audio(mix_path, _mix(8.0))  # 4 bars at 120 BPM
    out = tmp_path / "out"
    rc = cli_main(["generate", "bass", "--mix", str(mix_path), "--out", str(out), "--bars", "2-3", "--bpm", "120",
                   "--config", "debug", "--steps", "3", "--seed", "7", "--preset", "finger", "--mode", "free"])
    assert rc == 0
    wav, mid, rep = out / "bass_seed7.wav", out / "bass_seed7.mid", out / "bass_seed7.json"
    stem = read_audio(wav)
    start, stop = Timeline.constant(120, SR).bar_range_to_samples(2, 3)
    assert stem.sample_rate == SR and stem.frames == stop - start == 4 * SR  # exactly the region, at the DAW rate
    assert stem.peak() > 0 and np.isfinite(stem.samples).all()
    report = json.loads(rep.read_text())
    assert report["region"]["start_sample"] == start == SR * 2
    assert report["region"]["start_bar"] == 2.0
    assert report["seeds"] == [7] and report["settings"]["steps"] == 3
    assert set(report["timings_s"]) >= {"encode_s", "sample_s", "decode_s", "transcribe_s", "total_s"}
    midi = mido.MidiFile(mid)
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(120)]
    # never overwrites
    assert cli_main(["generate", "bass", "--mix", str(mix_path), "--out", str(out), "--config", "debug",
                     "--steps", "3", "--seed", "7", "--mode", "free"]) == 2


def test_midi_of_a_bass_line_lands_at_the_region_start():
    """A 55 Hz (A1) note 0.5 s into a region starting at bar 3 must sit at bar 3 + 0.5 s in the MIDI file."""
    sr = 44100
    t = np.arange(2 * sr) / sr
    tone = np.where((t > 0.5) & (t < 1.5), np.sign(np.sin(2 * np.pi * 55 * t)) * 0.3, 0.0)
    tl = Timeline.constant(120, sr)
    start = tl.bar_to_samples(3)
    notes, mid = bass_midi(Audio(tone[None].astype(np.float32), sr), tl, start, "off", 34)
    assert notes and abs(notes[0].start - 0.5) < 0.06 and notes[0].pitch == 33
    abs_t, first_on, program = 0.0, None, None
    for msg in mid:
        abs_t += msg.time
        if msg.type == "program_change":
            program = msg.program
        if msg.type == "note_on" and msg.velocity > 0 and first_on is None:
            first_on = abs_t
    assert program == 33  # GM 34 (finger) is mido program 33
    assert abs(first_on - (start / sr + 0.5)) < 0.06


def test_bass_line_keeps_one_voice():
    from backline.engines.core.transcribe import Note

    notes = [Note(40, 0.0, 0.5), Note(52, 0.01, 0.4),  # same onset, octave doubling → the lower
             Note(36, 0.05, 0.45),  # ghost 50 ms after the onset → dropped
             Note(43, 0.5, 1.0), Note(80, 0.6, 0.9),  # far above a bass → dropped
             Note(45, 0.8, 1.2), Note(47, 1.3, 1.32)]  # a later onset cuts the sounding note; 20 ms blip dropped
    line = bass_line(notes)
    assert [(n.pitch, n.start, n.end) for n in line] == [(40, 0.0, 0.5), (43, 0.5, 0.8), (45, 0.8, 1.2)]


def test_variations_seeds_and_cancel_writes_nothing(engine, tmp_path):
    mix = _mix(3.0)
    steps_seen = []
    cancel = threading.Event()

    def progress(fraction, message):
        if message.startswith("step"):
            steps_seen.append(message)
            if len(steps_seen) == 2:
                cancel.set()

    out = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        engine.generate(_request(out, mix, controls={"steps": 20}, variations=2), progress=progress, cancel=cancel)
    assert len(steps_seen) == 2  # stopped within one step of the cancel
    assert not out.exists() or not any(out.iterdir())  # nothing partial


def test_variation_k_equals_a_single_run_with_seed_plus_k(engine):
    cond = engine.mix_codec.encode(_mix(2.0).resampled(44100))
    s = Sampling(steps=3, cfg=2.0, rescale=0.7, strength=1.0)
    mu = np.zeros(engine.model.cfg.stem_dim, np.float32)
    both = engine.sample_latents(cond, [5, 6], s, mu).latents
    single = engine.sample_latents(cond, [6], s, mu).latents
    torch.testing.assert_close(both[1], single[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(both[0], both[1])


def test_oom_falls_back_and_says_so(engine, monkeypatch):
    """A device that cannot hold more than one variation's batch: the engine retries one at a time and reports it;
    when even a single chunk cannot run on the CPU the user gets a one-line DeviceError."""
    real = engine.model.forward
    limit = {"batch": 2}

    def limited(z, t, c):
        if z.shape[0] > limit["batch"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(z, t, c)

    monkeypatch.setattr(engine.model, "forward", limited)
    cond = engine.mix_codec.encode(_mix(2.0).resampled(44100))
    s = Sampling(steps=2, cfg=2.0, rescale=0.0, strength=0.0)
    res = engine.sample_latents(cond, [1, 2], s, None)
    assert res.latents.shape[0] == 2 and any("one at a time" in f for f in res.fallbacks)
    ref = engine.sample_latents(cond, [2], s, None)  # the fallback gives the same take as a normal run
    torch.testing.assert_close(res.latents[1], ref.latents[0], rtol=1e-4, atol=1e-4)
    limit["batch"] = 0
    from backline.engines.core.errors import DeviceError

    with pytest.raises(DeviceError, match="out of memory"):
        engine.sample_latents(cond, [1], s, None)


@pytest.mark.parametrize("controls, match", [({"steps": 0}, "steps"), ({"steps": -2}, "steps"),
                                              ({"cfg": -1.0}, "cfg"), ({"rescale": 2.0}, "rescale"),
                                              ({"bogus": 1}, "unknown control")])
def test_bad_controls_are_refused_before_work(engine, tmp_path, controls, match):
    with pytest.raises(ConfigError, match=match):
        engine.generate(_request(tmp_path / "o", _mix(2.0), controls=controls))
    assert not (tmp_path / "o").exists()


def test_bad_mixes_are_refused(engine, tmp_path):
    with pytest.raises(AudioFormatError, match="shorter than one latent frame"):
        engine.generate(_request(tmp_path / "o", _mix(0.05)))
    with pytest.raises(AudioFormatError, match="silent"):
        engine.generate(_request(tmp_path / "o", Audio.silence(SR * 2, SR)))
    with pytest.raises(ConfigError, match="needs a mix"):
        engine.generate(_request(tmp_path / "o", None))


def test_unknown_preset_lists_the_known_ones(engine, tmp_path):
    with pytest.raises(ConfigError) as err:
        engine.generate(_request(tmp_path / "o", _mix(2.0), preset="tuba"))
    assert "finger" in str(err.value) and "upright" in str(err.value)


def test_references_that_are_silent_or_not_a_bass_are_refused(engine, tmp_path):
    silent = tmp_path / "silent.wav"
    write_audio(silent, Audio.silence(44100 * 2, 44100))
    t = np.arange(44100 * 2) / 44100
    hihat = tmp_path / "lead.wav"
    write_audio(hihat, Audio((np.sin(2 * np.pi * 1760 * t) * 0.3)[None].astype(np.float32), 44100))
    for path, match in ((silent, "silent"), (hihat, "does not sound like a bass")):
        with pytest.raises(AudioFileError, match=match):
            engine.generate(_request(tmp_path / "o", _mix(2.0), reference=path, preset=None))
        with pytest.raises(AudioFileError, match=match):  # the same through the described controls (host UI)
            engine.generate(_request(tmp_path / "o", _mix(2.0), preset=None,
                                     controls={"steps": 3, "reference": str(path), "preset": "finger"}))
    assert not (tmp_path / "o").exists()


def test_cli_bar_range_outside_the_mix_and_bars_without_tempo(tmp_path, capsys):
    mix_path = tmp_path / "mix.wav"
    write_audio(mix_path, _mix(4.0))
    assert cli_main(["generate", "bass", "--mix", str(mix_path), "--out", str(tmp_path / "o"), "--bars", "3-9",
                     "--bpm", "120", "--config", "debug"]) == 2
    assert "past the end of the mix" in capsys.readouterr().err
    drone = tmp_path / "drone.wav"  # --bars without --bpm: the whole file is heard; 1.5 s is too short to hear a beat
    t = np.arange(int(SR * 1.5)) / SR
    write_audio(drone, Audio((0.3 * np.sin(2 * np.pi * 110 * t))[None].astype(np.float32), SR))
    assert cli_main(["generate", "bass", "--mix", str(drone), "--out", str(tmp_path / "o"), "--bars", "1-1",
                     "--config", "debug"]) == 2
    assert "--bpm" in capsys.readouterr().err
    assert cli_main(["generate", "bass", "--mix", str(mix_path), "--out", str(tmp_path / "o"), "--preset", "nope",
                     "--config", "debug"]) == 2
    assert "known presets" in capsys.readouterr().err


def test_presets_are_complete_bass_styles():
    names = list_presets()
    assert {"finger", "pick", "fretless", "slap", "synth1", "synth2", "sub", "upright"} <= set(names)
    programs = set()
    for name in names:
        p = load_preset(name)
        programs.add(p.gm_program)
        assert p.reference.is_file() and p.chain and set(p.controls) >= {"steps", "cfg", "rescale", "strength"}
        check_bass_reference(read_audio(p.reference), p.reference)
    assert programs >= {33, 34, 35, 36, 37, 39, 40}


def test_style_mean_cache_is_recomputed_when_the_reference_changes(engine, tmp_path):
    folder = tmp_path / "presets"
    shutil.copytree(PRESET_DIR, folder, ignore=shutil.ignore_patterns("*.style.json"))
    from backline.engines.bass.engine import codec_fingerprint
    from backline.engines.bass.presets import preset_style_mean

    fp = codec_fingerprint(engine.stem_codec)
    preset = load_preset("finger", folder)
    mu1, info1 = preset_style_mean(preset, engine.stem_codec, fp)
    mu1b, info1b = preset_style_mean(preset, engine.stem_codec, fp)
    assert info1["recomputed"] and not info1b["recomputed"] and np.allclose(mu1, mu1b)
    # replace the reference with another instrument's: the cache notices and recomputes
    shutil.copy(folder / "slap.flac", folder / "finger.flac")
    mu2, info2 = preset_style_mean(load_preset("finger", folder), engine.stem_codec, fp)
    assert info2["recomputed"] and not np.allclose(mu1, mu2)
    # a different codec is a different cache entry
    _, info3 = preset_style_mean(load_preset("finger", folder), engine.stem_codec, fp + "x")
    assert info3["recomputed"]


def test_bass_band_share_separates_bass_from_other_sounds():
    t = np.arange(44100) / 44100
    saw55 = (2 * ((55 * t) % 1) - 1) * 0.3
    assert bass_band_share(Audio(saw55[None].astype(np.float32), 44100)) > 0.8
    high = np.sin(2 * np.pi * 880 * t) * 0.3
    assert bass_band_share(Audio(high[None].astype(np.float32), 44100)) < 0.05


def test_registered_and_described():
    """Two engines: `bass` (follow; its panel keeps mode=free for the latent engine's controls) and `bass-latent`
    (paper 000 alone). Building the follow engine loads no U-Net and no codec; free mode builds the latent once."""
    eng = build_engine("bass", config="debug")
    desc = eng.describe()
    names = {c.name for c in desc.controls}
    assert {"mode", "style", "steps", "cfg", "rescale", "strength", "preset", "reference", "quantise"} <= names
    preset = next(c for c in desc.controls if c.name == "preset")
    assert "finger" in preset.choices
    assert eng._latent is None and eng._planner is None  # nothing loaded to build or describe it
    latent = build_engine("bass-latent", config="debug")
    latent_names = {c.name for c in latent.describe().controls}
    assert {"steps", "cfg", "rescale", "strength", "preset", "reference", "quantise", "level"} <= latent_names
    assert not latent_names & {"mode", "style", "complexity", "lock_to_kick", "midi_in"}
    assert latent.describe().name == bass_engine.NAME == "bass-latent"
    result = eng.generate(GenerationRequest("bass", Path("/nonexistent"), Timeline.constant(120, SR), mix=_mix(2.0),
                                            preset="finger", controls={"mode": "free", "steps": 2, "style": "walking"}))
    assert result.report["engine"] == "bass" and result.report["mode"] == "free" and eng._latent is not None
    assert eng._planner is None  # free mode never loads the planner
