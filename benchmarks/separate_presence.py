"""Does the separated part play? The presence lines of `backline separate` measured with the shipped weights.

    .venv/bin/python benchmarks/separate_presence.py [--realdev ../shared/realdev] [--heldout DIR ...] [--songs 4]

For every held-out corpus song (20 s from 0:05; never trained on), the mix with and without its drums; and the
real recordings of realdev (filosax01 has a jazz kit; the others are printed for what they are). Per mix, the
separated drums' share of the mix's energy (`presence`, the line at `PRESENT_SHARE`) and of its energy above
`TOP_HZ` (`top_share`, the line at `DRUMS_TOP_SHARE`), and the verdict (`plays`). Numbers are printed, never
asserted. Hardware first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _common import corpus_or_render, hardware  # noqa: E402
from separate_eval import SR, track_roles  # noqa: E402

from backline.engines.core.audio import Audio, read_audio  # noqa: E402
from backline.engines.separate.engine import WEIGHTS, Separator, load_model, plays, presence, top_share  # noqa: E402


def row(sep: Separator, name: str, x: np.ndarray) -> tuple[float, float, bool]:
    mix = Audio(x.astype(np.float32), SR)
    drums = sep.separate(mix, [("drums", False)])[0]
    share, top = presence(drums, mix), top_share(drums, mix)
    print(f"  {name:34s} energy {share:6.1%}   top end {top:6.1%}   {'plays' if plays('drums', share, top) else '-'}",
          flush=True)
    return share, top, plays("drums", share, top)


def main() -> int:
    here = Path(__file__).resolve()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdev", type=Path, default=here.parents[2] / "shared" / "realdev")
    ap.add_argument("--heldout", type=Path, nargs="*", default=None,
                    help="held-out corpus folders (Slakh layout); without it a few synthetic songs are rendered once")
    ap.add_argument("--songs", type=int, default=4, help="songs to render when no --heldout is given (0: none)")
    a = ap.parse_args()
    print(hardware())
    sep = Separator(load_model(WEIGHTS))
    if a.heldout is None:
        a.heldout = [corpus_or_render(None, flag="--heldout", songs=a.songs)[0]] if a.songs > 0 else []
    for folder in a.heldout:
        corpus_or_render(folder, flag="--heldout")  # a missing folder: one line, exit 2
    said = {"with drums": [], "without drums": []}
    for folder in a.heldout:
        print(f"\n{folder}")
        for tr in sorted(folder.glob("Track*")):
            stems = track_roles(tr, 5 * SR, 20 * SR)
            said["with drums"].append(row(sep, f"{tr.name} with drums", sum(stems.values()))[2])
            said["without drums"].append(row(sep, f"{tr.name} without drums", stems["bass"] + stems["other"])[2])
    if a.heldout:
        print("\nsaid to play: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in said.items()))
    if a.realdev.is_dir():
        print(f"\nrealdev ({a.realdev}; one clip each)")
        bd = read_audio(a.realdev / "filosax01_bass_drums.wav", sample_rate=SR, channels=2).samples
        pd = read_audio(a.realdev / "filosax01_piano_drums.wav", sample_rate=SR, channels=2).samples
        n = min(bd.shape[1], pd.shape[1])
        for name, x in [("filosax01 sum (jazz kit)", bd[:, :n] + pd[:, :n]), ("filosax01 piano+drums", pd),
                        ("filosax01 bass+drums", bd)]:
            row(sep, name, x)
        for f in ["cuidado_falla.flac", "simac_rallou.flac", "gtzan_country.wav", "hainsworth_001.flac",
                  "ballroom_waltz.wav"]:
            if (a.realdev / f).is_file():
                row(sep, f, read_audio(a.realdev / f, sample_rate=SR, channels=2).samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
