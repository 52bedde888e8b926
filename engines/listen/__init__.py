"""Listening: tempo, beats, bar one, meter, key and chords per beat of a mix — what a session player hears first.

Shared by the bass engine, the accompaniment engine and the host. Each field comes from the best source there is,
in this order: the DAW's transport (a `Timeline` the bridge reports) > what the user typed (`--bpm`, `--meter`,
`--key`, `--chords "D | G A | Bm | G A7"` per bar, the host's chord lane) > the band's MIDI (`--band-midi`, read with
pretty_midi) > the audio. `Listening.sources` says where each field came from.

Choices for audio, and why:
- librosa, not madmom: madmom does not install here (Python 3.12/NumPy 2) and its model files are CC BY-NC-SA.
- Tempo and beats: librosa's onset envelope and tempo estimate give candidates; then a *rigid grid* (one period,
  one phase) is fitted to the onset envelope, because music made in a DAW (and the corpus) keeps a constant tempo
  and a grid fit averages over every beat: the tempo comes out within a fraction of a percent, where a
  beat-by-beat tracker wobbles. Candidates: librosa's estimate and the strongest onset-autocorrelation peaks
  with their doubles and halves (`_tempo_guesses`), then each grid's metrical relatives (2/3, 3/2, 4/3, 3/4 of
  its tempo: a beat heard in threes where the music moves in twos is the common miss without drums;
  `tempo_candidates`). The choice (`tempo_value`) is a conditional logit over the candidates, fitted by
  benchmarks/tempo_fit.py on music21 pieces outside the evaluation set and rendered songs with drums: how well the
  grid explains the onset envelope and the pitch-change envelope (a choir or bowed strings change notes without
  an attack: `_pitch_flux`), whether note onsets, new pitches and low hits fall on its 8ths and 16ths (chance-
  corrected: a finer grid catches more of anything), whether its bar lines carry the chord changes (harmonic
  rhythm) and librosa's log-normal prior around 120 BPM. A clip of two bars (four beats) is enough.
- Bar one and meter: the phase (and 3 vs 4 beats) that puts the most harmonic change (beat-synchronous chroma
  novelty, two beats against the two before: `_novelty`) and low-frequency (kick, bass) onset strength on the
  first beat of the bar. Chords change on bar lines and the kick plays on one in almost every groove.
- Key: Krumhansl–Kessler profiles correlated with the duration-weighted chroma (24 keys).
- Chords: beat-synchronous CQT chroma matched to templates (maj, min, 7, maj7, min7, dim, sus4; N for silence),
  a key prior on diatonic chords, then Viterbi smoothing (librosa.sequence.viterbi) over (chord, beat-in-bar)
  states, so a chord changes much more readily on a bar line than mid-bar. A "no chord" heard where the band still
  sounds (a fading cadence, a unison) continues the chord before it (`hold_through`): a player holds the harmony.
- The band's lowest voice (`Listening.band_low`, from the same CQT): the bass planner stays within an octave of it,
  as a cellist under a string trio or an upright under a choir would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError, TimelineError
from backline.engines.core.protocol import Control
from backline.engines.core.timeline import Timeline, check_bpm

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
#: Chord vocabulary: quality → intervals; suffixes as musicians write them.
QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
             "min7": (0, 3, 7, 10), "dim": (0, 3, 6), "sus4": (0, 5, 7)}
SUFFIX = {"maj": "", "min": "m", "7": "7", "maj7": "maj7", "min7": "m7", "dim": "dim", "sus4": "sus4"}
_SUFFIX_IN = {"": "maj", "maj": "maj", "M": "maj", "m": "min", "min": "min", "-": "min", "7": "7", "dom7": "7",
              "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "m7": "min7", "min7": "min7", "-7": "min7",
              "dim": "dim", "°": "dim", "o": "dim", "m7b5": "dim", "ø": "dim", "ø7": "dim", "dim7": "dim",
              "sus": "sus4", "sus4": "sus4", "sus2": "sus4", "7sus4": "sus4", "5": "maj"}
# Krumhansl–Kessler key profiles (C major / C minor).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
SR = 22050
HOP = 256  # onset envelope hop: 11.6 ms
# An onset envelope (spectral flux of a centred 2048-point mel frame) peaks after the attack that causes it: on
# synthetic percussive clicks at known times the fitted beat grid sits 13.7 ms late (tests/test_listen.py measures
# it again). Beats heard from audio are moved back by that much, so bar one is the attack a player hears, not the
# envelope's peak; a DAW's, a MIDI file's or the user's grid is taken as given.
ENVELOPE_LAG_S = 0.0137
MIN_BEATS = 4  # a grid needs this many beats in the clip (two bars of 5 s at 48 BPM and up)


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class, -1 = no chord (N)
    quality: str = "maj"

    @property
    def pcs(self) -> set[int]:
        return set() if self.root < 0 else {(self.root + i) % 12 for i in QUALITIES[self.quality]}

    @property
    def symbol(self) -> str:
        return "N" if self.root < 0 else NOTE_NAMES[self.root] + SUFFIX[self.quality]

    @property
    def label(self) -> str:
        """mir_eval's spelling (root:quality)."""
        return "N" if self.root < 0 else f"{NOTE_NAMES[self.root]}:{self.quality}"


NO_CHORD = Chord(-1)


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

    def timeline(self, sample_rate: int) -> Timeline:
        return Timeline.constant(self.bpm, sample_rate, self.numerator, self.denominator)

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
                "beats": len(self.beats), "sources": dict(self.sources)}


# --- parsing what the user types ---------------------------------------------------------------------------------

_CHORD_RE = re.compile(r"^([A-Ga-g])([#♯b♭]?)(.*?)(?:/([A-Ga-g][#♯b♭]?))?$")


def parse_chord(text: str) -> Chord:
    """'Bm', 'A7', 'Gmaj7', 'F#m7', 'Bdim', 'Dsus4', 'C/E' (slash bass ignored), 'N' / 'NC' → a Chord."""
    t = text.strip()
    if t.upper() in ("N", "NC", "N.C.", "-"):
        return NO_CHORD
    m = _CHORD_RE.match(t)
    if not m or m.group(3) not in _SUFFIX_IN:
        raise ConfigError(f"chord {text!r} is not a chord symbol",
                          fix="write chords like D, Bm, A7, Gmaj7, F#m7, Bdim, Dsus4 or N (no chord)")
    root = _PC[m.group(1).upper()] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(m.group(2), 0)
    return Chord(root % 12, _SUFFIX_IN[m.group(3)])


