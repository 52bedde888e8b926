"""The one training loop (engines/core/training.py): LR schedule, resume, and a time limit every rank agrees on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from backline.engines.core.training import Distributed, TrainLoop, warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.55)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.1)
    values = [warmup_cosine(s, 100, 10) for s in range(10, 101)]
    assert values == sorted(values, reverse=True)


def _loop(run_dir, steps, **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TrainLoop(Distributed(), run_dir, modules={"model": model, "opt": opt}, optimizers=[opt], steps=steps,
                     lr=0.1, warmup=2, log_every=2, ckpt_every=3, **kw)
    seen = []

    def step_fn(step):
        seen.append((step, opt.param_groups[0]["lr"]))
        x = torch.randn(8, 4)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    return loop, seen, step_fn, model


def test_resume_continues_where_it_stopped_with_the_same_schedule(tmp_path):
    loop, seen, fn, model = _loop(tmp_path, 4)
    result = loop.run(fn)
    assert result.step == 4 and not result.stopped_early and [s for s, _ in seen] == [0, 1, 2, 3]
    weights = model.weight.detach().clone()
    loop2, seen2, fn2, model2 = _loop(tmp_path, 8)
    assert loop2.step == 4 and torch.equal(model2.weight, weights)  # model and optimizer came back
    result2 = loop2.run(fn2)
    assert [s for s, _ in seen2] == [4, 5, 6, 7] and result2.step == 8
    assert [lr for _, lr in seen2] == pytest.approx([0.1 * warmup_cosine(s, 8, 2) for s in range(4, 8)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8] and all("loss" in r and "lr" in r for r in rows)


def test_time_limit_stops_and_saves(tmp_path):
    loop, seen, fn, _ = _loop(tmp_path, 1000, max_minutes=1e-9)
    result = loop.run(fn)
    assert result.stopped_early and result.step == 1 and len(seen) == 1
    loop2, *_ = _loop(tmp_path, 1000)
    assert loop2.step == 1  # the stop wrote a checkpoint


RANK_SCRIPT = r"""
import sys, time, torch
from backline.engines.core.training import Distributed, TrainLoop
ctx = Distributed.setup("cpu")
model = torch.nn.Linear(2, 1)
net = ctx.wrap(model)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
loop = TrainLoop(ctx, sys.argv[1] + f"/rank{ctx.rank}", modules={"model": model, "opt": opt}, optimizers=[opt],
                 steps=50, lr=0.01, max_minutes=1.0, log_every=10, ckpt_every=100)
# rank 0's clock says the time is up, rank 1's says there is plenty left: they must still stop together
loop.clock.started = time.monotonic() - (3600 if ctx.rank == 0 else -3600)
def step(i):
    loss = net(torch.randn(4, 2)).pow(2).mean()   # DDP: an all-reduce every step
    opt.zero_grad(); loss.backward(); opt.step()
    return {"loss": float(loss.detach())}
result = loop.run(step)
print(f"rank {ctx.rank} stopped at {result.step}", flush=True)
ctx.close()
"""


def test_all_ranks_agree_when_to_stop(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = os.environ | {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1",
                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        for name in ("rank0", "rank1"):
            (tmp_path / name).mkdir(exist_ok=True)
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [o.strip() for o, _ in outs] == ["rank 0 stopped at 1", "rank 1 stopped at 1"]


def test_ctrl_c_keeps_the_finished_steps_and_the_next_run_resumes_there(tmp_path):
    loop, seen, fn, model = _loop(tmp_path, 100)

    def interrupted(step):
        if step == 5:
            raise KeyboardInterrupt
        return fn(step)

    with pytest.raises(KeyboardInterrupt):
        loop.run(interrupted)
    weights = model.weight.detach().clone()
    loop2, seen2, fn2, model2 = _loop(tmp_path, 100)
    assert loop2.step == 5 and torch.equal(model2.weight, weights)  # not step 3, the last periodic checkpoint


def test_two_optimisers_and_values_logged_only_on_some_steps(tmp_path):
    """A GAN-like loop: both optimisers get the step's LR; a value returned on some steps only (the critic's,
    once it starts) is averaged over those steps, not diluted by the others."""
    from backline.engines.core.training import apply_update

    g, d = torch.nn.Linear(2, 1), torch.nn.Linear(1, 1)
    opt_g, opt_d = torch.optim.SGD(g.parameters(), lr=1.0), torch.optim.SGD(d.parameters(), lr=1.0)
    loop = TrainLoop(Distributed(), tmp_path, modules={"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d},
                     optimizers=[opt_g, opt_d], steps=4, lr=0.01, floor=1.0, log_every=4, quiet=True)
    lrs = []

    def step(i):
        lrs.append((opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))
        out = {"gen": apply_update(opt_g, g(torch.ones(1, 2)).pow(2).sum(), g.parameters(), clip=1.0)}
        if i >= 2:
            out["critic"] = apply_update(opt_d, d(torch.ones(1, 1)).pow(2).sum() * 0 + float(i))
        return out

    loop.run(step)
    assert lrs == [(0.01, 0.01)] * 4  # floor 1: a constant rate
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["critic"] == pytest.approx(2.5)  # (2 + 3) / 2, not / 4
    assert TrainLoop(Distributed(), tmp_path, modules={"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d},
                     optimizers=[opt_g, opt_d], steps=4, lr=0.01).step == 4


def test_a_group_with_an_lr_scale_gets_that_multiple_of_the_schedule(tmp_path):
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr_scale": 10.0}], lr=0.1)
    loop = TrainLoop(Distributed(), tmp_path, modules={"model": model, "opt": opt}, optimizers=[opt], steps=4,
                     lr=0.1, warmup=2, log_every=2, ckpt_every=4)
    seen = []
    loop.run(lambda step: seen.append([g["lr"] for g in opt.param_groups]) or {})
    assert seen == [pytest.approx([0.1 * warmup_cosine(s, 4, 2), 1.0 * warmup_cosine(s, 4, 2)]) for s in range(4)]
