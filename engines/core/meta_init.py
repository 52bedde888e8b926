"""Building a model's skeleton on torch's meta device without running its initialisers (`core.weights`' loader).

Kept apart from `core.weights` so that reading weights into numpy (the planners' inference) never imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

#: In-place initialisers (torch.nn.init's and the Tensor methods they call) that the meta-device skeleton skips.
_INIT_OPS = frozenset({"normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                       "xavier_uniform_", "xavier_normal_", "orthogonal_", "sparse_", "constant_", "ones_",
                       "zeros_", "zero_", "fill_", "eye_", "dirac_"})


class _SkipInitOnMeta(TorchFunctionMode):
    """Parameter initialisation is skipped on the meta device, where the values are never used.

    Why: torch's meta kernels for `normal_`/`uniform_` are Python decompositions that import `torch._dynamo` on
    first use — about 1 CPU-s (2.4 s of wall time under load) added to every command that loads any weights, for
    a skeleton that only gives shapes. Thread-safe: torch function modes are per thread."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _INIT_OPS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        elif name == "arange" and str(kwargs.get("device", "meta")) == "meta":  # a position table, say
            empty = _meta_arange(args, kwargs)
            if empty is not None:
                return empty
        elif name in _POINTWISE and not kwargs:  # ... and the sines of it
            empty = _meta_pointwise(name, args)
            if empty is not None:
                return empty
        elif name in ("randn", "rand") and str(kwargs.get("device", "meta")) == "meta":  # a learned embedding
            size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            if all(isinstance(n, int) and not isinstance(n, bool) for n in size) and \
                    not set(kwargs) - {"dtype", "device", "generator", "requires_grad"}:
                return torch.empty(tuple(size), dtype=kwargs.get("dtype") or torch.get_default_dtype(), device="meta")
        elif name in ("argmax", "argmin"):  # their meta checks import sympy
            empty = _meta_argmax(args, kwargs)
            if empty is not None:
                return empty
        return func(*args, **kwargs)


def _meta_argmax(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor | None:
    names = ("input", "dim", "keepdim")
    given = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
    x, dim, keepdim = given.get("input"), given.get("dim"), bool(given.get("keepdim", False))
    if not isinstance(x, torch.Tensor) or not x.is_meta or set(kwargs) - set(names) or x.dim() == 0:
        return None
    if dim is None:
        shape: tuple[int, ...] = (1,) * x.dim() if keepdim else ()
    else:
        d = int(dim) % x.dim()
        shape = tuple(1 if i == d else n for i, n in enumerate(x.shape) if keepdim or i != d)
    return torch.empty(shape, dtype=torch.int64, device="meta")


#: Elementwise ops whose meta kernels are Python decompositions too: answered with an empty meta tensor of the
#: broadcast shape and promoted dtype (the skeleton needs shapes, never values).
_FLOAT_UNARY = frozenset({"exp", "log", "sin", "cos", "sqrt", "rsqrt", "tanh", "sigmoid"})
_BINARY = frozenset({"mul", "add", "sub", "div", "pow", "__mul__", "__rmul__", "__add__", "__radd__", "__sub__",
                     "__rsub__", "__truediv__", "__rtruediv__", "__pow__"})
_POINTWISE = _FLOAT_UNARY | _BINARY | {"neg", "__neg__"}


def _meta_pointwise(name: str, args: tuple) -> torch.Tensor | None:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if not tensors or len(tensors) + len(numbers) != len(args) or not all(t.is_meta for t in tensors):
        return None
    if name in _BINARY:
        if len(args) != 2:
            return None
        dtype = torch.result_type(args[0], args[1])
        if "div" in name and not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.get_default_dtype()
    else:
        if len(args) != 1:
            return None
        dtype = tensors[0].dtype
        if name in _FLOAT_UNARY and not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.get_default_dtype()
    shape = np.broadcast_shapes(*(tuple(t.shape) for t in tensors))  # torch.broadcast_shapes imports sympy
    return torch.empty(shape, dtype=dtype, device="meta")


def _meta_arange(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor | None:
    """`torch.arange(...)` as an empty meta tensor of the same length and dtype (its meta kernel imports dynamo);
    None for the forms this does not read (tensor bounds), which then run as they are."""
    bounds = dict(zip(("start", "end", "step"), args if len(args) != 1 else (0, args[0])))
    bounds |= {k: kwargs[k] for k in ("start", "end", "step") if k in kwargs}
    start, end, step = bounds.get("start", 0), bounds.get("end"), bounds.get("step", 1)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end, step)) or step == 0:
        return None
    dtype = kwargs.get("dtype") or (torch.int64 if all(isinstance(v, int) for v in (start, end, step))
                                    else torch.get_default_dtype())
    return torch.empty(max(0, math.ceil((end - start) / step)), dtype=dtype, device="meta")
