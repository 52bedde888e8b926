"""The listening models' public Python API (what the host, the CLI and the benchmarks call).

    from backline.engines.analysis.api import analyze, fit_score, embed, match_matrix

* `analyze(audio) -> AnalysisReport`: instruments present (fine GM families and coarse tone classes, with
  probabilities), the parts that are missing (bass / drums / accompaniment) and which engine to run.
* `fit_score(mix, stem) -> float` in [0, 1]: how well a stem fits a mix (the (mix, stem) matching model;
  calibrated so 0.5 is the boundary between "its own stem" and "a stem from another song").
* `embed(audio) -> Tensor[256]`: the SimCLR embedding (3 s snippets at 0.5 Hz, averaged; paper 002a's
  evaluation protocol) for FAD and style distances; `embed(audio, per_snippet=True)` -> [K, 256].
* `match_matrix(mixes, stems) -> Tensor[M, S]`: paper 000's soft-assignment matrix (row m: softmax over the
  stems of similarity / τ between mix m and each stem); `match_cosines` gives the raw similarities (mean
  per-frame cosine of the frame-aligned matcher, matching.py, over each pair's common length, from the start).

Inputs are `Audio` (any sample rate, mono or stereo; resampled once to 16 kHz with the project's resampler)
or a path. Models load lazily from `weights/` and are cached per (config, device); `config='debug'` builds
tiny randomly initialised models (seeded) for tests of the plumbing.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backline.engines.analysis.features import (
    FEATURE_SR,
    SimCLRLogMel,
    loudness,
    musicoder_features,
    to_feature_rate,
)
from backline.engines.analysis.inference import PresenceRunner, TaggerRunner, presence_shapes, tagger_shapes
from backline.engines.analysis.presence import PARTS as P_PARTS
from backline.engines.analysis.presence import presence_features, with_tags
from backline.engines.analysis.tags import COARSE_TAGS, FINE_TAGS, attention_png
from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.errors import AudioFormatError, ConfigError
from backline.engines.core.protocol import check_cancel
from backline.engines.core.weights import load_arrays

if TYPE_CHECKING:  # pragma: no cover
    import torch

WEIGHTS_DIR = Path(__file__).parent / "weights"
MIN_SECONDS = 1.0  # shorter clips carry too little to tag (a 5 s window is what the tagger was trained on)
WINDOW_S = 5.0
WINDOW_BATCH = 8  # windows per forward pass (cancel/progress granularity)
SILENCE_DB = -60.0  # a clip (or window) whose RMS is below this is "silent"
SNIPPET_S, SNIPPET_HOP_S = 3.0, 2.0  # SimCLR snippets and their 0.5 Hz sampling

#: fine tags that make up each part Backline can generate, and the engine that generates it.
PARTS: dict[str, tuple[tuple[str, ...], str]] = {
    "bass": (("Bass",), "bass"),
    "drums": (("Drums", "Percussive"), "drums"),
    "accompaniment": (("Piano", "Organ", "Guitar", "Strings", "Ensemble", "Synth Pad", "Chromatic Percussion"), "accompany"),
}


@dataclass
class AnalysisReport:
    """What `analyze` found. Probabilities are per tag; `present_*` apply the tuned per-tag thresholds."""

    seconds: float
    sample_rate: int
    silent: bool
    fine: dict[str, float] = field(default_factory=dict)
    coarse: dict[str, float] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # bass/drums/accompaniment plays; < 0.5 = missing
    #: the same as log-odds over the part's threshold (0 = the decision), unrounded where `parts` reads 0 % or
    #: 100 %: how far from the decision (the listener's drum-kit context, `drums_playing`)
    margins: dict[str, float] = field(default_factory=dict)
    present_fine: list[str] = field(default_factory=list)
    present_coarse: list[str] = field(default_factory=list)
    missing_parts: list[str] = field(default_factory=list)
    suggestion: str | None = None  # engine name to run next ("bass" | "drums" | "accompany") or None
    message: str = ""
    notes: list[str] = field(default_factory=list)
    windows: int = 0
    head: str = ""
    attention: list[list[float]] | None = None  # [N_fine][N_coarse], rows FINE_TAGS, columns COARSE_TAGS
    analysis_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def attention_png(self) -> bytes:
        """The attention map (which fine tags drive each coarse decision) as PNG bytes for the host."""
        if self.attention is None:
            raise ConfigError("this report has no attention map (silent audio)")
        return attention_png(np.array(self.attention), np.array([self.fine[t] for t in FINE_TAGS]))

    def summary(self) -> str:
        if self.silent or not self.present_fine:
            return self.message
        fine = ", ".join(f"{t} {self.fine[t]:.0%}" for t in self.present_fine)
        return f"instruments: {fine}"


class Analyzer:
    """Holds the tagger, the SimCLR encoder and the matching model for one (config, device).

    The analysis (`analyze`: tagger and presence model, the role check before every take) runs in numpy
    (`inference`); the SimCLR embedding and the matcher are torch models, loaded (with torch) when first used."""

    def __init__(self, config: str = "shipped", device: str = "cpu", weights_dir: Path | None = None) -> None:
        if config not in ("shipped", "debug"):
            raise ConfigError(f"unknown analysis config {config!r}", fix="use 'shipped' or 'debug'")
        self.config, self.device = config, str(device)
        self.weights_dir = Path(weights_dir or WEIGHTS_DIR)
        self.features = musicoder_features
        self.logmel = SimCLRLogMel()
        self._lock = threading.Lock()
        self._tagger = self._simclr = self._matching = self._presence = None
        self.meta: dict[str, dict] = {}
        self._last: tuple[tuple, AnalysisReport] | None = None  # `analyze`'s last report, by the audio's fingerprint

    # --- models (lazy) -------------------------------------------------------------------------------------
    def _load(self, name: str, kind: str, build: Callable[[dict], torch.nn.Module]) -> torch.nn.Module:
        # lazy: torch, for the SimCLR and matching models
        from backline.engines.core.weights import load_weights

        model, meta = load_weights(self.weights_dir / name, kind=kind, build=build, map_location=self.device)
        self.meta[name] = meta
        return model.to(self.device).eval()

    def _arrays(self, name: str, kind: str, shapes: Callable[[dict], dict]) -> tuple[dict[str, np.ndarray], dict]:
        arrays, meta = load_arrays(self.weights_dir / name, kind=kind, shapes=shapes)
        self.meta[name] = meta
        return arrays, meta["config"]

    @property
    def tagger(self) -> TaggerRunner:
        with self._lock:
            if self._tagger is None:
                if self.config == "debug":
                    self._tagger = _debug_tagger()
                else:
                    self._tagger = TaggerRunner(*self._arrays("tagger", "tagger", tagger_shapes))
            return self._tagger

    @property
    def simclr(self):
        with self._lock:
            if self._simclr is None:
                import torch  # lazy: the SimCLR encoder is a torch model (embeddings, not the role check)

                from backline.engines.analysis.simclr import SimCLRConfig, SimCLRModel
                from backline.engines.analysis.simclr import get_config as simclr_config

                if self.config == "debug":
                    torch.manual_seed(1)
                    self._simclr = SimCLRModel(simclr_config("debug")).to(self.device).eval()
                else:
                    self._simclr = self._load("simclr", "simclr-encoder", lambda c: SimCLRModel(SimCLRConfig.from_dict(c)))
            return self._simclr

    @property
    def matching(self):
        """The shipped (mix, stem) fit model: the frame-aligned matcher (see matching.py for why)."""
        with self._lock:
            if self._matching is None:
                import torch  # lazy: the matcher is a torch model (fit scores, not the role check)

                from backline.engines.analysis.matching import CONFIGS, AlignedMatcher, build_aligned

                if self.config == "debug":
                    torch.manual_seed(2)
                    self._matching = AlignedMatcher(CONFIGS["debug"]).to(self.device).eval()
                else:
                    self._matching = self._load("matching", "aligned-matching", build_aligned)
            return self._matching

    # --- helpers ---------------------------------------------------------------------------------------------
    def _prepare(self, audio: Audio | str | Path, what: str = "audio") -> tuple[np.ndarray, Audio, list[str]]:
        if isinstance(audio, (str, Path)):
            audio = read_audio(audio)
        if not isinstance(audio, Audio):
            raise AudioFormatError(f"{what} must be an Audio or a file path, got {type(audio).__name__}")
        if audio.frames == 0:
            raise AudioFormatError(f"{what} is empty (0 samples)", fix="select a region that holds audio")
        if audio.seconds < MIN_SECONDS:
            raise AudioFormatError(f"{what} is {audio.seconds:.2f} s long; the analysis needs at least {MIN_SECONDS:g} s",
                                   fix="select a longer region")
        notes = []
        if audio.sample_rate != FEATURE_SR:
            notes.append(f"{what} resampled from {audio.sample_rate} Hz to {FEATURE_SR} Hz")
        if audio.sample_rate < FEATURE_SR:
            notes.append(f"{what} holds nothing above {audio.sample_rate / 2000:g} kHz; bright instruments may be missed")
        if not np.all(np.isfinite(audio.samples)):
            raise AudioFormatError(f"{what} contains NaN or infinite samples", fix="re-export it from your DAW")
        return to_feature_rate(audio), audio, notes

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        import torch  # lazy: the torch models' input

        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    @staticmethod
    def _windows(n: int, size: int) -> list[int]:
        """Window starts covering [0, n): hop = size; the last window is aligned to the end."""
        if n <= size:
            return [0]
        starts = list(range(0, n - size + 1, size))
        if starts[-1] + size < n:
            starts.append(n - size)
        return starts

    # --- analysis -----------------------------------------------------------------------------------------
    def analyze(self, audio: Audio | str | Path, *, sensitivity: float = 0.0,
                progress: Callable[[float, str], None] | None = None, cancel: threading.Event | None = None) -> AnalysisReport:
        """The report for `audio`. The last one is kept by the audio's fingerprint: a follow take asks twice for
        the same mix (the role check before the take, the listener's drum-kit context inside it, `parts_playing`),
        and the second answer costs a hash. Only a call without `progress` or `cancel` is served from it: a caller
        that watches or may cancel the work (the engine contract, the host) always gets the work done."""
        key = (_fingerprint(audio), float(sensitivity)) if isinstance(audio, Audio) else None
        last = self._last
        if key is not None and last is not None and last[0] == key and progress is None and cancel is None:
            return copy.deepcopy(last[1])
        report = self._analyze(audio, sensitivity=sensitivity, progress=progress, cancel=cancel)
        if key is not None:
            self._last = (key, copy.deepcopy(report))
        return report

    def _analyze(self, audio: Audio | str | Path, *, sensitivity: float,
                 progress: Callable[[float, str], None] | None, cancel: threading.Event | None) -> AnalysisReport:
        t0 = time.perf_counter()
        wav, src, notes = self._prepare(audio, "mix")
        report = AnalysisReport(seconds=round(src.seconds, 3), sample_rate=src.sample_rate, silent=False, notes=notes)
        level = loudness(wav)
        size = int(WINDOW_S * FEATURE_SR)
        starts = [s for s in self._windows(len(wav), size) if loudness(wav[s : s + size]).rms_db >= SILENCE_DB]
        if level.rms_db < SILENCE_DB or level.active_fraction == 0.0 or not starts:
            report.silent = True
            report.message = f"no instruments detected: the audio is silent (RMS {level.rms_db:.0f} dBFS)"
            report.missing_parts = list(PARTS)
            report.suggestion = PARTS["bass"][1]
            report.analysis_seconds = time.perf_counter() - t0
            return report
        fine_w, coarse_w, att, hand = self.window_table(wav, starts, progress=progress, cancel=cancel)
        tagger = self.tagger
        report.windows = len(fine_w)
        report.head = tagger.kind
        fine = _aggregate(fine_w)
        coarse = _aggregate(coarse_w)
        report.fine = {t: round(float(p), 4) for t, p in zip(FINE_TAGS, fine)}
        report.coarse = {t: round(float(p), 4) for t, p in zip(COARSE_TAGS, coarse)}
        fth = np.clip(tagger.fine_thresholds - np.float32(sensitivity), 0.02, 0.98)
        cth = np.clip(tagger.coarse_thresholds - np.float32(sensitivity), 0.02, 0.98)
        report.present_fine = [t for t, p, th in zip(FINE_TAGS, fine, fth) if p >= th]
        report.present_coarse = [t for t, p, th in zip(COARSE_TAGS, coarse, cth) if p >= th]
        report.present_fine.sort(key=lambda t: -report.fine[t])
        report.present_coarse.sort(key=lambda t: -report.coarse[t])
        if att:
            report.attention = np.stack(att).mean(0).tolist()
        playing = self.presence(fine_w, coarse_w, hand)
        pth = np.clip(self.presence_model.threshold - np.float32(sensitivity), 0.02, 0.98)
        # shown calibrated to the decision: 50 % is the part's threshold (which sits far from 0.5 for bass)
        report.parts = {p: round(_logistic(_logit(playing[p]) - _logit(float(th))), 4) for p, th in zip(PARTS, pth)}
        report.margins = {p: round(_log_odds(playing[p]) - _log_odds(float(th)), 2) for p, th in zip(PARTS, pth)}
        report.missing_parts = [p for p, th in zip(PARTS, pth) if playing[p] < th]
        # one story: a tag the presence model contradicts is not listed as present (the tagger heard "Bass 45 %"
        # in keys and kick; the part is missing)
        contradicted = {t for p in report.missing_parts for t in PARTS[p][0]}
        report.present_fine = [t for t in report.present_fine if t not in contradicted]
        report.suggestion = PARTS[report.missing_parts[0]][1] if report.missing_parts else None
        report.message = ("no instruments detected" if not report.present_fine
                          else "instruments: " + ", ".join(report.present_fine))
        report.analysis_seconds = time.perf_counter() - t0
        return report

    def window_table(self, wav: np.ndarray, starts: list[int], *, progress: Callable[[float, str], None] | None = None,
                     cancel: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
        """Per 5 s window: tagger fine [W, 17] and coarse [W, 6] probabilities, attention maps, and the presence
        model's hand features [W, F] (presence.py). One pass of the tagger's features over the whole clip."""
        tagger = self.tagger
        wav = np.asarray(wav.detach().cpu() if hasattr(wav, "detach") else wav, dtype=np.float32)
        hop = 320  # feature frames are 20 ms: window w covers frames [start/hop, start/hop + size/hop]
        size = int(WINDOW_S * FEATURE_SR)
        feats = self.features(wav)
        frames = size // hop + 1
        fine_p, coarse_p, att, hand = [], [], [], []
        for i in range(0, len(starts), WINDOW_BATCH):
            check_cancel(cancel)
            batch = starts[i : i + WINDOW_BATCH]
            chunk = [feats[s // hop : s // hop + frames] for s in batch]
            longest = max(len(c) for c in chunk)  # windows of one clip share a length; a short clip's one is padded
            out = tagger(np.stack([np.pad(c, ((0, longest - len(c)), (0, 0))) for c in chunk]))
            fine_p += list(out.fine)
            coarse_p += list(out.coarse)
            if out.attention is not None:
                att += list(out.attention)
            hand += [presence_features(wav[s : s + size]) for s in batch]
            if progress:
                progress(min(1.0, (i + WINDOW_BATCH) / len(starts)), f"{min(len(starts), i + WINDOW_BATCH)}/{len(starts)} windows")
        return np.stack(fine_p), np.stack(coarse_p), att, np.stack(hand)

    @property
    def presence_model(self) -> PresenceRunner:
        """The calibrated per-part presence model (presence.py); the shipped one also under config='debug'
        (it is a few hundred numbers, and the debug tagger's outputs only shift its inputs)."""
        with self._lock:
            if self._presence is None:
                self._presence = PresenceRunner(*self._arrays("presence", "presence", presence_shapes))
            return self._presence

    def presence(self, fine_w: np.ndarray, coarse_w: np.ndarray, hand: np.ndarray) -> dict[str, float]:
        """P(part plays) for the clip: per-window logistic regression, top-quarter mean over windows."""
        x = np.stack([with_tags(h, np.asarray(f), np.asarray(c)) for h, f, c in zip(hand, fine_w, coarse_w)])
        p = _aggregate(self.presence_model(x))
        return {part: float(v) for part, v in zip(P_PARTS, p)}

    # --- embeddings and matching ---------------------------------------------------------------------------
    def _snippets(self, wav: np.ndarray) -> torch.Tensor:
        import torch  # lazy: the SimCLR encoder's input

        mel = self.logmel(self._tensor(wav))  # [96, T]
        size = int(SNIPPET_S * 100)
        t = mel.shape[-1]
        if t < size:
            mel = torch.nn.functional.pad(mel, (0, size - t), value=math.log(1e-6))
            t = size
        starts = list(range(0, t - size + 1, int(SNIPPET_HOP_S * 100)))
        return torch.stack([mel[:, s : s + size] for s in starts])  # [K, 96, 300]

    def embed(self, audio: Audio | str | Path, *, per_snippet: bool = False) -> torch.Tensor:
        import torch  # lazy: the SimCLR encoder

        wav, _, _ = self._prepare(audio)
        with torch.no_grad():
            e = self.simclr.encoder(self._snippets(wav))
        return e if per_snippet else e.mean(0)

    def _frames(self, items: Sequence[Audio | str | Path], what: str) -> list[torch.Tensor]:
        return [self._tensor(self.features(self._prepare(a, what)[0])) for a in items]

    def match_cosines(self, mixes: Sequence[Audio | str | Path], stems: Sequence[Audio | str | Path]) -> torch.Tensor:
        """[M, S] similarity: mean over the common frames of the per-frame cosine (time-aligned from the start)."""
        import torch  # lazy: the matcher

        with torch.no_grad():
            return self._match_cosines(mixes, stems)

    def _match_cosines(self, mixes: Sequence[Audio | str | Path], stems: Sequence[Audio | str | Path]) -> torch.Tensor:
        import torch  # lazy: the matcher

        m = self.matching
        u = [m.mix(m.cmvn(f)[None])[0] for f in self._frames(mixes, "mix")]
        v = [m.stem(m.cmvn(f)[None])[0] for f in self._frames(stems, "stem")]
        out = torch.zeros(len(u), len(v))
        for i, a in enumerate(u):
            for j, b in enumerate(v):
                t = min(len(a), len(b))
                out[i, j] = (a[:t] * b[:t]).sum(-1).mean()
        return out

    def match_matrix(self, mixes: Sequence[Audio | str | Path], stems: Sequence[Audio | str | Path]) -> torch.Tensor:
        import torch  # lazy: the matcher

        from backline.engines.analysis.matching import TAU

        return torch.softmax(self.match_cosines(mixes, stems) / TAU, dim=-1)

    def fit_score(self, mix: Audio | str | Path, stem: Audio | str | Path) -> float:
        """Calibrated fit of `stem` against `mix` (the mix without that stem) over their common length."""
        stem_w, _, _ = self._prepare(stem, "stem")
        if loudness(stem_w).rms_db < SILENCE_DB:
            raise AudioFormatError("the stem is silent: there is nothing to score", fix="check the stem's export")
        import torch  # lazy: the matcher

        sim = self.match_cosines([mix], [stem])[0, 0]
        with torch.no_grad():
            return float(self.matching.fit_from_similarity(sim))


def _fingerprint(audio: Audio) -> tuple:
    """Which audio this is, for `Analyzer.analyze`'s one-report cache: its shape, rate and a hash of every 16th
    frame (a 6-minute mix hashes in a millisecond or two; two different takes agree on all of that by no chance)."""
    x = np.ascontiguousarray(np.asarray(audio.samples)[:, ::16])
    return audio.samples.shape, int(audio.sample_rate), hashlib.blake2b(x.tobytes(), digest_size=16).hexdigest()


#: what `drums_playing` says for silence: far below any clip the renders gave (music21 strings -28 at the least);
#: the listener's `NO_KIT`
SILENT_MARGIN = -40.0


def drums_playing(audio: Audio, *, config: str = "shipped") -> float:
    """The role check's drums margin for `audio` (`AnalysisReport.margins`: log-odds over the part's threshold,
    0 = its decision), `SILENT_MARGIN` for silence: the listener's drum-kit context (`listen.tempo.style_context`).
    The margin, not the decision: a jazz kit (ride and hi-hat foot, no kick or snare) sits under the decision on
    every swing render (-9 to -3.5) yet far above strings, piano, choir and folk bands (-28 to -11), and stays
    above them through a 3 kHz low-pass, which a flatness above 4 kHz did not (README, issue 19)."""
    report = get_analyzer(config).analyze(audio)
    return SILENT_MARGIN if report.silent else float(report.margins.get("drums", SILENT_MARGIN))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _log_odds(p: float) -> float:
    """log(p / (1 - p)) without `_logit`'s 1e-6 floor (the margins of parts far from playing, down to ~-27)."""
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _aggregate(p: np.ndarray) -> np.ndarray:
    """Clip probability from window probabilities [W, N]: mean of the top quarter of windows (at least one).

    The max over windows lets one odd window decide; the mean dilutes a part that only plays in the chorus.
    The top-quartile mean sits between the two."""
    k = max(1, math.ceil(p.shape[0] / 4))
    return np.sort(np.asarray(p, np.float32), axis=0)[::-1][:k].mean(0, dtype=np.float32)


def _debug_tagger() -> TaggerRunner:
    """The untrained `debug` tagger (tests): the torch module's initial weights under seed 0, run in numpy."""
    import torch  # lazy: an untrained tagger takes torch's initial weights

    from backline.engines.analysis.musicoder import get_config as musicoder_config
    from backline.engines.analysis.tagger import build_tagger

    config = {"head": "resatt", "lam": 0.8, "base": "musicoder", "encoder": musicoder_config("debug").to_dict()}
    torch.manual_seed(0)
    state = build_tagger(config).state_dict()
    return TaggerRunner({k: v.float().numpy() for k, v in state.items() if k not in ("head.hier", "head.parent")},
                        config)


@lru_cache(maxsize=4)
def get_analyzer(config: str = "shipped", device: str = "cpu") -> Analyzer:
    return Analyzer(config, device)


def analyze(audio: Audio | str | Path, *, config: str = "shipped", device: str = "cpu", **kwargs: Any) -> AnalysisReport:
    return get_analyzer(config, device).analyze(audio, **kwargs)


def fit_score(mix: Audio | str | Path, stem: Audio | str | Path, *, config: str = "shipped", device: str = "cpu") -> float:
    return get_analyzer(config, device).fit_score(mix, stem)


def embed(audio: Audio | str | Path, *, per_snippet: bool = False, config: str = "shipped", device: str = "cpu") -> torch.Tensor:
    return get_analyzer(config, device).embed(audio, per_snippet=per_snippet)


def match_matrix(mixes: Sequence[Audio | str | Path], stems: Sequence[Audio | str | Path], *, config: str = "shipped",
                 device: str = "cpu") -> torch.Tensor:
    return get_analyzer(config, device).match_matrix(mixes, stems)


def match_cosines(mixes: Sequence[Audio | str | Path], stems: Sequence[Audio | str | Path], *, config: str = "shipped",
                  device: str = "cpu") -> torch.Tensor:
    return get_analyzer(config, device).match_cosines(mixes, stems)


#: engine name -> the part it plays (presence.PARTS) and how a musician calls it
ENGINE_PART: dict[str, tuple[str, str, str]] = {
    "bass": ("bass", "a bass", "is"), "drums": ("drums", "drums", "are"),
    "accompany": ("accompaniment", "an accompaniment (keys, guitar or strings)", "is")}


def role_already_playing(engine: str, mix: Audio | None = None, midi: str | Path | None = None, *,
                         config: str = "shipped") -> str | None:
    """A one-line warning when the part `engine` generates is already in the band it listens to, else None.

    Audio goes through the presence model (the same decision as "missing parts"); band MIDI is checked for a
    track of that role (drum channel, or bass programs 33-40). Never raises for the engine's sake: a check
    that cannot run says nothing."""
    if engine not in ENGINE_PART:
        return None
    part, words, verb = ENGINE_PART[engine]
    try:
        if mix is not None and mix.seconds >= MIN_SECONDS and config == "shipped":  # a random debug model says nothing
            report = analyze(mix, config=config)
            if not report.silent and part not in report.missing_parts:
                return (f"{words} {verb} already playing in the mix ({report.parts.get(part, 0):.0%} sure): the new "
                        f"{part} will double it — mute that track in the DAW, or select bars without it")
        if midi is not None:
            import pretty_midi

            pm = pretty_midi.PrettyMIDI(str(midi))
            hits = [i for i in pm.instruments if i.notes and (
                i.is_drum if part == "drums" else (not i.is_drum and 32 <= i.program <= 39) if part == "bass" else False)]
            if hits:
                name = hits[0].name or ("drum track" if part == "drums" else "bass track")
                return (f"the band's MIDI already has {words} ({name!r}, {len(hits[0].notes)} notes): the new {part} "
                        "will double it — leave that track out of the MIDI you drop")
    except Exception:  # noqa: BLE001 - a warning must never stop a generation
        return None
    return None
