"""Transport model: extrapolation, events, bad values (logged once, state kept)."""

import logging

import pytest

from backline.bridge.transport import Event, Transport


class FakeClock:
    """A settable clock, so extrapolation is tested exactly (the real clock is used everywhere else)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def tr():
    clock = FakeClock()
    t = Transport(48000, clock=clock)
    t.fake = clock
    return t


def record(tr, *events):
    seen = []
    for ev in events:
        tr.subscribe(ev, lambda snap, extra=None, ev=ev: seen.append((ev.value, round(snap.position), extra)))
    return seen


def test_extrapolates_between_ticks_while_playing(tr):
    tr.set_position(48000, t=100.0)
    tr.set_playing(True, t=100.0)
    assert tr.position_at(100.05) == pytest.approx(48000 + 2400)
    tr.fake.t = 100.1
    assert tr.snapshot().position == pytest.approx(52800)
    tr.set_playing(False, t=100.2)
    assert tr.position_at(105.0) == pytest.approx(48000 + 9600)  # frozen where it stopped


def test_events_play_stop_locate_tempo_meter(tr):
    seen = record(tr, Event.PLAY, Event.STOP, Event.LOCATE, Event.TEMPO, Event.METER)
    tr.set_playing(True, t=100.0)
    tr.set_position(4800 + 10, t=100.1)       # 10 samples of jitter: no locate
    tr.set_position(96000, t=100.2)           # a jump: locate
    tr.set_tempo(97.5, t=100.2)
    tr.set_tempo(97.5, t=100.3)               # unchanged: no event
    tr.set_meter(6, 8, t=100.3)
    tr.set_playing(False, t=100.4)
    assert [e for e, _, _ in seen] == ["play", "locate", "tempo", "meter", "stop"]
    assert seen[1][1] == 96000
    assert tr.timeline.quarters_per_bar == 3 and tr.timeline.bpm == 97.5


def test_position_jumping_backwards_is_a_locate(tr):
    seen = record(tr, Event.LOCATE)
    tr.set_playing(True, t=100.0)
    tr.set_position(480000, t=100.0)
    tr.set_position(480000 + 4800, t=100.1)
    tr.set_position(1000, t=100.2)
    assert [p for _, p, _ in seen] == [480000, 1000]
    assert tr.position_at(100.2) == 1000


@pytest.mark.parametrize("bpm", [0, -120, 10000, float("nan"), float("inf"), "fast"])
def test_absurd_tempos_are_refused_and_logged_once(tr, bpm, caplog):
    tr.set_tempo(123.0, t=100.0)
    with caplog.at_level(logging.WARNING, logger="backline.bridge"):
        for _ in range(50):
            tr.set_tempo(bpm, t=100.1)
    assert tr.bpm == 123.0
    assert len([r for r in caplog.records if "tempo" in r.getMessage()]) == 1
    assert tr.problems.counts["tempo"] == 50


def test_bad_positions_meters_and_regions_keep_state(tr, caplog):
    tr.set_position(1234, t=100.0)
    with caplog.at_level(logging.WARNING, logger="backline.bridge"):
        for bad in (float("nan"), float("inf"), 1e30):
            tr.set_position(bad, t=100.1)
        tr.set_meter(0, 4)
        tr.set_meter(4, 3)
        tr.set_meter("x", 4)
        tr.set_region(5.0, 1.0)
    assert tr.position_at(100.2) == 1234
    assert tr.meter == (4, 4) and tr.region is None
    assert len(caplog.records) == 3  # position, meter, region: once each


def test_bar_maths_uses_the_timeline(tr):
    tr.set_tempo(120.0)
    tr.set_position(tr.timeline.bar_to_samples(9), t=100.0)
    snap = tr.snapshot(100.0)
    assert snap.bar == pytest.approx(9.0) and str(snap.bbt) == "9|1|000"
    tr.set_bbt(3, 2, 0.5, t=100.0)
    assert tr.position_at(100.0) == pytest.approx(2 * 96000 + 24000 + 12000)
    tr.set_quarters(8.0, t=100.0)
    assert tr.position_at(100.0) == pytest.approx(192000)
    assert "120.00 BPM 4/4" in snap.line()


def test_silence_is_reported_once_then_resumed(tr):
    seen = record(tr, Event.SILENT, Event.RESUMED)
    tr.set_playing(True, t=100.0)
    assert not tr.check_silence(101.0)
    assert tr.check_silence(103.0) and tr.check_silence(110.0)
    assert tr.playing  # a silent DAW keeps its last state
    tr.set_position(0, t=111.0)
    assert [e for e, _, _ in seen] == ["silent", "resumed"]


def test_a_raising_callback_does_not_stop_the_feed(tr, caplog):
    tr.subscribe(Event.PLAY, lambda snap: 1 / 0)
    got = []
    tr.subscribe(Event.PLAY, lambda snap: got.append(snap.playing))
    with caplog.at_level(logging.ERROR, logger="backline.bridge"):
        tr.set_playing(True, t=100.0)
        tr.set_playing(False, t=100.1)
        tr.set_playing(True, t=100.2)
    assert got == [True, True]
    assert len(caplog.records) == 1


def test_unsubscribe(tr):
    got = []
    off = tr.subscribe("play", lambda snap: got.append(1))
    tr.set_playing(True)
    off()
    tr.set_playing(False)
    tr.set_playing(True)
    assert got == [1]
