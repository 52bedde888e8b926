"""The desktop bundle (packaging/bundle.py): it builds, and the bundled app starts on its own — its own Python,
its own copy of Backline, an empty environment, headless (QT_QPA_PLATFORM=offscreen) — to its first screen.
Built with hard links into dist/ (same disk as the venv), so it takes seconds, not a 6 GB copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle():
    out = ROOT / "dist" / f"test-bundle-{os.getpid()}" / "Backline"
    done = subprocess.run([sys.executable, str(ROOT / "packaging" / "bundle.py"), "--out", str(out), "--link"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)


def test_the_bundled_app_starts_headless_to_its_first_screen(bundle, tmp_path):
    assert not (bundle / "lib" / "pytest").exists() and (bundle / "lib" / "backline" / "presets" / "drums").is_dir()
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen",
           "BACKLINE_CONFIG": str(tmp_path / "config")}  # nothing of the venv, no PYTHONPATH
    shot = tmp_path / "first.png"
    done = subprocess.run([str(bundle / "Backline"), "--first-screen", str(shot)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert f"backline loaded from: {bundle.resolve() / 'lib' / 'backline'}" in done.stdout
    assert f"python: {bundle.resolve() / 'python' / 'bin'}" in done.stdout


def test_the_menu_entry_starts_the_bundle_without_a_terminal(bundle, tmp_path):
    done = subprocess.run([str(bundle / "Install menu entry")], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entry = (tmp_path / ".local" / "share" / "applications" / "backline.desktop").read_text()
    assert f"Exec={bundle.resolve() / 'Backline'} %F" in entry and "Terminal=false" in entry
    assert f"Icon={bundle.resolve() / 'backline.png'}" in entry and (bundle / "backline.png").stat().st_size > 1000
