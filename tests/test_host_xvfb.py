"""`backline host --screenshot DIR` as a user runs it: a real process, a real window on an X server (Xvfb)
when `xvfb-run` is installed (else the offscreen platform), the real bass engine's debug config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_host import synthetic_mix

from backline.engines.protocol import available_engines
from backline.host.app import SCREENSHOTS


@pytest.mark.skipif("bass" not in available_engines(), reason="the bass engine is not installed")
def test_screenshot_command_under_xvfb(tmp_path):
    backline = Path(sys.executable).with_name("backline")
    command = [str(backline), "host", "--screenshot", str(tmp_path / "shots"), "--engine", "bass", "--bars", "1-2",
               "--control", "steps=2", "--session", str(tmp_path / "session"), "--timeout", "400"]
    try:
        from backline.host.app import demo_mix

        demo_mix()
    except Exception:  # no demo song in this install: give it a mix
        command += ["--audio", str(synthetic_mix(tmp_path / "mix.wav", bars=4))]
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env["BACKLINE_CONFIG"] = str(tmp_path / "config")
    xvfb = shutil.which("xvfb-run")
    if xvfb:
        command = [xvfb, "-a", "-s", "-screen 0 1280x1024x24", *command]
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("Qt platform: xcb" if xvfb else "Qt platform: offscreen") in done.stdout
    for name in SCREENSHOTS:
        png = tmp_path / "shots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    assert (tmp_path / "session" / "history.json").exists()  # the take it made is in the session


def test_host_without_a_display_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env["BACKLINE_CONFIG"] = str(tmp_path)
    for launcher in (["backline", "host"], ["backline-host"]):
        exe = Path(sys.executable).with_name(launcher[0])
        done = subprocess.run([str(exe), *launcher[1:], "--no-daw"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "no display found" in done.stderr and "--screenshot DIR" in done.stderr
