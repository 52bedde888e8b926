"""Weights on disk: safetensors for tensors, a JSON file beside it for the config. Never pickle.

`name.safetensors` holds the state dict; `name.json` holds `{"kind", "format_version", "config", "training"}`.
The loader checks kind, format version and every tensor's name and shape *before* loading, so weights that do
not match the code fail with a message that says what differs instead of a stack trace from deep in torch.
Checkpoints for resuming training use the same format via `flatten_state`/`unflatten_state`, so optimizer
state travels as tensors plus a small JSON skeleton.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backline.engines.core.audio import atomic_output, write_bytes_atomic
from backline.engines.core.errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def weight_paths(path: str | Path) -> tuple[Path, Path]:
    """`foo`, `foo.safetensors` or `foo.json` → (`foo.safetensors`, `foo.json`)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, overwrite: bool) -> None:
    from safetensors.torch import save_file  # lazy: torch (training and exports only)

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


def check_export(paths: list[str | Path] | str | Path, *, overwrite: bool = False, flag: str = "--export") -> None:
    """Call before training: refuse (one line) an export that would fail only after the training — weights
    already there without `overwrite`, a path under a file, a read-only folder. Creates nothing."""
    from backline.engines.core.errors import ConfigError

    names = [paths] if isinstance(paths, (str, Path)) else list(paths)
    for name in names:
        for target in weight_paths(name):
            if target.exists() and not overwrite:
                raise ConfigError(f"{flag}: {target} already exists", fix="pass --overwrite to replace the weights, "
                                                                          "or export somewhere else")
            above = target.parent
            while not above.exists() and above.parent != above:
                above = above.parent
            if not above.is_dir():
                raise ConfigError(f"{flag}: {above} is a file, not a folder", path=target,
                                  fix="choose a path inside a folder")
            readonly = False
            with contextlib.suppress(OSError):
                readonly = bool(os.statvfs(above).f_flag & os.ST_RDONLY)
            if readonly or not os.access(above, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag}: {above} is read-only", path=target, fix="export somewhere writable")


#: a weights config or checkpoint skeleton is a few KB to a few MB; anything far bigger is not ours
MAX_JSON_BYTES = 64 * 2**20


