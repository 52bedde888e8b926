"""What the accompaniment engine takes and offers (its controls and `describe()`), without torch: the command line
builds its parser and --help from this; `engine.py` runs it."""

from __future__ import annotations

from backline.engines.accompany.instruments import INSTRUMENTS, STYLES
from backline.engines.core.protocol import Control, EngineDescription, cache_dir
from backline.engines.core.render import latency_cache_dir
from backline.engines.listen import LISTEN_CONTROLS

NAME = "accompany"
#: the builder's options beside config and device (`engine.build`; tests/test_cli.py checks they agree)
BUILDER_OPTIONS = ("weights",)
MODES = ("follow", "free", "accompaniment", "extract", "separate", "ensemble", "total")
FOLLOW_STYLES = ("auto",) + tuple(s for s in STYLES if s != "unknown")
#: What a musician sets first (the Accompaniment panel leads with these); follow mode is the default.
FOLLOW_CONTROLS = (
    Control("prompt", "text", "piano", "Instrument", choices=tuple(INSTRUMENTS),
            help="what to play, e.g. piano, warm rhodes, strings, \"piano, strings\" (one part each); "
                 "free text is matched to the nearest instrument (--list-instruments)"),
    Control("style", "choice", "auto", "Style", choices=FOLLOW_STYLES,
            help="how the part is played (auto: the instrument's usual style)"),
    Control("complexity", "float", 0.5, "Complexity", 0.0, 1.0, 0.05,
            help="fewer ↔ more attacks (0.5 = the style's usual)"),
    Control("intensity", "float", 0.5, "Intensity", 0.0, 1.0, 0.05, help="softer ↔ harder playing"),
    Control("register", "int", 0, "Register", -1, 1, 1, help="octave: -1 low, 0 usual, +1 high"),
    Control("level", "float", 0.0, "Level", -12.0, 12.0, 0.5,
            help="dB against the instrument's usual level in the band (0 = sits like a session player)"),
    Control("mode", "choice", "follow", "Mode", choices=MODES,
            help="follow: listen to tempo, bars and chords, plan a part and play it with the instrument; "
                 "free: GMSDI partial generation (paper 003, experimental: it does not follow the chords yet); "
                 "extract/separate/ensemble: pull the prompted parts out of the mix; total: parts from nothing"),
    *LISTEN_CONTROLS,
)
#: GMSDI (free mode and separation) settings, under Advanced in musicians' words.
GMSDI_CONTROLS = (
    Control("steps", "int", 0, "Free mode: sampler steps", 0, 1000, 1, group="advanced",
            help="sampler steps (0 = the mode's default: 48 generation, 32 separation)"),
    Control("cfg", "float", -1.0, "Free mode: prompt strength", -1.0, 20.0, 0.5, group="advanced",
            help="how strongly the prompt is followed (classifier-free guidance w); −1 = the mode's default"),
    Control("alpha", "float", 1.0, "Free mode: hold to the band", 0.0, 2.0, 0.05, group="advanced",
            help="how much the band's mix weighs in the coupling (α)"),
    Control("beta", "float", 1.0, "Free mode: new part's weight", 0.0, 2.0, 0.05, group="advanced",
            help="how much the new parts weigh in the coupling (β)"),
    Control("gamma", "float", 1.0, "Free mode: looseness", 1.0, 100.0, 0.1, group="advanced",
            help="how loosely parts and mix are tied (γ; 1 = tightest the sampler stays stable at)"),
    Control("given", "text", "", "Mix holds", group="cli", help="labels of what the mix holds (default: every other role)"),
)
CONTROLS = FOLLOW_CONTROLS + GMSDI_CONTROLS


def describe(config: str = "shipped", device: str = "cpu") -> EngineDescription:
    """The engine's description without loading any weights: the command line builds its flags from it."""
    return EngineDescription(NAME, "Accompaniment & separation", CONTROLS, inputs=("mix", "prompt"),
                             extra_inputs=("midi",), outputs=("audio", "midi"), weights=f"accompaniment ({config})",
                             device=device, fast={"steps": 2},
                             caches=(str(cache_dir("text")), str(latency_cache_dir())))

