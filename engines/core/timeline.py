"""The timeline: samples ↔ seconds ↔ quarter notes ↔ bars|beats|ticks.

Conventions (the ones DAWs and MIDI files share):
- tempo is in quarter notes per minute, whatever the meter (REAPER, Bitwig and MIDI's set_tempo do this);
- a bar lasts `numerator * 4 / denominator` quarter notes; a *beat* is one `1/denominator` note, so 6/8 has
  six eighth-note beats per bar;
- bars and beats are 1-based as DAWs show them; bar 1 beat 1 sits at sample `origin` (0 for a DAW's timeline
  and a DAW export; for a recording whose first bar line is heard later, the samples before it are a pickup,
  "bar 0");
  ticks are 0-based, `ppq` per quarter note;
- everything crossing a module boundary is in DAW samples at the DAW's sample rate.

The tempo is a piecewise-constant `TempoMap`, so a tempo map can come later without changing callers; the
meter is constant (meter changes are refused with a clear message by the readers that meet them).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field

from backline.engines.core.errors import TimelineError

MIN_BPM, MAX_BPM = 10.0, 999.0
DEFAULT_PPQ = 960
#: beats per bar a time signature may have (DAWs offer up to 32-99; every engine's arrays scale with the bar,
#: and 1000/4 asked the listener for a 49,000² matrix)
MAX_NUMERATOR = 32


def check_bpm(bpm: float) -> float:
    """Reject tempos no DAW uses (0, negative, NaN, 10,000) with a musician's message."""
    if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise TimelineError(f"tempo {bpm!r} BPM is out of range", fix=f"use {MIN_BPM:g}–{MAX_BPM:g} BPM")
    return float(bpm)


@dataclass(frozen=True)
class BBT:
    """A musical position: 1-based bar and beat, 0-based tick (ppq per quarter note)."""

    bar: int
    beat: int
    tick: float

    def __str__(self) -> str:
        return f"{self.bar}|{self.beat}|{int(self.tick):03d}"


@dataclass(frozen=True)
class TempoMap:
    """Piecewise-constant tempo: `points` are (quarter_position, bpm), sorted, the first at quarter 0."""

    points: tuple[tuple[float, float], ...]
    _seconds_at_point: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.points or self.points[0][0] != 0.0:
            raise TimelineError("a tempo map must start with a tempo at quarter 0")
        for (q0, _), (q1, _) in zip(self.points, self.points[1:]):
            if q1 <= q0:
                raise TimelineError("tempo map points must be in increasing order")
        for _, bpm in self.points:
            check_bpm(bpm)
        secs = [0.0]
        for (q0, bpm), (q1, _) in zip(self.points, self.points[1:]):
            secs.append(secs[-1] + (q1 - q0) * 60.0 / bpm)
        object.__setattr__(self, "_seconds_at_point", tuple(secs))

    @classmethod
    def constant(cls, bpm: float) -> TempoMap:
        return cls(((0.0, check_bpm(bpm)),))

    @property
    def is_constant(self) -> bool:
        return len(self.points) == 1

    def bpm_at_quarter(self, quarter: float) -> float:
        i = max(bisect.bisect_right([q for q, _ in self.points], quarter) - 1, 0)
        return self.points[i][1]

    def seconds(self, quarter: float) -> float:
        i = max(bisect.bisect_right([q for q, _ in self.points], quarter) - 1, 0)
        q0, bpm = self.points[i]
        return self._seconds_at_point[i] + (quarter - q0) * 60.0 / bpm

    def quarter(self, seconds: float) -> float:
        i = max(bisect.bisect_right(self._seconds_at_point, seconds) - 1, 0)
        q0, bpm = self.points[i]
        return q0 + (seconds - self._seconds_at_point[i]) * bpm / 60.0


