"""Training sound for the separation network: corpus songs (`backline data synth`, Slakh layout) rendered
through random production, cached on disk as mono 22.05 kHz role stems.

Why: three GM soundfonts played dry are not what a real record sounds like (MEASURED: the shipped GMSDI "bass" came
out 2.1 dB worse than the mix on a real jazz trio). Every cached variant of a song runs each part through a random
chain of the project's effects (`engines.effects.apply_chain`: EQ shelves and peaks, high/low-pass, compression,
saturation, chorus, reverb/room) and then a bus stage applied identically to every part — a linear EQ, a room, and
a compressor's gain curve computed from the mix — so that the stems still sum to the mixture exactly (the
property every mask and the training target rely on). Loudness balance between the roles is drawn again for
every crop at training time (`crops`), including crops where the bass is absent, so the network learns to
return nothing when a part is not there. Stereo width does not reach a mono model; the engine applies its masks to
each channel of a stereo mix.

Cache: `CACHE/{split}/{track}_v{k}.npy`, float16 [roles, samples] — small, and rebuilt only when missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.effects import apply_chain
from backline.engines.separate.model import ROLES, SAMPLE_RATE


def role_of(corpus_role: str) -> str:
    """Corpus part role → network role (piano, guitar, strings, lead → other)."""
    return corpus_role if corpus_role in ("bass", "drums") else "other"


def track_stems(track: Path) -> np.ndarray:
    """A corpus track as mono 22.05 kHz role stems [len(ROLES), samples] (float32), summed per role."""
    roles = json.loads((track / "extras.json").read_text())["roles"]
    out: np.ndarray | None = None
    for sid, role in sorted(roles.items()):
        path = track / "stems" / f"{sid}.flac"
        if not path.exists():
            continue
        audio = read_audio(path, sample_rate=SAMPLE_RATE, channels=1).samples[0]
        if out is None:
            out = np.zeros((len(ROLES), audio.shape[0]), np.float32)
        n = min(out.shape[1], audio.shape[0])
        out[ROLES.index(role_of(role)), :n] += audio[:n]
    if out is None:
        raise FileNotFoundError(f"{track}: no stems")
    return out


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def random_part_chain(rng: np.random.Generator, role: str) -> list[dict]:
    """A random production chain for one part (pedalboard plugins through engines.effects)."""
    chain: list[dict] = []
    if rng.random() < 0.8:
        chain.append({"type": "LowShelfFilter", "cutoff_frequency_hz": _u(rng, 60, 250), "gain_db": _u(rng, -6, 6)})
    if rng.random() < 0.8:
        chain.append({"type": "HighShelfFilter", "cutoff_frequency_hz": _u(rng, 2000, 8000),
                      "gain_db": _u(rng, -9, 6)})
    if rng.random() < 0.6:
        chain.append({"type": "PeakFilter", "cutoff_frequency_hz": float(np.exp(rng.uniform(np.log(100), np.log(5000)))),
                      "gain_db": _u(rng, -8, 8), "q": _u(rng, 0.5, 3)})
    if role == "bass" and rng.random() < 0.3:  # DI vs amp: a dark, band-limited bass
        chain.append({"type": "LowpassFilter", "cutoff_frequency_hz": _u(rng, 600, 3000)})
    if rng.random() < 0.5:
        chain.append({"type": "Compressor", "threshold_db": _u(rng, -30, -8), "ratio": _u(rng, 2, 8),
                      "attack_ms": _u(rng, 1, 30), "release_ms": _u(rng, 40, 300)})
    if rng.random() < 0.3:
        chain.append({"type": "Distortion", "drive_db": _u(rng, 2, 18)})
    if role == "other" and rng.random() < 0.3:
        chain.append({"type": "Chorus", "rate_hz": _u(rng, 0.3, 2), "depth": _u(rng, 0.1, 0.4), "mix": _u(rng, 0.2, 0.5)})
    if rng.random() < 0.4:
        chain.append({"type": "Reverb", "room_size": _u(rng, 0.1, 0.8), "wet_level": _u(rng, 0.05, 0.35),
                      "dry_level": 1.0, "damping": _u(rng, 0.2, 0.8)})
    return chain


def bus_compress(stems: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mix-bus compressor as one gain curve (from the mix's 10 ms RMS) applied to every stem alike."""
    mix = stems.sum(axis=0)
    hop = SAMPLE_RATE // 100
    n = len(mix) // hop + 1
    padded = np.pad(mix, (0, n * hop - len(mix)))
    rms = np.sqrt(np.mean(padded.reshape(n, hop) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    threshold, ratio = _u(rng, -30, -12), _u(rng, 1.5, 6)
    gain_db = -np.maximum(level - threshold, 0) * (1 - 1 / ratio)
    alpha = np.exp(-1.0 / _u(rng, 5, 30))  # release in 10 ms frames
    smooth = np.empty_like(gain_db)
    acc = 0.0
    for i, g in enumerate(gain_db):  # fast attack, slow release
        acc = g if g < acc else alpha * acc + (1 - alpha) * g
        smooth[i] = acc
    curve = np.interp(np.arange(len(mix)), np.arange(n) * hop, 10 ** (smooth / 20)).astype(np.float32)
    return stems * curve[None, :]


def augment(stems: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-part random chains, then a bus stage shared by every part (stems keep summing to the mix)."""
    out = np.zeros_like(stems)
    for i, role in enumerate(ROLES):
        if not np.any(stems[i]):
            continue
        y = apply_chain(Audio(stems[i][None], SAMPLE_RATE), random_part_chain(rng, role)).samples[0]
        peak = float(np.abs(y).max()) or 1.0
        out[i] = y / max(1.0, peak)
    bus = []
    if rng.random() < 0.6:
        bus.append({"type": "LowShelfFilter", "cutoff_frequency_hz": _u(rng, 80, 200), "gain_db": _u(rng, -4, 4)})
        bus.append({"type": "HighShelfFilter", "cutoff_frequency_hz": _u(rng, 3000, 9000), "gain_db": _u(rng, -6, 4)})
    if rng.random() < 0.4:
        bus.append({"type": "Reverb", "room_size": _u(rng, 0.2, 0.9), "wet_level": _u(rng, 0.05, 0.25),
                    "dry_level": 1.0, "damping": _u(rng, 0.2, 0.8)})
    if bus:  # linear (EQ, reverb) — the same chain on each stem sums to the chain on the mix
        out = np.stack([apply_chain(Audio(s[None], SAMPLE_RATE), bus).samples[0] if np.any(s) else s for s in out])
    if rng.random() < 0.5:
        out = bus_compress(out, rng)
    return out


def build_cache(corpus: str | Path, cache: str | Path, *, variants: int = 2, seed: int = 0,
                dry: bool = True) -> list[Path]:
    """Write (or keep) `variants` augmented renders of every corpus track (plus the dry one when `dry`)."""
    corpus, cache = Path(corpus), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for ti, track in enumerate(sorted(p for p in corpus.iterdir() if p.name.startswith("Track"))):
        names = ([f"{track.name}_dry.npy"] if dry else []) + [f"{track.name}_v{k}.npy" for k in range(variants)]
        todo = [n for n in names if not (cache / n).exists()]
        if todo:
            stems = track_stems(track)
            for name in todo:
                if name.endswith("_dry.npy"):
                    data = stems
                else:
                    k = int(name.rsplit("_v", 1)[1].split(".")[0])
                    data = augment(stems, np.random.default_rng([seed, ti, k]))
                tmp = cache / (name + ".partial.npy")
                np.save(tmp, data.astype(np.float16))
                tmp.replace(cache / name)
        files += [cache / n for n in names]
    return files


def cached_files(cache: str | Path) -> list[Path]:
    """The finished renders in a cache folder (partial files are skipped)."""
    return sorted(p for p in Path(cache).glob("Track*.npy") if ".partial" not in p.name)


def load_cache(files: list[Path]) -> list[np.ndarray]:
    return [np.load(f, mmap_mode="r") for f in files]


def octave_down(x: np.ndarray, n: int) -> np.ndarray:
    """The first n/2 samples of x played at half speed: an octave lower (and half as fast), n samples long."""
    half = x[: (n + 1) // 2]
    return np.interp(np.arange(n) / 2.0, np.arange(len(half)), half).astype(np.float32)


def _window(s: np.ndarray, n: int, factor: float, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample crop of `s` [R, samples] played `factor` times faster (pitch up by that ratio): read
    n·factor samples and interpolate them onto n. Linear interpolation is a crude resampler, but every role and
    the mix go through the same one, so the stems still sum to the mixture."""
    m = int(np.ceil(n * factor)) + 1 if factor != 1.0 else n
    start = int(rng.integers(0, max(1, s.shape[1] - m)))
    part = np.array(s[:, start:start + m], dtype=np.float32)
    if factor == 1.0 or part.shape[1] < 2:
        return part
    t = np.minimum(np.arange(n) * factor, part.shape[1] - 1)
    return np.stack([np.interp(t, np.arange(part.shape[1]), row) for row in part]).astype(np.float32)


def crops(songs: list[np.ndarray], batch: int, seconds: float, rng: np.random.Generator,
          absent: float = 0.1, low_other: float = 0.0, remix: float = 0.0,
          shift: float = 0.0, low_bank: list[np.ndarray] | None = None,
          low_neg: float = 0.0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches (mix [B, samples], stems [B, R, samples]) of random crops with a random level per role
    (±9 dB) and, with probability `absent` per role, that role left out. With probability `low_other` the
    "other" part is played an octave down, so low piano voicings and cellos are not taken for a bass (a real
    jazz pianist's left hand at 100–140 Hz was, see TRAINING.md).

    Widening the sound beyond what the corpus rendered: with probability `remix` each role of a crop comes from
    another song (and place), so a bass meets drums and keys it was never rendered with — new balances of
    timbre, register and density for free; and with probability ½ when `shift` > 0 the crop (or each remixed
    role) is played up to `shift` semitones higher or lower, moving every instrument's register and formants
    (a GM patch transposed is another instrument's timbre).

    Negatives at the bass's register: with probability `low_neg` a low "other" line from `low_bank`
    (`build_low_bank`: piano left hands, organ pedals, cellos, pads at 41–196 Hz) is added to the crop's "other",
    −3 to +6 dB against the rest of it (so 30–40 % of the "other" energy lies below 150 Hz, a real pianist's
    share; the corpus's "other" has ~5 %), beside the crop's bass: the network has to tell a bass from a low
    piano by timbre, not by register (the per-role levels and absences below still apply: some crops hold the
    low line and no bass)."""
    n = int(seconds * SAMPLE_RATE)

    def factor() -> float:
        return float(2 ** (rng.uniform(-shift, shift) / 12)) if shift > 0 and rng.random() < 0.5 else 1.0

    while True:
        stems = np.zeros((batch, len(ROLES), n), np.float32)
        for b in range(batch):
            if remix > 0 and rng.random() < remix:
                part = np.zeros((len(ROLES), n), np.float32)
                for r in range(len(ROLES)):
                    row = _window(songs[int(rng.integers(len(songs)))], n, factor(), rng)[r]
                    part[r, : row.shape[0]] = row
            else:
                part = _window(songs[int(rng.integers(len(songs)))], n, factor(), rng)
            if low_other > 0 and rng.random() < low_other and part.shape[1] == n:
                part[ROLES.index("other")] = octave_down(part[ROLES.index("other")], n)
            if low_bank and rng.random() < low_neg:
                line = _window(low_bank[int(rng.integers(len(low_bank)))], n, factor(), rng)[ROLES.index("other")]
                line_rms = float(np.sqrt(np.mean(line ** 2)))
                refs = [float(np.sqrt(np.mean(x ** 2))) for x in (part[ROLES.index("other")], part.sum(axis=0))]
                ref = refs[0] if refs[0] > 1e-4 else refs[1]
                if line_rms > 1e-5 and ref > 1e-5:
                    gain = ref / line_rms * 10 ** (rng.uniform(-3, 6) / 20)
                    part[ROLES.index("other"), : line.shape[0]] += line[: part.shape[1]] * np.float32(gain)
            gains = 10 ** (rng.uniform(-9, 9, len(ROLES)) / 20)
            gains[rng.random(len(ROLES)) < absent] = 0.0
            stems[b, :, : part.shape[1]] = part * gains[:, None]
        yield torch.from_numpy(stems.sum(axis=1)), torch.from_numpy(stems)


#: Wider timbre than the corpus generator's (engines/data/song.py PROGRAMS, chosen for tight onsets, which a
#: separation target does not need): mido programs per corpus role. Bass adds the upright (32), pick (34) and
#: synth basses (38, 39) the generator leaves out; "other" adds organs, accordion, bowed strings and cello,
#: choirs, brass and reeds (a real band's keys and horns); drums add the jazz (32) and brush (40) kits.
TIMBRE_PROGRAMS: dict[str, tuple[int, ...]] = {
    "bass": (32, 32, 32, 33, 34, 35, 35, 36, 38, 39),
    "drums": (0, 8, 16, 32, 40, 40),
    "piano": (0, 0, 0, 1, 2, 3, 4, 5, 16, 17, 18, 19, 20, 21),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "strings": (19, 42, 48, 49, 50, 52, 61, 89),
    "lead": (40, 56, 57, 60, 64, 65, 66, 68, 71, 73, 80, 81),
}
#: A real pianist's left hand: the chord's lowest notes moved down into this MIDI range (E2–F3, 82–175 Hz), under
#: the bass's register's top — the filosax piano at 100–140 Hz that the network took for a bass (TRAINING.md).
LEFT_HAND = (40, 53)
#: Target RMS (dBFS, over active blocks) per corpus role, as the generator levels its stems.
_ROLE_DB = {"bass": -19.0, "drums": -17.0, "piano": -22.0, "guitar": -23.0, "strings": -24.0, "lead": -21.0}


def _left_hand(track, rng: np.random.Generator, span: tuple[int, int] = LEFT_HAND, alone: bool = False) -> None:
    """Add a left hand to a mido piano track in place: at each chord onset, its lowest one or two notes doubled
    down into `span` (octaves only, so the harmony is kept), held as long as the chord. With `alone` the track's
    own notes are dropped, leaving only that low line (an organ pedal, a cello, a pianist's left hand alone)."""
    import mido  # lazy: mido is only needed to re-render corpora (the GPU lease imports this module without it)

    t, events = 0, []
    for msg in track:
        t += msg.time
        events.append((t, msg))
    ons: dict[int, list[tuple[int, int]]] = {}
    active: dict[tuple[int, int], int] = {}
    notes = []
    for t, msg in events:
        if msg.type == "note_on" and msg.velocity > 0:
            active[(msg.channel, msg.note)] = t
            ons.setdefault(t, []).append((msg.note, msg.velocity))
        elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in active:
            notes.append((active.pop((msg.channel, msg.note)), t, msg.note, msg.channel))
    ends = {}
    for start, end, _, _ in notes:
        ends[start] = max(ends.get(start, start), end)
    channel = notes[0][3] if notes else 0
    two = rng.random() < 0.5
    added = []
    for start, chord in sorted(ons.items()):
        low = sorted(chord)[: 2 if two else 1]
        shift = 12 * int(np.ceil((low[0][0] - span[1]) / 12)) if low[0][0] >= span[1] else 0
        for note, vel in low:
            p = note - shift
            if span[0] <= p < span[1] + 12 and (p != note or alone):
                added += [(start, mido.Message("note_on", channel=channel, note=p, velocity=int(vel))),
                          (ends[start], mido.Message("note_off", channel=channel, note=p, velocity=0))]
    def off(m) -> bool:
        return m.type == "note_off" or (m.type == "note_on" and m.velocity == 0)

    end_t = max([t for t, _ in events + added], default=0)
    if alone:
        events = [e for e in events if e[1].type not in ("note_on", "note_off")]
    merged = sorted([e for e in events + added if e[1].type != "end_of_track"],
                    key=lambda e: (e[0], 0 if off(e[1]) else 1))  # stable: meta and program first at tick 0
    track.clear()
    last = 0
    for t, msg in merged:
        track.append(msg.copy(time=t - last))
        last = t
    track.append(mido.MetaMessage("end_of_track", time=end_t - last))


def timbre_stems(track: Path, rng: np.random.Generator, fonts: dict | None = None) -> np.ndarray:
    """A training song's MIDI re-rendered with timbres the corpus generator does not use (`TIMBRE_PROGRAMS`,
    a left hand on half the pianos, the lead an octave down on a fifth of the songs), each part through a random
    one of the installed GM soundfonts → mono 22.05 kHz role stems [len(ROLES), samples], levelled per role
    like the corpus (±3 dB). Only training corpora go in: held-out seeds are never re-rendered."""
    import tempfile

    import mido  # lazy: see _left_hand

    from backline.engines.core.render import render_midi, require_soundfonts

    fonts = fonts or require_soundfonts()
    names = sorted(fonts)
    roles = json.loads((track / "extras.json").read_text())["roles"]
    frames = read_audio(track / "mix.flac", sample_rate=SAMPLE_RATE, channels=1).frames
    out = np.zeros((len(ROLES), frames), np.float32)
    with tempfile.TemporaryDirectory(prefix="backline-timbre-") as tmp:
        for sid, role in sorted(roles.items()):
            src = track / "MIDI" / f"{sid}.mid"
            if not src.exists() or role not in TIMBRE_PROGRAMS:
                continue
            mid = mido.MidiFile(src)
            options = TIMBRE_PROGRAMS[role]
            program = int(options[int(rng.integers(len(options)))])
            down = role == "lead" and rng.random() < 0.2
            for tr in mid.tracks:
                if any(m.type == "note_on" for m in tr):
                    if role == "piano" and rng.random() < 0.5:
                        _left_hand(tr, rng)
                    for i, m in enumerate(tr):
                        if m.type == "program_change":
                            tr[i] = m.copy(program=program)
                        elif down and m.type in ("note_on", "note_off") and m.note >= 36:
                            tr[i] = m.copy(note=m.note - 12)
            path = Path(tmp) / f"{sid}.mid"
            mid.save(path)
            y = None
            for font in [fonts[names[int(rng.integers(len(names)))]]] + [fonts[n] for n in names]:
                y = render_midi(path, font, sample_rate=SAMPLE_RATE, frames=frames).samples.mean(axis=0)
                if np.abs(y).max() > 1e-4:  # a font without that preset renders silence: try the next
                    break
            if y is None or np.abs(y).max() <= 1e-4:
                continue
            active = _active_rms(y)
            gain = 10 ** ((_ROLE_DB[role] + _u(rng, -3, 3)) / 20) / max(active, 1e-9)
            out[ROLES.index(role_of(role))] += y * np.float32(gain)
    peak = float(np.abs(out.sum(axis=0)).max())
    return out * np.float32(min(1.0, 0.9 / max(peak, 1e-9)))


def _active_rms(y: np.ndarray, block: int = 2048) -> float:
    n = len(y) // block
    if n == 0:
        return float(np.sqrt(np.mean(y ** 2)))
    rms = np.sqrt(np.mean(y[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1))
    act = rms[rms > rms.max() * 0.01]
    return float(np.sqrt(np.mean(act ** 2)))


def build_timbre_cache(corpora: list[Path], cache: str | Path, *, seed: int, variants: int = 2,
                       songs: int | None = None) -> list[Path]:
    """Re-render the training corpora's songs with `timbre_stems` (see `_render_cache`: round robin over the
    corpora, `variants` augmented renders each, atomic and resumable)."""
    return _render_cache(corpora, cache, timbre_stems, seed=seed, variants=variants, songs=songs)


def _render_cache(corpora: list[Path], cache: str | Path, render: Callable[[Path, np.random.Generator],
                  np.ndarray | None], *, seed: int, variants: int, songs: int | None) -> list[Path]:
    """`render(track, rng)` for the corpora's songs, round robin over the corpora (so the first N songs cover all
    of them): `CACHE/Track{corpus}{index}_dry.npy` and `variants` renders of it through `augment`, fp16, each
    written atomically and kept when present (rerunning resumes). A song `render` returns None for is skipped."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    lists = [sorted(p for p in Path(c).iterdir() if p.name.startswith("Track")) for c in corpora]
    order = [(ci, lst[i]) for i in range(max(map(len, lists))) for ci, lst in enumerate(lists) if i < len(lst)]
    files = []
    for ci, track in order[:songs]:
        stem = f"Track{ci}{track.name[5:]}"
        names = [f"{stem}_dry.npy"] + [f"{stem}_v{k}.npy" for k in range(variants)]
        if not all((cache / n).exists() for n in names):
            dry = render(track, np.random.default_rng([seed, ci, int(track.name[5:])]))
            if dry is None:
                continue
            for k, name in enumerate(names):
                data = dry if k == 0 else augment(dry, np.random.default_rng([seed, ci, int(track.name[5:]), k]))
                tmp = cache / (name + ".partial.npy")
                np.save(tmp, data.astype(np.float16))
                tmp.replace(cache / name)
            print(f"{stem}: {len(files) // (variants + 1) + 1} of {len(order[:songs])}", flush=True)
        files += [cache / n for n in names]
    return files


#: Negatives at the bass's register (session 5): programs for a low "other" line under a bass — acoustic and
#: electric pianos, drawbar / church organs, cello, string and synth-string sections, warm / poly / sweep pads.
#: Run 10's "other" had 5.6 % of its energy below 150 Hz; a real pianist's (filosax) 48 %.
LOW_PROGRAMS: tuple[int, ...] = (0, 0, 0, 1, 2, 4, 5, 16, 17, 19, 19, 42, 42, 48, 49, 50, 89, 90, 95)
#: Where the low line's lowest note lands (MIDI E1–G2, 41–98 Hz; a second note up to an octave above): the
#: bass's own register, so register alone cannot tell the two apart.
LOW_SPAN = (28, 43)
#: Corpus roles whose MIDI a low line is drawn from (their chords give the harmony a left hand would play).
LOW_SOURCES = ("piano", "strings", "guitar")


def low_line_stems(track: Path, rng: np.random.Generator, fonts: dict | None = None,
                   programs: tuple[int, ...] = LOW_PROGRAMS) -> np.ndarray | None:
    """One low "other" line from a training song's MIDI: a chord part's lowest one or two notes moved into
    `LOW_SPAN` (`_left_hand(alone=True)`), played by a random one of `programs` in a random soundfont → role
    stems [len(ROLES), samples] with only "other" sounding (None when the song has no chord part). Mixed into
    crops at training time (`crops(low_bank=...)`) beside the song's own bass, never replacing it."""
    import tempfile

    import mido  # lazy: see _left_hand

    from backline.engines.core.render import render_midi, require_soundfonts

    fonts = fonts or require_soundfonts()
    names = sorted(fonts)
    roles = json.loads((track / "extras.json").read_text())["roles"]
    parts = [sid for sid, role in sorted(roles.items())
             if role in LOW_SOURCES and (track / "MIDI" / f"{sid}.mid").exists()]
    if not parts:
        return None
    frames = read_audio(track / "mix.flac", sample_rate=SAMPLE_RATE, channels=1).frames
    sid = parts[int(rng.integers(len(parts)))]
    mid = mido.MidiFile(track / "MIDI" / f"{sid}.mid")
    program = int(programs[int(rng.integers(len(programs)))])
    for tr in mid.tracks:
        if any(m.type == "note_on" for m in tr):
            _left_hand(tr, rng, span=LOW_SPAN, alone=True)
            for i, m in enumerate(tr):
                if m.type == "program_change":
                    tr[i] = m.copy(program=program)
    y = None
    with tempfile.TemporaryDirectory(prefix="backline-low-") as tmp:
        path = Path(tmp) / f"{sid}.mid"
        mid.save(path)
        for font in [fonts[names[int(rng.integers(len(names)))]]] + [fonts[n] for n in names]:
            y = render_midi(path, font, sample_rate=SAMPLE_RATE, frames=frames).samples.mean(axis=0)
            if np.abs(y).max() > 1e-4:  # a font without that preset renders silence: try the next
                break
    if y is None or np.abs(y).max() <= 1e-4:
        return None
    out = np.zeros((len(ROLES), frames), np.float32)
    out[ROLES.index("other")] = y * np.float32(0.5 / float(np.abs(y).max()))
    return out


def build_low_bank(corpora: list[Path], cache: str | Path, *, seed: int, variants: int = 1,
                   songs: int | None = None, programs: tuple[int, ...] = LOW_PROGRAMS) -> list[Path]:
    """Render `low_line_stems` for the training corpora's songs (`_render_cache`, like `build_timbre_cache`)."""
    return _render_cache(corpora, cache, lambda track, rng: low_line_stems(track, rng, programs=programs),
                         seed=seed, variants=variants, songs=songs)


def low_share(x: np.ndarray, hz: float = 150.0) -> float:
    """Share of a mono signal's energy below `hz` (the register a bass sits in)."""
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spec[freqs < hz].sum() / max(spec.sum(), 1e-20))


def main() -> int:
    """`python -m backline.engines.separate.data CORPUS CACHE VARIANTS SONGS`: render the cache alone (beside a
    trainer run with --no-build), waiting for a still-running `data synth` to finish all SONGS songs.
    `... timbre CACHE SEED SONGS CORPUS...`: re-render SONGS training songs with wider timbres
    (`build_timbre_cache`); `... low CACHE SEED SONGS [--programs=0,1,...] CORPUS...`: the low-register negatives
    (`build_low_bank`, one augmented render per line)."""
    import sys
    import time

    if sys.argv[1] == "timbre":
        cache, seed, songs = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        build_timbre_cache([Path(c) for c in sys.argv[5:]], cache, seed=seed, songs=songs)
        return 0
    if sys.argv[1] == "low":
        cache, seed, songs = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        rest = sys.argv[5:]
        programs = LOW_PROGRAMS
        if rest and rest[0].startswith("--programs="):
            programs = tuple(int(x) for x in rest.pop(0).split("=", 1)[1].split(","))
        build_low_bank([Path(c) for c in rest], cache, seed=seed, songs=songs, programs=programs)
        return 0
    corpus, cache, variants, songs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    while len(build_cache(corpus, cache, variants=variants)) < songs * (variants + 1):
        time.sleep(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
