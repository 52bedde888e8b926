"""What every trainer shares: torchrun/DDP set-up, bf16 autocast on GPU, checkpoint/resume, logging, progress.

A trainer runs unchanged as `python -m ...`, `backline train X` or under `torchrun --nproc_per_node N`: the
`Distributed` context reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and picks NCCL on CUDA
and gloo on CPU. Only rank 0 writes checkpoints, logs and the progress bar; every rank resumes from the same
checkpoint so their optimizers stay in step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from backline.engines.core.errors import ConfigError
from backline.engines.core.weights import load_state, save_state, weight_paths


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
    """tqdm on rank 0; a silent counter where tqdm is not installed (the GPU lease machine has torch only)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return SilentBar(total, initial)
    return tqdm(total=total, initial=initial, desc=desc, disable=not ctx.is_main, dynamic_ncols=True)


class SilentBar:
    """The part of tqdm's interface the trainers use, doing nothing but count (metrics.jsonl still logs)."""

    def __init__(self, total: int = 0, initial: int = 0) -> None:
        self.total, self.n = total, initial

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def infinite(loader: Any, ctx: Distributed) -> Iterator[Any]:
    """Cycle a DataLoader forever, advancing a DistributedSampler's epoch so shards reshuffle."""
    epoch = 0
    while True:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


# --- the one training loop -----------------------------------------------------------------------------------

def ramp_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier of the drum and tagger recipes (kept so their shipped weights reproduce): a linear ramp over
    `warmup` steps multiplied by a cosine from 1 to 0 over all `total` steps."""
    return min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))


def apply_update(opt: torch.optim.Optimizer | Sequence[torch.optim.Optimizer], loss: torch.Tensor, params: Any = None,
                 clip: float | None = None) -> float:
    """One optimiser update from `loss`: zero the grads, backward, clip the norm of `params` to `clip` (when
    given), step. Returns the loss as a float. A GAN calls it once per network, each with its own optimiser;
    several optimisers over one model's parameter groups (one with its own fixed learning rate) share one backward."""
    opts = [opt] if isinstance(opt, torch.optim.Optimizer) else list(opt)
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    for o in opts:
        o.step()
    return float(loss.detach())


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Exponential moving average of the parameters (buffers copied): the weights the diffusion trainers export."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then a cosine from 1 down to `floor` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class TimeLimit:
    """`--max-minutes`, decided the same way on every rank: each rank reads its own clock, and an all-reduce
    (MAX) makes them agree, so no rank leaves the loop while another waits in the next step's all-reduce."""

    def __init__(self, max_minutes: float | None, ctx: Distributed) -> None:
        self.limit_s = float(max_minutes) * 60.0 if max_minutes else 0.0
        self.ctx = ctx
        self.started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def should_stop(self) -> bool:
        if self.limit_s <= 0:
            return False
        over = self.elapsed_s >= self.limit_s
        if not self.ctx.distributed:
            return over
        flag = torch.tensor([1.0 if over else 0.0], device=self.ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)


@dataclass
class LoopResult:
    step: int
    stopped_early: bool
    elapsed_s: float  # this run plus the runs it resumed
    latest: dict[str, float]


