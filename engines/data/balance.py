"""Measure each part's balance against its band on a rendered corpus (`backline data synth`): the table
`core.balance` applies to every take. It reads the corpus, so it lives with the corpus readers.

    python -m backline.engines.data.balance --corpus DIR [--write]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backline.engines.core.audio import read_audio, write_bytes_atomic
from backline.engines.core.balance import SILENT_DB, TABLE, loudness_db
from backline.engines.data.slakh import read_track


def measure_corpus(folder: str | Path) -> dict:
    """Per song and part: loudness(part) − loudness(rest of the band); the median per role (and per bass/drum
    style where the song says which)."""
    per_role: dict[str, list[float]] = {}
    per_style: dict[str, list[float]] = {}
    tracks = sorted(p for p in Path(folder).iterdir() if (p / "metadata.yaml").is_file())
    for track_dir in tracks:
        track = read_track(track_dir)
        stems = [(s.role, read_audio(s.audio)) for s in track.audio_stems()]
        styles = (track.extras or {}).get("styles", {})
        style_of = {s.role: styles.get(s.id) for s in track.audio_stems() if s.role in ("bass", "drums")}
        frames = min(a.frames for _, a in stems)
        total = np.sum([a.samples[:, :frames] for _, a in stems], axis=0)
        roles = {"accompaniment" if r in ("piano", "guitar", "strings", "keys") else r for r, _ in stems}
        for role in sorted(roles):
            group = [a.samples[:, :frames] for r, a in stems
                     if (("accompaniment" if r in ("piano", "guitar", "strings", "keys") else r) == role)]
            part = np.sum(group, axis=0)
            rest = total - part
            if loudness_db(rest) < SILENT_DB or loudness_db(part) < SILENT_DB:
                continue
            value = loudness_db(part) - loudness_db(rest)
            per_role.setdefault(role, []).append(value)
            style = style_of.get(role)
            if isinstance(style, str):
                per_style.setdefault(f"{role}:{style}", []).append(value)
    summary = lambda v: {"median_db": round(float(np.median(v)), 2), "iqr_db": round(float(np.subtract(*np.percentile(v, [75, 25]))), 2), "songs": len(v)}  # noqa: E731
    return {"measure": "mean square dB of the part minus that of the rest of the band, median over songs",
            "corpus": str(folder), "roles": {r: summary(v) for r, v in sorted(per_role.items())},
            "styles": {s: summary(v) for s, v in sorted(per_style.items())}}


if __name__ == "__main__":  # python -m backline.engines.data.balance --corpus DIR [--write]
    import argparse

    ap = argparse.ArgumentParser(description="measure each part's balance against its band on a rendered corpus")
    ap.add_argument("--corpus", required=True, type=Path)
    ap.add_argument("--write", action="store_true", help=f"write {TABLE}")
    args = ap.parse_args()
    table = measure_corpus(args.corpus)
    print(json.dumps(table, indent=1))
    if args.write:
        write_bytes_atomic(TABLE, (json.dumps(table, indent=1) + "\n").encode(), overwrite=True)
        print(f"wrote {TABLE}")
