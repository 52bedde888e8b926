"""One way from a recording and a bar selection to what an engine hears: the host and the CLI both come here.

The whole recording is heard once (tempo, bar one, meter, key, chords: `engines.listen`), or its grid is taken
from what is known (the DAW's transport, an `extras.json` beside the file, `--bpm`); the region is then cut from
that. An engine given a region is told the grid (`tempo_from = timeline`) and the chords and key heard across
the whole file, so bars 3–6 get bar 3's chord on bar 3's downbeat whether a musician dragged across them in the
host or typed `--bars 3-6` (before, the host listened to the region alone and heard bar one a bar late).

Bars: a known grid (the DAW's, extras.json's, `--bpm`) counts them from the recording's first sample, as a DAW
export starts on bar 1; a heard grid counts them from the first bar line heard (`Listening.timeline(anchored=True)`:
the timeline's `origin`), so a recording with a lead-in or a pickup gets its bars where the music's are (before,
bars 3-4 of the demo band behind 0.3 s of silence came 300 ms early).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backline.engines.core import audio as core_audio
from backline.engines.core.audio import Audio
from backline.engines.core.errors import BacklineError, ConfigError, TimelineError
from backline.engines.core.timeline import Timeline, parse_bar_range
from backline.engines.listen import listen, parse_chart


@dataclass
class Heard:
    """A whole recording's grid and what was heard in it (`listening` None: nothing steady was heard)."""

    timeline: Timeline
    listening: object | None = None
    source: str = "listen"  # listen | known (DAW, extras.json, --bpm)


@dataclass
class Region:
    """A cut: DAW samples [start, stop), the audio there, and the controls that carry the whole file's grid."""

    start: int
    stop: int
    mix: Audio
    timeline: Timeline
    controls: dict = field(default_factory=dict)


def hear(audio: Audio, known: Timeline | None = None, *, meter: tuple[int, int] | None = None) -> Heard:
    """Listen to the whole recording. `known` (the DAW's, extras.json's or the user's tempo and meter) wins for
    the grid; the chords and key are heard either way. A recording with no steady beat keeps `known` (or 120 BPM
    4/4) and `listening` None."""
    try:
        lst = listen(audio, bpm=known.bpm if known else None,
                     meter=(known.numerator, known.denominator) if known else meter)
    except (BacklineError, ValueError):
        lst = None
    if known is not None:
        return Heard(known, lst, "known")
    if lst is None:
        return Heard(Timeline.constant(120.0, audio.sample_rate), None, "default")
    return Heard(lst.timeline(audio.sample_rate, anchored=True), lst, "listen")


def file_chart(heard: Heard, frames: int) -> str:
    """The heard chords as a chart laid on the timeline's bars (bar 1 = the first sample): one name per bar when
    the bar holds one chord, else one per beat. This is the host's chord lane and what a region is given."""
    lst, tl = heard.listening, heard.timeline
    if lst is None:
        return ""
    cells = []
    bars = int(tl.bars_in(frames) + 1e-6)
    beat_s_q = tl.quarters_per_beat
    for b in range(bars):
        names = []
        for k in range(tl.numerator):
            q = b * tl.quarters_per_bar + (k + 0.25) * beat_s_q  # a quarter-beat in: past the beat's edge
            names.append(lst.chord_at(tl.quarters_to_seconds(q)).symbol)
        cells.append(names[0] if len(set(names)) == 1 else " ".join(names))
    return " | ".join(cells)


def chords_for_bars(chart: str, first: int, last: int, numerator: int) -> str:
    """Bars first..last (1-based) of a chart, '' when it has none there (an engine then listens for them)."""
    if not chart:
        return ""
    parse_chart(chart, numerator)  # a broken chart is refused with its one-line reason
    cells = [c.strip() for c in chart.split("|")]
    picked = cells[first - 1:last]
    return " | ".join(picked) if len(picked) == last - first + 1 and all(picked) else ""


def cut(audio: Audio, heard: Heard, bars: tuple[int, int] | None, *, origin: int = 0, chart: str | None = None,
        controls: dict | None = None, control_names: set[str] | frozenset[str] = frozenset(),
        extractor=None) -> Region:
    """The region of `bars` (inclusive, 1-based; None = the whole recording) and the controls that hand the
    engine the whole file's grid, chords and key. `audio` starts at DAW sample `origin`; `extractor(start,
    stop)` (a live capture) supplies the region's audio instead of slicing `audio`. `chart` is the chord lane
    as the musician edited it (None: as heard); `control_names` are the engine's controls (only those are set)."""
    controls = dict(controls or {})
    tl = heard.timeline
    if bars is None:
        return Region(origin, origin + audio.frames, audio, tl, controls)
    first, last = bars
    start, stop = tl.bar_range_to_samples(first, last)
    if extractor is None and (start < origin or stop > origin + audio.frames):
        have = tl.bars_in(origin + audio.frames)
        raise TimelineError(f"bars {first}-{last} run past the end of the recording ({have:.1f} bars at "
                            f"{tl.bpm:g} BPM)", fix=f"pick bars within 1-{int(have)}")
    mix = extractor(start, stop).audio if extractor is not None else audio.slice(start - origin, stop - origin)
    if "tempo_from" in control_names:
        controls["tempo_from"] = "timeline"  # the grid is the file's (heard once, whole) or the DAW's
    if "chords" in control_names and not controls.get("chords"):
        lane = chart if chart else file_chart(heard, origin + audio.frames) if origin == 0 else ""
        controls["chords"] = chords_for_bars(lane, first, last, tl.numerator)
    if "key" in control_names and not controls.get("key") and heard.listening is not None:
        controls["key"] = heard.listening.key_name
    return Region(start, stop, mix, tl, controls)


def cut_file(path, bars: str | None, known: Timeline | None, *, meter: tuple[int, int] | None = None,
             controls: dict | None = None, control_names: set[str] | frozenset[str] = frozenset()) -> Region:
    """The CLI's `--bars` on a file: read the whole recording, hear it (or take `known`, from `--bpm`), cut the
    bars — the same `cut` the host's selection goes through. No steady beat and no `--bpm`: one line."""
    whole = core_audio.read_audio(path)  # looked up at call time (the fault tests watch it)
    heard = hear(whole, known, meter=meter)
    if heard.source == "default":
        raise ConfigError("no steady beat was heard in the mix, so where its bars lie is not known",
                          path=path, fix="give the tempo with --bpm, e.g. --bpm 120")
    return cut(whole, heard, parse_bar_range(bars) if bars else None, controls=controls,
               control_names=control_names)