class TrainLoop:
    """Steps, logging, checkpoint and resume, the time limit and the LR schedule, for every trainer.

        loop = TrainLoop(ctx, run_dir, modules={"model": m, "opt": opt}, optimizers=[opt], steps=..., lr=...,
                         warmup=..., max_minutes=..., desc="train bass")
        result = loop.run(step_fn, on_log=lambda step: {"val_loss": ...})

    `step_fn(step) -> dict of floats` does one optimisation step (the loop sets each optimizer group's LR first:
    warm-up then cosine to `floor`·lr, or `lr_fn(step)` when given; a group with an "lr_scale" gets that multiple
    of it, e.g. new weights that must catch up). Every `log_every` steps the means of what
    it returned (each value over the steps that returned it; plus `on_log(step)`, the learning-curve hook: held-out
    quality at that step) go to `metrics.jsonl` and the progress bar; every `ckpt_every` steps and at the end
    `checkpoint.*` is written (rank 0), with the elapsed time so a resumed run keeps its clock. The time limit is
    agreed by all ranks (`TimeLimit`). Ctrl+C (or SIGTERM turned into KeyboardInterrupt) writes the checkpoint of
    the last finished step before it propagates (single process: under torchrun every rank is interrupted at its
    own moment, so only the periodic checkpoints count), so a cancelled run resumes where it stopped.

    Several networks trained against each other (a GAN's generator and critics, or models trained one after
    another in one run) are one loop: every module and optimizer goes in `modules` (one checkpoint), every
    optimizer in `optimizers` (each gets the LR of the step), and `step_fn` updates whichever it needs that step,
    e.g. with `apply_update` once per optimizer. `lr_fn(step)` gives any schedule, phase-local ones included."""

    def __init__(self, ctx: Distributed, run_dir: str | Path, *, modules: dict[str, Any], optimizers: list[Any],
                 steps: int, lr: float, warmup: int = 0, floor: float = 0.1, max_minutes: float | None = None,
                 log_every: int = 50, ckpt_every: int = 500, desc: str = "train", lr_fn=None,
                 quiet: bool = False) -> None:
        if steps <= 0 or log_every <= 0 or ckpt_every <= 0:
            raise ConfigError("--steps, log and checkpoint intervals must be positive")
        if max_minutes is not None and max_minutes < 0:
            raise ConfigError(f"--max-minutes {max_minutes:g} must be >= 0 (0 = no limit)")
        self.ctx, self.modules, self.optimizers = ctx, modules, optimizers
        self.steps, self.lr, self.warmup, self.floor = steps, lr, warmup, floor
        self.log_every, self.ckpt_every, self.desc = log_every, ckpt_every, desc
        self.lr_fn, self.quiet = lr_fn, quiet
        self.ckpt = Checkpointer(run_dir, ctx)
        self.step, self.extra = self.ckpt.load(modules)
        self.elapsed_before = float(self.extra.get("elapsed_s", 0.0))
        self.log = MetricLog(run_dir, ctx)
        self.clock = TimeLimit(max_minutes, ctx)

    def lr_at(self, step: int) -> float:
        return self.lr_fn(step) if self.lr_fn is not None else \
            self.lr * warmup_cosine(step, self.steps, self.warmup, self.floor)

    def save(self, extra: dict[str, Any] | None = None) -> None:
        self.ckpt.save(self.step, self.modules,
                       {"elapsed_s": self.elapsed_before + self.clock.elapsed_s} | (extra or {}))

    @property
    def elapsed_s(self) -> float:
        """Training time of this run plus the runs it resumed (the x axis of a learning curve)."""
        return self.elapsed_before + self.clock.elapsed_s

    def run(self, step_fn, on_log=None) -> LoopResult:
        bar = SilentBar(self.steps, self.step) if self.quiet else progress_bar(self.steps, self.step, self.ctx,
                                                                                self.desc)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        stopped_early = False
        try:
            while self.step < self.steps:
                lr = self.lr_at(self.step)
                for opt in self.optimizers:
                    for group in opt.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                values = step_fn(self.step) or {}
                self.step += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                    counts[k] = counts.get(k, 0) + 1
                bar.update(1)
                if self.step % self.log_every == 0 or self.step == self.steps:
                    row = {k: v / counts[k] for k, v in sums.items()} | {"lr": lr}
                    if on_log is not None:
                        row |= on_log(self.step) or {}
                    self.log.log(self.step, **row)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in self.log.latest.items() if k != "lr"})
                    sums, counts = {}, {}
                if self.step % self.ckpt_every == 0:
                    self.save()
                if self.clock.should_stop():
                    stopped_early = self.step < self.steps
                    break
        except KeyboardInterrupt:
            if not self.ctx.distributed:
                self.save()  # the steps done so far are kept: the next run resumes here
            raise
        finally:
            bar.close()
        self.save()
        return LoopResult(self.step, stopped_early, self.elapsed_s, dict(self.log.latest))


def add_training_flags(parser: Any, *, steps: int, sizes: tuple[str, ...] = (), size: str | None = None,
                       run_dir: str | None = None, size_flags: tuple[str, ...] = ("--size",),
                       run_flags: tuple[str, ...] = ("--run-dir",), minutes: float | None = None) -> None:
    """The flags every trainer spells the same way: --steps, --max-minutes, --run-dir, --size (older spellings
    can be passed as extra aliases). No default path names a machine: run folders are relative or required."""
    parser.add_argument("--steps", type=int, default=steps, help=f"optimisation steps (default {steps})")
    parser.add_argument("--max-minutes", "--minutes", dest="max_minutes", type=float, default=minutes,
                        help="stop (and save) after this many minutes of training; 0 or unset = no limit"
                             + (f" (default {minutes:g})" if minutes else ""))
    parser.add_argument(*run_flags, dest="run_dir", type=Path, default=Path(run_dir) if run_dir else None,
                        required=run_dir is None,
                        help="run folder: checkpoint.* (resumed automatically), metrics.jsonl"
                             + (f" (default {run_dir})" if run_dir else ""))
    if sizes:
        parser.add_argument(*size_flags, dest="size", default=size, choices=sizes,
                            help=f"model size (default {size})")
