"""Weights on disk: safetensors for tensors, a JSON file beside it for the config. Never pickle.

`name.safetensors` holds the state dict; `name.json` holds `{"kind", "format_version", "config", "training"}`.
The loader checks kind, format version and every tensor's name and shape *before* loading, so weights that do
not match the code fail with a message that says what differs instead of a stack trace from deep in torch.
Checkpoints for resuming training use the same format via `flatten_state`/`unflatten_state`, so optimizer
state travels as tensors plus a small JSON skeleton.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from backline.engines.audio import atomic_output, write_bytes_atomic
from backline.engines.errors import WeightsError


def weight_paths(path: str | Path) -> tuple[Path, Path]:
    """`foo`, `foo.safetensors` or `foo.json` → (`foo.safetensors`, `foo.json`)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, overwrite: bool) -> None:
    final, tmp = atomic_output(path, overwrite=overwrite)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def save_weights(model: torch.nn.Module, path: str | Path, *, kind: str, config: dict[str, Any],
                 format_version: int = 1, training: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write `model`'s state dict and its config. Shared tensors are cloned (safetensors forbids aliasing)."""
    tensors_path, config_path = weight_paths(path)
    state = {k: v.clone() for k, v in _unwrap(model).state_dict().items()}
    _save_tensors(state, tensors_path, overwrite)
    meta = {"kind": kind, "format_version": format_version, "config": config, "training": training or {}}
    write_bytes_atomic(config_path, json.dumps(meta, indent=2, sort_keys=True).encode(), overwrite=overwrite)
    return tensors_path


def read_weights_config(path: str | Path, *, kind: str, format_version: int = 1) -> dict[str, Any]:
    """The JSON beside the weights, checked for kind and version."""
    tensors_path, config_path = weight_paths(path)
    for p in (tensors_path, config_path):
        if not p.exists():
            raise WeightsError("weights file is missing", path=p,
                               fix="train the model (backline train ...) or reinstall Backline")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"config cannot be read ({err})", path=config_path) from err
    if meta.get("kind") != kind:
        raise WeightsError(f"holds '{meta.get('kind')}' weights, not '{kind}'", path=config_path,
                           fix="point to the right model's weights")
    if meta.get("format_version") != format_version:
        raise WeightsError(f"format version {meta.get('format_version')} does not match this code's {format_version}",
                           path=config_path, fix="retrain or use weights from the same Backline release")
    return meta


def load_weights(path: str | Path, *, kind: str, build: Callable[[dict[str, Any]], torch.nn.Module],
                 format_version: int = 1, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build a model from the stored config, check every tensor name/shape, then load. Returns (model, meta)."""
    meta = read_weights_config(path, kind=kind, format_version=format_version)
    tensors_path, _ = weight_paths(path)
    try:
        model = build(meta["config"])
    except (TypeError, KeyError, ValueError) as err:
        raise WeightsError(f"config does not fit the code ({err})", path=tensors_path) from err
    try:
        state = load_file(str(tensors_path), device=str(map_location))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(f"cannot be read ({err})", path=tensors_path, fix="re-download or retrain") from err
    check_state_matches(model, state, tensors_path)
    model.load_state_dict(state)
    return model, meta


def check_state_matches(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path | None = None) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            detail.append(f"{len(wrong)} with wrong shape (e.g. {wrong[0]}: {found[wrong[0]]} vs {expected[wrong[0]]})")
        raise WeightsError("weights do not match the model config: " + "; ".join(detail), path=path,
                           fix="use weights trained with this config")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)  # DDP / compiled wrappers


# --- nested state (optimizer state, schedulers) <-> flat tensors + JSON skeleton ------------------------------

def flatten_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested dict/list of tensors and plain values into (tensors by path, JSON skeleton)."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}, {"__tensor__": prefix}
    if isinstance(obj, dict):
        tensors, skeleton = {}, {}
        for k, v in obj.items():
            t, s = flatten_state(v, f"{prefix}.{k}" if prefix else str(k))
            tensors |= t
            skeleton[str(k)] = s
        return tensors, {"__dict__": skeleton, "__int_keys__": all(isinstance(k, int) for k in obj) and bool(obj)}
    if isinstance(obj, (list, tuple)):
        tensors, skeleton = {}, []
        for i, v in enumerate(obj):
            t, s = flatten_state(v, f"{prefix}.{i}")
            tensors |= t
            skeleton.append(s)
        return tensors, {"__list__": skeleton}
    return {}, obj


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        int_keys = skeleton.get("__int_keys__", False)
        return {(int(k) if int_keys else k): unflatten_state(tensors, v) for k, v in skeleton["__dict__"].items()}
    if isinstance(skeleton, dict) and "__list__" in skeleton:
        return [unflatten_state(tensors, v) for v in skeleton["__list__"]]
    return skeleton


def save_state(state: dict[str, Any], path: str | Path, *, overwrite: bool = True) -> Path:
    """Save a nested training state (model/optimizer state dicts, step, rng) as safetensors + JSON."""
    tensors_path, json_path = weight_paths(path)
    tensors, skeleton = flatten_state(state)
    _save_tensors(tensors, tensors_path, overwrite)
    write_bytes_atomic(json_path, json.dumps({"kind": "training-state", "format_version": 1,
                                              "skeleton": skeleton}).encode(), overwrite=overwrite)
    return tensors_path


def load_state(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    tensors_path, json_path = weight_paths(path)
    try:
        skeleton = json.loads(json_path.read_text())["skeleton"]
        tensors = load_file(str(tensors_path), device=map_location)
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise WeightsError(f"checkpoint cannot be read ({err})", path=tensors_path,
                           fix="delete the broken checkpoint to start fresh") from err
    return unflatten_state(tensors, skeleton)
