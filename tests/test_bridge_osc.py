"""The OSC listener against liblo's own tools: `oscsend` speaks every dialect in, `oscdump -L` checks what
the bridge sends out. Plus malformed packets, bursts and a bounded hypothesis fuzz of the decoder."""

import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridge_peers import free_udp_port, oscdump, oscsend, require, wait_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_message import OscMessage

from backline.bridge.osc import (
    ARDOUR_FEEDBACK,
    OscBridge,
    decode_args,
    decode_header,
    encode_message,
    parse_clock,
    wait_for,
)
from backline.bridge.transport import Event, Transport

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _tools():
    require("oscsend", "oscdump")


@pytest.fixture
def bridge(request):
    dialect = getattr(request, "param", "auto")
    tr = Transport(48000)
    with OscBridge(tr, dialect=dialect, port=0, daw_port=free_udp_port()) as b:
        yield b


def settle(b: OscBridge, count: int) -> None:
    assert wait_for(lambda: b.stats["messages"] >= count, 5.0), b.stats


def test_reaper_default_pattern(bridge):
    tr, port = bridge.transport, bridge.port
    events = []
    for ev in (Event.PLAY, Event.TEMPO, Event.LOCATE, Event.STOP):
        tr.subscribe(ev, lambda snap, ev=ev: events.append(ev.value))
    oscsend(port, "/tempo/raw", "f", 97.5)
    oscsend(port, "/time", "f", 16.0)
    oscsend(port, "/samples", "f", 16.0 * 48000)
    oscsend(port, "/time/str", "s", "0:16.000")
    oscsend(port, "/beat/str", "s", "9.1.00")
    oscsend(port, "/loop/start/time", "f", 4.0)
    oscsend(port, "/loop/end/time", "f", 8.0)
    oscsend(port, "/play", "f", 1.0)
    settle(bridge, 8)
    assert bridge.dialect == "reaper" and tr.playing and tr.bpm == 97.5
    assert tr.position_at() == pytest.approx(16.0 * 48000, abs=48000)  # extrapolating
    assert bridge.loop == (4.0, 8.0)
    oscsend(port, "/stop", "f", 1.0)
    settle(bridge, 9)
    assert not tr.playing
    assert events == ["tempo", "locate", "play", "stop"]


@pytest.mark.parametrize("bridge", ["bitwig"], indirect=True)
def test_bitwig_drivenbymoss(bridge):
    tr, port = bridge.transport, bridge.port
    oscsend(port, "/tempo/raw", "f", 140.0)
    oscsend(port, "/time/signature", "s", "7/8")
    oscsend(port, "/time/str", "s", "0:01:30:500")
    oscsend(port, "/play", "i", 1)
    settle(bridge, 4)
    assert (tr.bpm, tr.meter, tr.playing) == (140.0, (7, 8), True)
    assert tr.position_at() >= 90.5 * 48000
    assert bridge.stats["other_dialect"] == 0


def test_ardour_set_surface_and_feedback(tmp_path):
    """The bridge asks Ardour (here: oscdump in its place) for feedback, then follows its feedback."""
    ardour = free_udp_port()
    with oscdump(ardour, tmp_path) as dump:
        tr = Transport(48000)
        with OscBridge(tr, dialect="ardour", port=0, daw_port=ardour) as b:
            lines = wait_lines(dump, "/set_surface")
            assert lines, dump.read_text()
            fields = lines[0].split()
            assert fields[2] == "iiiiiiiii" and int(fields[5]) == ARDOUR_FEEDBACK and int(fields[9]) == b.port
            assert ARDOUR_FEEDBACK & 1024 and ARDOUR_FEEDBACK & 32 and ARDOUR_FEEDBACK & 1
            oscsend(b.port, "/transport_play", "i", 1)
            # Ardour plays at 100 BPM: bar|beat against samples lets the bridge infer the tempo
            for k in range(4):
                samples = 48000 * (2 + 0.6 * k)       # 0.6 s = one beat at 100 BPM
                oscsend(b.port, "/position/samples", "s", str(int(samples)))
                oscsend(b.port, "/position/bbt", "s", f"001|{k + 1:02d}|0000")
            settle(b, 9)
            assert tr.playing and b.dialect == "ardour"
            assert tr.bpm == pytest.approx(100.0, rel=0.02)
            oscsend(b.port, "/transport_stop", "i", 1)
            settle(b, 10)
            assert not tr.playing
            oscsend(b.port, "/live/song/get/tempo", "f", 80.0)  # another dialect: ignored when fixed
            settle(b, 11)
            assert b.stats["other_dialect"] == 1 and tr.bpm == pytest.approx(100.0, rel=0.02)


