"""`backline host --screenshot DIR` as a user runs it: a real process, a real window on an X server (Xvfb)
when `xvfb-run` is installed (else the offscreen platform), the shipped bass and drum engines (the default)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_host import synthetic_mix

from backline.engines.registry import available_engines
from backline.host.app import SCREENSHOTS


@pytest.mark.skipif(not {"bass", "drums"} <= set(available_engines()), reason="the bass and drum engines are needed")
def test_screenshot_command_under_xvfb(tmp_path):
    backline = Path(sys.executable).with_name("backline")
    command = [str(backline), "host", "--screenshot", str(tmp_path / "shots"), "--bars", "1-2",
               "--session", str(tmp_path / "session"), "--timeout", "400"]
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
    assert [p.name for p in sorted((tmp_path / "shots").glob("*.png"))] == list(SCREENSHOTS)
    for name in SCREENSHOTS:  # empty, mix on its bar grid, bass panel, drums panel, bass take, drum take, card
        png = tmp_path / "shots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    history = json.loads((tmp_path / "session" / "history.json").read_text())
    takes = history["takes"] if isinstance(history, dict) else history
    assert [(t["engine"], t["status"]) for t in takes] == [("bass", "ok"), ("drums", "ok")]
    assert all(t["fit"] is not None for t in takes)  # shipped weights: the matching model scores them


def test_host_without_a_display_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env["BACKLINE_CONFIG"] = str(tmp_path)
    for launcher in (["backline", "host"], ["backline-host"]):
        exe = Path(sys.executable).with_name(launcher[0])
        done = subprocess.run([str(exe), *launcher[1:], "--no-daw"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "no display found" in done.stderr and "--screenshot DIR" in done.stderr
