"""Follow mode in the sound and feel of a user's reference (engines/bass/reference.py, issue 22)."""

import numpy as np
import pytest

from backline.engines.bass.reference import (
    Instrument,
    build_instrument,
    cache_dir,
    find_attack,
    load_reference_audio,
    measure_feel,
    prepare_reference,
)
from backline.engines.core.audio import Audio, write_audio
from backline.engines.core.errors import AudioFileError
from backline.engines.core.transcribe import Note

SR = 44100


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def line(division: int, bars: int = 6, bpm: float = 100.0, low: int = 40) -> list[Note]:
    beat = 60.0 / bpm
    roots, shape = [low, low - 3, low + 5, low + 7], [0, 7, 12, 10, 0, 5, 7, 3]
    return [Note(roots[b % 4] + (shape[k % 8] if division > 1 else 0), b * 4 * beat + k * 4 * beat / division,
                 b * 4 * beat + (k + 0.8) * 4 * beat / division, 100 if k % 2 == 0 else 80)
            for b in range(bars) for k in range(division)]


def synth(notes: list[Note], kind: str) -> Audio:
    y = np.zeros(int(SR * (notes[-1].end + 0.5)))
    for n in notes:
        f = 440.0 * 2 ** ((n.pitch - 69) / 12)
        t = np.arange(int((n.end - n.start) * SR)) / SR
        s = np.sin(2 * np.pi * f * t) if kind == "dark" else np.sign(np.sin(2 * np.pi * f * t)) * 0.5
        env = np.minimum(1, t / 0.002) * np.exp(-t * 2.0) * np.clip((t[-1] - t) / 0.01, 0, 1)
        a = int(n.start * SR)
        y[a:a + len(t)] += 0.3 * n.velocity / 100 * env * s
    return Audio(y[None].astype(np.float32), SR)


@pytest.mark.parametrize("division", [1, 8, 16])
def test_feel_counts_notes_per_bar_and_words(division):
    feel = measure_feel(line(division), bpm=100.0)
    assert feel.notes_per_bar == pytest.approx(division, rel=0.1)
    words = feel.rhythm_words()
    assert {1: "whole notes", 8: "eighths", 16: "sixteenths"}[division] in words
    assert feel.style() == {1: "sustained", 8: feel.style(), 16: "funk16"}[division]
    assert feel.register_words() == ("low register" if division == 1 else "middle register")  # E2 vs up to E3
    assert measure_feel(line(division, low=55), bpm=100.0).register_words() == "high register"


def test_tempo_is_heard_from_the_notes_alone():
    for division in (1, 8):
        feel = measure_feel(line(division, bars=8, bpm=100.0))
        assert feel.notes_per_bar == pytest.approx(division, rel=0.25), (division, feel.bpm)


def test_sampler_puts_each_attack_on_the_note_time():
    ref_notes = line(4, bars=4)
    audio = synth(ref_notes, "bright")
    inst = build_instrument(audio, ref_notes, measure_feel(ref_notes, bpm=100.0))
    # transcriber onsets can be 20 ms off: the sampler measures the real attack
    assert abs(find_attack(audio.samples[0], int((ref_notes[3].start + 0.02) * SR)) - ref_notes[3].start * SR) < 0.004 * SR
    play = [Note(45, 0.5, 0.8, 100), Note(38, 1.3, 1.6, 90), Note(52, 2.1, 2.4, 110)]  # 52 was never recorded
    out = inst.render(play, int(3 * 48000), 48000)
    assert out.sample_rate == 48000 and out.frames == 3 * 48000
    y = np.abs(out.samples[0])
    for n in play:
        seg = y[int((n.start - 0.05) * 48000):int((n.start + 0.1) * 48000)]
        first = np.flatnonzero(seg > 0.1 * seg.max())[0] / 48000 - 0.05
        assert abs(first) < 0.005, (n, first)
    assert y[int(0.9 * 48000):int(1.25 * 48000)].max() < 0.01 * y.max()  # the release ends the note


