"""Speed of the `separate` engine against HTDemucs's architecture, on the same CPU, in the same process.

    .venv/bin/python benchmarks/separate_speed.py [--seconds 30] [--threads 1] [--repeats 3] [--mix FILE]

What is timed (× real time = processing s ÷ audio s, the one speed convention), on one stereo 44.1 kHz mix
(the demo song tiled to `--seconds`, or `--mix`):

1. the mask network (`Separator.separate`, the engine's own windowed path): one role (bass), three roles (bass,
   drums, other) and all five outputs the engine offers (bass, drums, other, no-bass, no-drums);
2. HTDemucs (Demucs v4, `demucs` package, random weights — only the architecture's cost is compared) in the
   configuration of the released 4-source `htdemucs` model (bottom_channels 512, 7.8 s segments), run the way
   demucs runs it: `apply_model(split=True, overlap=0.25, shifts=0)` — the cheapest setting demucs offers
   (its command line default, shifts=1, costs a little more). One pass gives all its sources.

The two are timed alternately, `--repeats` times each, and the fastest run of each is reported, as wall time and
as the process's CPU time (one thread: CPU seconds are the work done, and stay comparable when the shared
machine's load stretches the wall clock); the ratio to HTDemucs is taken on CPU time; the load average is printed. Needs the
`bench` extra for HTDemucs (`pip install 'backline[bench]'`); without it only the mask network is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import hardware, x_real_time  # noqa: E402

from backline.engines.core.audio import Audio, read_audio  # noqa: E402

SR = 44100
#: The released `htdemucs` (4 sources) model's settings that change its cost (its training yaml).
HTDEMUCS_KW = {"sources": ["drums", "bass", "other", "vocals"], "bottom_channels": 512, "segment": 7.8}


def htdemucs_model():
    """HTDemucs with the released model's architecture and random weights, or None without the package."""
    try:
        from demucs.htdemucs import HTDemucs
    except ImportError:
        print("demucs is not installed: pip install 'backline[bench]' (or demucs==4.0.1); timing only ours",
              file=sys.stderr)
        return None
    torch.manual_seed(0)
    return HTDemucs(**HTDEMUCS_KW).eval()


def run_htdemucs(model, mix: np.ndarray) -> torch.Tensor:
    from demucs.apply import apply_model

    with torch.inference_mode():
        return apply_model(model, torch.from_numpy(mix)[None], shifts=0, split=True, overlap=0.25,
                           progress=False, num_workers=0)[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mix", type=Path, help="a stereo mix (default: the demo song, tiled)")
    p.add_argument("--weights", type=Path, help="mask network weights (default: shipped)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(hardware())
    from backline.engines.separate.engine import WEIGHTS, Separator, load_model

    if a.mix is None:
        from backline.engines.data.demo import demo_song

        a.mix = demo_song() / "mix.flac"
    song = read_audio(a.mix, sample_rate=SR, channels=2).samples
    n = int(a.seconds * SR)
    mix = np.tile(song, (1, int(np.ceil(n / song.shape[1]))))[:, :n].astype(np.float32)
    sep = Separator(load_model(a.weights or WEIGHTS))
    ht = htdemucs_model()
    runs: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    cases = {
        "mask network, one role (bass)": lambda: sep.separate(Audio(mix, SR), [("bass", False)]),
        "mask network, three roles": lambda: sep.separate(Audio(mix, SR), [("bass", False), ("drums", False),
                                                                           ("other", False)]),
        "mask network, all five outputs": lambda: sep.separate(Audio(mix, SR), [
            ("bass", False), ("drums", False), ("other", False), ("bass", True), ("drums", True)]),
    }
    if ht is not None:
        n_params = sum(q.numel() for q in ht.parameters()) / 1e6
        cases[f"HTDemucs ({n_params:.1f} M params), all 4 sources"] = lambda: run_htdemucs(ht, mix)
    for _ in range(a.repeats):
        for name, fn in cases.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            runs.setdefault(name, []).append(time.perf_counter() - t0)
            cpu.setdefault(name, []).append(time.process_time() - c0)
    print(f"{a.seconds:g} s stereo 44.1 kHz ({a.mix.name}), {a.threads} thread(s), fastest of {a.repeats}; "
          f"load average now {os.getloadavg()[0]:.1f}")
    best = {k: min(v) for k, v in cpu.items()}
    ht_name = next((k for k in best if k.startswith("HTDemucs")), None)
    for name, c in best.items():
        ratio = f", {c / best[ht_name]:.3f}× HTDemucs's CPU time" if ht_name and name != ht_name else ""
        w = min(runs[name])
        print(f"  {name:<44} CPU {c:7.2f} s = {x_real_time(c, a.seconds):.3f}× real time{ratio}; "
              f"wall {w:.2f} s = {x_real_time(w, a.seconds):.3f}×  (wall of each run: "
              f"{', '.join(f'{t:.2f}' for t in runs[name])} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
