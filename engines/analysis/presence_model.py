"""The presence model's trainable torch module (`backline train presence`); a take's role check runs the same
weights in numpy (`analysis.inference.PresenceRunner`)."""

from __future__ import annotations

import torch

from backline.engines.analysis.presence import N_FEATURES, PARTS


class PresenceModel(torch.nn.Module):
    """Standardise, then one logistic regression per part; `threshold` per part on the clip probability."""

    def __init__(self, n_features: int = N_FEATURES, parts: tuple[str, ...] = PARTS, hidden: int = 0) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.hidden = torch.nn.Linear(n_features, hidden) if hidden else None
        self.linear = torch.nn.Linear(hidden or n_features, len(parts))
        self.register_buffer("threshold", torch.full((len(parts),), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[W, F] window features -> [W, parts] probabilities."""
        z = (x - self.mean) / self.std
        if self.hidden is not None:
            z = torch.relu(self.hidden(z))
        return torch.sigmoid(self.linear(z))


def build_presence(config: dict) -> PresenceModel:
    return PresenceModel(int(config["n_features"]), tuple(config["parts"]), int(config.get("hidden", 0)))