def test_long_notes_sustain_past_the_sampled_length():
    ref_notes = line(8, bars=3)
    audio = synth(ref_notes, "dark")
    inst = build_instrument(audio, ref_notes, measure_feel(ref_notes, bpm=100.0))
    out = inst.render([Note(40, 0.1, 2.1, 100)], 3 * SR, SR).samples[0]
    assert np.abs(out[int(1.8 * SR):int(2.0 * SR)]).max() > 0.01 * np.abs(out).max()


def test_prepare_caches_per_content_and_learns_the_sound(tmp_path):
    notes = line(8, bars=6)
    dark, bright = (write_audio(tmp_path / f"{k}.flac", synth(notes, k)) for k in ("dark", "bright"))
    inst, info = prepare_reference(dark)
    assert not info["cached"] and cache_dir().is_dir() and info["cache"]
    again, info2 = prepare_reference(dark)
    assert info2["cached"] and len(again.slices) == len(inst.slices) and again.feel == inst.feel
    assert isinstance(Instrument.from_file(info2["cache"]), Instrument)
    b, binfo = prepare_reference(bright)
    assert "dark" in info["learned"] and "bright" in binfo["learned"], (info["learned"], binfo["learned"])
    assert inst.feel.notes_per_bar == pytest.approx(8, rel=0.25)