def test_ableton_client_queries_and_listens(tmp_path):
    """AbletonOSC answers on the sender's host at 11001; here oscdump stands in for Live's port 11000."""
    live = free_udp_port()
    with oscdump(live, tmp_path) as dump:
        tr = Transport(48000)
        with OscBridge(tr, dialect="ableton", port=0, daw_port=live) as b:
            assert wait_lines(dump, "/live/song/start_listen/beat")
            assert wait_lines(dump, "/live/song/start_listen/is_playing")
            assert len(wait_lines(dump, "/live/song/get/current_song_time", count=3)) >= 3  # polled
            oscsend(b.port, "/live/song/get/tempo", "f", 128.0)
            oscsend(b.port, "/live/song/get/signature_numerator", "i", 3)
            oscsend(b.port, "/live/song/get/is_playing", "T")
            oscsend(b.port, "/live/song/get/current_song_time", "f", 12.0)  # quarters
            settle(b, 4)
            assert (tr.bpm, tr.meter, tr.playing) == (128.0, (3, 4), True)
            assert tr.position_at() >= 12.0 * 60 / 128 * 48000
            oscsend(b.port, "/live/song/get/is_playing", "F")
            settle(b, 5)
            assert not tr.playing
        assert wait_lines(dump, "/live/song/stop_listen/beat")


def test_backline_namespace_region_generate_ping(bridge):
    tr = bridge.transport
    regions, gens = [], []
    tr.subscribe(Event.REGION, lambda snap, region: regions.append(region))
    tr.subscribe(Event.GENERATE, lambda snap, args: gens.append(args))
    oscsend(bridge.port, "/backline/region", "fffii", 16.0, 48.0, 120.0, 4, 4)
    oscsend(bridge.port, "/backline/generate", "ss", "bass", "walking")
    settle(bridge, 2)
    assert regions == [(16 * 48000, 48 * 48000)] and gens == [("bass", "walking")]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        s.sendto(encode_message("/backline/ping", 42), bridge.address)
        data, src = s.recvfrom(1024)
    assert src[1] == bridge.port
    address, tags, off = decode_header(data, len(data))
    assert address == b"/backline/pong" and decode_args(data, len(data), tags, off) == [42]


def test_bridge_sends_hydrogen_commands_from_its_socket(bridge, tmp_path):
    h2 = free_udp_port()
    with oscdump(h2, tmp_path) as dump:
        bridge.remote("bpm", 100.0, dialect="hydrogen", to=("127.0.0.1", h2))
        bridge.remote("locate", 2.0, dialect="hydrogen", to=("127.0.0.1", h2))
        bridge.remote("play", dialect="hydrogen", to=("127.0.0.1", h2))
        assert wait_lines(dump, "/Hydrogen/PLAY")
        text = dump.read_text()
    assert "/Hydrogen/BPM f 100.0" in text and "/Hydrogen/RELOCATE f 2.0" in text


def test_bad_input_is_counted_logged_once_and_survived(bridge, caplog):
    tr, port = bridge.transport, bridge.port
    oscsend(port, "/tempo/raw", "f", 120.0)
    garbage = [b"", b"\x00\x01\x02", b"/time\x00\x00\x00,f\x00\x00\x00\x00", b"#bundle\x00garbage",
               b"/time\x00\x00\x00,zz\x00" + b"\x00" * 8, b"no slash", b"/" + b"a" * 70000]
    with caplog.at_level(logging.INFO, logger="backline.bridge"), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):
            for g in garbage:
                try:
                    s.sendto(g, bridge.address)
                except OSError:  # the 70 kB one is too big for UDP on some stacks
                    pass
        for bpm in (0.0, -5.0, 10000.0):
            oscsend(port, "/tempo/raw", "f", bpm)
        oscsend(port, "/tempo/raw", "s", "fast")
        oscsend(port, "/time", "s", "later")
        oscsend(port, "/not/a/thing", "i", 1)
        oscsend(port, "/time", "f", 3.0)  # still alive and listening
        assert wait_for(lambda: tr.position_at() >= 3.0 * 48000 - 1, 5.0)
        # problems are logged once per kind and at most one line per second: the tempo line comes after
        # the malformed one, once the listener has been quiet for a second
        assert wait_for(lambda: any("ignored tempo" in r.getMessage() for r in caplog.records), 5.0)
    assert tr.bpm == 120.0
    st_ = bridge.stats
    assert st_["malformed"] >= 60 and st_["bad_args"] >= 2 and st_["unknown"] >= 1
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    warnings = [r.getMessage() for r in records]
    assert sum("malformed" in m for m in warnings) == 1  # logged once, not 120 times
    assert sum("ignored tempo" in m for m in warnings) == 1  # 0, -5 and 10000: one line
    times = sorted(r.created for r in records)
    # a burst of at most 3 lines, then never more than one a second
    assert all(b - a >= 0.9 for a, b in zip(times[2:], times[3:]))


