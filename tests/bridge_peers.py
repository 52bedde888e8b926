"""Real peers for the bridge tests and benchmark: a JACK dummy server, liblo's oscdump, Hydrogen's h2player.

Every peer runs in its own process group and is killed by its context manager even when the test fails.
Each JACK server gets a unique name (JACK_DEFAULT_SERVER), so parallel test runs never share one, and
JACK_NO_START_SERVER=1 stops any client from starting a real-hardware server by accident.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

DATA = Path(__file__).parent / "data"
SONG = DATA / "backline_beat.h2song"
SONG_BPM, SONG_BARS = 120.0, 4
HYDROGEN_CONF = Path("/usr/share/hydrogen/data/hydrogen.default.conf")


def require(*programs: str) -> None:
    """Skip (cleanly, with the package to install) when a peer program is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        import pytest  # here, not at the top: benchmarks/bridge.py uses these peers where pytest is not installed

        pytest.skip(f"missing {', '.join(missing)} (apt-get install jackd2 liblo-tools hydrogen)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(proc: subprocess.Popen, grace: float = 3.0, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


def _spawn(cmd: list[str], env: dict[str, str], log: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)


class JackServer:
    """`jackd -r -S -d dummy -r RATE -p PERIOD` under a unique server name."""

    def __init__(self, rate: int = 48000, period: int = 256, workdir: Path | None = None) -> None:
        self.rate, self.period = rate, period
        self.name = f"backline-{uuid.uuid4().hex[:10]}"
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="backline-jack-"))
        self.proc: subprocess.Popen | None = None
        self._saved: dict[str, str | None] = {}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self) -> JackServer:
        self.proc = _spawn(["jackd", "-r", "-S", "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                           self.env, self.workdir / "jackd.log")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited: {(self.workdir / 'jackd.log').read_text(errors='replace')[-800:]}")
            ok = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, timeout=10)
            if ok.returncode == 0 and b"system:capture_1" in ok.stdout:
                return self
            time.sleep(0.1)
        raise RuntimeError("jackd did not come up in 15 s")

    def activate_env(self) -> None:
        """Point this process's JACK clients (PortAudio, jack-client) at this server."""
        for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
            self._saved.setdefault(key, os.environ.get(key))
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_START_SERVER"] = "1"

    def restore_env(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=20, check=check)

    def connect(self, src: str, dst: str) -> None:
        self.run("jack_connect", src, dst)

    def disconnect(self, src: str, dst: str) -> None:
        self.run("jack_disconnect", src, dst, check=False)

    def ports(self) -> list[str]:
        return self.run("jack_lsp").stdout.split()

    def connections(self) -> str:
        return self.run("jack_lsp", "-c").stdout

    def stop(self) -> None:
        """Kill jackd with PortAudio paused (see `devices.portaudio_paused`), so this process survives it."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if "sounddevice" in sys.modules:
            from backline.bridge.devices import portaudio_paused
            from backline.engines.core.errors import DeviceError

            try:
                with portaudio_paused():
                    _kill(proc)
            except DeviceError:  # a stream was left open by a failing test: still never leak jackd
                _kill(proc)
        else:
            _kill(proc)

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def oscdump(port: int, workdir: Path) -> Iterator[Path]:
    """`oscdump -L PORT` (line-buffered) writing to a file; yields the file path."""
    out = workdir / f"oscdump-{port}.txt"
    proc = subprocess.Popen(["oscdump", "-L", str(port)], stdout=out.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        time.sleep(0.3)  # let it bind
        if proc.poll() is not None:
            raise RuntimeError(f"oscdump exited: {out.read_text(errors='replace')}")
        yield out
    finally:
        _kill(proc)


def wait_lines(path: Path, needle: str, count: int = 1, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if needle in ln]
        if len(lines) >= count:
            break
        time.sleep(0.05)
    return lines


def oscsend(port: int, address: str, types: str = "", *args: object) -> None:
    subprocess.run(["oscsend", "127.0.0.1", str(port), address, types, *map(str, args)] if types else
                   ["oscsend", "127.0.0.1", str(port), address], check=True, timeout=10)


def hydrogen_home(root: Path, osc_port: int, rate: int = 48000) -> Path:
    """A HOME with ~/.hydrogen/hydrogen.conf: JACK driver, OSC on `osc_port`, JACK transport + timebase master,
    no auto-connection to the (dummy) system ports."""
    conf = HYDROGEN_CONF.read_text(encoding="utf-8")
    swaps = {
        "<audio_driver>Auto</audio_driver>": "<audio_driver>JACK</audio_driver>",
        "<oscEnabled>false</oscEnabled>": "<oscEnabled>true</oscEnabled>",
        "<oscServerPort>9000</oscServerPort>": f"<oscServerPort>{osc_port}</oscServerPort>",
        "<samplerate>44100</samplerate>": f"<samplerate>{rate}</samplerate>",
        "<jack_connect_defaults>true</jack_connect_defaults>": "<jack_connect_defaults>false</jack_connect_defaults>",
        "<jack_timebase_enabled>false</jack_timebase_enabled>": "<jack_timebase_enabled>true</jack_timebase_enabled>",
        "<jack_transport_mode_master>NO_JACK_TIME_MASTER</jack_transport_mode_master>":
            "<jack_transport_mode_master>JACK_TIME_MASTER</jack_transport_mode_master>",
        "<driverName>ALSA</driverName>": "<driverName></driverName>",
    }
    for old, new in swaps.items():
        if old not in conf:
            raise RuntimeError(f"hydrogen.default.conf changed: {old} not found")
        conf = conf.replace(old, new)
    home = root / "home"
    (home / ".hydrogen").mkdir(parents=True, exist_ok=True)
    (home / ".hydrogen" / "hydrogen.conf").write_text(conf, encoding="utf-8")
    return home


class Hydrogen:
    """h2player playing `song` on `jack`, OSC on a loopback port; stdin is a pipe we keep open (it blocks)."""

    def __init__(self, jack: JackServer, song: Path = SONG, osc_port: int | None = None) -> None:
        self.jack, self.song = jack, song
        self.osc_port = osc_port or free_udp_port()
        self.workdir = jack.workdir / f"h2-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir(parents=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Hydrogen:
        home = hydrogen_home(self.workdir, self.osc_port, self.jack.rate)
        env = {**self.jack.env, "HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
        self.proc = _spawn(["h2player", str(self.song)], env, self.workdir / "h2player.log",
                           stdin=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"h2player exited: {(self.workdir / 'h2player.log').read_text(errors='replace')[-800:]}")
            if {"Hydrogen:out_L", "Hydrogen:out_R"} <= set(self.jack.ports()) and self._osc_bound():
                return self
            time.sleep(0.2)
        raise RuntimeError("h2player did not register its JACK ports and OSC port in 30 s")

    def _osc_bound(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", self.osc_port))
            except OSError:
                return True
        return False

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"q\n")
                self.proc.stdin.flush()
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:  # it ignores SIGTERM while its audio engine runs
                _kill(self.proc, grace=2.0, sig=signal.SIGKILL)
            self.proc = None

    def __enter__(self) -> Hydrogen:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def render_song(song: Path, out: Path, rate: int = 48000) -> Path:
    """The reference: `h2cli -s song -r rate -o out.wav` (offline export, no JACK)."""
    home = out.parent / "h2cli-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "JACK_NO_START_SERVER": "1",
           "JACK_DEFAULT_SERVER": f"none-{uuid.uuid4().hex[:6]}"}
    subprocess.run(["h2cli", "-s", str(song), "-r", str(rate), "-o", str(out)], env=env, capture_output=True,
                   timeout=120, check=True)
    if not out.exists():
        raise RuntimeError("h2cli wrote no file")
    return out
