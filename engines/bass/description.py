"""What the bass engine (follow mode, and free mode through the latent engine) takes and offers: its
`describe()`, without torch. The command line builds its parser and --help from this; `follow_engine.py` runs it."""

from __future__ import annotations

from backline.engines.bass.common import ALL_CONTROLS, NAME, panel_controls
from backline.engines.bass.presets import instrument_cache_dir, user_cache_dir
from backline.engines.core.protocol import EngineDescription
from backline.engines.core.render import latency_cache_dir

#: the builder's options beside config and device (`follow_engine.build`; tests/test_cli.py checks they agree)
BUILDER_OPTIONS = ("weights", "codec_weights")


def describe(config: str = "shipped", device: str = "cpu") -> EngineDescription:
    """The engine's description without loading any weights: the command line builds its flags from it, the
    built engine adds what its weights are. `fast` and `caches` serve the contract test (and any quick run)."""
    return EngineDescription(NAME, "Bass", panel_controls(ALL_CONTROLS), inputs=("mix",), extra_inputs=("midi",),
                             outputs=("audio", "midi"), weights=f"bass planner ({config})", device=device,
                             fast={"steps": 2}, caches=tuple(str(d) for d in (
                                 user_cache_dir(), instrument_cache_dir(), latency_cache_dir())))
