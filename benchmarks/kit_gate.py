"""The octave's kit context on the renders: the role check's drums margin (`listen.audio.drum_kit`) per group of
`tempo_fit`'s clips, dry, through a first-order 3 kHz low-pass, two of them, and a random EQ (`core.effects`).

    .venv/bin/python benchmarks/kit_gate.py [--cache /tmp/backline-nodrums] [--groups swing,folk,drums]

Why (issue 19, README "The kit as the role check's drums margin"): the first kit cue, a flatness above 4 kHz, was
measured dry only and read a darkened recording's kit as none; a kit cue must keep kit and no kit apart through a
recording's EQ. Prints each group's range of margins per condition and where `KIT_GATE` falls; renders only (never
realdev, never Bach). Hardware first; numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware  # noqa: E402

LOWPASS = {"type": "LowpassFilter", "cutoff_frequency_hz": 3000.0}


def random_eq(rng: np.random.Generator) -> list[dict]:
    """A recording's tone: a high shelf (2-8 kHz, -15..+3 dB), a low shelf, a mid peak and a low-pass (3-12 kHz)."""
    return [{"type": "HighShelfFilter", "cutoff_frequency_hz": float(rng.uniform(2000, 8000)),
             "gain_db": float(rng.uniform(-15, 3))},
            {"type": "LowShelfFilter", "cutoff_frequency_hz": float(rng.uniform(80, 300)),
             "gain_db": float(rng.uniform(-6, 6))},
            {"type": "PeakFilter", "cutoff_frequency_hz": float(rng.uniform(300, 3000)),
             "gain_db": float(rng.uniform(-6, 6)), "q": 1.0},
            {"type": "LowpassFilter", "cutoff_frequency_hz": float(rng.uniform(3000, 12000))}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/backline-nodrums"), help="tempo_fit's clip cache")
    ap.add_argument("--pieces", type=int, default=27)
    ap.add_argument("--drums", type=Path, default=None, help="rendered songs with drums (Slakh layout)")
    ap.add_argument("--groups", default="", help="comma list of group prefixes (default: every group)")
    a = ap.parse_args()
    print(hardware())
    import tempo_fit

    from backline.engines.core.effects import apply_chain
    from backline.engines.listen.audio import drum_kit
    from backline.engines.listen.tempo import KIT_GATE

    wanted = [g for g in a.groups.split(",") if g]
    table: dict[str, dict[str, list[float]]] = {}
    for i, (group, name, mix, _) in enumerate(tempo_fit.clips(a.cache, a.pieces, a.drums)):
        if wanted and not any(group.startswith(g) for g in wanted):
            continue
        row = {"dry": drum_kit(mix), "3 kHz": drum_kit(apply_chain(mix, [LOWPASS])),
               "3 kHz x2": drum_kit(apply_chain(mix, [LOWPASS, LOWPASS])),
               "random EQ": drum_kit(apply_chain(mix, random_eq(np.random.default_rng(i))))}
        for cond, v in row.items():
            table.setdefault(group, {}).setdefault(cond, []).append(v)
        print(f"  {group:18s} {name[:36]:36s} " + "  ".join(f"{c} {v:6.2f}" for c, v in row.items()), flush=True)
    print(f"\ndrums margin (log-odds over the role check's decision) per group, min..max; KIT_GATE {KIT_GATE}")
    for group, conds in table.items():
        print(f"  {group:18s} " + "  ".join(f"{c} {min(v):6.1f}..{max(v):6.1f}" for c, v in conds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
