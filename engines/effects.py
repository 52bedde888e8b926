"""The one place for pedalboard effect chains: presets describe a chain as data, this module builds and runs it,
and sets the loudness of the result.

A chain is a list of tables, each naming a pedalboard plugin and its parameters, e.g. in a preset TOML:

    [[chain]]
    type = "HighpassFilter"
    cutoff_frequency_hz = 35.0
    [[chain]]
    type = "Compressor"
    threshold_db = -20.0
    ratio = 4.0

Only the plugins in `PLUGINS` are allowed (no external VST3 from a data file), and every parameter is checked
against the plugin's constructor so a typo in a preset fails with a one-line message naming the plugin.
Loudness is ITU-R BS.1770-4 integrated loudness (torchaudio's implementation, gated), then a gain, then a
peak ceiling so normalising a quiet stem never clips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backline.engines.audio import Audio
from backline.engines.errors import ConfigError

PLUGINS: tuple[str, ...] = (
    "Bitcrush", "Chorus", "Clipping", "Compressor", "Delay", "Distortion", "Gain", "HighShelfFilter",
    "HighpassFilter", "LadderFilter", "Limiter", "LowShelfFilter", "LowpassFilter", "NoiseGate", "PeakFilter",
    "Phaser", "Reverb",
)
#: Level below which a signal counts as silence and is left alone by loudness normalisation.
SILENCE_LUFS = -70.0


def build_chain(spec: Sequence[Mapping[str, Any]], *, where: str = "chain"):
    """A `pedalboard.Pedalboard` from a list of {'type': PluginName, **params}."""
    import pedalboard

    plugins = []
    for i, entry in enumerate(spec or ()):
        if not isinstance(entry, Mapping) or "type" not in entry:
            raise ConfigError(f"{where}[{i}] needs a 'type'", fix=f"one of {', '.join(PLUGINS)}")
        kind = str(entry["type"])
        if kind not in PLUGINS:
            raise ConfigError(f"{where}[{i}]: unknown effect {kind!r}", fix=f"use one of {', '.join(PLUGINS)}")
        cls = getattr(pedalboard, kind)
        params = {k: v for k, v in entry.items() if k != "type"}
        plugin = cls()  # pybind classes have no inspectable signature: set the parameters as properties
        allowed = sorted(n for n in dir(plugin) if not n.startswith("_") and isinstance(
            getattr(type(plugin), n, None), property) and getattr(type(plugin), n).fset is not None)
        bad = sorted(set(params) - set(allowed))
        if bad:
            raise ConfigError(f"{where}[{i}] {kind}: unknown parameter(s) {', '.join(bad)}",
                              fix=f"{kind} takes {', '.join(allowed) or 'no parameters'}")
        for name, value in params.items():
            try:
                setattr(plugin, name, value)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ConfigError(f"{where}[{i}] {kind}: {name}={value!r} is not a valid value",
                                  fix="give a number in the plugin's range") from err
        plugins.append(plugin)
    return pedalboard.Pedalboard(plugins)


def apply_chain(audio: Audio, spec: Sequence[Mapping[str, Any]], *, where: str = "chain") -> Audio:
    """Run the chain over the whole signal (same length out; pedalboard compensates plugin latency)."""
    if not spec:
        return audio
    board = build_chain(spec, where=where)
    out = board(np.ascontiguousarray(audio.samples, dtype=np.float32), audio.sample_rate, reset=True)
    out = np.nan_to_num(out[:, : audio.frames], nan=0.0, posinf=0.0, neginf=0.0)
    if out.shape[1] < audio.frames:
        out = np.pad(out, ((0, 0), (0, audio.frames - out.shape[1])))
    return Audio(out, audio.sample_rate)


def loudness_lufs(audio: Audio) -> float:
    """Integrated loudness (BS.1770-4, LUFS). Signals shorter than one 400 ms gate block are padded with silence;
    silence returns -inf."""
    import torch
    import torchaudio.functional as taf

    if audio.frames == 0 or audio.peak() == 0.0:
        return -math.inf
    samples = audio.samples
    block = int(0.4 * audio.sample_rate)
    if samples.shape[1] < block:
        samples = np.pad(samples, ((0, 0), (0, block - samples.shape[1])))
    value = float(taf.loudness(torch.from_numpy(np.ascontiguousarray(samples)), audio.sample_rate))
    return value if math.isfinite(value) else -math.inf


def normalise_loudness(audio: Audio, target_lufs: float = -16.0, *, ceiling_db: float = -1.0) -> tuple[Audio, float]:
    """Gain to `target_lufs`, then scale down if the peak would pass `ceiling_db` dBFS. Returns (audio, gain dB).

    Near-silent audio (below SILENCE_LUFS) is returned unchanged: amplifying noise to −16 LUFS helps nobody.
    """
    level = loudness_lufs(audio)
    if not math.isfinite(level) or level < SILENCE_LUFS:
        return audio, 0.0
    gain_db = target_lufs - level
    gain = 10 ** (gain_db / 20)
    peak = audio.peak() * gain
    ceiling = 10 ** (ceiling_db / 20)
    if peak > ceiling:
        gain *= ceiling / peak
        gain_db = 20 * math.log10(gain)
    return Audio(audio.samples * gain, audio.sample_rate), gain_db


def render(audio: Audio, chain: Sequence[Mapping[str, Any]] = (), *, target_lufs: float | None = -16.0,
           where: str = "chain") -> tuple[Audio, dict[str, float]]:
    """Chain then loudness: what every engine calls on a generated stem. Returns (audio, report)."""
    before = loudness_lufs(audio)
    out = apply_chain(audio, chain, where=where)
    gain_db = 0.0
    if target_lufs is not None:
        out, gain_db = normalise_loudness(out, target_lufs)
    return out, {"lufs_in": _finite(before), "lufs_out": _finite(loudness_lufs(out)), "gain_db": round(gain_db, 2)}


def _finite(x: float) -> float | None:
    return round(x, 2) if math.isfinite(x) else None
