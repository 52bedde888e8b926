"""`Listening`: what was heard (tempo, beats, bar one, meter, key, chords per beat, kicks, the band's low voice)
and where each field came from; and the listener's controls, declared once for every engine that follows a song."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backline.engines.core.protocol import Control
from backline.engines.core.timeline import Timeline
from backline.engines.listen.chart import NO_CHORD, NOTE_NAMES, Chord

#: a first bar line heard this close before the end of a bar from the start is the start's own (a bar line at
#: -5 ms, read as one a bar later): bar 1 is then the first sample
ANCHOR_SLACK_S = 0.03


@dataclass
class Listening:
    """What was heard. Times are seconds from the mix's first sample; `beats` are the meter's beats (6/8: eighths)."""

    bpm: float  # quarter notes per minute
    numerator: int
    denominator: int
    beats: np.ndarray
    downbeats: np.ndarray
    key_pc: int
    mode: str
    chords: list[Chord]  # one per beat
    duration: float
    sources: dict[str, str] = field(default_factory=dict)
    kicks: np.ndarray | None = None  # kick-drum hits heard (seconds), for a bass that locks with the kick
    band_low: float | None = None  # MIDI pitch of the band's lowest voice (low in its range), for the register
    octave_alternative: float | None = None  # double or half the tempo, when that came close (`OCTAVE_DOUBT`)

    @property
    def key_name(self) -> str:
        return f"{NOTE_NAMES[self.key_pc]} {self.mode}"

    @property
    def bar_one(self) -> float:
        """Time of the first full bar's downbeat (≥ 0)."""
        return float(self.downbeats[0]) if len(self.downbeats) else 0.0

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.bpm * 4.0 / self.denominator

    def timeline(self, sample_rate: int, *, anchored: bool = False) -> Timeline:
        """The heard tempo and meter as a timeline. `anchored`: bar 1 on the first bar line heard (the
        recording's own bars, for cutting regions and drawing the bar lines; what comes before it is a pickup),
        else bars counted from the first sample (a follow take places its notes on the heard beats itself)."""
        origin = 0
        if anchored:
            bar_s = 60.0 / self.bpm * self.numerator * 4.0 / self.denominator
            lead = self.bar_one % bar_s
            origin = 0 if lead > bar_s - ANCHOR_SLACK_S else int(round(lead * sample_rate))
        return Timeline.constant(self.bpm, sample_rate, self.numerator, self.denominator, origin=origin)

    def chord_at(self, t: float) -> Chord:
        i = int(np.searchsorted(self.beats, t, side="right")) - 1
        return self.chords[i] if 0 <= i < len(self.chords) else NO_CHORD

    def chord_segments(self) -> list[tuple[float, float, Chord]]:
        """Merged (start, end, chord) runs — for display and mir_eval."""
        out: list[tuple[float, float, Chord]] = []
        for i, ch in enumerate(self.chords):
            a = float(self.beats[i])
            b = float(self.beats[i + 1]) if i + 1 < len(self.beats) else min(self.duration, a + self.beat_seconds)
            if out and out[-1][2] == ch and abs(out[-1][1] - a) < 1e-6:
                out[-1] = (out[-1][0], b, ch)
            else:
                out.append((a, b, ch))
        return out

    def bar_chords(self) -> list[list[Chord]]:
        """Chords per bar from bar one (each bar: one chord per beat)."""
        first = int(np.searchsorted(self.beats, self.bar_one - 1e-3))
        rows = []
        for i in range(first, len(self.chords), self.numerator):
            rows.append(self.chords[i:i + self.numerator])
        return rows

    def chart(self) -> str:
        """The chords as a chart the user can edit and give back with --chords."""
        bars = []
        for row in self.bar_chords():
            names: list[str] = []
            for ch in row:
                if not names or names[-1] != ch.symbol:
                    names.append(ch.symbol)
            bars.append(" ".join(names))
        return " | ".join(bars)

    def to_dict(self) -> dict:
        return {"bpm": round(self.bpm, 3), "meter": f"{self.numerator}/{self.denominator}",
                "bar_one_s": round(self.bar_one, 4), "key": self.key_name, "chords": self.chart(),
                "beats": len(self.beats), "sources": dict(self.sources)} | \
            ({"octave_alternative_bpm": round(self.octave_alternative, 3)} if self.octave_alternative else {})

    def octave_hint(self, control: str = "--bpm") -> str:
        return octave_hint(self.bpm, self.octave_alternative, control)


def octave_hint(bpm: float, alternative: float | None, control: str = "--bpm") -> str:
    """' (or 193.3 BPM: double time came close — --bpm 193.3 plays it)', or '' when the tempo was clear;
    `control` is what sets the tempo where the line is read (the CLI's flag, the host's Tempo box)."""
    if not alternative:
        return ""
    which = "double" if alternative > bpm else "half"
    return f" (or {alternative:.1f} BPM: {which} time came close — {control} {alternative:.1f} plays it)"


def heard_line(heard: dict) -> str:
    """The CLI's 'heard' line from a report's `listening` block (`Listening.to_dict`)."""
    return (f"heard  {heard['bpm']:g} BPM {heard['meter']}, bar one at {heard['bar_one_s']:.3f} s, {heard['key']}"
            f"  ({', '.join(f'{k} from {v}' for k, v in heard['sources'].items())})"
            + octave_hint(heard["bpm"], heard.get("octave_alternative_bpm")))


#: What a user may tell the shared listener instead of letting it hear (key, chord chart, tempo, meter, trust the
#: DAW's timeline): the same controls, in the same order, for every follow-mode engine (bass, accompaniment).
LISTEN_CONTROLS = (
    Control("key", "text", "", "Key", group="advanced", help="e.g. D or Bm (empty = listen)"),
    Control("chords", "text", "", "Chords", group="cli",
            help='the chords per bar, e.g. "D | G A | Bm | G A7" (default: the chord lane, or listen)'),
    Control("bpm", "float", 0.0, "Tempo", 0.0, 999.0, 0.01, group="cli",
            help="tempo of the mix (0 = the DAW's, or listen for it)"),
    Control("meter", "text", "", "Meter", group="cli", help="e.g. 4/4 or 6/8 (empty = the DAW's, or listen)"),
    Control("tempo_from", "choice", "listen", "Tempo from", choices=("listen", "timeline"), group="cli",
            help="timeline: trust the request's timeline (the DAW transport); listen: hear tempo and bar one"),
)
