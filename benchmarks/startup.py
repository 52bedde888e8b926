"""Start-up cost and end-to-end speed of a follow-mode bass take (issue 23: ≤ 2 CPU-s fixed, ≤ 0.15× real time).

Three measurements, all in CPU seconds (user + system, this process's and its children's — fluidsynth renders in
a child), on one thread (OMP_NUM_THREADS=1, the CLI's default `--threads 1`):

1. **cold**: `backline generate bass --mix MIX --out TMP --device cpu` as a fresh process — what a user pays.
2. **work**: the same request through the same path (`generate_and_write` with the CLI's role check) a second
   time inside one warm process: the processing itself, with every import and model load already paid.
3. **fixed** = cold − work: the start-up cost before work (imports, model loads, first-call caches), and what the
   big imports cost each on their own (a fresh `python -c "import X"` each, minus a bare interpreter).

Speed is processing seconds ÷ audio seconds ("× real time", `_common.x_real_time`). Without `--mix` the demo
band without its bass (`backline demo`'s song, rendered once into the cache) is looped to `--seconds` (its 8 bars
repeat on the bar line). CPU time is used rather than wall time because the machine is shared (load is printed).

    .venv/bin/python benchmarks/startup.py [--mix MIX.wav] [--seconds 30] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware, x_real_time  # noqa: E402

#: The modules whose import is the start-up cost worth watching, and what they are for.
IMPORTS = (
    ("torch", "off the follow paths since issue 23's last step (planners, role check, front end run in numpy); "
              "training, GPU and the free modes only"),
    ("torchaudio.functional", "off the follow paths (resampling and K-weighting are numpy ports of its definitions)"),
    ("backline.engines.bass.follow_engine", "the follow engine, everything it imports"),
    ("scipy.signal", "off the follow path since issue 23 (was loudness and librosa)"),
    ("librosa.feature,librosa.onset,librosa.sequence,librosa.util,librosa.core",
     "off the follow path since issue 23 (was the listener's front end; now benchmarks and tests only)"),
    ("numba", "off the follow path (librosa's compiled helpers)"),
)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def all_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + children_cpu()


def run_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(CPU-s, wall-s, last output line) of a command run to completion."""
    c0, w0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    cpu, wall = children_cpu() - c0, time.perf_counter() - w0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} … failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return cpu, wall, (proc.stdout.strip().splitlines() or [""])[-1]


def demo_mix(seconds: float, folder: Path) -> Path:
    """The demo band without its bass, looped on its bar line to `seconds`, written as a WAV: each copy starts
    where the song's last bar ends (from its MIDI), and the ring past it is added into the next copy, so the
    band keeps a steady 100 BPM grid across the seams (looping at the stems' length put each seam 2 s late)."""
    import numpy as np
    import pretty_midi

    from backline.engines.core.audio import Audio, read_audio, write_audio
    from backline.engines.data.demo import demo_song
    from backline.engines.data.slakh import read_track

    song = demo_song()
    stems = [(st.role, read_audio(st.audio)) for st in read_track(song).audio_stems()]
    frames = min(a.frames for _, a in stems)
    rate = stems[0][1].sample_rate
    band = np.sum([a.samples[:, :frames] for role, a in stems if role != "bass"], axis=0).astype(np.float32)
    pm = pretty_midi.PrettyMIDI(str(Path(song) / "MIDI" / "S00.mid"))
    downbeats = pm.get_downbeats()
    bar_s = float(np.median(np.diff(downbeats)))
    loop = int(round((downbeats[downbeats < pm.get_end_time() - 1e-3][-1] + bar_s) * rate))
    want = int(seconds * rate)
    looped = np.zeros((band.shape[0], want + frames), np.float32)
    for start in range(0, want, loop):
        looped[:, start:start + frames] += band
    looped = looped[:, :want]
    return write_audio(folder / "band_without_bass.wav", Audio(looped, rate))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mix", type=Path, help="a mix to play along to (default: the demo band looped)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the default mix (s)")
    ap.add_argument("--runs", type=int, default=2, help="cold runs (the best is kept: the machine is shared)")
    a = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    os.environ.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    print(hardware(torch_info=False))
    backline = str(Path(sys.executable).with_name("backline"))
    with tempfile.TemporaryDirectory(prefix="backline-startup-") as tmp:
        tmp = Path(tmp)
        mix = a.mix if a.mix is not None else demo_mix(a.seconds, tmp)
        if not mix.is_file():
            print(f"mix not found: {mix}", file=sys.stderr)
            return 2
        from backline.engines.core.audio import audio_info

        rate, _, frames = audio_info(mix)
        seconds = frames / rate
        print(f"mix: {mix if a.mix else 'the demo band without its bass, looped'} ({seconds:.1f} s)")

        # 3b. what the big imports cost, each in a fresh interpreter
        bare = min(run_cpu([sys.executable, "-c", "pass"], env)[0] for _ in range(3))
        print(f"\nimport cost (fresh interpreter each, minus a bare one: {bare:.2f} CPU-s)")
        for modules, why in IMPORTS:
            code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules.split(","))
            cpu = min(run_cpu([sys.executable, "-c", code], env)[0] for _ in range(2)) - bare
            print(f"  {modules.split(',')[0]:<38} {cpu:5.2f} CPU-s  ({why})")

        # 1. cold: the command a user runs
        colds = []
        for k in range(a.runs):
            cpu, wall, last = run_cpu([backline, "generate", "bass", "--mix", str(mix), "--out", str(tmp / f"cold{k}"),
                                       "--device", "cpu"], env)
            colds.append((cpu, wall))
        cold, cold_wall = min(colds)
        cli_help = min(run_cpu([backline, "generate", "bass", "--help"], env)[0] for _ in range(2))

        # 2. work: the same request, warm, in this process (the CLI's path: role check, engine, take writer)
        import torch

        torch.set_num_threads(1)
        from backline.engines.bass.follow_engine import build
        from backline.engines.core.audio import read_audio
        from backline.engines.core.protocol import GenerationRequest
        from backline.engines.core.takes import generate_and_write
        from backline.engines.core.timeline import Timeline

        engine = build("shipped", "cpu")
        audio = read_audio(mix)

        def take(k: int):
            request = GenerationRequest("bass", tmp / f"warm{k}", Timeline.constant(120.0, rate), region_stop=frames,
                                        mix=audio, preset="finger")
            return generate_and_write(engine, request, role_check="shipped")

        take(0)  # warm-up: imports, planner, tagger, first-call caches
        works = []
        for k in range(1, 3):
            c0 = all_cpu()
            result = take(k)
            works.append(all_cpu() - c0)
        work = min(works)
    fixed = cold - work
    print(f"\n`backline generate bass --help`: {cli_help:.2f} CPU-s")
    print(f"cold `backline generate bass` on {seconds:.0f} s: {cold:.2f} CPU-s ({cold_wall:.1f} s wall, shared machine)"
          f" = {x_real_time(cold, seconds):.3f}× real time end to end (target ≤ 0.15×)")
    print(f"work (same request, warm process): {work:.2f} CPU-s = {x_real_time(work, seconds):.3f}× real time; "
          f"stages {result.report.get('timings_s')}")
    print(f"fixed cost before work: {fixed:.2f} CPU-s (target ≤ 2); load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
