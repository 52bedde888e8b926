"""What the `separate` engine takes and offers (its controls and `describe()`), without torch: the command line
builds its parser and --help from this; `engine.py` runs it."""

from __future__ import annotations

from backline.engines.core.protocol import Control, EngineDescription

#: the builder's options beside config and device (`engine.build`; tests/test_cli.py checks they agree)
BUILDER_OPTIONS = ("weights",)

CONTROLS = (
    Control("roles", "text", "bass", "Parts",
            help="parts to separate, comma-separated: bass, drums, other (piano, guitar, ... = other), "
                 "no-bass, no-drums (the band without that part); the request's prompt wins"),
    Control("midi", "bool", False, "MIDI of each part",
            help="transcribe each separated part to MIDI at the song's heard tempo"),
    Control("bpm", "float", 0.0, "Tempo for the MIDI", 0.0, 400.0, 0.1, group="advanced",
            help="0 = the tempo heard in the mix (engines.listen)"),
)


def describe(config: str = "shipped", device: str = "cpu", weights: str = "") -> EngineDescription:
    """The engine's description without loading any weights: the command line builds its flags from it. The
    parts to separate come as the request's prompt (or the `roles` control, for a panel)."""
    return EngineDescription("separate", "Separate", CONTROLS, inputs=("mix",), extra_inputs=("prompt",),
                             outputs=("audio", "midi"), weights=weights or f"separation masks ({config})", device=device)
