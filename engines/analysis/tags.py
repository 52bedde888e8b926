"""The tagger's vocabulary and everything about tags that needs no model (torch-free): the fine and coarse tags and
their hierarchy, per-tag thresholds and the metrics they are tuned on, and the attention map's PNG. `tagger`
re-exports all of it; the role check and the analysis report read it from here without importing torch."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from backline.engines.core.errors import ConfigError
from backline.engines.data.gm import GM_FAMILIES

FINE_TAGS: tuple[str, ...] = tuple("Ensemble" if f == "Strings (continued)" else f for f in GM_FAMILIES) + ("Drums",)
COARSE_TAGS: tuple[str, ...] = ("percussion", "struck", "plucked", "bowed", "blown", "electronic")
PARENT: dict[str, str] = {
    "Drums": "percussion", "Percussive": "percussion", "Sound Effects": "percussion",
    "Piano": "struck", "Chromatic Percussion": "struck",
    "Guitar": "plucked", "Bass": "plucked", "Ethnic": "plucked",
    "Strings": "bowed", "Ensemble": "bowed",
    "Brass": "blown", "Reed": "blown", "Pipe": "blown", "Organ": "blown",
    "Synth Lead": "electronic", "Synth Pad": "electronic", "Synth Effects": "electronic",
}
HEADS: tuple[str, ...] = ("flat", "levelwise", "topdown", "gmp", "resatt")
LAMBDA_GRID: tuple[float, ...] = (0.70, 0.75, 0.80, 0.85, 0.90)


def fine_index(program: int, is_drum: bool) -> int:
    """GM program (0-based) / drum flag -> fine tag index."""
    if is_drum:
        return FINE_TAGS.index("Drums")
    if not 0 <= int(program) <= 127:
        raise ConfigError(f"GM program {program} is outside 0..127")
    return int(program) // 8


def hierarchy_array() -> np.ndarray:
    """[N_fine, N_coarse] 0/1 membership (float32)."""
    m = np.zeros((len(FINE_TAGS), len(COARSE_TAGS)), np.float32)
    for i, f in enumerate(FINE_TAGS):
        m[i, COARSE_TAGS.index(PARENT[f])] = 1.0
    return m


def tune_thresholds(prob: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-tag threshold maximising F1 on validation; 0.5 where a tag has no positive/negative example.

    The search is limited to 0.2–0.8: with a few validation songs per tag, F1-optimal thresholds near 0 or 1
    fit a handful of examples and turn into false detections (or misses) on new music. When several thresholds
    tie (well-separated classes), the middle of the tie is taken rather than the lowest."""
    out = np.full(prob.shape[1], 0.5, np.float32)
    grid = np.linspace(0.2, 0.8, 25)
    for j in range(prob.shape[1]):
        m = mask[:, j] > 0
        y, p = target[m, j] > 0.5, prob[m, j]
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        f1 = np.array([_f1(y, p >= t) for t in grid])
        best = np.flatnonzero(f1 >= f1.max() - 1e-9)
        out[j] = grid[best[len(best) // 2]]  # middle of the best plateau: the widest margin on both sides
    return out


def _f1(y: np.ndarray, yhat: np.ndarray) -> float:
    tp = float((y & yhat).sum())
    fp = float((~y & yhat).sum())
    fn = float((y & ~yhat).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1e-9)


# --- metrics (scikit-learn's definitions, in numpy so the project needs no sklearn) ----------------------

def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks)."""
    y = y.astype(bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), np.float64)
    sp = p[order]
    i = 0
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as scikit-learn's average_precision_score: Σ (R_n − R_{n−1}) P_n over distinct thresholds."""
    y = y.astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tps = np.cumsum(ys)
    fps = np.cumsum(~ys)
    last = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # last index of each distinct score
    tp, fp = tps[last], fps[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def macro_metrics(prob: np.ndarray, target: np.ndarray, mask: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Macro ROC-AUC, PR-AUC, F1 over tags that have both classes among the known labels."""
    rocs, aps, f1s = [], [], []
    for j in range(prob.shape[1]):
        m = mask[:, j] > 0
        y, p = target[m, j] > 0.5, prob[m, j]
        if y.sum() == 0 or (~y).sum() == 0:
            continue
        rocs.append(roc_auc(y, p))
        aps.append(average_precision(y, p))
        f1s.append(_f1(y, p >= thresholds[j]))
    return {"roc_auc": float(np.mean(rocs)) if rocs else float("nan"),
            "pr_auc": float(np.mean(aps)) if aps else float("nan"),
            "f1": float(np.mean(f1s)) if f1s else float("nan"), "tags": len(rocs)}


# --- attention-map image for the host ---------------------------------------------------------------------

def attention_png(attention: np.ndarray, fine_prob: np.ndarray | None = None, cell: int = 14) -> bytes:
    """Render an [N_fine, N_coarse] attention map (0..1) as a PNG heat map (rows fine, columns coarse).

    Written with a tiny pure-numpy PNG encoder (zlib + CRC) so neither matplotlib nor pillow is needed; the
    host draws the tag names beside it. When `fine_prob` is given, a left strip shows each fine tag's
    probability, so one can see which *likely* fine tags drive each coarse decision.
    """
    a = np.asarray(attention, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"attention map must be 2-D, got {a.shape}")
    a = np.clip(a, 0.0, 1.0)
    if fine_prob is not None:
        a = np.concatenate([np.clip(np.asarray(fine_prob, np.float32)[:, None], 0, 1), np.full((a.shape[0], 1), np.nan), a], 1)
    img = np.repeat(np.repeat(a, cell, 0), cell, 1)
    rgb = _colormap(img)
    rgb[np.isnan(img)] = 255
    return encode_png(rgb)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Dark blue -> yellow (a viridis-like ramp) as uint8 RGB."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
    x = np.nan_to_num(v, nan=0.0) * (len(stops) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(stops) - 2)
    f = (x - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes (8-bit truecolour, filter 0 per row)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