def test_burst_of_position_messages_keeps_up(bridge):
    """5,000 datagrams back to back: every one applied, the last position wins."""
    msgs = [encode_message("/samples", float(i * 256)) for i in range(5000)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for m in msgs:
            s.sendto(m, bridge.address)
    assert wait_for(lambda: bridge.stats["messages"] >= 5000, 20.0), bridge.stats
    assert bridge.transport.position_at() == 4999 * 256


def test_bundles_are_unpacked(bridge):
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    bb = OscBundleBuilder(IMMEDIATELY)
    for address, value in (("/tempo/raw", 90.0), ("/time", 2.0)):
        mb = OscMessageBuilder(address)
        mb.add_arg(value)
        bb.add_content(mb.build())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(bb.build().dgram, bridge.address)
    assert wait_for(lambda: bridge.transport.bpm == 90.0, 5.0)
    assert bridge.transport.position_at() == 96000


def test_port_in_use_is_a_clear_error():
    from backline.engines.core.errors import DeviceError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(DeviceError, match="--port"):
            OscBridge(Transport(), port=s.getsockname()[1]).start()


def test_parse_clock():
    assert parse_clock("0:01:30:500") == 90.5
    assert parse_clock("01:30:250") == 90.25
    assert parse_clock("12.5") == 12.5
    with pytest.raises(ValueError):
        parse_clock("")


_arg = st.one_of(st.integers(-2**31, 2**31 - 1), st.floats(width=32, allow_nan=False),
                 st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                         max_size=20), st.booleans(), st.binary(min_size=1, max_size=16))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(address=st.from_regex(r"/[a-z]{1,8}(/[a-z_]{1,10}){0,3}", fullmatch=True), args=st.lists(_arg, max_size=6))
def test_fuzz_decoder_agrees_with_python_osc(address, args):
    data = encode_message(address, *args)
    reference = OscMessage(data)
    addr, tags, off = decode_header(data, len(data))
    ours = decode_args(data, len(data), tags, off)
    assert addr.decode() == reference.address
    assert ours == list(reference.params)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=200),
                      st.builds(lambda a, b: a + b, st.sampled_from([b"/time\x00\x00\x00", b"/tempo/raw\x00\x00",
                                                                     b"/live/song/get/tempo\x00\x00\x00\x00",
                                                                     b"#bundle\x00", b"/backline/region\x00\x00\x00\x00"]),
                                st.binary(max_size=64))))
def test_fuzz_random_datagrams_never_raise(data):
    tr = Transport(48000)
    b = OscBridge(tr, port=0)  # not started: handle() is the whole receive path minus the socket
    if data:
        b.handle(bytearray(data), len(data), 1.0)
    assert sum(b.stats[k] for k in ("malformed", "unknown", "bad_args")) <= max(b.stats["messages"], 1) + 64
    assert tr.bpm == 120.0 or 10 <= tr.bpm <= 999


def test_cli_prints_a_live_transport_line(tmp_path):
    port = free_udp_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "backline.host.cli", "bridge", "--dialect", "reaper", "--port",
                             str(port), "--seconds", "2", "--interval", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first
        oscsend(port, "/tempo/raw", "f", 97.5)
        oscsend(port, "/time", "f", 16.0)
        oscsend(port, "/play", "f", 1.0)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    live = [ln for ln in lines if ln.startswith("reaper") and "▶" in ln]
    assert live and "97.50 BPM 4/4" in live[-1] and "bar 7|3|" in live[0]  # 16 s at 97.5 BPM
    assert any(ln.startswith("* play") for ln in lines)
    assert "3 messages (reaper)" in lines[-1]


