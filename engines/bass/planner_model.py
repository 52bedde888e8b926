"""The planners' trainable torch module (bass here, comping in `accompany.planner`): training builds it, and the
untrained `debug` planner takes its initial weights from it. Inference of trained weights is numpy
(`planner.StepRunner`), so a take never imports torch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backline.engines.bass.planner import VEL_BUCKETS


class StepPlanner(nn.Module):
    """The step GRU both planners share: cond [B, T, F] + previous tokens [B, T] → token logits, the optional
    voice-index logits, velocity logits and the GRU state. One class so the two cannot drift; modules are made in the
    order the shipped weights were trained with (same tensor names, same untrained `debug` weights under a seed)."""

    def __init__(self, cfg: Any, n_tokens: int, n_voices: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(n_tokens + 1, cfg.token_dim)
        self.inp = nn.Sequential(nn.Linear(cfg.n_features + cfg.token_dim, cfg.hidden), nn.GELU())
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden, n_tokens)
        self.voice = nn.Linear(cfg.hidden, n_voices) if n_voices else None
        self.vel = nn.Linear(cfg.hidden, VEL_BUCKETS)

    def forward(self, cond: torch.Tensor, prev: torch.Tensor, state: torch.Tensor | None = None):
        x = self.inp(torch.cat([cond, self.embed(prev)], -1))
        h, state = self.gru(x, state)
        if self.voice is None:
            return self.head(h), self.vel(h), state
        return self.head(h), self.voice(h), self.vel(h), state
