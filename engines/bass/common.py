"""What the two bass engines share, declared once: their controls, how a request's preset, reference and
controls resolve, the mix check and the shared listener call (the transcription of a bass stem to MIDI is in
`transcription.py`: it needs the MIDI tooling, which the latent engine's GPU runs do without).

The two engines (issue 23):
- `backline.engines.bass.follow` — **follow** (registered as `bass`, the default): listen → plan → render. It
  loads the planner and the listener only.
- `backline.engines.bass.engine` — **latent** (registered as `bass-latent`): paper 000, mix codec → conditional
  latent diffusion (DDIM, CFG with rescale, style grounding) → stem codec. It loads the U-Net and both codecs.

The follow engine's panel keeps a `mode` switch: `mode=free` hands the request to the latent engine, built the
first time it is asked for (so `backline generate bass --mode free` and the host's "free" mode keep working, and
a follow-only session never loads the U-Net or a codec).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from backline.engines.bass.grid import STYLES as PLANNER_STYLES
from backline.engines.bass.presets import list_presets, load_preset
from backline.engines.core.audio import Audio, playable_mix
from backline.engines.core.balance import LEVEL
from backline.engines.core.errors import DeviceError
from backline.engines.core.presets import Preset
from backline.engines.core.protocol import Control, GenerationRequest, memory_limit_bytes, validate_controls
from backline.engines.listen import LISTEN_CONTROLS, Listening, listen

NAME = "bass"
#: The latent engine's registry name (paper 000's diffusion path; the follow engine's `mode=free`).
LATENT_NAME = "bass-latent"
QUANTISE = {"off": None, "1/8": 2, "1/16": 4, "1/16T": 6}
#: A mix quieter than this peak (dBFS) is treated as silence.
#: The shortest mix either engine takes: one latent frame of the codecs (hop 4096 at 44.1 kHz, ≈ 93 ms).
MIN_MIX_HOP, MIN_MIX_RATE = 4096, 44100

#: The latent engine's sampler (paper 000) and the sound both engines share (preset or reference).
CONTROLS = (
    Control("steps", "int", 64, "Sampler steps", 1, 1000, 1, group="advanced",
            help="denoising steps: more is slower and cleaner; 64 sounds best (DDIM steps K)"),
    Control("cfg", "float", 2.0, "Follow the band", 0.0, 20.0, 0.1, group="advanced",
            help="how closely the bass follows the mix: 1 = plain, higher sticks to the band more "
                 "(classifier-free guidance λ)"),
    Control("rescale", "float", 0.7, "Guidance rescale", 0.0, 1.0, 0.05, group="advanced",
            help="tames harshness when 'Follow the band' is high, above 2.5 (std rescale φ)"),
    Control("strength", "float", 1.0, "Style strength", 0.0, 4.0, 0.05,
            help="how strongly the preset's sound is held: 0 = off, 1 = normal, more holds it longer"),
    Control("quantise", "choice", "off", "MIDI grid", choices=tuple(QUANTISE),
            help="quantise the transcribed MIDI to the DAW grid"),
    Control("preset", "preset", "finger", "Preset", help="a bass style from presets/bass"),
    Control("reference", "audio", "", "Style reference", help="a solo bass recording to copy the sound of"),
)
#: Follow mode's musician controls come first in a panel; overrides go under "Advanced"; what the host supplies
#: itself (the chord lane, the DAW's tempo, a take's MIDI to re-render) is command-line only.
MODES = ("follow", "free")
FOLLOW_CONTROLS = (
    Control("mode", "choice", "follow", "Mode", choices=MODES,
            help="follow: listen to tempo, bars and chords, plan a line on them and play it; free: paper 000 as is "
                 "(the bass-latent engine)"),
    Control("style", "choice", "preset", "Style",
            choices=("preset",) + tuple(s for s in PLANNER_STYLES if s != "unknown"),
            help="how the line is played (preset: the preset's own style)"),
    Control("complexity", "float", 0.5, "Complexity", 0.0, 1.0, 0.05,
            help="fewer ↔ more notes (0.5 = the style's usual)"),
    Control("intensity", "float", 0.5, "Intensity", 0.0, 1.0, 0.05, help="softer ↔ harder playing"),
    Control("register", "int", 0, "Register", -1, 1, 1, help="octave: -1 low, 0 usual, +1 high"),
    Control("swing", "float", 0.0, "Swing", 0.0, 1.0, 0.05, help="0 = straight, 1 = triplet swing"),
    # off by default: striking every heard kick fits the band only a little better (benchmarks/reference_eval.py
    # table 7, matching top-1 with two clips per song: dev songs 0.76 → 0.80, held-out 0.92 → 0.92), but where the
    # listener hears false kicks (35–41 % of "kicks" on 2 of 6 held-out songs had no drum onset within 40 ms) the
    # locked line's p90 against the real drums rose from 23 to 57–70 ms — a late-sounding part. The real basses
    # strike ~0.63 of the heard kicks, the locked line ~0.98; unlocked, the style's rhythm alone ~0.60.
    Control("lock_to_kick", "bool", False, "Lock to kick",
            help="a note on every kick drum hit (the band's kick, heard or from its MIDI); off: the style's rhythm alone"),
    # soundfont by default: the reference instrument is nearer the preset's reference (timbre grounding among the
    # presets 0.66 vs 0.71) and renders 4x faster, but plays the notes less cleanly (basic-pitch on the take: note
    # F1 0.75 vs 0.85, pitch class 0.93 vs 0.97; benchmarks/reference_eval.py table 8) — its riff spans F2–C4 only
    Control("sound", "choice", "soundfont", "Preset sound", choices=("soundfont", "reference"), group="advanced",
            help="soundfont: a preset plays through its General MIDI program; reference: through the instrument "
                 "sampled from its reference recording (built once in 0.2 s, cached)"),
    LEVEL,
    *LISTEN_CONTROLS,
    Control("midi_in", "text", "", "Line MIDI", group="cli",
            help="play this bass line MIDI (edited in the DAW) in the preset's sound instead of planning one"),
)
#: The follow engine's panel: its own controls, then the latent engine's (used when mode=free).
ALL_CONTROLS = FOLLOW_CONTROLS + CONTROLS
#: The latent engine's own panel: the sampler, the sound, the level and the listener (it listens for the MIDI's
#: tempo only).
LATENT_CONTROLS = CONTROLS + (LEVEL,) + LISTEN_CONTROLS


def panel_controls(controls: tuple[Control, ...]) -> tuple[Control, ...]:
    """`controls` for describe(): the preset control becomes a choice of the installed presets."""
    return tuple(Control(c.name, "choice", c.default, c.label, choices=tuple(list_presets()), help=c.help)
                 if c.name == "preset" else c for c in controls)


def resolve_controls(request: GenerationRequest, controls: tuple[Control, ...]
                     ) -> tuple[dict[str, Any], Preset | None, Path | None]:
    """(checked controls, preset, reference) of a request, for an engine declaring `controls`.

    A UI built from describe() sends preset/reference as controls; the CLI uses the request's fields. A preset's
    own defaults (its `[controls]`) sit between the declaration's and the request's; keys the engine does not
    declare are left out (a preset's follow-mode style means nothing to the latent engine)."""
    values = dict(request.controls)
    reference = request.reference or (Path(values["reference"]) if values.get("reference") else None)
    values.pop("reference", None)
    preset_control = values.pop("preset", None)
    preset_name = (request.preset or preset_control or "finger") if reference is None else None
    preset = load_preset(preset_name) if preset_name else None
    defaults = {c.name: c.default for c in controls if c.kind not in ("preset", "audio")}  # one declaration
    if preset:
        defaults |= {k: v for k, v in preset.controls.items() if k in defaults}
    merged = defaults | {k: v for k, v in values.items() if v is not None}
    merged = validate_controls(tuple(c for c in controls if c.name in defaults), merged, NAME)
    return merged, preset, reference


def check_mix(mix: Audio | None, hop: int = MIN_MIX_HOP, hop_rate: int = MIN_MIX_RATE) -> Audio:
    """The mix, checked (`core.audio.playable_mix`): present, at least one latent frame long (`hop` samples at
    `hop_rate`), finite, not silent."""
    need = "the bass engine needs a mix to listen to"
    if mix is None:
        return playable_mix(mix, min_frames=0, need=need, short="")
    min_frames = math.ceil(hop * mix.sample_rate / hop_rate)
    return playable_mix(mix, min_frames=min_frames, need=need, short=f"shorter than one latent frame ({min_frames} "
                        f"samples = {min_frames / mix.sample_rate * 1000:.0f} ms)")


def listen_mix(request: GenerationRequest, merged: dict[str, Any], mix: Audio) -> Listening:
    """What the mix plays (tempo, bars, key, chords per beat); the DAW's timeline wins when trusted."""
    transport = request.timeline if merged["tempo_from"] == "timeline" else None
    bpm = float(merged["bpm"]) or None
    return listen(mix, transport=transport, region_start=request.region_start, bpm=bpm,
                  meter=merged["meter"] or None, key=merged["key"] or None, chords=merged["chords"] or None,
                  band_midi=request.midi)


#: Peak resident memory of a CPU run ≈ BASE + seconds of mix × (PER_SECOND + extra variations × PER_VARIATION),
#: measured with /usr/bin/time on `backline generate bass` (shipped weights, 1 thread, 2-core Xeon), in bytes:
#: 1:30 of 48 kHz stereo → 1.43e9, 3:00 of 44.1 kHz → 1.64e9, 3:54 of 48 kHz → 2.00e9, and before this check
#: existed 4:30 → 2.18e9, 6:00 → 2.21e9. The line is at or above every measurement but the 1:30 one (1 % under).
#: A mix whose estimate passes the limit is refused up front with the estimate.
MEMORY_BASE_BYTES = 1.02e9
MEMORY_PER_SECOND = 4.3e6
MEMORY_PER_VARIATION_SECOND = 1.2e6


def estimate_memory_bytes(seconds: float, variations: int = 1) -> float:
    """Estimated peak RSS of a CPU generation for `seconds` of mix (see MEMORY_BASE_BYTES)."""
    return MEMORY_BASE_BYTES + seconds * (MEMORY_PER_SECOND + max(0, variations - 1) * MEMORY_PER_VARIATION_SECOND)


def check_memory(seconds: float, variations: int = 1) -> None:
    """Refuse, before any work, a mix too long for the memory limit, with the estimate and what to do."""
    need, limit = estimate_memory_bytes(seconds, variations), memory_limit_bytes()
    if need <= limit:
        return
    per_second = MEMORY_PER_SECOND + max(0, variations - 1) * MEMORY_PER_VARIATION_SECOND
    fits = max(0.0, (limit - MEMORY_BASE_BYTES) / per_second)
    raise DeviceError(f"a {_clock(seconds)} mix{f' with {variations} variations' if variations > 1 else ''} needs "
                      f"about {need / 1e9:.1f} GB of memory, over the {limit / 1e9:.1f} GB limit",
                      fix=f"generate up to {_clock(fits)} at a time (--bars), or allow more with "
                          f"BACKLINE_MEMORY_GB={math.ceil(need / 1e9)}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
