"""The OSC listener: speaks REAPER, AbletonOSC, Ardour, Bitwig (DrivenByMoss) and Backline's own namespace.

One UDP socket, bound to 127.0.0.1 by default, is both the listener and the sender, so peers that reply to the
sender's port (AbletonOSC's `/live/...get`, Ardour after `/set_surface`, Hydrogen) reach us, and `oscdump`
sees one stable source port.

Hot path (feedback floods: REAPER warns about TIME): `recv_into` a preallocated buffer, find the address and
type tags with `bytearray.find`, look the address up in a dict and read the first argument with a
precompiled `struct` — two small `bytes` (address, type tags) per message, no message objects, no lists. The
transport setters behind it assign floats only. python-osc does the rest: building what we send, unpacking
bundles, and it is the reference the fuzz test holds our decoder to.

Dialects are known by their addresses (`DIALECT_MARKERS`); `dialect="auto"` adopts the first one that speaks
and logs it once. Addresses several DAWs share (`/play`, `/stop`, `/tempo/raw`) mean the same everywhere, so
they are handled whatever the dialect. With a fixed dialect, another dialect's addresses are ignored (logged
once). Malformed packets, wrong argument types, unknown addresses and absurd values are counted in
`stats` and logged once per kind; nothing a peer sends can stop the listener.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

from pythonosc.osc_message_builder import OscMessageBuilder

from backline.bridge.transport import Transport, _OnceLog
from backline.engines.core.errors import ConfigError, DeviceError

log = logging.getLogger("backline.bridge")

DIALECTS = ("auto", "reaper", "ableton", "ardour", "bitwig")

#: Where each dialect's DAW listens / where we listen by default: (our port, DAW port).
DEFAULT_PORTS = {"reaper": (9000, 8000), "ableton": (11001, 11000), "ardour": (9000, 3819),
                 "bitwig": (9000, 8000), "auto": (9000, 8000)}

#: Ardour `/set_surface` feedback bits: 1 button status (transport_play/stop), 16 master section,
#: 32 bar and beat (/position/bbt), 1024 position in samples (/position/samples).
ARDOUR_FEEDBACK = 1 | 16 | 32 | 1024

#: Commands that move a DAW, per dialect, for `OscBridge.remote`.
REMOTE_COMMANDS: dict[str, dict[str, str]] = {
    "reaper": {"play": "/play", "stop": "/stop", "bpm": "/tempo/raw", "locate": "/time"},
    "ableton": {"play": "/live/song/start_playing", "stop": "/live/song/stop_playing",
                "bpm": "/live/song/set/tempo", "locate": "/live/song/set/current_song_time"},
    "ardour": {"play": "/transport_play", "stop": "/transport_stop", "locate": "/locate"},
    "bitwig": {"play": "/play", "stop": "/stop", "bpm": "/tempo/raw"},
    "hydrogen": {"play": "/Hydrogen/PLAY", "stop": "/Hydrogen/STOP", "bpm": "/Hydrogen/BPM",
                 "locate": "/Hydrogen/RELOCATE"},
}

_F32, _F64, _I32, _I64 = struct.Struct(">f"), struct.Struct(">d"), struct.Struct(">i"), struct.Struct(">q")
_SIZES = {0x66: 4, 0x69: 4, 0x64: 8, 0x68: 8, 0x74: 8, 0x63: 4, 0x72: 4, 0x6D: 4}  # f i d h t c r m
_NOARG = frozenset(b"TFNI")
_NUMS = re.compile(r"-?\d+(?:\.\d+)?")
#: Bundles inside bundles are followed this deep (DAWs send one level; deeper is an attack or a bug).
MAX_BUNDLE_DEPTH = 4
#: messages handled from one datagram (a 64 KB bundle can hold 4,000 tiny messages; a DAW sends a few)
MAX_BUNDLE_MESSAGES = 256
#: messages handled per second before the listener treats the traffic as a flood: it then gives up its
#: real-time priority (a SCHED_FIFO thread busy with a flood takes the core from everything else) and
#: drops datagrams for the rest of that second. A DAW's busiest burst is a few thousand.
MAX_MESSAGES_PER_SECOND = 20_000


class OscDecodeError(ValueError):
    """A datagram that is not a well-formed OSC message."""


def decode_header(buf: bytes | bytearray, n: int) -> tuple[bytes, bytes, int]:
    """Address, type tags (without the comma) and the offset of the first argument of one OSC message."""
    if n < 4 or buf[0] != 0x2F:
        raise OscDecodeError("does not start with an address")
    end = buf.find(b"\0", 0, n)
    if end <= 0:
        raise OscDecodeError("unterminated address")
    toff = (end + 4) & ~3
    if toff > n:
        raise OscDecodeError("address padding runs past the packet")
    address = bytes(buf[:end])
    if toff == n:
        return address, b"", n  # OSC 1.0 allows a message without type tags
    if buf[toff] != 0x2C:
        raise OscDecodeError("missing type tag string")
    tend = buf.find(b"\0", toff, n)
    if tend < 0:
        raise OscDecodeError("unterminated type tags")
    aoff = (tend + 4) & ~3
    if aoff > n:
        raise OscDecodeError("type tag padding runs past the packet")
    return address, bytes(buf[toff + 1:tend]), aoff


def decode_args(buf: bytes | bytearray, n: int, tags: bytes, off: int) -> list:
    """All arguments (i f d h s S T F N I b c t r m). Used off the hot path and by the fuzz test."""
    out: list = []
    for tag in tags:
        if tag in _NOARG:
            out.append({0x54: True, 0x46: False, 0x4E: None, 0x49: math.inf}[tag])
            continue
        if tag in (0x73, 0x53):  # s, S
            end = buf.find(b"\0", off, n)
            if end < 0:
                raise OscDecodeError("unterminated string argument")
            try:
                out.append(bytes(buf[off:end]).decode("utf-8"))
            except UnicodeDecodeError as err:
                raise OscDecodeError("string argument is not UTF-8") from err
            off = (end + 4) & ~3
        elif tag == 0x62:  # blob
            if off + 4 > n:
                raise OscDecodeError("blob size runs past the packet")
            size = _I32.unpack_from(buf, off)[0]
            if size < 0 or off + 4 + size > n:
                raise OscDecodeError("blob runs past the packet")
            out.append(bytes(buf[off + 4:off + 4 + size]))
            off += 4 + ((size + 3) & ~3)
        elif tag in _SIZES:
            size = _SIZES[tag]
            if off + size > n:
                raise OscDecodeError("argument runs past the packet")
            if tag == 0x66:
                out.append(_F32.unpack_from(buf, off)[0])
            elif tag == 0x64:
                out.append(_F64.unpack_from(buf, off)[0])
            elif tag == 0x69:
                out.append(_I32.unpack_from(buf, off)[0])
            elif tag in (0x68, 0x74):
                out.append(_I64.unpack_from(buf, off)[0])
            elif tag == 0x63:
                out.append(chr(_I32.unpack_from(buf, off)[0] & 0x10FFFF))
            else:
                out.append(bytes(buf[off:off + size]))
            off += size
        else:
            raise OscDecodeError(f"unknown type tag {chr(tag)!r}")
    return out


def encode_message(address: str, *args: object) -> bytes:
    """One OSC message built by python-osc (ints as i, floats as f, str as s, bool as T/F)."""
    builder = OscMessageBuilder(address=address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class _BadArgs(Exception):
    pass


def _num(buf: bytearray, n: int, tags: bytes, off: int) -> float:
    """The first argument as a number (f d i h T F, or a numeric string); the hot-path reader."""
    if not tags:
        raise _BadArgs
    tag = tags[0]
    if tag == 0x66 and off + 4 <= n:
        return _F32.unpack_from(buf, off)[0]
    if tag == 0x69 and off + 4 <= n:
        return _I32.unpack_from(buf, off)[0]
    if tag == 0x64 and off + 8 <= n:
        return _F64.unpack_from(buf, off)[0]
    if tag == 0x68 and off + 8 <= n:
        return _I64.unpack_from(buf, off)[0]
    if tag == 0x54:
        return 1.0
    if tag == 0x46:
        return 0.0
    if tag == 0x73:
        end = buf.find(b"\0", off, n)
        try:
            return float(bytes(buf[off:end]).decode("ascii").strip()) if end > off else _raise()
        except (UnicodeDecodeError, ValueError):
            raise _BadArgs from None
    raise _BadArgs


def _raise() -> float:
    raise _BadArgs


def _str(buf: bytearray, n: int, tags: bytes, off: int) -> str:
    if not tags or tags[0] not in (0x73, 0x53):
        raise _BadArgs
    end = buf.find(b"\0", off, n)
    if end < 0:
        raise _BadArgs
    try:
        return bytes(buf[off:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise _BadArgs from None


def check_ipv4(host: str, what: str = "--host") -> str:
    """A dotted IPv4 address or 'localhost', or a ConfigError that says so (999.1.1.1 is not an address)."""
    if host == "localhost":
        return host
    try:
        socket.inet_pton(socket.AF_INET, host)
    except (OSError, TypeError):
        raise ConfigError(f"{what} {host!r} is not an IPv4 address",
                          fix="use e.g. 127.0.0.1 (this machine only) or this machine's LAN address") from None
    return host


def parse_clock(text: str) -> float:
    """'1:02:03:456', '02:03:456', '1:02:03.456', '12.5' → seconds (DrivenByMoss / Ardour time strings)."""
    parts = [p for p in re.split(r"[:]", text.strip()) if p != ""]
    if not parts or len(parts) > 4:
        raise ValueError(text)
    millis = 0.0
    if len(parts) >= 3 and re.fullmatch(r"\d{3}", parts[-1]):
        millis = int(parts.pop()) / 1000.0
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60.0 + float(p)
    return seconds + millis


class OscBridge:
    """Listens for a DAW's OSC on `host:port` and keeps `transport` up to date. Use as a context manager.

    >>> t = Transport(48000)
    >>> with OscBridge(t, dialect="reaper", port=9000):   # doctest: +SKIP
    ...     print(t.snapshot().line())
    """

    def __init__(self, transport: Transport, *, dialect: str = "auto", host: str = "127.0.0.1",
                 port: int | None = None, daw_host: str = "127.0.0.1", daw_port: int | None = None,
                 poll_interval: float = 0.1, clock: Callable[[], float] | None = None,
                 realtime: bool = True) -> None:
        if dialect not in DIALECTS:
            raise ConfigError(f"unknown DAW dialect {dialect!r}", fix=f"choose one of {', '.join(DIALECTS)}")
        for what, value in (("--port", port), ("--daw-port", daw_port)):
            if value is not None and not (isinstance(value, int) and 0 <= value <= 65535):
                raise ConfigError(f"{what} {value!r} is not a UDP port", fix="use a number within 1–65535")
        for what, value in (("--host", host), ("--daw-host", daw_host)):
            check_ipv4(value, what)
        if not poll_interval > 0:
            raise ConfigError(f"poll interval {poll_interval!r} must be a positive number of seconds")
        self.transport = transport
        self.fixed = dialect != "auto"
        self.dialect = dialect if self.fixed else None
        our_port, their_port = DEFAULT_PORTS[dialect]
        self.host, self.port = host, our_port if port is None else int(port)
        self.daw = (daw_host, their_port if daw_port is None else int(daw_port))
        self.poll_interval = poll_interval
        self.clock = clock or transport.clock
        self.realtime = realtime
        self.scheduling = "normal"
        # one log budget for the transport and the bridge that feeds it: a storm costs one line a second in all
        self.problems = transport.problems if isinstance(getattr(transport, "problems", None), _OnceLog) \
            else _OnceLog(log)
        self.stats = {"messages": 0, "bundles": 0, "malformed": 0, "unknown": 0, "bad_args": 0,
                      "other_dialect": 0, "sent": 0, "dropped": 0}
        self._window = (-math.inf, 0)  # (start of the current second, messages handled in it)
        self._bundle_budget = MAX_BUNDLE_MESSAGES
        self.loop: tuple[float, float] | None = None
        self._buf = bytearray(65536)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_addr: tuple[str, int] | None = None
        self._ardour_last: tuple[float, float] | None = None  # (samples, quarters) for tempo inference
        self._ardour_tempo_votes = 0
        self._table: dict[bytes, tuple[str | None, Callable]] = self._build_table()

    # --- life cycle ----------------------------------------------------------------------------------
    def start(self) -> OscBridge:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # 4 MiB (the kernel caps it at net.core.rmem_max): small OSC datagrams cost ~1 kB of buffer each, so
            # a DAW's burst of a few thousand position updates is queued, not dropped, while this process is busy
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind((self.host, self.port))
        except OSError as err:
            sock.close()
            if err.errno == errno.EADDRINUSE:
                fix = ("another program uses that port; pick another with --port and set the same port in your "
                       "DAW's OSC settings")
            elif err.errno == errno.EADDRNOTAVAIL:
                fix = f"{self.host} is not an address of this machine; use 127.0.0.1 (or this machine's LAN address)"
            elif err.errno == errno.EACCES:
                fix = "ports below 1024 need administrator rights; use e.g. --port 9000"
            else:
                fix = "check --host and --port"
            raise DeviceError(f"cannot listen for OSC on {self.host}:{self.port} ({err.strerror or err})",
                              fix=fix) from err
        if self.host not in ("127.0.0.1", "localhost") and not self.host.startswith("127."):
            log.warning("listening for OSC on %s: other machines on the network can move your DAW's transport "
                        "and start generations; use --host 127.0.0.1 unless the DAW runs on another machine",
                        self.host)
        sock.settimeout(self.poll_interval)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="backline-osc", daemon=True)
        self._thread.start()
        self._hello()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._sock is not None:
            if self.dialect == "ableton":
                for prop in ("beat", "tempo", "is_playing", "signature_numerator", "signature_denominator"):
                    self._send_quiet(f"/live/song/stop_listen/{prop}")
            self._sock.close()
            self._sock = None

    def __enter__(self) -> OscBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # --- sending ------------------------------------------------------------------------------------
    def send(self, address: str, *args: object, to: tuple[str, int] | None = None) -> None:
        """Send one message from the listening socket (so replies come back to us)."""
        if self._sock is None:
            raise DeviceError("the OSC bridge is not running", fix="start it before sending")
        self._sock.sendto(encode_message(address, *args), to or self.daw)
        self.stats["sent"] += 1

    def _send_quiet(self, address: str, *args: object, to: tuple[str, int] | None = None) -> None:
        try:
            self.send(address, *args, to=to)
        except OSError as err:  # peer not there yet: ICMP refusals surface here on Linux
            self.problems("send", f"could not send {address} to {to or self.daw}: {err}", logging.INFO)

    def remote(self, command: str, *args: object, dialect: str | None = None,
               to: tuple[str, int] | None = None) -> None:
        """Move the DAW: `remote("play")`, `remote("bpm", 100.0)`, `remote("locate", 2.0, dialect="hydrogen")`."""
        name = dialect or self.dialect or "reaper"
        try:
            address = REMOTE_COMMANDS[name][command]
        except KeyError:
            raise ConfigError(f"{name} has no {command!r} command over OSC",
                              fix=f"use one of {', '.join(REMOTE_COMMANDS.get(name, {}))}") from None
        self.send(address, *args, to=to)

    def _hello(self) -> None:
        """Ask peers that only talk when asked: AbletonOSC listeners, Ardour's feedback surface."""
        if self.dialect == "ableton":
            for prop in ("beat", "tempo", "is_playing", "signature_numerator", "signature_denominator"):
                self._send_quiet(f"/live/song/start_listen/{prop}")
            for prop in ("tempo", "is_playing", "signature_numerator", "signature_denominator",
                         "current_song_time"):
                self._send_quiet(f"/live/song/get/{prop}")
        elif self.dialect == "ardour":
            # bank_size, strip_types, feedback, fader_mode, send_page, plugin_page, port, linkset, linkid
            self._send_quiet("/set_surface", 0, 0, ARDOUR_FEEDBACK, 0, 0, 0, self.port, 0, 0)

    # --- receiving ----------------------------------------------------------------------------------
    def _raise_priority(self) -> None:
        """Ask for real-time scheduling for this thread (as audio threads do) where the OS allows it.

        The listener blocks in `recv` almost all the time, so this cannot starve anything; it only lets a
        message be handled at once when the machine is busy. Without permission (no rtprio limit) the
        thread stays as it is and that is logged once at INFO.
        """
        if not self.realtime or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            self.scheduling = "SCHED_FIFO 10"
        except (OSError, AttributeError) as err:
            self.problems("rt", f"OSC listener runs without real-time priority ({err})", logging.INFO)

    def _run(self) -> None:
        self._raise_priority()
        sock, buf = self._sock, self._buf
        assert sock is not None
        last_poll = last_hello = last_rx = self.clock()
        while not self._stop.is_set():
            try:
                n, addr = sock.recvfrom_into(buf)
            except TimeoutError:
                n = 0
            except OSError as err:  # ICMP port unreachable from an earlier send, or socket closed
                if self._stop.is_set():
                    return
                self.problems("socket", f"OSC socket error ignored: {err}", logging.INFO)
                continue
            t = self.clock()
            if self.problems.pending:
                self.problems.flush()
            if n:
                self._last_addr, last_rx = addr, t
                if self._flooded(t):
                    self.stats["dropped"] += 1
                    continue
                self.handle(buf, n, t)
            else:
                self.transport.flush_problems()
                self.transport.check_silence(t)
                if t - last_rx > 2.0 and t - last_hello > 2.0:  # DAW not up yet, or restarted: ask again
                    self._hello()
                    last_hello = t
            if self.dialect == "ableton" and t - last_poll >= self.poll_interval:
                self._send_quiet("/live/song/get/current_song_time")
                last_poll = t

    def _flooded(self, t: float) -> bool:
        """True while this second's traffic is over MAX_MESSAGES_PER_SECOND (then datagrams are dropped)."""
        start, count = self._window
        if t - start >= 1.0:
            self._window = (t, 0)
            return False
        if count < MAX_MESSAGES_PER_SECOND:
            return False
        if self.scheduling != "normal" and hasattr(os, "sched_setscheduler"):
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                self.scheduling = "normal"
        self.problems("flood", f"OSC flood: over {MAX_MESSAGES_PER_SECOND} messages a second; dropping the rest of "
                               "each such second (real-time priority given up)")
        return True

    def handle(self, buf: bytearray | bytes, n: int, t: float) -> None:
        """Apply one datagram (message or bundle) received at monotonic time `t`."""
        if n and buf[0] == 0x23:  # '#bundle'
            self.stats["bundles"] += 1
            self._bundle_budget = MAX_BUNDLE_MESSAGES
            self._handle_bundle(bytes(buf[:n]), 0, n, t, 1)
            return
        self._handle_message(buf, n, t)

    def _handle_message(self, buf: bytearray | bytes, n: int, t: float) -> None:
        self.stats["messages"] += 1
        start, count = self._window
        self._window = (start, count + 1)
        try:
            address, tags, off = decode_header(buf, n)
        except OscDecodeError as err:
            self.stats["malformed"] += 1
            self.problems("malformed", f"ignored a malformed OSC packet ({err})")
            return
        entry = self._table.get(address)
        if entry is None:
            self.stats["unknown"] += 1
            self.problems(f"unknown:{address[:40]!r}", f"ignored unknown OSC address {address.decode(errors='replace')}",
                          logging.DEBUG)
            return
        dialect, handler = entry
        if dialect is not None and dialect != self.dialect:
            if self.fixed:
                self.stats["other_dialect"] += 1
                self.problems(f"dialect:{dialect}", f"ignored {address.decode()} from {dialect}: the bridge is "
                                                    f"set to {self.dialect}")
                return
            self._adopt(dialect)
        try:
            handler(buf, n, tags, off, t)
        except (_BadArgs, struct.error, ValueError, TypeError, OverflowError):
            self.stats["bad_args"] += 1
            self.problems(f"args:{address!r}", f"ignored {address.decode()} with arguments ,{tags.decode(errors='replace')}"
                                               " of the wrong type or range")

    def _handle_bundle(self, data: bytes, start: int, end: int, t: float, depth: int) -> None:
        """Walk a bundle in place: one pass over the datagram whatever the nesting (python-osc re-parses every
        level and logs a line per bad element), at most `MAX_BUNDLE_DEPTH` levels deep. Each message inside
        counts as a message in `stats`; a bad element ends the bundle, counted and logged once."""
        if depth > MAX_BUNDLE_DEPTH:
            self.stats["malformed"] += 1
            self.problems("bundle-depth", f"ignored an OSC bundle nested deeper than {MAX_BUNDLE_DEPTH} levels")
            return
        if end - start < 16 or data[start:start + 8] != b"#bundle\0":
            self.stats["malformed"] += 1
            self.problems("malformed", "ignored a malformed OSC bundle (bad header)")
            return
        off = start + 16  # '#bundle\0' + 8-byte time tag (Backline applies everything on arrival)
        while off < end:
            if off + 4 > end:
                self.stats["malformed"] += 1
                self.problems("malformed", "ignored a malformed OSC bundle (element size runs past the packet)")
                return
            size = _I32.unpack_from(data, off)[0]
            off += 4
            if size <= 0 or off + size > end:
                self.stats["malformed"] += 1
                self.problems("malformed", "ignored a malformed OSC bundle (element runs past the packet)")
                return
            if data[off] == 0x23:
                self._handle_bundle(data, off, off + size, t, depth + 1)
            elif self._bundle_budget <= 0:
                self.stats["dropped"] += 1
                self.problems("bundle-width", f"ignored the messages of an OSC bundle past its first "
                                              f"{MAX_BUNDLE_MESSAGES}")
                return
            else:
                self._bundle_budget -= 1
                self._handle_message(data[off:off + size], size, t)
            off += size

    def _adopt(self, dialect: str) -> None:
        if self.dialect is None:
            log.info("the DAW speaks the %s OSC dialect", dialect)
        else:
            self.problems(f"switch:{dialect}", f"OSC traffic switched from {self.dialect} to {dialect}")
        self.dialect = dialect

    # --- the address table -----------------------------------------------------------------------------
    def _build_table(self) -> dict[bytes, tuple[str | None, Callable]]:
        tr = self.transport
        src = {d: d for d in DIALECTS}

        def pos_seconds(d):
            return lambda b, n, g, o, t: tr.set_seconds(_num(b, n, g, o), t, d)

        def pos_samples(d):
            return lambda b, n, g, o, t: tr.set_position(_num(b, n, g, o), t, d)

        def shared_play(b, n, g, o, t):
            tr.set_playing(_num(b, n, g, o) >= 0.5, t, self.dialect or "osc")

        def shared_stop(b, n, g, o, t):
            if _num(b, n, g, o) >= 0.5:
                tr.set_playing(False, t, self.dialect or "osc")

        def shared_tempo(b, n, g, o, t):
            tr.set_tempo(_num(b, n, g, o), t, self.dialect or "osc")

        def reaper_loop(i):
            def h(b, n, g, o, t):
                value = _num(b, n, g, o)
                lo, hi = self.loop or (0.0, 0.0)
                self.loop = (value, hi) if i == 0 else (lo, value)
            return h

        def bitwig_meter(b, n, g, o, t):
            num, den = _str(b, n, g, o).split("/")
            tr.set_meter(int(num), int(den), t, "bitwig")

        def bitwig_time(b, n, g, o, t):
            tr.set_seconds(parse_clock(_str(b, n, g, o)), t, self.dialect or "osc")

        def ableton_playing(b, n, g, o, t):
            tr.set_playing(_num(b, n, g, o) >= 0.5, t, "ableton")

        def ableton_quarters(b, n, g, o, t):
            tr.set_quarters(_num(b, n, g, o), t, "ableton")

        def ableton_meter(i):
            def h(b, n, g, o, t):
                value = int(_num(b, n, g, o))
                num, den = tr.meter
                tr.set_meter(value, den, t, "ableton") if i == 0 else tr.set_meter(num, value, t, "ableton")
            return h

        def ableton_error(b, n, g, o, t):
            self.problems("ableton-error", f"AbletonOSC reported: {decode_args(b, n, g, o)}")

        def ardour_samples(b, n, g, o, t):
            samples = _num(b, n, g, o)
            tr.set_position(samples, t, "ardour")

        def ardour_bbt(b, n, g, o, t):
            fields = [int(x) for x in re.findall(r"\d+", _str(b, n, g, o))]
            if len(fields) < 2:
                raise _BadArgs
            bar, beat, ticks = fields[0], fields[1], fields[2] if len(fields) > 2 else 0
            tl = tr.timeline
            quarters = (bar - 1) * tl.quarters_per_bar + (beat - 1 + ticks / 1920.0) * tl.quarters_per_beat
            self._infer_tempo(tr.position_at(t), quarters, t)

        def ardour_button(playing):
            def h(b, n, g, o, t):
                if _num(b, n, g, o) >= 0.5:
                    tr.set_playing(playing, t, "ardour")
            return h

        def own_ping(b, n, g, o, t):
            args = decode_args(b, n, g, o)
            if self._last_addr is not None:
                self._send_quiet("/backline/pong", *args, to=self._last_addr)

        def own_region(b, n, g, o, t):
            args = decode_args(b, n, g, o)
            if len(args) < 2 or not all(isinstance(a, (int, float)) for a in args[:5]):
                raise _BadArgs
            if len(args) >= 3:
                tr.set_tempo(float(args[2]), t, "backline")
            if len(args) >= 5:
                tr.set_meter(int(args[3]), int(args[4]), t, "backline")
            tr.set_region(float(args[0]) * tr.sample_rate, float(args[1]) * tr.sample_rate, "backline")

        def own_generate(b, n, g, o, t):
            tr.request_generate(tuple(decode_args(b, n, g, o)), "backline")

        def own_transport(b, n, g, o, t):
            args = decode_args(b, n, g, o)
            if len(args) < 2 or not all(isinstance(a, (int, float)) for a in args):
                raise _BadArgs
            if len(args) >= 3:
                tr.set_tempo(float(args[2]), t, "backline")
            if len(args) >= 5:
                tr.set_meter(int(args[3]), int(args[4]), t, "backline")
            tr.set_seconds(float(args[1]), t, "backline")
            tr.set_playing(bool(args[0]), t, "backline")

        def ignore(b, n, g, o, t):
            return None

        table: dict[str, tuple[str | None, Callable]] = {
            # shared by REAPER and DrivenByMoss
            "/play": (None, shared_play), "/stop": (None, shared_stop), "/tempo/raw": (None, shared_tempo),
            "/record": (None, ignore), "/repeat": (None, ignore), "/beat/str": (None, ignore),
            # REAPER default pattern
            "/time": (src["reaper"], pos_seconds("reaper")), "/samples": (src["reaper"], pos_samples("reaper")),
            "/pause": (src["reaper"], shared_stop), "/loop/start/time": (src["reaper"], reaper_loop(0)),
            "/loop/end/time": (src["reaper"], reaper_loop(1)),
            "/samples/str": (src["reaper"], ignore), "/frames/str": (src["reaper"], ignore),
            "/tempo/str": (src["reaper"], ignore),
            # Bitwig via DrivenByMoss (REAPER never sends /time/signature, so it marks Bitwig; both send
            # /time/str, REAPER as "m:ss.mmm", DrivenByMoss as "h:mm:ss:mmm" — parse_clock reads both)
            "/time/signature": (src["bitwig"], bitwig_meter), "/time/str": (None, bitwig_time),
            # AbletonOSC replies and listeners
            "/live/song/get/tempo": (src["ableton"], lambda b, n, g, o, t: tr.set_tempo(_num(b, n, g, o), t, "ableton")),
            "/live/song/get/is_playing": (src["ableton"], ableton_playing),
            "/live/song/get/current_song_time": (src["ableton"], ableton_quarters),
            "/live/song/get/beat": (src["ableton"], ableton_quarters),
            "/live/song/get/signature_numerator": (src["ableton"], ableton_meter(0)),
            "/live/song/get/signature_denominator": (src["ableton"], ableton_meter(1)),
            "/live/startup": (src["ableton"], lambda *a: self._hello()),
            "/live/error": (src["ableton"], ableton_error),
            # Ardour feedback (after /set_surface)
            "/position/samples": (src["ardour"], ardour_samples), "/position/bbt": (src["ardour"], ardour_bbt),
            "/position/time": (src["ardour"], ignore), "/position/smpte": (src["ardour"], ignore),
            "/transport_play": (src["ardour"], ardour_button(True)),
            "/transport_stop": (src["ardour"], ardour_button(False)),
            "/heartbeat": (src["ardour"], ignore), "/record_enabled": (src["ardour"], ignore),
            # Backline's own namespace (helper scripts, any DAW)
            "/backline/ping": (None, own_ping), "/backline/region": (None, own_region),
            "/backline/generate": (None, own_generate), "/backline/transport": (None, own_transport),
        }
        return {k.encode(): v for k, v in table.items()}

    def _infer_tempo(self, samples: float, quarters: float, t: float) -> None:
        """Ardour sends no tempo: infer it from bar|beat against samples while rolling (two agreeing steps)."""
        tr = self.transport
        last, self._ardour_last = self._ardour_last, (samples, quarters)
        if not tr.playing or last is None:
            self._ardour_tempo_votes = 0
            return
        ds, dq = samples - last[0], quarters - last[1]
        if ds <= 0.05 * tr.sample_rate or dq <= 0:
            return
        bpm = 60.0 * dq / (ds / tr.sample_rate)
        if abs(bpm - tr.bpm) / tr.bpm > 0.01:
            self._ardour_tempo_votes += 1
            if self._ardour_tempo_votes >= 2:
                tr.set_tempo(round(bpm, 2), t, "ardour")
                self._ardour_tempo_votes = 0
        else:
            self._ardour_tempo_votes = 0


def send_osc(address: str, *args: object, to: tuple[str, int], sock: socket.socket | None = None) -> None:
    """Fire one message at `to` (used by tests, the calibration CLI and helper scripts in Python)."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(encode_message(address, *args), to)
    finally:
        if own:
            s.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


__all__: Sequence[str] = ("OscBridge", "DIALECTS", "DEFAULT_PORTS", "REMOTE_COMMANDS", "ARDOUR_FEEDBACK",
                          "decode_header", "decode_args", "encode_message", "send_osc", "parse_clock",
                          "OscDecodeError", "wait_for")
