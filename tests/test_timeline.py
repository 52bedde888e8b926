import pytest

from backline.engines.core.errors import TimelineError
from backline.engines.core.timeline import BBT, TempoMap, Timeline, check_bpm, parse_bar_range


def test_bars_to_samples_4_4():
    tl = Timeline.constant(120, 48000)
    assert tl.bar_to_samples(1) == 0
    assert tl.bar_to_samples(2) == 96000  # 4 beats at 0.5 s
    assert tl.bar_range_to_samples(9, 24) == (8 * 96000, 24 * 96000)
    assert tl.samples_to_bbt(96000 + 24000) == BBT(2, 2, 0.0)
    assert tl.samples_to_bbt(12000).tick == pytest.approx(480)


def test_compound_meter_uses_the_denominator_beat():
    tl = Timeline.constant(90, 44100, 6, 8)  # 6/8: bar = 3 quarters
    assert tl.quarters_per_bar == 3
    assert tl.bar_to_samples(2) == round(3 * 60 / 90 * 44100)
    assert tl.samples_to_bbt(tl.bar_to_samples(2) + round(0.5 * 60 / 90 * 44100)) == BBT(2, 2, 0.0)


@pytest.mark.parametrize("bbt", [BBT(1, 1, 0), BBT(3, 4, 959), BBT(17, 2, 480)])
def test_bbt_round_trip(bbt):
    tl = Timeline.constant(97.3, 44100)
    back = tl.samples_to_bbt(tl.bbt_to_samples(bbt))
    assert (back.bar, back.beat) == (bbt.bar, bbt.beat) and back.tick == pytest.approx(bbt.tick, abs=0.05)


def test_tempo_map_is_piecewise():
    tempo = TempoMap(((0.0, 120.0), (8.0, 60.0)))
    assert tempo.seconds(8) == pytest.approx(4.0)
    assert tempo.seconds(9) == pytest.approx(5.0)
    assert tempo.quarter(5.0) == pytest.approx(9.0)
    tl = Timeline(48000, tempo)
    assert tl.bar_to_samples(3) == 4 * 48000 + 0  # bar 3 starts at quarter 8 = 4 s


@pytest.mark.parametrize("bpm", [0, -5, 10000, float("nan")])
def test_absurd_tempos_are_refused(bpm):
    with pytest.raises(TimelineError, match="BPM"):
        check_bpm(bpm)


def test_bar_ranges():
    assert parse_bar_range("9-24") == (9, 24)
    assert parse_bar_range(" 5 ") == (5, 5)
    for bad in ["0-3", "5-2", "abc", ""]:
        with pytest.raises(TimelineError):
            parse_bar_range(bad)
    with pytest.raises(TimelineError):
        Timeline.constant(120, 48000).bar_to_samples(0)


def test_grid_lines():
    tl = Timeline.constant(120, 48000)
    grid = tl.grid_samples(0, 48000, division=4)
    assert grid == [i * 6000 for i in range(8)]


def test_an_origin_puts_bar_one_where_the_music_starts():
    """A recording whose first bar line is at 0.3 s: bar 1 beat 1 sits there, the lead-in is a pickup (bar 0)."""
    tl = Timeline.constant(100, 44100, origin=13230)
    bar = round(2.4 * 44100)
    assert tl.bar_to_samples(1) == 13230 and tl.bar_range_to_samples(3, 4) == (13230 + 2 * bar, 13230 + 4 * bar)
    assert tl.samples_to_bar(0) == pytest.approx(1 - 0.3 / 2.4)
    assert tl.samples_to_bbt(13230 + bar) == BBT(2, 1, 0.0)
    assert tl.quarters_to_seconds(0) == pytest.approx(0.3) and tl.seconds_to_quarters(0.9) == pytest.approx(1.0)
    assert tl.snap_to_grid(13230 + bar) == 13230 + bar and tl.bars_in(13230 + 3 * bar) == pytest.approx(3.0)
    assert tl.grid_samples(0, 13230 + 1, division=1) == [13230]  # the lead-in holds no beat of bar 1
    assert Timeline.constant(100, 44100).bar_to_samples(1) == 0  # a DAW's timeline: bar 1 at sample 0
