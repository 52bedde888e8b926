"""What the analysis engine takes and offers (its controls and `describe()`), without torch: the command line
builds its parser and --help from this; `engine.py` runs it."""

from __future__ import annotations

from backline.engines.core.protocol import Control, EngineDescription

NAME = "analysis"
#: the builder's options beside config and device (`engine.build`; tests/test_cli.py checks they agree)
BUILDER_OPTIONS: tuple[str, ...] = ()

CONTROLS = (
    Control("sensitivity", "float", 0.0, "Sensitivity", minimum=-0.3, maximum=0.3, step=0.05,
            help="lowers (positive) or raises (negative) every tag's threshold: list quieter instruments or fewer"),
)


def describe(config: str = "shipped", device: str = "cpu", weights: str = "") -> EngineDescription:
    """The engine's description without loading any weights: the command line builds its flags from it."""
    return EngineDescription(NAME, "Listen: instruments present and missing parts", CONTROLS, inputs=("mix",),
                             outputs=("report",), weights=weights or f"analysis ({config})", device=device)