def parse_chart(text: str, numerator: int = 4) -> list[list[Chord]]:
    """'D | G A | Bm | G A7' → one row of `numerator` chords (one per beat) per bar. Two chords in a 4/4 bar take
    two beats each; '%' repeats the previous bar."""
    if not text or not text.strip():
        raise ConfigError("--chords is empty", fix='give bars separated by |, e.g. --chords "D | G A | Bm | G A7"')
    bars: list[list[Chord]] = []
    for i, cell in enumerate(text.split("|")):
        names = cell.split()
        if not names:
            if i == 0 or i == len(text.split("|")) - 1:
                continue  # a leading/trailing bar line
            raise ConfigError(f"bar {len(bars) + 1} of --chords is empty", fix="put a chord (or N, or %) in every bar")
        if names == ["%"]:
            if not bars:
                raise ConfigError("'%' in the first bar of --chords has no bar to repeat")
            bars.append(list(bars[-1]))
            continue
        chords = [parse_chord(n) for n in names]
        if len(chords) > numerator:
            raise ConfigError(f"bar {len(bars) + 1} of --chords has {len(chords)} chords but only {numerator} beats",
                              fix="split the bar with |, or give fewer chords")
        row = [chords[min(len(chords) - 1, b * len(chords) // numerator)] for b in range(numerator)]
        bars.append(row)
    if not bars:
        raise ConfigError("--chords has no chords", fix='e.g. --chords "D | G A | Bm | G A7"')
    return bars


def parse_meter(text: str) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in str(text).split("/"))
        Timeline.constant(120.0, 44100, num, den)
    except (ValueError, TimelineError) as err:
        raise ConfigError(f"meter {text!r} is not a time signature", fix="write it like 4/4, 3/4 or 6/8") from err
    return num, den


def parse_key(text: str) -> tuple[int, str]:
    """'D', 'D major', 'Bm', 'B minor' → (pc, mode)."""
    t = text.strip().replace("maj", " major").replace("min", " minor")
    parts = t.split()
    try:
        ch = parse_chord(parts[0])
    except ConfigError as err:
        raise ConfigError(f"key {text!r} is not a key", fix="write it like D, D major, Bm or B minor") from err
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].startswith(("major", "minor"))):  # "C major minor"
        raise ConfigError(f"key {text!r} is not a key", fix="write it like D, D major, Bm or B minor")
    minor = ch.quality in ("min", "min7") or (len(parts) > 1 and parts[1].startswith("minor"))
    return ch.root, "minor" if minor else "major"


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


# --- audio --------------------------------------------------------------------------------------------------------

def _onsets(y: np.ndarray):
    """(all-band onset envelope, low-band (< 200 Hz) envelope, kick-band (< 150 Hz) envelope) from one mel
    spectrogram: the kick band finds kick hits, the low band weighs bar one."""
    import librosa

    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, hop_length=HOP, n_mels=128))
    freqs = librosa.mel_frequencies(n_mels=128, fmax=SR / 2)
    full = librosa.onset.onset_strength(S=mel, sr=SR, hop_length=HOP)
    low = librosa.onset.onset_strength(S=mel[freqs < 200.0], sr=SR, hop_length=HOP)
    kick = librosa.onset.onset_strength(S=mel[freqs < 150.0], sr=SR, hop_length=HOP)
    return full, low, kick


def _kicks(kick_env: np.ndarray) -> np.ndarray:
    """Kick-drum hits (seconds): peaks of the kick-band onset envelope well above its median."""
    import librosa

    peaks = librosa.util.peak_pick(kick_env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                                   delta=max(float(np.median(kick_env)) * 2.0, 0.25 * float(kick_env.max())), wait=8)
    return peaks * HOP / SR


def _comb(env: np.ndarray, period: float, phases: np.ndarray) -> np.ndarray:
    """Mean envelope (max within ±1 frame) on grids of `period` frames at each phase."""
    n = len(env)
    peak = np.maximum(env, np.maximum(np.roll(env, 1), np.roll(env, -1)))
    k = np.arange(int((n - 1 - phases.max()) / period) + 1)
    idx = np.rint(phases[:, None] + k[None] * period).astype(int)
    idx = np.clip(idx, 0, n - 1)
    return peak[idx].mean(1)


def fit_grid(env: np.ndarray, period0: float, span: float = 0.04, steps: int = 161) -> tuple[float, float, float]:
    """Best (period, phase, score) in frames of a rigid beat grid near `period0` (±span, `steps` periods)."""
    best = (period0, 0.0, -1.0)
    for period in period0 * (1 + np.linspace(-span, span, steps)):
        phases = np.arange(0, period, 0.5)
        score = _comb(env, period, phases)
        i = int(np.argmax(score))
        if score[i] > best[2]:
            best = (float(period), float(phases[i]), float(score[i]))
    # refine the period by regression on the local onset peaks near each grid line
    period, phase, score = best
    n = len(env)
    times, ks = [], []
    for k in range(int((n - 1 - phase) / period) + 1):
        c = phase + k * period
        a, b = int(max(0, c - 3)), int(min(n, c + 4))
        if b > a and env[a:b].max() > np.median(env) * 1.5:
            times.append(a + int(np.argmax(env[a:b])))
            ks.append(k)
    if len(ks) >= 8:
        slope, icpt = np.polyfit(ks, times, 1)
        if abs(slope / period - 1) < 0.01:
            period, phase = float(slope), float(icpt)
    return period, phase, score


def _tempo_prior(bpm: float) -> float:
    return float(np.exp(-0.5 * (np.log2(bpm / 120.0) / 1.0) ** 2))


def _frame_chroma(y: np.ndarray) -> tuple[np.ndarray, float | None, np.ndarray, np.ndarray]:
    """([12, frames] CQT chroma at hop 512 (C2 upwards: the band's chords, not the kick), the band's low voice,
    the pitch-change envelope at the onset hop, the upper structure's chroma (E3 upwards, `UPPER_FROM`)).

    One CQT serves all four: the chroma, `band_low` (`_low_voice`), `_pitch_flux`, and the chroma above the bass for
    the chords: a walking or anticipating bass is the loudest voice in a beat, so from C2 a chord on C read as the
    bass's passing D.

    The tuning is estimated in semitones (12 bins per octave) and given to the 36-bin CQT as three times that: an
    estimate at 36 bins is only known modulo a third of a semitone, so a band 40 cents flat (filosax01) read as
    +11 cents and every tone split between two pitch classes (C# heard as C and C#, G# as G and G#)."""
    import librosa

    fmin = librosa.note_to_hz("C2")
    tuning = 3.0 * float(librosa.estimate_tuning(y=y, sr=SR, bins_per_octave=12))
    cqt = np.abs(librosa.cqt(y=y, sr=SR, hop_length=512, fmin=fmin, n_bins=36 * 6, bins_per_octave=36,
                             tuning=tuning))
    chroma = librosa.feature.chroma_cqt(C=cqt, sr=SR, hop_length=512, fmin=fmin, bins_per_octave=36, n_octaves=6)
    k = 3 * (UPPER_FROM - 36)
    upper = librosa.feature.chroma_cqt(C=cqt[k:k + 36 * 4], sr=SR, hop_length=512, fmin=librosa.midi_to_hz(UPPER_FROM),
                                       bins_per_octave=36, n_octaves=4, norm=None)  # level kept: a beat's median
    return chroma, _low_voice(cqt), _pitch_flux(cqt), upper