def test_bad_references_fail_in_one_line_and_cache_nothing(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    silent = write_audio(tmp_path / "silent.wav", Audio(np.zeros((1, SR * 4), np.float32), SR))
    short = write_audio(tmp_path / "short.wav", synth([Note(40, 0.1, 0.9, 100)], "dark"))
    blip = write_audio(tmp_path / "blip.wav", Audio(np.pad(synth(line(1, bars=1), "dark").samples, ((0, 0), (0, SR * 2))), SR))
    hihat = Audio((np.random.default_rng(0).normal(0, 0.1, SR * 5) * (np.arange(SR * 5) % 11025 < 2000))[None]
                  .astype(np.float32), SR)
    noise = write_audio(tmp_path / "hihat.wav", hihat)
    for path, words in ((text, "cannot be decoded"), ("/etc/passwd", "unsupported extension"), (silent, "silent"),
                        (short, "long"), (blip, "bass notes"), (noise, "bass")):
        with pytest.raises(AudioFileError) as err:
            prepare_reference(path)
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert not cache_dir().exists() or not any(cache_dir().iterdir())
    with pytest.raises(AudioFileError):
        load_reference_audio(tmp_path / "missing.wav")


def test_a_whole_song_has_its_bass_extracted_or_is_refused_in_one_line(tmp_path):
    """The demo song's mix (bass, drums, keys, guitar, strings, lead) is a whole song: with the separation engine
    and its weights the bass is extracted first; without them, one line says why, and nothing is cached."""
    from pathlib import Path

    from backline.engines.data.demo import demo_song

    song = Path(demo_song()) / "mix.flac"
    try:
        from backline.engines.separate.engine import WEIGHTS
        ready = WEIGHTS.with_suffix(".safetensors").is_file()
    except ImportError:
        ready = False
    if not ready:
        with pytest.raises(AudioFileError) as err:
            prepare_reference(song)
        assert "whole song" in str(err.value) and "\n" not in str(err.value), str(err.value)
        assert not cache_dir().exists()
        pytest.skip("the separation engine's weights (branch `separate`) are not shipped yet: refusal checked")
    inst, info = prepare_reference(song)
    assert "extracted" in info["source"]["source"] and inst.feel.notes > 8


# --- through the engine and the CLI -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def band(tiny_corpus):
    from backline.engines.core.audio import read_audio
    from backline.engines.data.slakh import list_tracks

    tr = next(t for t in list_tracks(tiny_corpus) if t.extras["time_signature"] == [4, 4])
    audios = [read_audio(s.audio) for s in tr.audio_stems() if s.role != "bass"]
    n = min(a.frames for a in audios)
    return Audio(np.sum([a.samples[:, :n] for a in audios], axis=0).astype(np.float32), audios[0].sample_rate)


def test_follow_mode_plays_in_the_references_sound_and_midi_in_too(band, tmp_path, capsys):
    import mido

    from backline.engines.core.audio import read_audio
    from backline.engines.core.timeline import Timeline
    from backline.engines.core.transcribe import midi_to_notes, notes_to_midi
    from backline.host.cli import main as cli_main

    mix = write_audio(tmp_path / "band.wav", band)
    ref = write_audio(tmp_path / "my bass.flac", synth(line(8, bars=6), "bright"))
    out = tmp_path / "o"
    assert cli_main(["generate", "bass", "--mix", str(mix), "--out", str(out), "--config", "debug",
                     "--reference", str(ref)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "style  " in printed and "eighths" in printed and "learned from" in printed, printed
    wav = read_audio(out / "bass_seed0.wav")
    assert wav.frames == band.frames and wav.peak() > 0.01
    # the user's own MIDI in the reference's sound: sound exactly where the notes are
    user = [Note(40, 0.5, 1.0, 100), Note(47, 1.0, 1.5, 90), Note(45, 2.0, 3.0, 80)]
    path = tmp_path / "line.mid"
    notes_to_midi(user, Timeline.constant(100.0, 44100), program=33).save(str(path))
    out2 = tmp_path / "o2"
    assert cli_main(["generate", "bass", "--mix", str(mix), "--out", str(out2), "--config", "debug", "--bpm", "100",
                     "--reference", str(ref), "--midi-in", str(path)]) == 0, capsys.readouterr().err
    assert "cached" in capsys.readouterr().out  # the second take reuses the built instrument
    got = midi_to_notes(mido.MidiFile(str(out2 / "bass_seed0.mid")))
    assert [(n.pitch, round(n.start, 3)) for n in got] == [(n.pitch, n.start) for n in user]
    y = read_audio(out2 / "bass_seed0.wav").with_channels(1).samples[0]
    sr = band.sample_rate
    first = np.flatnonzero(np.abs(y) > 0.1 * np.abs(y[: int(1.5 * sr)]).max())[0] / sr
    assert abs(first - 0.5) < 0.005, first  # no added latency


def test_cli_refuses_a_bad_reference_in_one_line_before_loading_anything(band, tmp_path, capsys):
    from backline.host.cli import main as cli_main

    mix = write_audio(tmp_path / "band.wav", band)
    for bad in ("/etc/passwd", str(write_audio(tmp_path / "silent.wav", Audio(np.zeros((1, SR * 3), np.float32), SR)))):
        assert cli_main(["generate", "bass", "--mix", str(mix), "--out", str(tmp_path / "o"), "--config", "debug",
                         "--reference", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "backline: error" in err and not (tmp_path / "o").exists(), err
    assert not cache_dir().exists()


def test_harmonic_share_tells_one_bass_voice_from_a_band():
    from backline.engines.bass.reference import SOLO_HARMONIC_SHARE, harmonic_share

    notes = line(8, bars=4)
    bass = synth(notes, "bright")
    t = np.arange(bass.frames) / SR
    pad = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (293.7, 370.0, 440.0, 587.3))  # a D major chord held
    hats = np.random.default_rng(0).normal(0, 0.1, bass.frames) * ((t % 0.3) < 0.03)
    band = Audio((bass.samples[0] + pad + hats)[None].astype(np.float32), SR)
    assert harmonic_share(bass, notes) >= SOLO_HARMONIC_SHARE > harmonic_share(band, notes)


def test_presets_play_through_their_reference_instrument_and_preview_midi(band, tmp_path, capsys):
    """A preset is its reference + its style: by default the take sounds in the instrument sampled from the
    preset's reference (built once, cached), `--sound soundfont` gives the GM program; the host's MIDI preview
    plays a take's MIDI in the same sound, each attack on its note."""
    import json

    from backline.engines.bass.presets import load_preset
    from backline.engines.bass.reference import preset_instrument, preset_lag, preview_midi
    from backline.engines.core.audio import read_audio
    from backline.engines.core.timeline import Timeline
    from backline.engines.core.transcribe import notes_to_midi
    from backline.host.cli import main as cli_main

    mix = write_audio(tmp_path / "band.wav", band)
    user = [Note(40, 0.5, 1.0, 100), Note(47, 1.0, 1.5, 90), Note(45, 2.0, 3.0, 80)]
    path = tmp_path / "line.mid"
    notes_to_midi(user, Timeline.constant(100.0, 44100), program=33).save(str(path))
    takes = {}
    for sound in ("reference", "soundfont"):
        out = tmp_path / sound
        assert cli_main(["generate", "bass", "--mix", str(mix), "--out", str(out), "--config", "debug", "--bpm", "100",
                         "--preset", "slap", "--midi-in", str(path), "--sound", sound]) == 0, capsys.readouterr().err
        report = json.loads((out / "bass_seed0.json").read_text())
        assert report["render"] == ("preset's reference instrument" if sound == "reference" else "soundfont"), report
        takes[sound] = read_audio(out / "bass_seed0.wav").with_channels(1).samples[0]
    sr = band.sample_rate

    def first(y):
        return np.flatnonzero(np.abs(y) > 0.1 * np.abs(y[: int(1.5 * sr)]).max())[0] / sr

    lag = preset_lag(load_preset("slap"), 40)
    assert 0.0 <= lag < 0.03
    # the sampled attack sits where the soundfont take's does: on the note-on plus the lag the soundfont keeps
    assert abs(first(takes["reference"]) - (0.5 + lag)) < 0.005, (first(takes["reference"]), lag)
    assert abs(first(takes["reference"]) - first(takes["soundfont"])) < 0.006
    assert not np.allclose(takes["reference"][: 3 * sr], takes["soundfont"][: 3 * sr], atol=1e-3)
    assert (tmp_path / "cache" / "backline" / "instruments").is_dir()  # built once, kept for the next take
    inst, info = preset_instrument(load_preset("slap"))
    assert info["cached"] and inst.slices
    # the preview: the MIDI file as the DAW gets it, in the take's sound, starting just before its first note
    audio = preview_midi(path, preset="slap", sample_rate=sr)
    x = audio.with_channels(1).samples[0]
    onset = np.flatnonzero(np.abs(x) > 0.1 * np.abs(x).max())[0] / sr
    assert abs(onset - 0.1 - lag) < 0.005 and abs(audio.seconds - (3.0 - 0.5 + 0.1 + 0.24)) < 0.05, (onset, audio.seconds)
    ref = write_audio(tmp_path / "my bass.flac", synth(line(8, bars=6), "dark"))
    dark = preview_midi(path, reference=ref, sample_rate=sr)
    assert dark.frames == audio.frames and not np.allclose(dark.samples, audio.samples, atol=1e-3)


def test_a_staccato_slice_longer_than_needed_is_not_padded_negatively():
    """A slice whose note dies within 50 ms of its attack but whose recording runs on (a rest before the next note)
    has no body to loop: it is played as recorded (this raised inside np.pad for a preset's staccato notes)."""
    from backline.engines.bass.reference import _sustain_loop

    t = np.arange(int(0.6 * SR)) / SR
    x = (np.sin(2 * np.pi * 82.4 * t) * np.where(t < 0.03, 1.0, 1e-3)).astype(np.float32)
    out = _sustain_loop(x, 0, int(0.2 * SR), 82.4)
    assert len(out) >= int(0.2 * SR) and np.array_equal(out[: len(x)], x)
