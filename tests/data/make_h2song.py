"""Regenerate `backline_beat.h2song`, the Hydrogen song the bridge tests play and capture.

Why a script: the song must stay small, deterministic (no humanize, no swing) and use the GMRockKit that
Debian's `hydrogen` package ships, so its instrument list is copied from Hydrogen's own GM demo song and
only the pattern is ours: one 4/4 bar at 120 BPM (kick on 1 and 3, snare on 2 and 4, closed hat on 8ths),
played 4 times. Run: `python tests/data/make_h2song.py [/usr/share/hydrogen/data/demo_songs/GM_kit_demo1.h2song]`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

KICK, SNARE, HAT = 0, 2, 6
TICKS_PER_QUARTER = 48  # Hydrogen's pattern resolution
BPM = 120
BARS = 4


def _note(position: int, instrument: int, velocity: float) -> str:
    return (f"    <note>\n     <position>{position}</position>\n     <leadlag>0</leadlag>\n"
            f"     <velocity>{velocity}</velocity>\n     <pan>0</pan>\n     <pitch>0</pitch>\n"
            f"     <probability>1</probability>\n     <key>C0</key>\n     <length>-1</length>\n"
            f"     <instrument>{instrument}</instrument>\n     <note_off>false</note_off>\n    </note>\n")


def build(demo: str) -> str:
    head = demo[: demo.index("<patternList>")]
    head = re.sub(r"<bpm>[^<]*</bpm>", f"<bpm>{BPM}</bpm>", head)
    head = re.sub(r"<name>GM kit demo #1</name>", "<name>Backline bridge test beat</name>", head, count=1)
    head = re.sub(r"<humanize_time>[^<]*</humanize_time>", "<humanize_time>0</humanize_time>", head)
    head = re.sub(r"<humanize_velocity>[^<]*</humanize_velocity>", "<humanize_velocity>0</humanize_velocity>", head)
    head = re.sub(r"<swing_factor>[^<]*</swing_factor>", "<swing_factor>0</swing_factor>", head)
    head = re.sub(r"<randomPitchFactor>[^<]*</randomPitchFactor>", "<randomPitchFactor>0</randomPitchFactor>", head)
    head = re.sub(r"<patternModeMode>[^<]*</patternModeMode>", "<patternModeMode>true</patternModeMode>", head)
    head = re.sub(r"<loopEnabled>[^<]*</loopEnabled>", "<loopEnabled>false</loopEnabled>", head)
    q = TICKS_PER_QUARTER
    notes = [_note(0, KICK, 0.9), _note(2 * q, KICK, 0.9), _note(q, SNARE, 0.9), _note(3 * q, SNARE, 0.9)]
    notes += [_note(i * q // 2, HAT, 0.6) for i in range(8)]
    pattern = ("<patternList>\n  <pattern>\n   <name>beat</name>\n   <category></category>\n"
               f"   <size>{4 * q}</size>\n   <denominator>4</denominator>\n   <info></info>\n   <noteList>\n"
               + "".join(notes) + "   </noteList>\n  </pattern>\n </patternList>\n")
    sequence = " <patternSequence>\n" + "".join(
        "  <group>\n   <patternID>beat</patternID>\n  </group>\n" for _ in range(BARS)) + " </patternSequence>\n"
    tail = demo[demo.index(" <ladspa>"):]
    return head + pattern + sequence + tail


if __name__ == "__main__":
    demo_path = Path(sys.argv[1] if len(sys.argv) > 1 else
                     "/usr/share/hydrogen/data/demo_songs/GM_kit_demo1.h2song")
    out = Path(__file__).with_name("backline_beat.h2song")
    out.write_text(build(demo_path.read_text(encoding="utf-8")), encoding="utf-8")
    print(out)