#: Lowest MIDI pitch of the upper-structure chroma (E3): above a bass line's fundamentals and most of its octave.
UPPER_FROM = 52
#: How much of the chord evidence is the upper structure's chroma (the rest the whole band's from C2), and how much
#: likelier a major/minor triad is than a sus4 chord that shares two of its tones (the composer's corpus has none;
#: a triad's root under a sus4 template read Fmaj7 as Csus4, G7 as Dsus4). Set on composed songs (seed 5151, 30
#: band-minus-one cases; the held-out seed 917 and realdev only measured): share of the voiced tones (four voices)
#: in the true chord per beat 0.954 → 0.995 with the settings below together (seed 917: 0.922 → 0.970).
UPPER_SHARE = 0.5
SUS_PRIOR = 0.2
#: A seventh is added (`_add_sevenths`) on the blended chroma where it sounds 0.9 of the triad's tones: seed 5151,
#: 88 beats of sevenths heard right and none false (0.8: 144 right, 16 false — a maj7 over a dominant is a clash, a
#: missed seventh only plainer; the demo's G with a melody's F# read Gmaj7 at 0.87).
SEVENTH_RATIO_UPPER = 0.9
#: Log-likelihood (nats) by which another phase of the chord changes must beat the heard bar positions' (seed 5151:
#: no case moved at 0, 3 or 10; seed 917: two songs whose bar one is heard a beat early move at all three).
CHANGE_PHASE_MARGIN = 3.0


