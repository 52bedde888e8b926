"""The planners run in numpy (`bass.planner.StepRunner`) from the weights the torch module trains: same outputs,
and the same draws from the same seed as the torch sampler they replaced, so every take plans the same notes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backline.engines.accompany import planner as comp
from backline.engines.bass import planner as bass
from backline.engines.bass.planner import StepRunner, _sample, torch_generator


def _torch_model(loaded, build):
    model = build(loaded.meta["config"])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in loaded.weights.items()})
    return model.float().eval()


@pytest.mark.parametrize("which", ["bass", "comp", "bass-debug", "comp-debug"])
def test_runner_matches_the_torch_module(which):
    module = bass if which.startswith("bass") else comp
    loaded = module.load_planner(config="debug" if which.endswith("debug") else "shipped")
    model = _torch_model(loaded, module.build_planner)
    rng = np.random.default_rng(3)
    steps = 40
    cond = rng.random((steps, model.cfg.n_features)).astype(np.float32)
    tokens = rng.integers(0, model.embed.num_embeddings, steps)
    with torch.no_grad():
        want = model(torch.from_numpy(cond)[None], torch.from_numpy(tokens)[None])
    runner = StepRunner(loaded.weights)
    cond_in, state = runner.start(cond)
    got = [[] for _ in want[:-1]]
    for s in range(steps):
        outs, state = runner.step(cond_in[s], int(tokens[s]), state)
        for acc, out in zip(got, outs):
            acc.append(out)
    for acc, ref in zip(got, want[:-1]):
        np.testing.assert_allclose(np.stack(acc), ref[0].numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(state, want[-1][:, 0].numpy(), atol=1e-5)


def _torch_sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    """The sampler the planners used before numpy (kept here as the reference)."""
    probs = torch.softmax(logits / temperature, -1)
    order = torch.argsort(probs, descending=True)
    cum = torch.cumsum(probs[order], 0)
    keep = order[: int((cum < top_p).sum()) + 1]
    p = probs[keep] / probs[keep].sum()
    return int(keep[torch.multinomial(p, 1, generator=gen)])


@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 - 1])
def test_sampler_draws_what_torch_drew(seed):
    rng = np.random.default_rng(seed % 1000)
    ours, theirs = torch_generator(seed), torch.Generator().manual_seed(seed)
    picks = []
    for i in range(300):
        logits = (rng.normal(size=39) * rng.uniform(0.5, 4.0)).astype(np.float32)
        logits[rng.random(39) < 0.3] = -math.inf  # the rules rule tokens out
        if not np.isfinite(logits).any():
            logits[0] = 0.0
        top_p = (0.9, 0.5, 0.75)[i % 3]  # (at 1.0 the cut falls where the float32 sum rounds to 1: last-bit luck)
        a = _sample(logits.copy(), 0.7, top_p, ours)
        b = _torch_sample(torch.from_numpy(logits), 0.7, top_p, theirs)
        picks.append((a, b))
    assert all(a == b for a, b in picks)
    assert len({a for a, _ in picks}) > 5  # it samples, not always the top token


def test_generator_follows_torch_stream():
    gen = torch_generator(12345)
    want = torch.empty(1000).exponential_(1, generator=torch.Generator().manual_seed(12345)).numpy()
    from backline.engines.bass.planner import _exponential

    np.testing.assert_array_equal(_exponential(gen, 1000), want)