@dataclass(frozen=True)
class Timeline:
    """Maps DAW sample positions to musical time for one tempo map and a constant meter."""

    sample_rate: int
    tempo: TempoMap
    numerator: int = 4
    denominator: int = 4
    ppq: int = DEFAULT_PPQ
    origin: int = 0  # the sample where bar 1 beat 1 (quarter 0) sits

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise TimelineError(f"sample rate {self.sample_rate} must be positive")
        if not 0 < self.numerator <= MAX_NUMERATOR or self.denominator not in (1, 2, 4, 8, 16, 32):
            raise TimelineError(f"time signature {self.numerator}/{self.denominator} is not supported",
                                fix=f"use a numerator of 1-{MAX_NUMERATOR} over 1, 2, 4, 8, 16 or 32")

    @classmethod
    def constant(cls, bpm: float, sample_rate: int, numerator: int = 4, denominator: int = 4, *,
                 origin: int = 0) -> Timeline:
        return cls(sample_rate, TempoMap.constant(bpm), numerator, denominator, origin=int(origin))

    # --- basic units -------------------------------------------------------------------------------------
    @property
    def quarters_per_bar(self) -> float:
        return self.numerator * 4.0 / self.denominator

    @property
    def quarters_per_beat(self) -> float:
        return 4.0 / self.denominator

    @property
    def bpm(self) -> float:
        """The tempo at the origin (the only tempo for a constant map)."""
        return self.tempo.points[0][1]

    def samples_to_seconds(self, samples: float) -> float:
        return samples / self.sample_rate

    def seconds_to_samples(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def samples_to_quarters(self, samples: float) -> float:
        return self.tempo.quarter((samples - self.origin) / self.sample_rate)

    def quarters_to_samples(self, quarters: float) -> int:
        return round(self.tempo.seconds(quarters) * self.sample_rate) + self.origin

    def quarters_to_seconds(self, quarters: float) -> float:
        return self.tempo.seconds(quarters) + self.origin / self.sample_rate

    def seconds_to_quarters(self, seconds: float) -> float:
        return self.tempo.quarter(seconds - self.origin / self.sample_rate)

    # --- bars --------------------------------------------------------------------------------------------
    def bar_to_samples(self, bar: float) -> int:
        """Sample position of the start of 1-based `bar` (fractional bars allowed)."""
        if bar < 1:
            raise TimelineError(f"bar {bar} does not exist", fix="bars are numbered from 1")
        return self.quarters_to_samples((bar - 1) * self.quarters_per_bar)

    def samples_to_bar(self, samples: float) -> float:
        """Fractional 1-based bar at `samples` (1.0 = start of bar 1)."""
        return 1.0 + self.samples_to_quarters(samples) / self.quarters_per_bar

    def bbt_to_samples(self, bbt: BBT) -> int:
        if bbt.bar < 1 or not 1 <= bbt.beat <= self.numerator or bbt.tick < 0:
            raise TimelineError(f"position {bbt} does not exist in {self.numerator}/{self.denominator}")
        quarters = (bbt.bar - 1) * self.quarters_per_bar + (bbt.beat - 1) * self.quarters_per_beat
        return self.quarters_to_samples(quarters + bbt.tick / self.ppq)

    def samples_to_bbt(self, samples: float) -> BBT:
        quarters = self.samples_to_quarters(samples)
        bar_index, in_bar = divmod(quarters, self.quarters_per_bar)
        beat_index, in_beat = divmod(in_bar, self.quarters_per_beat)
        tick = in_beat * self.ppq
        if tick >= self.ppq * self.quarters_per_beat - 1e-6:  # float slop at a beat boundary
            tick, beat_index = 0.0, beat_index + 1
            if beat_index >= self.numerator:
                beat_index, bar_index = 0, bar_index + 1
        return BBT(int(bar_index) + 1, int(beat_index) + 1, tick)

    def snap_to_grid(self, samples: float, division: int = 4) -> float:
        """The exact (fractional) sample position of the 1/`division`-quarter grid line that the integer
        `samples` was rounded from (within half a sample), else `samples` unchanged. Bar and beat starts are
        rounded to whole samples, so reading one back can land a hair *after* the line: a ceil then skips it."""
        quarter = self.samples_to_quarters(samples)
        line = round(quarter * division) / division
        exact = self.tempo.seconds(line) * self.sample_rate + self.origin
        return exact if abs(exact - samples) <= 0.5 + 1e-9 else samples

    def bar_range_to_samples(self, first_bar: int, last_bar: int) -> tuple[int, int]:
        """Inclusive bars `first..last` → `[start, stop)` samples (stop = start of bar last+1)."""
        if first_bar < 1 or last_bar < first_bar:
            raise TimelineError(f"bars {first_bar}-{last_bar} are not a range",
                                fix="give bars as FIRST-LAST with 1 <= FIRST <= LAST, e.g. 9-24")
        return self.bar_to_samples(first_bar), self.bar_to_samples(last_bar + 1)

    def bars_in(self, samples: int) -> float:
        """How many bars `samples` frames of audio hold (from the origin)."""
        return self.samples_to_bar(samples) - 1.0

    def grid_samples(self, start: int, stop: int, division: int = 4) -> list[int]:
        """Sample positions of every `1/division`-of-a-quarter grid line in `[start, stop)` (division 4 = 16ths)."""
        step = 1.0 / division
        q = math.ceil(self.samples_to_quarters(start) / step - 1e-9) * step
        out = []
        while True:
            s = self.quarters_to_samples(q)
            if s >= stop:
                return out
            out.append(s)
            q += step


_RANGE = re.compile(r"^\s*(\d+)\s*(?:[-–:]\s*(\d+))?\s*$")


def parse_bar_range(text: str) -> tuple[int, int]:
    """'9-24' → (9, 24); '5' → (5, 5). Bars are inclusive and 1-based, as a DAW shows them."""
    match = _RANGE.match(text or "")
    if not match:
        raise TimelineError(f"cannot read bar range {text!r}", fix="write it as FIRST-LAST, e.g. 9-24")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if first < 1 or last < first:
        raise TimelineError(f"bars {text!r} are not a range", fix="write it as FIRST-LAST with FIRST >= 1, e.g. 9-24")
    return first, last


#: the longest region generated without a recording to bound it (bars typed by hand: 1-100000 asked for 51 GB)
MAX_REGION_SECONDS = 10 * 60


def region_of_bars(timeline: Timeline, bars: str | None, total: int | None, path: str | None = None) -> tuple[int, int]:
    """[start, stop) samples of the bar range `bars` ('9-24') in a recording of `total` samples, or the whole
    recording when `bars` is empty. A range past the end is refused with the number of bars there are. With
    no recording (`total` None) the range may last at most MAX_REGION_SECONDS."""
    if total is None:
        if not bars:
            raise TimelineError("without a recording there is nothing to set the length", fix="give --bars")
        first, last = parse_bar_range(bars)
        seconds = (last - first + 1) * timeline.quarters_per_bar * 60.0 / timeline.bpm
        if seconds > MAX_REGION_SECONDS:
            fit = int(MAX_REGION_SECONDS * timeline.bpm / 60.0 / timeline.quarters_per_bar)
            raise TimelineError(f"bars {first}-{last} last {int(seconds) // 60}:{int(seconds) % 60:02d} at "
                                f"{timeline.bpm:g} BPM, longer than the {MAX_REGION_SECONDS // 60} minutes one run "
                                "generates", fix=f"generate at most {fit} bars at a time, e.g. --bars {first}-"
                                                 f"{first + fit - 1}")
        return timeline.bar_range_to_samples(first, last)
    if not bars:
        return 0, total
    first, last = parse_bar_range(bars)
    start, stop = timeline.bar_range_to_samples(first, last)
    if start >= total or stop > total:
        bars_in = timeline.bars_in(total)
        raise TimelineError(f"bars {first}-{last} run past the end of the mix ({bars_in:.1f} bars at "
                            f"{timeline.bpm:g} BPM)", path=path, fix=f"pick bars within 1-{int(bars_in)}")
    return start, stop
