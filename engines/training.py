"""What every trainer shares: torchrun/DDP set-up, bf16 autocast on GPU, checkpoint/resume, logging, progress.

A trainer runs unchanged as `python -m ...`, `backline train X` or under `torchrun --nproc_per_node N`: the
`Distributed` context reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and picks NCCL on CUDA
and gloo on CPU. Only rank 0 writes checkpoints, logs and the progress bar; every rank resumes from the same
checkpoint so their optimizers stay in step.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from backline.engines.weights import load_state, save_state, weight_paths


@dataclass
class Distributed:
    """Process-group context; a single process with no torchrun environment is world size 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised: bool = False

    @classmethod
    def setup(cls, device: str = "auto") -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
        dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        initialised = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
            initialised = True
        return cls(rank, world, local, dev, initialised)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP-wrap when distributed (unused-parameter detection on: critics and heads train alternately)."""
        model = model.to(self.device)
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on GPU; full precision on CPU (CPU bf16 is slower than fp32 on most machines)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def mean(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.initialised and dist.is_initialized():
            dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Checkpointer:
    """`run_dir/checkpoint.safetensors` + `.json`, written atomically by rank 0; read by every rank to resume."""

    def __init__(self, run_dir: str | Path, ctx: Distributed) -> None:
        self.run_dir = Path(run_dir)
        self.ctx = ctx
        self.path = self.run_dir / "checkpoint"
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return all(p.exists() for p in weight_paths(self.path))

    def save(self, step: int, modules: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        if self.ctx.is_main:
            state = {"step": step, "extra": extra or {}}
            for name, obj in modules.items():
                inner = getattr(obj, "module", obj)
                state[name] = inner.state_dict()
            save_state(state, self.path, overwrite=True)
        self.ctx.barrier()

    def load(self, modules: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Load into modules/optimizers; returns (step, extra). Step 0 when there is no checkpoint."""
        if not self.exists():
            return 0, {}
        state = load_state(self.path, map_location=str(self.ctx.device))
        for name, obj in modules.items():
            getattr(obj, "module", obj).load_state_dict(state[name])
        return int(state["step"]), state.get("extra", {})


class MetricLog:
    """Append-only `metrics.jsonl` in the run folder (rank 0), plus the latest values for the progress bar."""

    def __init__(self, run_dir: str | Path, ctx: Distributed) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.ctx = ctx
        self.latest: dict[str, float] = {}
        self.started = time.monotonic()

    def log(self, step: int, **values: float) -> None:
        values = {k: self.ctx.mean(v) for k, v in values.items()}
        self.latest = values
        if self.ctx.is_main:
            row = {"step": step, "time_s": round(time.monotonic() - self.started, 2)} | values
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def progress_bar(total: int, initial: int, ctx: Distributed, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not ctx.is_main, dynamic_ncols=True)


def infinite(loader: Any, ctx: Distributed) -> Iterator[Any]:
    """Cycle a DataLoader forever, advancing a DistributedSampler's epoch so shards reshuffle."""
    epoch = 0
    while True:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
