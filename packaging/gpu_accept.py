#!/usr/bin/env python3
"""Judge what a GPU lease returned and install only the weights that measure better here.

    python packaging/gpu_accept.py RETURNED_DIR [--bundle build/gpu-bundle] [--min-gain 0.01] [--dry-run]

For every task the lease finished (metrics.json), on this machine's CPU:
1. the returned files load through the project's own loaders (kind, version, every tensor's shape checked);
2. a returned codec must keep the installed codec's latent space (decoder-only fine-tune): otherwise the bass
   model and every latent cache would silently stop fitting, so it is refused;
3. the held-out loss of the installed weights and of the returned ones is measured again here, on the bundle's
   held-out split with the lease's own evaluation (the GPU's numbers are printed beside it, not trusted);
4. only a returned model whose held-out loss is lower by at least `--min-gain` (relative, default 1 %) is
   installed: codecs first get their output gain re-measured here (BS.1770 needs scipy, absent on the GPU
   machine), then both files are written beside the installed ones and renamed over them.
The summary says what to run next (the engines' benchmarks, a TRAINING.md entry) before committing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_lease  # noqa: E402 - the lease's registry and evaluation, one definition for both sides


def _say(msg: str) -> None:
    print(f"gpu-accept: {msg}", flush=True)


def install_pair(src_stem: Path, dst_stem: Path) -> None:
    """Copy `x.safetensors` + `x.json` over the installed pair: both written to temp files in the target folder
    first, then renamed (tensors first, so a crash between the two renames leaves a pair the loader refuses
    loudly on a shape/kind check rather than loading half of an update)."""
    dst_stem.parent.mkdir(parents=True, exist_ok=True)
    staged = []
    for suffix in (".safetensors", ".json"):
        src = src_stem.with_name(src_stem.name + suffix)
        dst = dst_stem.with_name(dst_stem.name + suffix)
        tmp = dst.with_name(f".{dst.name}.accept-{os.getpid()}")
        tmp.write_bytes(src.read_bytes())
        staged.append((tmp, dst))
    for tmp, dst in staged:
        os.replace(tmp, dst)


def recalibrate_codec(weights: Path, held: Any, out_stem: Path) -> float:
    """Re-measure a codec's output gain (calibrate_output_gain, as every codec export does) on held-out crops and
    write the weights with it to `out_stem`. Returns the gain in dB."""
    from backline.engines.codec.codec import FORMAT_VERSION, KIND, load_codec
    from backline.engines.codec.train import calibrate_output_gain
    from backline.engines.core.weights import save_weights

    codec = load_codec(_role_of(weights), weights=weights)
    model = codec.model
    batches = iter([(held[k:k + 4].float(),) for k in range(0, held.shape[0], 4)] * 4)
    gain = calibrate_output_gain(model, batches, n_batches=max(1, min(6, held.shape[0] // 4)))
    model.cfg.output_gain_db = gain
    training = dict(codec.meta.get("training", {}))
    training["output_gain_db"] = gain
    save_weights(model, out_stem, kind=KIND, config=model.cfg.to_dict(), format_version=FORMAT_VERSION,
                 training=training, overwrite=True)
    return gain


def _role_of(weights: Path) -> str:
    meta = json.loads(Path(weights).with_suffix(".json").read_text())
    return meta["config"]["role"]


def judge(returned: Path, bundle: Path, root: Path, min_gain: float, dry_run: bool) -> list[dict[str, Any]]:
    gpu_lease.bootstrap()
    import torch

    from backline.engines.codec.codec import latent_space_id, load_codec
    from backline.engines.core.errors import BacklineError
    from backline.engines.core.training import Distributed

    metrics_path = returned / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"gpu-accept: {returned} holds no metrics.json: not a lease's output")
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("format") != gpu_lease.FORMAT:
        raise SystemExit(f"gpu-accept: {metrics_path} is not a GPU-lease metrics file")
    if not (bundle / "manifest.json").is_file():
        raise SystemExit(f"gpu-accept: no bundle at {bundle}; the held-out split is needed to measure")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    lease = gpu_lease.Lease(Distributed.setup("cpu"), bundle, returned, bool(metrics.get("smoke")), compile=False)
    registry = {t.name: t for t in gpu_lease.TASKS}
    report = []
    for name, entry in metrics.get("tasks", {}).items():
        row: dict[str, Any] = {"task": name, "gpu_before": (entry.get("before") or {}).get("loss"),
                               "gpu_after": (entry.get("after") or {}).get("loss")}
        report.append(row)
        task = registry.get(name)
        if task is None or entry.get("status") != "done":
            row["decision"] = f"skipped ({entry.get('status', 'unknown task') if task else 'not in this registry'})"
            continue
        try:
            for stem, target in task.install.items():
                new = returned / f"{stem}.safetensors"
                installed = root / f"{target}.safetensors"
                if not new.is_file() or not new.with_suffix(".json").is_file():
                    raise BacklineError(f"{new.name} or its JSON did not come back")
                if task.name.startswith("codec"):
                    role = _role_of(new)
                    if latent_space_id(load_codec(role, weights=new)) != latent_space_id(load_codec(role, weights=installed)):
                        raise BacklineError("the returned codec changed the latent space (encoder); refused")
                before = task.prepare(lease, installed).evaluate("report")["loss"]
                after = task.prepare(lease, new).evaluate("report")["loss"]
                row.update(cpu_before=before, cpu_after=after, target=str(target))
                better = after < before * (1 - min_gain) if before > 0 else after < before
                if not better:
                    row["decision"] = f"kept the installed weights (held-out {before:.4f} → {after:.4f})"
                    continue
                if dry_run:
                    row["decision"] = f"would install (held-out {before:.4f} → {after:.4f})"
                    continue
                with tempfile.TemporaryDirectory() as scratch:  # the returned folder may be read-only
                    src = new.with_suffix("")
                    if task.name.startswith("codec"):
                        held = gpu_lease._bundle_tensors(lease, f"codec_{role}")["heldout"]
                        src = Path(scratch) / stem
                        row["output_gain_db"] = recalibrate_codec(new, held, src)
                    install_pair(src, root / target)
                row["decision"] = f"INSTALLED (held-out {before:.4f} → {after:.4f})"
        except (BacklineError, OSError, RuntimeError, ValueError, KeyError) as err:
            row["decision"] = f"refused: {type(err).__name__}: {err}"[:400]
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_accept.py", description=__doc__.splitlines()[0])
    p.add_argument("returned", type=Path, help="the folder the device tool returned ($OUT's files)")
    p.add_argument("--bundle", type=Path, default=Path("build/gpu-bundle"), help="the bundle the lease trained on")
    p.add_argument("--min-gain", type=float, default=0.01, help="relative held-out improvement required (0.01 = 1 %%)")
    p.add_argument("--dry-run", action="store_true", help="measure and say, install nothing")
    p.add_argument("--root", type=Path, default=gpu_lease.REPO, help="repository to install into (default: this one)")
    a = p.parse_args(argv)
    report = judge(a.returned, a.bundle, a.root, a.min_gain, a.dry_run)
    print(f"{'task':<11} {'GPU before':>10} {'GPU after':>10} {'CPU before':>10} {'CPU after':>10}  decision")
    for r in report:
        nums = " ".join(f"{r[k]:10.4f}" if isinstance(r.get(k), (int, float)) else f"{'-':>10}"
                        for k in ("gpu_before", "gpu_after", "cpu_before", "cpu_after"))
        print(f"{r['task']:<11} {nums}  {r['decision']}")
    installed = [r for r in report if r["decision"].startswith("INSTALLED")]
    if installed:
        _say("next: run the engines' benchmarks (benchmarks/codec.py, benchmarks/bass_eval.py --quick), add a "
             "TRAINING.md entry with the lease's metrics.json figures, then commit the weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
