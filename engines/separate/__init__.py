"""Source separation: a mask network over the mixture (model.py, engine.py, weights/TRAINING.md).

The API other engines call (torch is loaded on first use, not on import):

    from backline.engines.separate import extract
    stem, share = extract(audio, "bass")  # the separated bass (Audio, the song's rate/channels), energy share 0..1
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backline.engines.core.audio import Audio


def extract(audio: Audio, role: str = "bass", *, progress=None,
            cancel: threading.Event | None = None) -> tuple[Audio, float]:
    """One part of a whole song → (its separated stem, its share of the mix's energy). See engine.extract."""
    # lazy: pulls torch; keeps the package import (registry, describe) light
    from backline.engines.separate.engine import extract as run

    return run(audio, role, progress=progress, cancel=cancel)
