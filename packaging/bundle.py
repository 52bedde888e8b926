"""Build the desktop bundle: one folder a musician starts by double-clicking, no terminal, no Python set-up.

    .venv/bin/python packaging/bundle.py [--out dist/Backline] [--link] [--deb]

What is in the folder (`--out`, default `dist/Backline`):

    Backline                 the launcher (double-click it, or use the menu entry)
    backline.png             the icon
    Install menu entry       puts Backline in the desktop's application menu (a .desktop file in ~/.local)
    python/                  the CPython interpreter this venv runs on, with its standard library
    lib/                     Backline (installed from a wheel built now, with its weights and presets) and
                             every package the app imports, copied from the venv (test tools left out)
    app/launch.py            starts the app with only python/ and lib/ on sys.path (`-I`: no PYTHONPATH, no
                             user site, nothing from the machine's own Python)

Why this and not PyInstaller or a .deb of the venv: the app's dependencies are ~6 GB (torch's CUDA build brings
3.2 GB of NVIDIA libraries that `import torch` loads even on CPU), and on a 2-core machine PyInstaller's
dependency scan of that tree takes far longer than the few minutes this builder needs and is fragile with
torch's dynamic imports. Copying the exact interpreter and packages the test suite ran against is quick
(seconds with `--link`, which hard-links files instead of copying them when the output is on the same disk),
needs nothing extra installed, and the smoke test (tests/test_bundle.py) proves the copy starts on its own.
`--deb` additionally wraps the folder into a plain Debian package with dpkg-deb (installs to /opt/backline,
with the menu entry and icon in /usr/share), uncompressed: compressing 6 GB on 2 cores takes longer than it saves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: packages that only the tests and the build need
LEAVE_OUT = ("pip", "setuptools", "wheel", "_distutils_hack", "pytest", "_pytest", "pytestqt", "pytest_timeout",
             "hypothesis", "_hypothesis", "ruff", "__editable__", "backline-", "distutils-precedence.pth",
             "pytest_qt", "pytest-", "pip-", "setuptools-", "hypothesis-", "ruff-", "wheel-")
#: the Debian packages the app needs at run time (packaging/apt-packages.txt minus the test peers)
RUNTIME_DEBS = ("fluidsynth", "fluid-soundfont-gm", "timgm6mb-soundfont", "musescore-general-soundfont", "libsndfile1",
                "libportaudio2", "ffmpeg", "libegl1", "libgl1", "libxkbcommon0", "libxkbcommon-x11-0", "libdbus-1-3",
                "libfontconfig1", "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-shape0",
                "libxcb-render-util0", "libxcb-image0")
STDLIB_LEAVE_OUT = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3")

LAUNCHER = """#!/bin/sh
# Backline desktop bundle launcher: the bundle's own Python and packages, nothing from this machine's Python.
HERE="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
export LD_LIBRARY_PATH="$HERE/python/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export QT_QPA_PLATFORM_PLUGIN_PATH="$HERE/lib/PyQt6/Qt6/plugins/platforms"
exec "$HERE/python/bin/PYTHON" -I -s "$HERE/app/launch.py" "$@"
"""

LAUNCH_PY = '''"""Start Backline from the bundle: sys.path is the bundle's standard library and lib/ only."""
import sys
from pathlib import Path

here = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if p.startswith(str(here / "python"))] + [str(here / "lib")]
from backline.host.app import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''

DESKTOP = """[Desktop Entry]
Type=Application
Name=Backline
GenericName=Band companion for your DAW
Comment=Listens to your session and plays the rest of the band: bass, drums, accompaniment
Exec={exec} %F
Icon={icon}
Terminal=false
Categories=AudioVideo;Audio;Music;
StartupWMClass=Backline
"""

INSTALL_MENU = """#!/bin/sh
# Put Backline into the application menu of this user's desktop (no root needed).
HERE="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
mkdir -p "$HOME/.local/share/applications"
sed -e "s|@EXEC@|$HERE/Backline|" -e "s|@ICON@|$HERE/backline.png|" "$HERE/app/backline.desktop.in" \\
    > "$HOME/.local/share/applications/backline.desktop"
echo "Backline is in your application menu now."
"""


def place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another disk, or a filesystem without hard links: copy
            pass
    shutil.copy2(src, dst)


