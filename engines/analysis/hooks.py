"""What the analysis engine adds to every other engine's run (`core.hooks`): the "this part already plays"
warning, the fit score of a take against its mix, and whether a drum kit plays (the listener's style context).
Registered on import; the engine registry declares this module as a hook provider, so the core never imports the
analysis engine."""

from __future__ import annotations

from typing import Any

from backline.engines.analysis.api import drums_playing, get_analyzer, role_already_playing
from backline.engines.core import hooks


def role_warning(request: Any, config: str = "shipped") -> str | None:
    return role_already_playing(request.engine, request.mix, request.midi, config=config)


def fit_score(mix: Any, stem: Any, *, config: str = "shipped", device: str = "cpu") -> float:
    return float(get_analyzer(config, device).fit_score(mix, stem))


hooks.register("role_warning", role_warning)
hooks.register("fit_score", fit_score)
hooks.register("drums_playing", drums_playing)
