"""The novelty function: how much a drum bar differs from its neighbours, from the bars' self-similarity.

Each bar becomes a vector: its 9-class onset grid pooled to 12 steps per quarter (so a few ticks of human
timing do not count as difference) and weighted per class (`CLASS_WEIGHT`: a crash on the downbeat after a
fill, or one extra kick, should move the vector less than hats stopping for a tom run). The self-similarity
matrix is the cosine similarity between bar vectors. A bar's novelty is

    novelty(i) = 1 − max_{0 < |j − i| <= radius} S[i, j]

that is, how unlike it is to the *most similar* of its neighbours within `radius` bars. Using the maximum
(not the mean) is the point: the first bar of a new section, where the groove switches from hats to ride,
differs from the bars before it but matches the bars after it, so it is not novel; a fill matches neither
side. An empty bar next to empty bars has novelty 0 (a rest is not an improvisation); an empty bar among
playing bars has novelty 1 (a break is).

Bars whose novelty exceeds `threshold` are labelled fill/improvisation bars. The default threshold was
chosen on the training corpus (see weights/TRAINING.md) and is stored with the shipped weights.
"""

from __future__ import annotations

import numpy as np

from backline.engines.drums.representation import N_CLASSES, STEPS_PER_QUARTER

POOL = 2  # 24 → 12 steps per quarter
CLASS_WEIGHT = np.array([1.0, 1.0, 0.7, 0.7, 1.2, 1.2, 1.2, 0.5, 0.7], np.float32)
DEFAULT_RADIUS = 2
DEFAULT_THRESHOLD = 0.25


def bar_vectors(drums: np.ndarray, steps_per_bar: int) -> np.ndarray:
    """`[steps, 9]` bool → `[bars, steps_per_bar/POOL * 9]` float32."""
    n_bars = drums.shape[0] // steps_per_bar
    grid = drums[: n_bars * steps_per_bar].reshape(n_bars, steps_per_bar // POOL, POOL, N_CLASSES).any(axis=2)
    return (grid * CLASS_WEIGHT).reshape(n_bars, -1).astype(np.float32)


def self_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity between bars; two empty bars are identical (1), empty vs non-empty 0."""
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.maximum(norms, 1e-9)[:, None]
    sim = unit @ unit.T
    empty = norms < 1e-9
    sim[np.ix_(empty, empty)] = 1.0
    return sim


def novelty(drums: np.ndarray, steps_per_bar: int, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """Novelty per bar in [0, 1] (see the module docstring). A one-bar song has novelty 0."""
    if steps_per_bar % STEPS_PER_QUARTER:
        raise ValueError("steps_per_bar must be whole quarters")
    sim = self_similarity(bar_vectors(drums, steps_per_bar))
    n = sim.shape[0]
    out = np.zeros(n, np.float32)
    for i in range(n):
        neighbours = [j for j in range(max(0, i - radius), min(n, i + radius + 1)) if j != i]
        if neighbours:
            out[i] = 1.0 - float(sim[i, neighbours].max())
    return np.clip(out, 0.0, 1.0)


def fill_bars(drums: np.ndarray, steps_per_bar: int, threshold: float = DEFAULT_THRESHOLD,
              radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """Bool per bar: the bars the novelty function labels fills/improvisations."""
    return novelty(drums, steps_per_bar, radius) > threshold
