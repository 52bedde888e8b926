"""Key finding: Krumhansl–Kessler profiles on the chroma, then a small learned scorer over the heard chords
(`weights/key`; `python -m backline.engines.listen --train-key` re-makes it on composed corpus songs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backline.engines.core.audio import write_bytes_atomic
from backline.engines.data.song import make_song
from backline.engines.listen.chart import Chord

# Krumhansl–Kessler key profiles (C major / C minor).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])


KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def key_from_chroma(chroma_sum: np.ndarray) -> tuple[int, str]:
    """Krumhansl–Kessler profile match; flat chroma (clicks, silence) carries no key and reads as C major."""
    best = (-2.0, 0, "major")
    if not np.std(chroma_sum) > 0:
        return best[1], best[2]
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

    # lazy: data.synth pulls mido and yaml; listen sits on the bass engine's path, which the GPU lease keeps free of them
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
