"""The drum controls a musician knows (engines/drums/feel.py): each one changes the part the way its name says,
first on hand-made grids, then through the drum engine (shipped models, ~0.2 s a take) into the MIDI it writes."""

from __future__ import annotations

import threading

import mido
import numpy as np
import pytest

from backline.engines.core.timeline import Timeline
from backline.engines.drums.feel import (
    STYLES,
    Feel,
    apply_dynamics,
    apply_pattern,
    fill_threshold,
    swing,
    template_bar,
    timing_offsets,
)
from backline.engines.drums.representation import CLOSED_HAT, CRASH, KICK, N_CLASSES, OPEN_HAT, RIDE, SNARE

SPB = 96  # one 4/4 bar at 24 steps per quarter


def rock_bars(n: int = 4) -> np.ndarray:
    """Eighth hats, kick on 1 and 3 plus a 16th pickup, snare on 2 and 4."""
    g = np.zeros((n * SPB, N_CLASSES), bool)
    for b in range(n):
        o = b * SPB
        g[o + np.arange(0, SPB, 12), CLOSED_HAT] = True
        g[o + np.array([0, 48, 66]), KICK] = True
        g[o + np.array([24, 72]), SNARE] = True
    return g


def pattern(g, feel, bars=None, fills=()):
    return apply_pattern(g, feel, numerator=4, denominator=4, steps_per_bar=SPB,
                         bars=list(range(len(g) // SPB)) if bars is None else bars, fill_bars=list(fills),
                         rng=np.random.default_rng(0))


def test_styles_come_from_the_corpus_grooves_and_keep_the_bands_kick():
    assert set(STYLES) == {"rock", "funk", "shuffle", "half-time", "bossa", "disco", "ballad"}
    g = rock_bars()
    half = pattern(g, Feel(style="half-time"))
    snare_steps = sorted({int(s) % SPB for s in np.nonzero(half[:, SNARE])[0]})
    assert snare_steps == [48]  # beat 3 only
    assert np.array_equal(half[:, KICK], g[:, KICK])  # the model's kick follows the band
    disco = pattern(g, Feel(style="disco"))
    assert sorted({int(s) % SPB for s in np.nonzero(disco[:, KICK])[0]}) == [0, 24, 48, 72]  # four on the floor
    shuffle = template_bar("shuffle", "A", SPB)
    assert set(np.nonzero(shuffle[:, CLOSED_HAT])[0]) <= {0, 16, 24, 40, 48, 64, 72, 88}  # triplet positions
    for style in STYLES:
        assert template_bar(style, "A", SPB).any(axis=0)[[KICK, SNARE]].all(), style


def test_fill_bars_and_other_meters_keep_the_models_part():
    g = rock_bars()
    g[3 * SPB:, :] = False
    g[3 * SPB + np.arange(48, 96, 6), SNARE] = True  # a snare roll: the fill
    out = pattern(g, Feel(style="disco"), fills=[3])
    assert np.array_equal(out[3 * SPB:], g[3 * SPB:])
    feel = Feel(style="rock")
    same = apply_pattern(g[:72], feel, numerator=3, denominator=4, steps_per_bar=72, bars=[0], fill_bars=[],
                         rng=np.random.default_rng(0))
    assert np.array_equal(same, g[:72]) and "4/4" in feel.notes[0]


def test_complexity_thins_or_adds_ghost_notes():
    g = rock_bars()
    plain = pattern(g, Feel(complexity=0.0))
    assert not plain[np.arange(len(g)) % 12 != 0].any()  # only the eighth-note grid is left
    assert plain[:, SNARE].sum() == g[:, SNARE].sum()
    busy = pattern(g, Feel(complexity=1.0))
    assert busy[:, SNARE].sum() > g[:, SNARE].sum()
    assert np.array_equal(pattern(g, Feel()), g)  # 0.5 = as generated


def test_swing_moves_offbeat_eighths_to_the_triplet():
    g = rock_bars(1)
    g[66, KICK] = False  # an eighth-note bar
    out = swing(g, 1.0, SPB, [0])
    assert not out[np.arange(SPB) % 24 == 12].any() and out[np.arange(SPB) % 24 == 16, CLOSED_HAT].sum() == 4
    half = swing(g, 0.5, SPB, [0])
    assert half[14, CLOSED_HAT] and not half[12, CLOSED_HAT]
    sixteenths = rock_bars(1)  # has a 16th (step 66): the 16ths swing, the eighths stay
    out = swing(sixteenths, 1.0, SPB, [0])
    assert out[68, KICK] and out[12, CLOSED_HAT]


def test_intensity_scales_velocity_and_orchestration():
    g = rock_bars(4)
    g[0, CRASH] = g[SPB, CRASH] = True
    g[12, OPEN_HAT] = True
    soft = pattern(g, Feel(intensity=0.0))
    assert not soft[:, OPEN_HAT].any() and soft[:, CRASH].sum() == 1  # only the first crash stays
    loud = pattern(g, Feel(intensity=1.0))
    assert loud[2 * SPB:, RIDE].any() and loud[:, KICK].sum() > g[:, KICK].sum()
    vel = np.where(g, 90, 0).astype(np.uint8)
    lo = apply_dynamics(vel, Feel(intensity=0.0, humanise=0), np.random.default_rng(0))
    hi = apply_dynamics(vel, Feel(intensity=1.0, humanise=0), np.random.default_rng(0))
    assert lo[g].mean() < 75 < 100 < hi[g].mean() and (lo[~g] == 0).all()


def test_humanise_is_bounded_and_off_at_zero():
    g = rock_bars()
    sps = np.full(len(g), 60 / 120 / 24)  # 120 BPM
    assert not timing_offsets(g, Feel(humanise=0.0), sps, 40.0, np.random.default_rng(0)).any()
    off = timing_offsets(g, Feel(humanise=1.0), sps, 40.0, np.random.default_rng(0))  # 40 ticks per step
    ms = off / 40.0 * sps[0] * 1000
    assert off[g].std() > 0 and np.abs(ms).max() <= 20.0 + 1e-6 and (off[~g] == 0).all()
    assert np.abs(ms[:, KICK]).max() <= 12.0 + 1e-6  # kick and snare stay tighter


def test_fill_amount_maps_onto_the_locator_threshold():
    assert fill_threshold(0.0, 0.25) is None
    assert fill_threshold(0.5, 0.25) == pytest.approx(0.25)
    values = [fill_threshold(f, 0.25) for f in (0.1, 0.3, 0.5, 0.7, 1.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 0.05


def _onsets(midi):
    mid = midi if isinstance(midi, mido.MidiFile) else mido.MidiFile(str(midi))  # generate() is pure: in memory
    out, now = [], 0
    for msg in mid.tracks[1]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((now, msg.note, msg.velocity))
    return out, mid.ticks_per_beat


def test_every_control_changes_what_the_drum_engine_writes(tmp_path):
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.data.demo import demo_midi_without_drums
    from backline.engines.drums.engine import list_presets, preset_controls
    from backline.engines.registry import build_engine

    engine = build_engine("drums")  # the shipped models: the debug ones play nothing to change
    names = {c.name: c for c in engine.describe().controls}
    for name in ("style", "fill_amount", "complexity", "intensity", "swing", "humanise"):
        assert names[name].group == ""
    assert {names[n].group for n in ("bars", "fill_bars", "drums_midi", "vst3", "roles", "render")} == {"cli"}
    assert names["sample"].group == "advanced"
    assert len(list_presets()) >= 7 and preset_controls("shuffle")["swing"] == 1.0
    band = demo_midi_without_drums(tmp_path)

    def run(tag, preset=None, **controls):
        req = GenerationRequest("drums", tmp_path / tag, Timeline.constant(100, 44100), midi=band, seed=3,
                                preset=preset, controls={"render": False, "humanise": 0.0, **controls})
        take = engine.generate(req, progress=lambda f, m: None, cancel=threading.Event()).takes[0]
        return _onsets(take.midi)

    base, ppq = run("base")
    assert len(base) > 50
    assert all(t * 24 % ppq == 0 for t, _, _ in base)  # humanise 0: every onset on the 24-step grid
    loose, _ = run("loose", humanise=1.0)
    assert any(t * 24 % ppq for t, _, _ in loose)
    swung, _ = run("swing", swing=1.0, complexity=0.0, fill_amount=0.0)  # eighth-note bars throughout
    assert not [t for t, _, _ in swung if t % ppq == ppq // 2]  # no straight off-beat eighth is left
    assert np.mean([v for *_, v in run("hard", intensity=1.0)[0]]) > np.mean([v for *_, v in base]) + 10
    disco, _ = run("disco", style="disco")
    assert base != disco
    explicit = {**preset_controls("disco"), "humanise": 0.0}
    assert explicit["style"] == "disco"
    assert run("preset", preset="disco")[0] == run("explicit", **explicit)[0]  # a preset is just its [controls]
    with pytest.raises(Exception, match="not a plain name"):  # the shared preset reader refuses paths
        run("bad", preset="../../etc/passwd")
    with pytest.raises(Exception, match="unknown drums preset"):
        run("bad", preset="polka")
