"""Backline for Ableton Live 12: a Control Surface that imports each new Backline take into the arrangement.

Install: copy this `Backline` folder into Live's Remote Scripts (`~/Music/Ableton/User Library/Remote Scripts/`),
restart Live and pick *Backline* as a Control Surface (Settings > Link, Tempo & MIDI; it needs no ports; AbletonOSC
stays in its own slot). From then on, every take Backline writes under the session's `takes/` folder
(`$BACKLINE_SESSION_DIR/takes`, default `~/Music/Backline/Session/takes`, one level of job folders down) is placed
on the selected audio track at the beat it was generated for. Live's API imports audio only (`create_audio_clip`,
Live 12): drag the take's MIDI from Backline's take card when you want it.

The take is read from its report (`ENGINE_seedN.json`), which Backline's one take writer
(`backline.engines.core.takes`) opens with a flat `daw` block: file names relative to the report and the start
in samples, seconds, bars and quarter notes (`start_quarters`: Live's beats), with tempo and meter. Outside Live
(tests, a plain Python) only `read_take`, `newest_take` and `import_take` are defined.
"""

from __future__ import annotations

import json
import os

LOOK_TICKS = 10  # Live's scheduler ticks are ~100 ms: look for a new take once a second


def takes_dir() -> str:
    session = os.environ.get("BACKLINE_SESSION_DIR") or os.path.join(os.path.expanduser("~"), "Music", "Backline",
                                                                      "Session")
    return os.path.join(session, "takes")


def read_take(path: str) -> dict | None:
    """The take a Backline report describes (its `daw` block, file names made absolute), or None when the
    JSON is not a take report (an analysis report, a preset, a file being written)."""
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None
    daw = report.get("daw") if isinstance(report, dict) else None
    if not isinstance(daw, dict) or not (daw.get("audio") or daw.get("midi")):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    take = dict(daw)
    take["report"] = os.path.abspath(path)
    for key in ("audio", "midi"):
        take[key] = os.path.join(folder, daw[key]) if daw.get(key) else None
    return take


def newest_take(folder: str) -> dict | None:
    """The most recently written take in `folder` or one folder down (the desktop app's job folders)."""
    found = []
    for root in [folder] + sorted(os.path.join(folder, d) for d in _listdir(folder)
                                  if os.path.isdir(os.path.join(folder, d))):
        for name in _listdir(root):
            if name.endswith(".json"):
                take = read_take(os.path.join(root, name))
                if take is not None:
                    found.append(take)
    return max(found, key=lambda t: float(t.get("written") or 0.0), default=None)


def _listdir(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def import_take(song, take: dict, track=None) -> str:
    """Place the take's audio on `track` (default: the selected track) at the beat it was generated for (the
    play position when the take has no tempo to say). Returns the line to show in Live's status bar."""
    track = track if track is not None else song.view.selected_track
    name = os.path.basename(take["audio"] or take["midi"] or "")
    if not take.get("audio"):
        return f"Backline: {name} has no audio; drag its MIDI from Backline's take card"
    if not getattr(track, "has_audio_input", False):
        return f"Backline: select an audio track to import {name}"
    quarters = take.get("start_quarters")
    position = float(quarters) if quarters is not None else float(song.current_song_time)
    track.create_audio_clip(take["audio"], position)
    return f"Backline: imported {name} at beat {position:g} on {track.name}"


try:
    from _Framework.ControlSurface import ControlSurface as _Surface  # Live's own framework
except ImportError:  # outside Live
    _Surface = None

if _Surface is not None:

    class Backline(_Surface):
        """Looks for a new take once a second and imports it; takes that were there before Live started stay."""

        def __init__(self, c_instance) -> None:
            super().__init__(c_instance)
            latest = newest_take(takes_dir())
            self._seen = float(latest.get("written") or 0.0) if latest else 0.0
            self.schedule_message(LOOK_TICKS, self._look)

        def _look(self) -> None:
            try:
                take = newest_take(takes_dir())
                if take is not None and float(take.get("written") or 0.0) > self._seen:
                    self._seen = float(take.get("written") or 0.0)
                    self.show_message(import_take(self.song(), take))
            except Exception as err:  # a take Live refuses (a MIDI track, a frozen one) must not stop the look
                self.show_message(f"Backline: {err}")
            self.schedule_message(LOOK_TICKS, self._look)

    def create_instance(c_instance):
        return Backline(c_instance)