def test_cli_host_default_is_loopback():
    import argparse

    from backline.bridge import cli
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    assert parser.parse_args([]).host == "127.0.0.1"


def test_packaging_reaper_pattern_file_covers_what_the_bridge_reads():
    pattern = Path(__file__).parents[1] / "packaging" / "reaper" / "Backline.ReaperOSC"
    text = pattern.read_text(encoding="utf-8")
    for address in ("/tempo/raw", "/time", "/samples", "/play", "/stop", "/loop/start/time"):
        assert re.search(rf"^[A-Z_]+ .*\b[tfsnib]{re.escape(address)}(\s|$)", text, re.M), address
    lua = (pattern.parent / "backline.lua").read_text(encoding="utf-8")
    assert '"/backline/region", "fffii"' in lua and "InsertMedia" in lua


def test_reaper_script_encodes_osc_the_bridge_reads(bridge, tmp_path):
    """Run the ReaScript's own OSC encoder in a real Lua 5.4 and feed its bytes to the listener."""
    require("lua5.4")
    lua = (Path(__file__).parents[1] / "packaging" / "reaper" / "backline.lua").read_text(encoding="utf-8")
    encoder = lua.split("-- Main ---")[0]
    script = tmp_path / "enc.lua"
    script.write_text(encoder + '\nio.write(osc_message("/backline/region", "fffii", 16.0, 48.0, 97.5, 7, 8))\n')
    data = subprocess.run(["lua5.4", str(script)], capture_output=True, check=True, timeout=20).stdout
    regions = []
    bridge.transport.subscribe(Event.REGION, lambda snap, region: regions.append(region))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, bridge.address)
    assert wait_for(lambda: regions, 5.0), bridge.stats
    assert regions == [(16 * 48000, 48 * 48000)]
    assert bridge.transport.bpm == 97.5 and bridge.transport.meter == (7, 8)


def test_a_daw_going_silent_is_reported_once_and_keeps_state():
    tr = Transport(48000, silence_timeout=0.3)
    events = []
    tr.subscribe(Event.SILENT, lambda snap, age: events.append("silent"))
    tr.subscribe(Event.RESUMED, lambda snap: events.append("resumed"))
    with OscBridge(tr, dialect="reaper", port=0, poll_interval=0.05) as b:
        oscsend(b.port, "/play", "f", 1.0)
        assert wait_for(lambda: events == ["silent"], 5.0)
        time.sleep(0.5)  # still silent: no second event
        assert events == ["silent"] and tr.playing
        oscsend(b.port, "/time", "f", 1.0)
        assert wait_for(lambda: events == ["silent", "resumed"], 5.0)


def _nest(inner: bytes, depth: int) -> bytes:
    """`inner` (a message or bundle) wrapped in `depth` bundles."""
    import struct as _struct

    for _ in range(depth):
        inner = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + _struct.pack(">i", len(inner)) + inner
    return inner


def test_nested_bundles_are_walked_once_capped_and_counted_per_message(caplog):
    tr = Transport(48000)
    b = OscBridge(tr, dialect="reaper", port=0)  # handle() is the receive path minus the socket
    two = encode_message("/tempo/raw", 90.0), encode_message("/time", 2.0)
    import struct as _struct

    flat = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"".join(_struct.pack(">i", len(m)) + m for m in two)
    b.handle(bytearray(flat), len(flat), 1.0)
    assert tr.bpm == 90.0 and b.stats["messages"] == 2 and b.stats["bundles"] == 1  # elements are messages
    ok = _nest(encode_message("/time", 3.0), 4)
    b.handle(bytearray(ok), len(ok), 1.0)
    assert tr.position_at(1.0) == 3 * 48000 and b.stats["malformed"] == 0
    with caplog.at_level(logging.DEBUG):
        deep = _nest(encode_message("/time", 5.0), 200)  # ~3 kB, 200 levels
        for _ in range(50):
            b.handle(bytearray(deep), len(deep), 1.0)
        bad = _nest(b"/time\x00\x00\x00,f\x00\x00", 3)[:-2]  # an element that runs past the packet
        for _ in range(50):
            b.handle(bytearray(bad), len(bad), 1.0)
    assert tr.position_at(1.0) == 3 * 48000  # the message below the cap was not applied
    assert b.stats["malformed"] == 100
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) <= 2 and not any(r.name.startswith("pythonosc") for r in caplog.records)  # once per kind
