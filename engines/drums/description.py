"""What the drum engine takes and offers (its controls and `describe()`), without torch or mido: the command line
builds its parser and --help from this; `engine.py` runs it."""

from __future__ import annotations

from backline.engines.core.balance import LEVEL
from backline.engines.core.protocol import Control, EngineDescription
from backline.engines.core.render import latency_cache_dir
from backline.engines.drums.feel import STYLE_CHOICES

#: the builder's options beside config and device (`engine.build`; tests/test_cli.py checks they agree)
BUILDER_OPTIONS: tuple[str, ...] = ()
SOUNDFONTS = ("FluidR3_GM", "MuseScore_General", "TimGM6mb")

CONTROLS = (
    Control("mode", "choice", "full", "Mode", choices=("full", "fills", "regenerate"),
            help="full: a new drum part; fills: fills into your drum part; regenerate: new bars in your part"),
    Control("style", "choice", "band", "Style", choices=STYLE_CHOICES,
            help="band: the groove the model hears in the band; or a style's groove (hats, snare; the kick "
                 "still follows the band)"),
    Control("fill_amount", "float", 0.5, "Fills", minimum=0.0, maximum=1.0, step=0.05,
            help="how many fills: 0 none, 0.5 where the band changes section, 1 wherever a fill fits"),
    Control("complexity", "float", 0.5, "Complexity", minimum=0.0, maximum=1.0, step=0.05,
            help="0 a straight eighth-note beat, 0.5 as generated, 1 busy (ghost notes, 16th pickups)"),
    Control("intensity", "float", 0.5, "Intensity", minimum=0.0, maximum=1.0, step=0.05,
            help="how hard the drummer plays: velocity, open hats and ride, crashes, kick pickups"),
    Control("swing", "float", 0.0, "Swing", minimum=0.0, maximum=1.0, step=0.05,
            help="0 straight, 1 triplet swing (off-beat eighths, or 16ths in a 16th-note groove)"),
    Control("humanise", "float", 0.3, "Humanise", minimum=0.0, maximum=1.0, step=0.05,
            help="timing and velocity looseness of a human drummer (0 = on the grid)"),
    Control("soundfont", "choice", "FluidR3_GM", "Drum kit", choices=SOUNDFONTS),
    LEVEL,
    Control("variation", "float", 0.0, "Fill variation", minimum=0.0, maximum=2.0, step=0.1, group="advanced",
            help="0 = the infiller's fill; >0 = fills decoded from a random latent code (MLP module), this wide"),
    Control("sample", "bool", False, "Sample onsets", group="advanced",
            help="draw every onset at random from the models instead of taking the likeliest"),
    Control("fills", "bool", True, "Fills (on/off)", group="cli", help="add fills (off = the plain seq2seq pattern)"),
    Control("bars", "text", "", "Bars", group="cli",
            help="region as FIRST-LAST (1-based, inclusive), empty = the whole song"),
    Control("fill_bars", "text", "", "Fill bars", group="cli",
            help="comma-separated bars for fills; empty = predicted from the band"),
    Control("drums_midi", "text", "", "Your drums (MIDI)", group="cli",
            help="your drum part, for the fills and regenerate modes", flags=("--drums",)),
    Control("roles", "text", "", "Track roles", group="cli",
            help="overrides as NAME=ROLE, comma-separated (roles: piano, guitar, bass, strings, drums, ignore)"),
    Control("vst3", "text", "", "VST3 instrument", group="cli",
            help="path to a VST3 drum instrument (rendered with pedalboard)"),
    Control("render", "bool", True, "Render audio", group="cli", help="write a WAV of the drums"),
)


def describe(config: str = "shipped", device: str = "cpu") -> EngineDescription:
    """The engine's description without loading any weights: the command line builds its flags from it."""
    return EngineDescription("drums", "Drums", CONTROLS, inputs=("midi", "mix"), outputs=("audio", "midi"),
                             weights=f"drum models ({config})", device=device,
                             caches=(str(latency_cache_dir()),))

