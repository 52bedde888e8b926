"""The instruments the accompaniment can play: a General MIDI program in the shipped soundfonts, a pedalboard chain,
a planner family and style, a register and a level against the band; and free prompt text → one of them.

Kept apart from `follow.py` (which needs the listener and MIDI tooling) so that the engine's `describe()` and the
GPU lease's GMSDI path import only what they use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backline.engines.core.errors import ConfigError

#: Comping styles (the corpus composer's names): keys block/comp/arpeggio/ballad, guitar strum/arpeggio/power
#: (muted eighths)/funk, strings pad/half/pulse; pads are the strings' sustained styles played by a pad or organ.
#: Here rather than in `planner.py` (which imports torch) so that `describe()` needs no torch.
STYLES = ("block", "comp", "arpeggio", "ballad", "strum", "power", "funk", "pad", "half", "pulse", "unknown")
FAMILY_STYLES = {"keys": ("block", "comp", "arpeggio", "ballad"), "guitar": ("strum", "arpeggio", "power", "funk"),
                 "strings": ("pad", "half", "pulse"), "pads": ("pad", "half")}


@dataclass(frozen=True)
class Instrument:
    name: str
    description: str  # what the text encoder compares a prompt with
    family: str
    program: int  # General MIDI, 0-based
    style: str  # the usual comping style
    low: int  # voicing register (MIDI pitches)
    high: int
    level_db: float  # loudness relative to the band (LUFS): the corpus' parts sit 7.4 (piano), 8.2 (guitar) and
    # 9.6 dB (strings) under the rest of the band (6 held-out renders, benchmarks/accompany_eval.py)
    aliases: tuple[str, ...] = ()
    font: str = "FluidR3_GM"
    chain: tuple[dict, ...] = field(default_factory=tuple)


_KEYS_CHAIN = ({"type": "HighpassFilter", "cutoff_frequency_hz": 90.0},
               {"type": "Compressor", "threshold_db": -18.0, "ratio": 2.0, "attack_ms": 15.0, "release_ms": 150.0},
               {"type": "Reverb", "room_size": 0.3, "wet_level": 0.12, "dry_level": 0.9})
_GUITAR_CHAIN = ({"type": "HighpassFilter", "cutoff_frequency_hz": 100.0},
                 {"type": "Compressor", "threshold_db": -20.0, "ratio": 3.0, "attack_ms": 8.0, "release_ms": 120.0},
                 {"type": "Reverb", "room_size": 0.25, "wet_level": 0.1, "dry_level": 0.9})
_PAD_CHAIN = ({"type": "HighpassFilter", "cutoff_frequency_hz": 120.0},
              {"type": "Reverb", "room_size": 0.6, "wet_level": 0.25, "dry_level": 0.8})

INSTRUMENTS: dict[str, Instrument] = {i.name: i for i in (
    Instrument("piano", "acoustic grand piano, keys", "keys", 0, "block", 53, 79, -7.5,
               ("keys", "grand piano", "acoustic piano", "keyboard"), chain=_KEYS_CHAIN),
    Instrument("bright piano", "bright acoustic piano, pop piano", "keys", 1, "comp", 53, 79, -7.5,
               ("pop piano",), chain=_KEYS_CHAIN),
    Instrument("electric piano", "warm rhodes electric piano, fender rhodes, wurlitzer, soft electric keys", "keys",
               4, "comp", 53, 79, -7.5, ("rhodes", "ep", "wurlitzer", "e-piano"), chain=_KEYS_CHAIN),
    Instrument("clavinet", "funky clavinet, clav", "keys", 7, "comp", 55, 79, -8.5, ("clav",), chain=_KEYS_CHAIN),
    Instrument("organ", "drawbar hammond organ, church organ, sustained organ chords", "pads", 16, "pad", 53, 77,
               -9.0, ("hammond", "b3"), chain=_PAD_CHAIN),
    Instrument("acoustic guitar", "acoustic steel string guitar strumming", "guitar", 25, "strum", 52, 76, -8.0,
               ("guitar", "steel guitar", "strummed guitar"), chain=_GUITAR_CHAIN),
    Instrument("nylon guitar", "nylon string classical guitar, fingerpicked", "guitar", 24, "arpeggio", 52, 76,
               -8.0, ("classical guitar", "spanish guitar"), chain=_GUITAR_CHAIN),
    Instrument("clean guitar", "clean electric guitar, funk rhythm guitar", "guitar", 27, "funk", 55, 79, -8.0,
               ("electric guitar", "funk guitar", "rhythm guitar"), chain=_GUITAR_CHAIN),
    Instrument("muted guitar", "palm muted electric guitar eighths", "guitar", 28, "power", 52, 72, -8.0,
               ("palm muted guitar",), chain=_GUITAR_CHAIN),
    Instrument("strings", "string ensemble, orchestral strings, violins and cellos", "strings", 48, "pad", 55, 84,
               -9.5, ("string section", "orchestra", "violins"), chain=_PAD_CHAIN),
    Instrument("pizzicato", "pizzicato strings, plucked strings", "strings", 45, "pulse", 55, 84, -9.5,
               ("pizz", "pizzicato strings"), chain=_KEYS_CHAIN),
    Instrument("pad", "warm synth pad, ambient pad, atmospheric synthesizer", "pads", 89, "pad", 55, 79, -10.0,
               ("pads", "synth pad", "warm pad"), chain=_PAD_CHAIN),
    Instrument("choir", "choir aahs, voices, vocal pad", "pads", 52, "pad", 55, 79, -10.0, ("voices", "aahs"),
               chain=_PAD_CHAIN),
)}
#: Below this cosine a prompt names none of the instruments.
MATCH_MIN = 0.35


def list_instruments() -> list[str]:
    return [f"{i.name:<16} {i.family:<8} GM {i.program + 1:<3} {i.style:<9} {i.description}"
            for i in INSTRUMENTS.values()]


def split_prompt(prompt: str) -> list[str]:
    parts = [p.strip() for p in (prompt or "").replace(";", ",").replace("+", ",").split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise ConfigError("the prompt names no instrument", fix="use e.g. --prompt \"piano\" or \"piano, strings\" "
                          "(--list-instruments shows them)")
    return parts


def instrument_for(text: str, encoder=None) -> tuple[Instrument, float]:
    """Free text → (instrument, match score 0-1). Names and aliases match exactly (score 1); other text goes
    through the text encoder; a prompt near none of them is refused naming the nearest three."""
    t = " ".join(text.lower().split())
    for inst in INSTRUMENTS.values():
        if t == inst.name or t in inst.aliases:
            return inst, 1.0
    if encoder is None:
        # lazy: pulls torch; the instrument table stays light (the follow path needs no text encoder)
        from backline.engines.accompany.text import TextEncoder

        encoder = TextEncoder()
    names = list(INSTRUMENTS)
    vec = encoder.encode([t] + [INSTRUMENTS[n].description for n in names])
    sims = (vec[1:] @ vec[0]).numpy()
    order = np.argsort(-sims)
    best = names[int(order[0])]
    if sims[order[0]] < MATCH_MIN:
        near = ", ".join(names[int(i)] for i in order[:3])
        raise ConfigError(f"no instrument sounds like {text!r}", fix=f"nearest: {near} (--list-instruments)")
    return INSTRUMENTS[best], float(sims[order[0]])