def copy_tree(src: Path, dst: Path, link: bool, skip=lambda rel: False) -> int:
    """Copy (or hard-link) every file under `src` into `dst`, keeping symlinks as links; returns bytes."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames if not skip(rel_dir / d) and d != "__pycache__"]
        for name in filenames:
            rel = rel_dir / name
            if skip(rel):
                continue
            s, d = src / rel, dst / rel
            if s.is_symlink():
                d.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(s), d)
                continue
            place(s, d, link)
            total += s.stat().st_size
    return total


def icon(path: Path) -> None:
    """The app icon, drawn with Qt in the app's colours (so no binary asset needs maintaining)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import QRectF, Qt
    from PyQt6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPen

    _app = QGuiApplication.instance() or QGuiApplication([])
    img = QImage(256, 256, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor("#1d2027"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(QRectF(8, 8, 240, 240), 48, 48)
    heights = (60, 120, 170, 96, 140, 70)
    for i, h in enumerate(heights):  # a level meter / waveform of six bars, the accent on the loudest
        p.setBrush(QColor("#f5a340" if h == max(heights) else "#7cc4ef"))
        p.drawRoundedRect(QRectF(44 + i * 30, 128 - h / 2, 18, h), 9, 9)
    p.setPen(QPen(QColor("#f5a340"), 10))
    p.drawLine(40, 214, 216, 214)
    p.end()
    if not img.save(str(path)):
        raise OSError(f"could not write {path}")


def build(out: Path, link: bool) -> dict:
    t0 = time.perf_counter()
    if out.exists():
        raise SystemExit(f"bundle: {out} already exists; remove it or choose another --out")
    venv_site = Path(sysconfig.get_paths()["purelib"])
    base = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    lib = work / "lib"
    # 1. Backline itself from a wheel (the editable install in the venv points at the source tree)
    with tempfile.TemporaryDirectory(prefix="backline-wheel-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp,
                        str(ROOT)], check=True, cwd=tmp)
        wheel = next(Path(tmp).glob("backline-*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target",
                        str(lib), str(wheel)], check=True, cwd=tmp)
    # 2. every other package the venv holds, minus the test and build tools
    size = copy_tree(venv_site, lib, link, skip=lambda rel: len(rel.parts) == 1 and rel.name.startswith(LEAVE_OUT))
    # 3. the interpreter and its standard library
    size += copy_tree(base / "bin", work / "python" / "bin", link,
                      skip=lambda rel: rel.name not in (version, f"python{sys.version_info.major}"))
    for so in (base / "lib").glob("libpython*.so*"):
        if so.is_symlink():
            (work / "python" / "lib").mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(so), work / "python" / "lib" / so.name)
        else:
            place(so, work / "python" / "lib" / so.name, link)
    size += copy_tree(base / "lib" / version, work / "python" / "lib" / version, link,
                      skip=lambda rel: rel.parts[0] in STDLIB_LEAVE_OUT)
    # 4. launcher, icon, menu entry
    (work / "app").mkdir(parents=True)
    (work / "app" / "launch.py").write_text(LAUNCH_PY)
    (work / "app" / "backline.desktop.in").write_text(DESKTOP.format(exec="@EXEC@", icon="@ICON@"))
    launcher = work / "Backline"
    launcher.write_text(LAUNCHER.replace("PYTHON", version))
    menu = work / "Install menu entry"
    menu.write_text(INSTALL_MENU)
    for script in (launcher, menu):
        script.chmod(0o755)
    icon(work / "backline.png")
    work.rename(out)
    return {"folder": str(out), "bytes": size, "seconds": time.perf_counter() - t0, "linked": link}


def build_deb(folder: Path) -> Path:
    """dpkg-deb package of the bundle (uncompressed: see the module docstring)."""
    stage = folder.with_name("backline-deb")
    shutil.rmtree(stage, ignore_errors=True)
    copy_tree(folder, stage / "opt" / "backline", link=True)
    apps = stage / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / "backline.desktop").write_text(DESKTOP.format(exec="/opt/backline/Backline",
                                                          icon="/usr/share/icons/hicolor/256x256/apps/backline.png"))
    icons = stage / "usr" / "share" / "icons" / "hicolor" / "256x256" / "apps"
    icons.mkdir(parents=True)
    shutil.copy2(folder / "backline.png", icons / "backline.png")
    (stage / "DEBIAN").mkdir()
    deps = RUNTIME_DEBS
    size_kb = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file()) // 1024
    (stage / "DEBIAN" / "control").write_text(
        "Package: backline\nVersion: 0.1.0\nSection: sound\nPriority: optional\nArchitecture: amd64\n"
        f"Installed-Size: {size_kb}\nDepends: {', '.join(deps)}\nMaintainer: Backline <backline@localhost>\n"
        "Description: desktop companion for DAW musicians\n"
        " Listens to your session and plays the rest of the band (bass, drums, accompaniment).\n")
    out = folder.with_name("backline_0.1.0_amd64.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(stage), str(out)], check=True)
    shutil.rmtree(stage)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "Backline", help="the bundle folder (new)")
    parser.add_argument("--link", action="store_true", help="hard-link files instead of copying (same disk only)")
    parser.add_argument("--deb", action="store_true", help="also build a Debian package of the bundle")
    args = parser.parse_args(argv)
    info = build(args.out.resolve(), args.link)
    print(f"bundle: {info['folder']} ({info['bytes'] / 2**30:.2f} GiB, built in {info['seconds']:.0f} s"
          f"{', hard-linked' if info['linked'] else ''}); start it with {info['folder']}/Backline")
    if args.deb:
        print(f"debian package: {build_deb(args.out.resolve())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