def read_json(path: str | Path, what: str = "config") -> Any:
    """A JSON file from outside the program (weights configs, checkpoints), or one WeightsError: unreadable,
    absurdly large or nested so deep (200,000 levels) that the decoder would raise RecursionError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise WeightsError(f"{what} is {path.stat().st_size / 2**20:.0f} MB, not a Backline {what}", path=path)
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as err:
        raise WeightsError(f"{what} is nested too deeply to be a Backline {what}", path=path,
                           fix="use weights written by backline train ... --export") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{what} cannot be read ({err})", path=path) from err


def read_weights_config(path: str | Path, *, kind: str, format_version: int = 1) -> dict[str, Any]:
    """The JSON beside the weights, checked for kind and version."""
    tensors_path, config_path = weight_paths(path)
    for p in (tensors_path, config_path):
        if not p.exists():
            raise WeightsError("weights file is missing", path=p,
                               fix="train the model (backline train ...) or reinstall Backline")
    meta = read_json(config_path)
    if not isinstance(meta, dict):
        raise WeightsError("config is not a JSON object", path=config_path, fix="use weights written by Backline")
    if meta.get("kind") != kind:
        raise WeightsError(f"holds '{meta.get('kind')}' weights, not '{kind}'", path=config_path,
                           fix="point to the right model's weights")
    if meta.get("format_version") != format_version:
        raise WeightsError(f"format version {meta.get('format_version')} does not match this code's {format_version}",
                           path=config_path, fix="retrain or use weights from the same Backline release")
    return meta


#: A config that asks for more parameters than this is refused before anything is allocated (the shipped models
#: have 2–3 M; the paper-size ones a few hundred M).
MAX_PARAMETERS = 2_000_000_000
#: Sane bounds for numbers and lists in a weights config (any real layer width, depth or rate fits).
MAX_CONFIG_INT = 1 << 20
MAX_CONFIG_LIST = 256


def load_weights(path: str | Path, *, kind: str, build: Callable[[dict[str, Any]], torch.nn.Module],
                 format_version: int = 1, map_location: str | torch.device = "cpu",
                 reference: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build a model from the stored config, check every tensor name/shape, then load. Returns (model, meta).

    The JSON is untrusted until proven otherwise: its values are checked for type and size (against
    `reference`, a known-good config of the same model, when given), the model is first built on torch's
    'meta' device (shapes only, nothing allocated) and compared with the tensor shapes in the safetensors
    header, and only then built for real — a crafted config cannot make us allocate gigabytes first."""
    import torch  # lazy: the torch models' loader; numpy inference reads weights with `load_arrays`
    from safetensors.torch import load_file

    from backline.engines.core.meta_init import _SkipInitOnMeta

    meta, config, tensors_path, config_path = _checked_config(path, kind, format_version, reference)
    header = _header_shapes(tensors_path)
    try:
        with torch.device("meta"), _SkipInitOnMeta():
            skeleton = build(config)
    except WeightsError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to build from this JSON is a bad config
        raise WeightsError(f"config does not fit the code ({type(err).__name__}: {err})", path=config_path,
                           fix="use weights made by this Backline release") from err
    parameters = sum(t.numel() for t in skeleton.state_dict().values())
    if parameters > MAX_PARAMETERS:
        raise WeightsError(f"config asks for {parameters / 1e9:.1f} G parameters", path=config_path,
                           fix="this is not a Backline model config; reinstall the weights")
    check_shapes({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, header, tensors_path)
    del skeleton
    model = build(config)
    try:
        state = load_file(str(tensors_path), device=str(map_location))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(f"cannot be read ({err})", path=tensors_path, fix="re-download or retrain") from err
    check_state_matches(model, state, tensors_path)
    model.load_state_dict(state)
    return model, meta


def load_arrays(path: str | Path, *, kind: str, shapes: Callable[[dict[str, Any]], dict[str, tuple[int, ...]]],
                format_version: int = 1, reference: dict[str, Any] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`load_weights` for inference in numpy: the same checks (kind, version, the untrusted config's values, and
    every tensor's name and shape against `shapes(config)` from the safetensors header before any tensor is read),
    then the tensors as float32 arrays (fp16 weights are widened, as `.float()` does). Returns (arrays, meta).

    Why: a follow take's models are small (a GRU, a few linear layers); torch's import alone cost more CPU than
    the take's work (1.6 CPU-s), so their inference runs in numpy from the same files."""
    from safetensors.numpy import load_file  # lazy: only weights read into numpy need it

    meta, config, tensors_path, config_path = _checked_config(path, kind, format_version, reference)
    try:
        expected = shapes(config)
    except Exception as err:  # noqa: BLE001 - any failure to read shapes from this JSON is a bad config
        raise WeightsError(f"config does not fit the code ({type(err).__name__}: {err})", path=config_path,
                           fix="use weights made by this Backline release") from err
    if sum(math.prod(s) for s in expected.values()) > MAX_PARAMETERS:
        raise WeightsError("config asks for too many parameters", path=config_path,
                           fix="this is not a Backline model config; reinstall the weights")
    check_shapes(expected, _header_shapes(tensors_path), tensors_path)
    try:
        arrays = load_file(str(tensors_path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(f"cannot be read ({err})", path=tensors_path, fix="re-download or retrain") from err
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, meta


def _checked_config(path: str | Path, kind: str, format_version: int, reference: dict[str, Any] | None
                    ) -> tuple[dict[str, Any], dict[str, Any], Path, Path]:
    """(meta, config, tensors path, config path): the JSON beside the weights with its config checked as untrusted
    input, before either loader (torch or numpy) builds anything from it."""
    meta = read_weights_config(path, kind=kind, format_version=format_version)
    tensors_path, config_path = weight_paths(path)
    config = meta.get("config")
    if not isinstance(config, dict):
        raise WeightsError("config is not a JSON object", path=config_path, fix="retrain or reinstall the weights")
    check_config(config, reference, config_path)
    return meta, config, tensors_path, config_path


def check_config(config: Any, reference: dict[str, Any] | None = None, path: Path | None = None,
                 where: str = "config") -> None:
    """Types and sizes of an untrusted config: plain JSON values, numbers and lists of sane size, and (given a
    known-good `reference`) the same type as the reference for every key both have."""
    if isinstance(config, bool) or config is None:
        pass
    elif isinstance(config, int):
        if abs(config) > MAX_CONFIG_INT:
            raise WeightsError(f"{where} = {config} is far too large for a model setting", path=path,
                               fix="this is not a Backline model config; reinstall the weights")
    elif isinstance(config, float):
        if config != config or abs(config) > 1e12:
            raise WeightsError(f"{where} = {config} is not a usable number", path=path)
    elif isinstance(config, str):
        if len(config) > 1000:
            raise WeightsError(f"{where} is a {len(config)}-character string", path=path)
    elif isinstance(config, list):
        if len(config) > MAX_CONFIG_LIST:
            raise WeightsError(f"{where} lists {len(config)} values", path=path,
                               fix="this is not a Backline model config; reinstall the weights")
        for i, v in enumerate(config):
            ref = reference[0] if isinstance(reference, list) and reference else None
            check_config(v, ref, path, f"{where}[{i}]")
    elif isinstance(config, dict):
        for k, v in config.items():
            ref = reference.get(k) if isinstance(reference, dict) else None
            check_config(v, ref, path, f"{where}.{k}" if where != "config" else str(k))
    else:
        raise WeightsError(f"{where} holds a {type(config).__name__}", path=path)
    if reference is None:
        return
    expected, found = _kind(reference), _kind(config)
    if expected != found and not (expected == "number" and found == "int") and config is not None \
            and reference is not None:
        raise WeightsError(f"{where} must be {'a ' if expected != 'int' else 'an '}{expected}, got {config!r}"[:200],
                           path=path, fix="use weights made by this Backline release")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false value"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _header_shapes(tensors_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header alone (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(tensors_path), framework="np") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors' own error types for corrupt headers
        raise WeightsError(f"cannot be read ({err})", path=tensors_path, fix="re-download or retrain") from err


def check_state_matches(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path | None = None) -> None:
    check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()},
                 {k: tuple(v.shape) for k, v in state.items()}, path)


def check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                 path: Path | None = None) -> None:
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
    import torch  # lazy: training checkpoints only

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
    from safetensors.torch import load_file  # lazy: torch (resuming training only)

    tensors_path, json_path = weight_paths(path)
    try:
        skeleton = read_json(json_path, "checkpoint")["skeleton"]
        tensors = load_file(str(tensors_path), device=map_location)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise WeightsError(f"checkpoint cannot be read ({err})", path=tensors_path,
                           fix="delete the broken checkpoint to start fresh") from err
    return unflatten_state(tensors, skeleton)