def _pitch_flux(cqt: np.ndarray) -> np.ndarray:
    """Where new pitches start (hop `HOP`): the rise of the log CQT over two frames, each bin against the loudest
    of its neighbours a third of a semitone away before (vibrato is no onset: SuperFlux, Böck & Widmer 2013). A
    choir or bowed strings change notes without an attack the spectral-energy envelope sees; the pitch moves."""
    lg = np.log1p(100.0 * cqt / (cqt.max() + 1e-12))
    before = np.maximum(lg, np.maximum(np.roll(lg, 1, 0), np.roll(lg, -1, 0)))
    flux = np.maximum(lg[:, 2:] - before[:, :-2], 0.0).sum(0)
    flux = np.r_[0.0, 0.0, flux]
    return np.repeat(flux, 512 // HOP)


#: how far under a low peak its octave may be for the peak to count as a voice (`_low_voice`): set on the 27
#: music21 clips of the four-part sets (piano within 3 semitones 1/9 → 6/9; strings 7/9 → 6/9; choir 8/9 kept)
LOW_VOICE_OCTAVE_DB = 12.0


def _low_voice(cqt: np.ndarray) -> float | None:
    """MIDI pitch of the band's lowest voice, low in its range (10th percentile over the frames where it sounds):
    per frame the lowest semitone peak within 20 dB of the frame's loudest that stands 6 dB over its neighbours two
    semitones away (a piano's attack smears broadband energy over the low bins: no peak) and has its octave (the
    second harmonic) within `LOW_VOICE_OCTAVE_DB` of it: a piano's body thump (E2–B2 whichever key is struck) is a
    peak with no harmonic above it, and read alone it put the band's low voice an octave and more under a piano
    (median −12 semitones on the four-part set's piano clips; with the octave asked for −1.9). Overtones sit above
    a fundamental, so the lowest strong peak is the lowest voice. Whatever sounds at C2 or below reads as 36 (a bass
    is in the band)."""
    db = 20.0 * np.log10(cqt + 1e-9)
    pad = np.pad(db, ((1, 1), (0, 0)), constant_values=-180.0)
    semi = np.maximum(pad[1:-1:3], np.maximum(pad[0:-2:3], pad[2::3]))  # [72, frames], each semitone ±1/3, C2 = 0
    top = semi.max(0)
    active = top > db.max() - 35.0
    if active.sum() < 8:
        return None
    lows = []
    for f in np.flatnonzero(active):
        col = semi[:, f]
        strong = col > top[f] - 20.0
        flank = np.maximum(np.r_[col[:1], col[:1], col[:-2]], np.r_[col[2:], col[-1:], col[-1:]])  # ±2 semitones
        peak = strong & (col >= np.r_[-np.inf, col[:-1]]) & (col >= np.r_[col[1:], -np.inf]) & (col - flank >= 6.0)
        idx = [i for i in np.flatnonzero(peak) if i + 12 >= len(col) or col[i + 12] >= col[i] - LOW_VOICE_OCTAVE_DB]
        if idx:
            lows.append(idx[0])
    if len(lows) < 8:
        return None
    return float(36 + np.percentile(lows, 10))


def _beat_chroma(chroma: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """[rows, beats] median of a frame feature (hop 512) over each beat [beat_i, beat_i+1)."""
    edges = np.clip(np.rint(np.r_[beats, beats[-1] + np.median(np.diff(beats)) if len(beats) > 1 else beats[-1] + 0.5]
                            * SR / 512).astype(int), 0, chroma.shape[1])
    out = np.zeros((chroma.shape[0], len(beats)))
    for i in range(len(beats)):
        a, b = edges[i], max(edges[i + 1], edges[i] + 1)
        if a < chroma.shape[1]:
            out[:, i] = np.median(chroma[:, a:min(b, chroma.shape[1])], axis=1)
    return out


def _novelty(chroma: np.ndarray) -> np.ndarray:
    """Harmonic change into each beat: the two beats from it against the two before it (Foote's checkerboard,
    two beats wide). Comparing each beat with the one before instead put the change a beat late wherever the new
    chord settles over its first beat (strings swelling in, a chord pushed early, comping spread over the bar):
    bar one then came a beat late. NaN where the window runs off the clip (no change is known there)."""
    norm = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    t = norm.shape[1]
    out = np.full(t, np.nan)
    for i in range(1, t):
        before = norm[:, max(0, i - 2):i].sum(1)
        after = norm[:, i:i + 2].sum(1)
        out[i] = 1.0 - float(before @ after) / (np.linalg.norm(before) * np.linalg.norm(after) + 1e-9)
    return out


def key_from_chroma(chroma_sum: np.ndarray) -> tuple[int, str]:
    best = (-2.0, 0, "major")
    for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for pc in range(12):
            r = float(np.corrcoef(chroma_sum, np.roll(prof, pc))[0, 1])
            if r > best[0]:
                best = (r, pc, mode)
    return best[1], best[2]


KEY_WEIGHTS = Path(__file__).parent / "weights" / "key"
KEY_KIND = "key-finder"
_KEY_MODEL: dict = {}


def _qclass(ch: Chord) -> int:
    return 1 if ch.quality in ("min", "min7") else 2 if ch.quality == "dim" else 0


def key_features(chords: list[Chord], downbeat: np.ndarray, chroma_sum: np.ndarray) -> np.ndarray:
    """[24, F]: for every candidate key (12 major, then 12 minor), the chords seen from that tonic — duration share
    of each (root interval, major/minor/dim) — the first and last bar's chord, and the Krumhansl–Kessler
    correlation of the pitch-class profile. What a musician weighs: where the song starts and ends, which chords
    recur, which notes sound."""
    heard = [(c, d) for c, d in zip(chords, downbeat) if c.root >= 0]
    feats = np.zeros((24, 36 * 3 + 1), np.float32)
    if not heard:
        return feats
    bars = [c for c, d in heard if d] or [c for c, _ in heard]
    for k in range(24):
        pc = k % 12
        for c, _ in heard:
            feats[k, ((c.root - pc) % 12) * 3 + _qclass(c)] += 1.0 / len(heard)
        for j, c in enumerate((bars[0], bars[-1])):
            feats[k, 36 * (j + 1) + ((c.root - pc) % 12) * 3 + _qclass(c)] = 1.0
        prof = KK_MAJOR if k < 12 else KK_MINOR
        feats[k, -1] = float(np.corrcoef(chroma_sum, np.roll(prof, pc))[0, 1]) if chroma_sum.std() > 0 else 0.0
    return feats


def key_from_chords(chords: list[Chord], downbeat: np.ndarray, chroma_sum: np.ndarray,
                    fallback: tuple[int, str]) -> tuple[int, str]:
    """The key with the learned chord/profile scorer (`train_key_finder`); the profile alone without its weights."""
    if "w" not in _KEY_MODEL:
        from safetensors.numpy import load_file

        path = KEY_WEIGHTS.with_suffix(".safetensors")
        _KEY_MODEL["w"] = load_file(str(path))["weight"] if path.is_file() else None
    w = _KEY_MODEL["w"]
    if w is None or not any(c.root >= 0 for c in chords):
        return fallback
    feats = key_features(chords, downbeat, chroma_sum)
    scores = np.concatenate([feats[:12] @ w[0], feats[12:] @ w[1]])
    k = int(np.argmax(scores))
    return k % 12, "major" if k < 12 else "minor"


def train_key_finder(songs: int = 3000, seed: int = 11, out: Path | None = None) -> Path:
    """Fit the key scorer on composed corpus songs (true chords with 15 % of the bars replaced by a wrong chord,
    as listening gets them; the pitch-class profile from the song's non-bass notes). Softmax over the 24 keys,
    one weight vector per mode, L2 0.01; seconds on one thread. `python -m backline.engines.listen --train-key`."""
    import torch
    from safetensors.numpy import save_file

    from backline.engines.core.audio import write_bytes_atomic
    from backline.engines.data.song import make_song
    from backline.engines.data.synth import song_rng

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(songs):
        song = make_song(song_rng(seed, i), min_bars=8, max_bars=48)
        chords = []
        for c in song.chords:
            ch = Chord(c.root_pc, {"m7b5": "dim"}.get(c.quality, c.quality))
            if rng.random() < 0.15:
                ch = Chord(int(rng.integers(12)), ("maj", "min")[int(rng.integers(2))])
            chords += [ch] + [ch] * (song.numerator - 1)
        down = np.arange(len(chords)) % song.numerator == 0
        hist = np.zeros(12)
        for part in song.parts:
            if part.role not in ("bass", "drums"):
                for n in part.notes:
                    hist[n.pitch % 12] += n.duration
        xs.append(key_features(chords, down, hist))
        ys.append(song.key_pc + (12 if song.mode == "minor" else 0))
    x = torch.from_numpy(np.stack(xs))
    y = torch.tensor(ys)
    w = torch.zeros(2, x.shape[-1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300)

    def closure():
        opt.zero_grad()
        scores = torch.cat([x[:, :12] @ w[0], x[:, 12:] @ w[1]], 1)
        loss = torch.nn.functional.cross_entropy(scores, y) + 0.01 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = float((torch.cat([x[:, :12] @ w[0], x[:, 12:] @ w[1]], 1).argmax(1) == y).float().mean())
    out = Path(out or KEY_WEIGHTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": w.detach().numpy().astype(np.float32)}, str(out.with_suffix(".safetensors")))
    meta = {"kind": KEY_KIND, "format_version": 1, "config": {"features": int(x.shape[-1])},
            "training": {"songs": songs, "seed": seed, "train_accuracy": round(acc, 4), "chord_noise": 0.15}}
    import json

    write_bytes_atomic(out.with_suffix(".json"), json.dumps(meta, indent=2).encode(), overwrite=True)
    _KEY_MODEL.clear()
    return out.with_suffix(".safetensors")


def _templates() -> tuple[list[Chord], np.ndarray]:
    chords, rows = [], []
    for q, ivs in QUALITIES.items():
        if len(ivs) > 3:  # sevenths are decided afterwards (`_add_sevenths`): as templates they steal triads
            continue
        for r in range(12):
            v = np.zeros(12)
            for j, iv in enumerate(ivs):
                v[(r + iv) % 12] = 1.2 if j == 0 else 1.0 if j < 3 else 0.7  # root, 3rd/5th, a lighter 7th
            chords.append(Chord(r, q))
            rows.append(v / np.linalg.norm(v))
    return chords, np.array(rows)


def chords_from_chroma(chroma: np.ndarray, bar_pos: np.ndarray, numerator: int, key: tuple[int, str],
                       energy: np.ndarray | None = None, upper: np.ndarray | None = None) -> list[Chord]:
    """Beat chroma [12, T] + each beat's position in its bar → one chord per beat (template match + Viterbi).

    `upper` is the beat chroma above the bass (`_frame_chroma`): blended in (`UPPER_SHARE`), each beat's peak 1, for
    the templates and the sevenths."""
    import librosa

    chords, tpl = _templates()
    n_c = len(chords) + 1  # + N
    if upper is not None:
        peak = lambda c: c / (c.max(0, keepdims=True) + 1e-9)  # noqa: E731
        chroma = (1 - UPPER_SHARE) * peak(chroma) + UPPER_SHARE * peak(upper[:, :chroma.shape[1]])
    norm = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    sim = tpl @ norm  # [C, T]
    scale = (0, 2, 4, 5, 7, 9, 11) if key[1] == "major" else (0, 2, 3, 5, 7, 8, 10)
    key_pcs = {(key[0] + i) % 12 for i in scale}
    prior = np.array([1.0 if c.pcs <= key_pcs else 0.9 for c in chords])
    # sevenths and sus only where they clearly fit better than the triad (they contain it)
    prior *= np.array([1.0 if c.quality in ("maj", "min") else SUS_PRIOR if c.quality == "sus4" else 0.85
                       for c in chords])
    like = np.exp(20.0 * sim) * prior[:, None]
    # a beat 26 dB under the song's typical level is a rest or a release tail: no chord
    silent = np.zeros(chroma.shape[1], bool) if energy is None else (energy < 0.05 * max(np.median(energy), 1e-12))
    n_like = np.where(silent, like.max(0) * 4, like.max(0) * 0.002)
    like = np.vstack([like, n_like[None]])
    like /= like.sum(0, keepdims=True)
    m = numerator
    # states (chord, position in bar); the position advances by one each beat
    # probability of *leaving* the chord on arriving at each bar position: near-uniform on the bar line (the next
    # chord is free), rare mid-bar, rarer on the other beats
    p_change = np.full(m, 0.03)
    p_change[0] = 0.8
    if m % 2 == 0:
        p_change[m // 2] = 0.25
    trans = np.zeros((n_c * m, n_c * m))
    for pos in range(m):
        nxt = (pos + 1) % m
        for c in range(n_c):
            row = c * m + pos
            trans[row, np.arange(n_c) * m + nxt] = p_change[nxt] / (n_c - 1)
            trans[row, c * m + nxt] = 1 - p_change[nxt]
    # Where the changes fall is decided here too: the bar positions as heard first, each other phase only where it
    # explains the chroma clearly better (CHANGE_PHASE_MARGIN). A bar one heard a beat early (a tumbao bass that
    # anticipates the next chord on beat four) otherwise pulls every change a beat early; the reported downbeats
    # stay as heard.
    best = None
    for shift in range(m):
        pos = (np.asarray(bar_pos, int) + shift) % m
        prob = np.zeros((n_c * m, like.shape[1]))
        for t in range(like.shape[1]):
            prob[np.arange(n_c) * m + pos[t], t] = like[:, t]
        p_init = np.zeros(n_c * m)
        p_init[np.arange(n_c) * m + pos[0]] = 1.0 / n_c
        states, logp = librosa.sequence.viterbi(prob, trans, p_init=p_init, return_logp=True)
        logp = float(np.ravel(logp)[0])
        if best is None or logp > best[0] + CHANGE_PHASE_MARGIN:
            best = (logp, states)
    states = best[1]
    return _add_sevenths([chords[s // m] if s // m < len(chords) else NO_CHORD for s in states], chroma,
                         SEVENTH_RATIO_UPPER if upper is not None else 0.8)


def hold_through(chords: list[Chord], energy: np.ndarray, silence: float = 0.01) -> list[Chord]:
    """A "no chord" heard between chords (a held cadence fading, a passing unison, a rest of the melody) continues
    the chord before it (the first chord, before that); only beats near silence (40 dB under the song's typical
    level) stay N. A player keeps the harmony through what a template cannot name; the user asks for a rest
    with N in --chords."""
    quiet = energy < silence * max(float(np.median(energy)), 1e-12)
    out = list(chords)
    last: Chord | None = next((c for c in out if c.root >= 0), None)  # before it the music is in its first chord
    for i, ch in enumerate(out):
        if ch.root >= 0:
            last = ch
        elif last is not None and not quiet[i]:
            out[i] = last
    return out


def _add_sevenths(chords: list[Chord], chroma: np.ndarray, ratio: float = 0.8) -> list[Chord]:
    """A major or minor triad becomes a 7th chord where, over its whole run of beats, the seventh sounds about as
    much as the triad's own tones (b7 over major → 7, major 7th → maj7, b7 over minor → min7)."""
    out = list(chords)
    i = 0
    while i < len(out):
        j = i
        while j + 1 < len(out) and out[j + 1] == out[i]:
            j += 1
        ch = out[i]
        if ch.root >= 0 and ch.quality in ("maj", "min"):
            mean = chroma[:, i:j + 1].mean(1)
            triad = np.mean([mean[p] for p in ch.pcs])
            b7, maj7 = mean[(ch.root + 10) % 12], mean[(ch.root + 11) % 12]
            new = ch
            if ch.quality == "maj" and max(b7, maj7) >= ratio * triad:
                new = Chord(ch.root, "7" if b7 >= maj7 else "maj7")
            elif ch.quality == "min" and b7 >= ratio * triad:
                new = Chord(ch.root, "min7")
            out[i:j + 1] = [new] * (j + 1 - i)
        i = j + 1
    return out


#: weight of the low band (kick, bass) against harmonic change when placing bar one (`_meter_and_phase`): set on
#: the drum songs and the four-part set (bar-line F; 0.5 → 1.5: four-part 0.59 → 0.65, drum songs kept, 2.0 lost
#: drum songs). The tempo choice's `contrast` keeps 0.5 (`TEMPO_CONTRAST_LOW`): it asks whether the chords change
#: on the bar lines, which is the harmonic-rhythm cue.
BAR_ONE_LOW = 1.5
TEMPO_CONTRAST_LOW = 0.5


def _meter_and_phase(novelty: np.ndarray, low: np.ndarray, meters: list[tuple[int, int]],
                     low_weight: float | None = None) -> tuple[tuple[int, int], int, float]:
    """(meter, phase of beat one, contrast): the most harmonic change + kick strength on the downbeat (z-scored)."""
    def z(x: np.ndarray) -> np.ndarray:  # a beat whose value is not known (NaN) counts as average
        return np.nan_to_num((x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)) if np.isfinite(x).any() else 0.0 * x

    cue = z(novelty) + (BAR_ONE_LOW if low_weight is None else low_weight) * z(low)
    best = (-np.inf, meters[0], 0)
    for meter in meters:
        m = meter[0] if meter[1] == 4 else meter[0] // 3 if meter[0] % 3 == 0 else meter[0]
        for p in range(m):
            on = cue[p::m]
            off = np.delete(cue, np.arange(p, len(cue), m))
            if len(on) < 2 or len(off) < 2:
                continue
            # 4/4 unless three beats to the bar is clearly heard (a groove without chord changes says nothing)
            score = on.mean() - off.mean() - (0.25 if m == 3 else 0.0)
            if score > best[0]:
                best = (score, meter, p)
    return best[1], best[2], float(best[0])


def _tempo_guesses(env: np.ndarray, n_peaks: int = 4) -> list[float]:
    """Tempi worth fitting a grid to: librosa's estimate and the strongest peaks of the onset autocorrelation
    (soft attacks — strings, a choir — leave librosa's single estimate off the beat often), each with its double
    and half and librosa's with 2/3 and 3/2; 50-220 BPM, no two within 3 %."""
    import librosa

    fps = SR / HOP
    t0 = float(librosa.feature.tempo(onset_envelope=env, sr=SR, hop_length=HOP)[0])
    out = [t0 * f for f in (1.0, 0.5, 2.0, 2.0 / 3.0, 1.5)]
    ac = librosa.autocorrelate(env - env.mean(), max_size=min(len(env), int(fps * 60.0 / 48.0)))
    lags = np.arange(2, len(ac) - 1)
    lags = lags[(ac[lags] >= ac[lags - 1]) & (ac[lags] >= ac[lags + 1])]
    lags = lags[(60.0 * fps / lags >= 50.0) & (60.0 * fps / lags <= 220.0)]
    for lag in sorted(lags, key=lambda x: -ac[x])[:n_peaks]:
        b = 60.0 * fps / lag
        out += [b, b * 2.0, b / 2.0]
    keep: list[float] = []
    for b in out:
        if 50.0 <= b <= 220.0 and all(abs(b / k - 1.0) > 0.03 for k in keep):
            keep.append(b)
    return keep


#: metrical relatives of a fitted grid also fitted (`tempo_candidates`): a beat heard in threes or fours where the
#: music moves in twos or threes (2/3, 3/2, 4/3, 3/4 of the tempo) is the common miss without drums
RELATIVES = (2.0, 0.5, 1.5, 2.0 / 3.0, 4.0 / 3.0, 0.75)


def tempo_candidates(env: np.ndarray) -> list[tuple[float, float, float]]:
    """(score, period, phase) of rigid grids worth weighing: each guess (`_tempo_guesses`) fitted within ±4 %, then
    each fitted grid's metrical relatives (`RELATIVES`) fitted narrowly (±1.5 %) around the exact ratio of its
    period — so a 3/4 piece whose autocorrelation peaks at its bar or at two beats still gets its beat tried."""
    fps = SR / HOP
    cands = [fit_grid(env, fps * 60.0 / b) for b in _tempo_guesses(env)]
    cands = [(sc, p, ph) for p, ph, sc in cands]
    tried = [p for _, p, _ in cands]
    for _, p0, _ in sorted(cands, reverse=True)[:4]:
        for r in RELATIVES:
            p = p0 / r
            if 50.0 <= 60.0 * fps / p <= 220.0 and all(abs(p / q - 1.0) > 0.015 for q in tried):
                tried.append(p)
                p, ph, sc = fit_grid(env, p, span=0.015, steps=25)
                cands.append((sc, p, ph))
    return cands


#: weights of the tempo choice (`tempo_value`): a conditional logit over each clip's candidates, fitted by
#: `benchmarks/tempo_fit.py` on music21 four-part pieces outside the nodrums_eval set (never Bach) and rendered
#: corpus songs with drums; never on realdev.
TEMPO_WEIGHTS = {"fit": 1.46, "contrast": 0.24, "lp": 2.37, "thin": -1.1, "n8": 1.56, "n16": 1.2, "k16": 0.81,
                 "pfit": 1.9, "p8": 1.08, "p16": 1.06}


def tempo_value(f: dict, w: dict | None = None) -> float:
    """How good a tempo candidate is (see `tempo_features`): a weighted sum of its features."""
    w = w or TEMPO_WEIGHTS
    return float(sum(wk * f[k] for k, wk in w.items()))


def _on_grid(times: np.ndarray, first: float, step: float) -> float:
    """Share of `times` within a tolerance of a grid of `step` seconds, over what chance gives (0 = as random,
    1 = all on it; 0 under eight events). The raw share is not comparable across tempi: a finer grid catches
    more of anything (at 180 BPM a ±35 ms window covers 83 % of every 16th)."""
    if len(times) < 8:
        return 0.0
    tol = min(0.035, 0.25 * step)
    off = np.abs((times - first + step / 2) % step - step / 2)
    chance = 2.0 * tol / step
    return float((np.mean(off < tol) - chance) / (1.0 - chance))


def tempo_features(cands: list[tuple[float, float, float]], env: np.ndarray, low: np.ndarray, duration: float,
                   meters: list[tuple[int, int]], grid_of, pitch_env: np.ndarray | None = None) -> list[dict]:
    """Per fitted grid (score, period, phase in frames): what `tempo_value` weighs, and the grid itself.

    fit: the grid's comb score against the best grid's; thin: under 60 % of it (every other beat on nothing: too
    fast); contrast: harmonic change and low-band strength on its bar lines (`_meter_and_phase`; at half the tempo
    chords change mid-bar too, at double every other bar); prior: librosa's log-normal around 120 BPM (lp: its log);
    n8/n16/n12: note onsets (the melody's too) on its eighths / sixteenths / eighth triplets, k16: low-band hits on
    its sixteenths, chance-corrected (`_on_grid`): at 2/3 or 3/2 of the tempo a third of them fall between;
    sal: the onset strength on its beats over that on its off-beat eighths (log); triple: three beats to its bar."""
    import librosa.util

    fps = SR / HOP
    top = max(c[0] for c in cands)
    hits = librosa.util.peak_pick(low, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                                  delta=0.3 * float(low.max()), wait=8) / fps  # the loudest low-band hits
    notes = librosa.util.peak_pick(env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                                   delta=0.2 * float(np.percentile(env, 99)), wait=4) / fps  # note onsets, melody too
    pitch_env = np.zeros_like(env) if pitch_env is None else pitch_env
    pitches = librosa.util.peak_pick(pitch_env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                                     delta=0.2 * float(np.percentile(pitch_env, 99)), wait=4) / fps  # new pitches
    pcomb = [float(_comb(pitch_env, p, np.arange(0, p, 1.0)).max()) for _, p, _ in cands]
    ptop = max(max(pcomb), 1e-12)
    out = []
    for (sc, period, ph), psc in zip(cands, pcomb):
        if sc < 0.5 * top:
            continue
        bs = period / fps
        first = (ph / fps) % bs
        bts = np.arange(first, duration - 0.05, bs)
        if len(bts) < MIN_BEATS:
            continue
        chroma_c, low_c = grid_of(bts)
        m, p, contrast = _meter_and_phase(_novelty(chroma_c), low_c, meters, TEMPO_CONTRAST_LOW)
        sixteenth = bs / 4
        off = np.abs((hits - first + sixteenth / 2) % sixteenth - sixteenth / 2)
        on_grid = float(np.mean(off < 0.035)) if len(hits) >= 8 else 1.0
        off_n = np.abs((notes - first + sixteenth / 2) % sixteenth - sixteenth / 2)
        note_grid = float(np.mean(off_n < 0.035)) if len(notes) >= 8 else 1.0
        half = _comb(env, period, np.array([ph + period / 2]))[0]
        out.append({"bpm": 60.0 / bs, "fit": sc / top, "contrast": contrast, "prior": _tempo_prior(60.0 / bs),
                    "lp": -float(np.log2(60.0 / bs / 120.0) ** 2), "thin": float(sc < 0.6 * top),
                    "off_grid": float(on_grid < 0.7), "note_grid": note_grid,
                    "n8": _on_grid(notes, first, bs / 2), "n16": _on_grid(notes, first, bs / 4),
                    "n12": _on_grid(notes, first, bs / 3), "k16": _on_grid(hits, first, bs / 4),
                    "sal": float(np.log((sc + 1e-9) / (half + 1e-9))), "triple": float(m[0] == 3),
                    "pfit": psc / ptop, "p8": _on_grid(pitches, first, bs / 2), "p16": _on_grid(pitches, first, bs / 4),
                    "beats": bts, "beat_s": bs, "chroma": chroma_c, "low": low_c, "meter": m, "phase": p})
    return out


def _cues(y: np.ndarray):
    """Everything listening reads from the samples: the onset envelopes (`_onsets`), the CQT chroma, the band's
    low voice, the pitch-change envelope (aligned with the onset envelope) and the upper chroma (`_frame_chroma`)."""
    env, low, kick_env = _onsets(y)
    frame_chroma, band_low, pitch_env, upper_chroma = _frame_chroma(y)
    pitch_env = np.pad(pitch_env, (0, max(0, len(env) - len(pitch_env))))[:len(env)]
    return env, low, kick_env, frame_chroma, band_low, pitch_env, upper_chroma


def _grid_cues(frame_chroma: np.ndarray, low: np.ndarray, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per beat of a grid: its chroma, and the low-band onset strength at it (bar one's cues)."""
    fr = np.clip(np.rint(beats * SR / HOP).astype(int), 0, len(low) - 1)
    return _beat_chroma(frame_chroma, beats), np.array([low[max(0, f - 2):f + 3].max() for f in fr])


def tempo_table(mix: Audio, meters: tuple[tuple[int, int], ...] = ((4, 4), (3, 4))) -> list[dict]:
    """Every tempo candidate `listen` weighs for this mix, with its features (`tempo_features`): what
    benchmarks/tempo_fit.py fits `TEMPO_WEIGHTS` on."""
    y = np.nan_to_num(mix.with_channels(1).resampled(SR).samples[0].astype(np.float32))
    env, low, _, frame_chroma, _, pitch_env, _ = _cues(y)
    return tempo_features(tempo_candidates(env), env, low, len(y) / SR, list(meters),
                          lambda beats: _grid_cues(frame_chroma, low, beats), pitch_env)


def listen_audio(mix: Audio, *, bpm: float | None = None, meter: tuple[int, int] | None = None,
                 key: tuple[int, str] | None = None, chart: list[list[Chord]] | None = None,
                 beats_hint: np.ndarray | None = None, downbeat_hint: float | None = None,
                 sources: dict[str, str] | None = None) -> Listening:
    """Listen to audio; anything given (bpm, meter, key, chart, beats from MIDI/DAW) is used instead of guessed."""
    import librosa

    sources = dict(sources or {})
    y = mix.with_channels(1).resampled(SR).samples[0].astype(np.float32)
    y = np.nan_to_num(y)
    duration = len(y) / SR
    if duration < 2.0:
        raise ConfigError(f"the mix is {duration:.1f} s long; listening needs at least two bars",
                          fix="give a longer mix, or the tempo and chords (--bpm, --chords)")
    env, low, kick_env, frame_chroma, band_low, pitch_env, upper_chroma = _cues(y)
    fps = SR / HOP
    fr_of = lambda t: np.clip(np.rint(t * fps).astype(int), 0, len(low) - 1)  # noqa: E731
    want_compound = meter == (6, 8) and beats_hint is None
    # a 6/8 the user names is felt in quarters (three to the bar) or in dotted quarters (two): try both
    meters = [(3, 4), (6, 8)] if want_compound else [meter] if meter else [(4, 4), (3, 4)]
    if meter is not None:
        sources.setdefault("meter", "user")

    rms = librosa.feature.rms(y=y, hop_length=512)[0][None]  # chroma is normalised per frame: level from here

    def grid_of(beats: np.ndarray):
        return _grid_cues(frame_chroma, low, beats)

    if beats_hint is not None:
        beats = np.asarray(beats_hint, float)
        beat_s = float(np.median(np.diff(beats))) if len(beats) > 1 else 0.5
        chroma, lowb = grid_of(beats)
        if downbeat_hint is not None:
            meter = meter or (4, 4)
            phase = int(np.argmin(np.abs(beats - downbeat_hint))) % meter[0]
        else:
            meter, phase, _ = _meter_and_phase(_novelty(chroma), lowb, meters)
    else:
        if bpm is not None:
            beat_q = 4.0 / (meter[1] if meter else 4)
            period = fps * 60.0 / bpm * beat_q
            _, ph, sc = fit_grid(env, period, span=0.0)
            cands = [(sc, period, ph)]
        else:
            cands = tempo_candidates(env)
            sources["tempo"] = "audio"
        best = None
        for f in tempo_features(cands, env, low, duration, meters, grid_of, pitch_env):
            value = tempo_value(f)
            if best is None or value > best[0]:
                best = (value, f["beats"], f["beat_s"], f["chroma"], f["low"], f["meter"], f["phase"])
        if best is None:
            raise ConfigError("no steady beat was heard in the mix", fix="give the tempo with --bpm")
        _, beats, beat_s, chroma, lowb, meter, phase = best
        meter, phase, _ = _meter_and_phase(_novelty(chroma), lowb, meters)  # bar one: harmony and the low band
        sources["bar_one"] = "audio"
        sources.setdefault("meter", "audio")
    energy = _beat_chroma(rms, beats)[0]
    if key is None:
        key = key_from_chroma((chroma * energy[None]).sum(1))
        sources["key"] = "audio"
    if meter == (3, 4) and beats_hint is None and sources.get("meter") != "user" or want_compound:
        # 3/4 or 6/8? Both have six eighths in a bar; 6/8 accents the fourth (two groups of three), 3/4 the third
        # and fifth (three groups of two). Compare the onset strength there, bar by bar.
        per = 3 if meter == (6, 8) else 2  # eighths per heard beat (dotted quarter or quarter)
        peak = np.maximum(env, np.maximum(np.roll(env, 1), np.roll(env, -1)))
        first = beats[phase] if phase < len(beats) else beats[0]
        eighth = beat_s / per
        eighths = first + np.arange(int((duration - first) / eighth)) * eighth
        prof = np.array([peak[fr_of(eighths[p::6])].mean() if len(eighths[p::6]) else 0.0 for p in range(6)])
        if want_compound or prof[3] > max(prof[2], prof[4]):
            meter = (6, 8)
            start = first - np.floor(first / eighth) * eighth
            beats = np.arange(start, duration - 0.05, eighth)
            phase = int(round((first - start) / eighth)) % 6
            chroma = np.repeat(chroma, per, axis=1)
            energy = np.repeat(energy, per)
            if chroma.shape[1] < len(beats):
                pad = len(beats) - chroma.shape[1]
                chroma = np.pad(chroma, ((0, 0), (pad, 0)), mode="edge")
                energy = np.pad(energy, (pad, 0), mode="edge")
            chroma, energy = chroma[:, :len(beats)], energy[:len(beats)]
            beat_s = eighth
    num = meter[0]
    bar_pos = (np.arange(len(beats)) - phase) % num
    downbeats = beats[bar_pos == 0]
    quarter_s = beat_s * meter[1] / 4.0
    tempo = bpm if bpm is not None else 60.0 / quarter_s
    if chart is not None:
        chords = _chart_on_beats(chart, len(beats), int(np.argmax(bar_pos == 0)), num)
        sources["chords"] = "user"
    else:
        upper = _beat_chroma(upper_chroma, beats)
        chords = hold_through(chords_from_chroma(chroma, bar_pos, num, key, energy, upper), energy)
        sources.setdefault("chords", "audio")
    if sources.get("key") == "audio":
        key = key_from_chords(chords, bar_pos == 0, (chroma * energy[None]).sum(1), key)
    if beats_hint is None:
        beats, downbeats = (np.maximum(b - ENVELOPE_LAG_S, 0.0) for b in (beats, downbeats))
    return Listening(float(tempo), num, meter[1], beats, downbeats, key[0], key[1], chords, duration, sources,
                     kicks=_kicks(kick_env), band_low=band_low)


def _chart_on_beats(chart: list[list[Chord]], n_beats: int, first_downbeat: int, num: int) -> list[Chord]:
    """A per-bar chart laid on the beats from bar one (beats before it take the last bar's chord; the chart repeats
    when the mix is longer)."""
    flat = [c for row in chart for c in row]
    out = []
    for i in range(n_beats):
        j = i - first_downbeat
        out.append(flat[j % len(flat)])
    return out


# --- MIDI ---------------------------------------------------------------------------------------------------------

def chords_from_notes(notes: list[tuple[float, float, int]], beats: np.ndarray, bar_pos: np.ndarray, numerator: int,
                      key: tuple[int, str], duration: float) -> list[Chord]:
    """Chords per beat from (start, end, pitch) notes: the pitch-class durations per beat, as a chroma."""
    chroma = np.zeros((12, len(beats)))
    edges = np.r_[beats, duration]
    for s, e, p in notes:
        i0 = max(0, int(np.searchsorted(edges, s, side="right")) - 1)
        i1 = min(len(beats) - 1, int(np.searchsorted(edges, e, side="left")) - 1)
        for i in range(i0, i1 + 1):
            ov = min(e, edges[i + 1]) - max(s, edges[i])
            if ov > 0:
                chroma[p % 12, i] += ov * (1.5 if p < 52 else 1.0)
    return chords_from_chroma(chroma, bar_pos, numerator, key, chroma.sum(0))


def listen_midi(path: str | Path, duration: float | None = None, *, exclude_bass: bool = True) -> Listening:
    """The band's MIDI: tempo, meter, beats and bar one exactly from the file, key and chords from its notes."""
    import pretty_midi

    path = Path(path)
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # noqa: BLE001 - pretty_midi raises many kinds for a bad file
        raise ConfigError(f"cannot read the band MIDI ({err})", path=path, fix="give a standard MIDI file") from err
    tempos = pm.get_tempo_changes()[1]
    if len(set(np.round(tempos, 3))) > 1:
        raise ConfigError("the band MIDI changes tempo; following a tempo map is not supported yet", path=path,
                          fix="give a constant-tempo section (or --bpm)")
    bpm = float(tempos[0]) if len(tempos) else 120.0
    ts = pm.time_signature_changes
    num, den = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
    end = duration if duration is not None else pm.get_end_time()
    beat_s = 60.0 / bpm * 4.0 / den
    beats = np.arange(0.0, end - 1e-6, beat_s)
    bar_pos = np.arange(len(beats)) % num
    insts = [i for i in pm.instruments if not i.is_drum]
    if exclude_bass and len(insts) > 1:
        bass = [i for i in insts if 32 <= i.program <= 39 or "bass" in i.name.lower()]
        insts = [i for i in insts if i not in bass] or insts
    notes = [(n.start, n.end, n.pitch) for i in insts for n in i.notes]
    if not notes:
        raise ConfigError("the band MIDI has no pitched notes to take chords from", path=path,
                          fix="give the band's MIDI with its chord instruments")
    hist = np.zeros(12)
    for s, e, p in notes:
        hist[p % 12] += e - s
    key = key_from_chroma(hist)
    chords = chords_from_notes(notes, beats, bar_pos, num, key, end)
    key = key_from_chords(chords, bar_pos == 0, hist, key)
    src = {k: "midi" for k in ("tempo", "meter", "bar_one", "key", "chords")}
    return Listening(bpm, num, den, beats, beats[bar_pos == 0], key[0], key[1], chords, end, src)


def kick_onsets(mix: Audio) -> np.ndarray:
    """Times of kick-drum hits in a mix (what `listen` stores as `Listening.kicks`)."""
    y = np.nan_to_num(mix.with_channels(1).resampled(SR).samples[0].astype(np.float32))
    return _kicks(_onsets(y)[2])


# --- the one entry point -------------------------------------------------------------------------------------------

def listen(mix: Audio | None, *, transport: Timeline | None = None, region_start: int = 0, bpm: float | None = None,
           meter: str | tuple[int, int] | None = None, key: str | None = None, chords: str | None = None,
           band_midi: str | Path | None = None) -> Listening:
    """Listen to a mix with everything else that is known (see the module docstring for the priority order).

    `transport` is the DAW's timeline; `region_start` (DAW samples) is where the mix sits on it."""
    meter_t = parse_meter(meter) if isinstance(meter, str) else meter
    if bpm is not None:
        bpm = check_bpm(bpm)
    key_t = parse_key(key) if key else None
    chart = parse_chart(chords, meter_t[0] if meter_t else (transport.numerator if transport else 4)) if chords else None
    sources: dict[str, str] = {}
    if key_t:
        sources["key"] = "user"
    midi_l = listen_midi(band_midi, mix.seconds if mix is not None else None) if band_midi else None
    if transport is not None:
        meter_t = (transport.numerator, transport.denominator)
        bpm = transport.bpm
        sr = transport.sample_rate
        # a region cut on a bar line is *on* it, not half a sample past it (read back, a ceil skipped a whole bar)
        region_start = transport.snap_to_grid(region_start)
        duration = mix.seconds if mix is not None else (midi_l.duration if midi_l else 0.0)
        t0 = region_start / sr  # the region's first sample, in the timeline's seconds
        q0, q1 = transport.samples_to_quarters(region_start), transport.seconds_to_quarters(t0 + duration)
        qb = transport.quarters_per_beat
        beats = np.array([transport.quarters_to_seconds(q) - t0
                          for q in np.arange(np.ceil(q0 / qb - 1e-9) * qb, q1 - 1e-9, qb)])
        beats = beats[beats < duration - 1e-3]  # a beat on the region's last sample starts the next bar
        bar_q = transport.quarters_per_bar
        first_bar_q = np.ceil(q0 / bar_q - 1e-9) * bar_q
        downbeat = transport.quarters_to_seconds(first_bar_q) - t0
        sources |= {"tempo": "daw", "meter": "daw", "bar_one": "daw"}
        beats_hint, down_hint = beats, downbeat
    elif midi_l is not None and bpm is None:
        bpm, meter_t = midi_l.bpm, (midi_l.numerator, midi_l.denominator)
        beats_hint, down_hint = midi_l.beats, midi_l.bar_one
        sources |= {"tempo": "midi", "meter": "midi", "bar_one": "midi"}
    else:
        beats_hint, down_hint = None, None
        if bpm is not None:
            sources["tempo"] = "user"
        if meter_t is not None:
            sources["meter"] = "user"
    if midi_l is not None:
        if key_t is None:
            key_t = (midi_l.key_pc, midi_l.mode)
            sources["key"] = "midi"
    if mix is None:
        if midi_l is None:
            raise ConfigError("nothing to listen to", fix="give a mix, or --band-midi")
        lst = midi_l
        if key_t:
            lst.key_pc, lst.mode = key_t
        if chart is not None:
            lst.chords = _chart_on_beats(chart, len(lst.beats), 0, lst.numerator)
            sources["chords"] = "user"
        lst.sources = {**lst.sources, **sources}
        return lst
    lst = listen_audio(mix, bpm=bpm, meter=meter_t, key=key_t, chart=chart, beats_hint=beats_hint,
                       downbeat_hint=down_hint, sources=sources)
    if midi_l is not None and chart is None:  # the MIDI's chords are exact: lay them on the beats
        lst.chords = [midi_l.chord_at(t + 1e-3) for t in lst.beats]
        lst.sources["chords"] = "midi"
    return lst
