"""How loud a take sits against its band: the corpus's balance per part, applied the way a mixing engineer would.

A generated part is useful only at the level a player would sit at in that band. We measured it on the rendered
corpus (`backline data synth`, the General MIDI mixes our models learn from): for every song and part, the
part's loudness minus the loudness of the rest of the band (what the take is generated against), and keep the
median per part (`engines/core/balance.json`, rebuilt by the corpus tool in `engines/data/balance.py`).

Loudness here is the mean square over the region in dB (all channels), the measure the takes benchmark uses:
the bass's energy is mostly below 150 Hz, where K-weighted LUFS looks away, and a bass balanced by LUFS comes
out several dB hot against a real one.

`balance_take(take, band, role, level_db)` gains a take so that it sits at the corpus balance plus the user's
`level` (dB; the `LEVEL` control every engine declares, so the panel and the CLI both get it). Without band
audio (drums from MIDI alone) the take is left as rendered and the report says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from backline.engines.core.audio import Audio
from backline.engines.core.protocol import Control

TABLE = Path(__file__).resolve().with_name("balance.json")
#: The take's peak never passes this (dBFS); if the balance asks for more, the report says how much was held back.
CEILING_DB = -1.0
#: Quieter than this (mean square, dBFS) is no band to balance against.
SILENT_DB = -80.0

LEVEL = Control("level", "float", 0.0, "Level", -24.0, 12.0, 0.5,
                help="dB against the band: 0 = where this part sits in a typical mix (the corpus balance)")

_TABLE: dict | None = None


def loudness_db(audio: Audio | np.ndarray) -> float:
    """Mean square of all samples, in dB (−inf for silence)."""
    x = audio.samples if isinstance(audio, Audio) else np.asarray(audio)
    power = float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def balance_table() -> dict:
    global _TABLE
    if _TABLE is None:
        _TABLE = json.loads(TABLE.read_text(encoding="utf-8"))
    return _TABLE


def target_db(role: str) -> float:
    """The corpus median of (part − rest of the band) in dB for `role`; 'accompaniment' and unknown roles use the
    median over the chord instruments."""
    roles = balance_table()["roles"]
    entry = roles.get(role) or roles.get("accompaniment")
    return float(entry["median_db"])


def balance_take(take: Audio, band: Audio | None, role: str, level_db: float = 0.0) -> tuple[Audio, dict]:
    """Gain `take` so that loudness(take) − loudness(band) = target_db(role) + level_db (peak ≤ CEILING_DB).

    `band` is the audio the take was generated against (same region). Returns (audio, report)."""
    now = loudness_db(take)
    report: dict = {"role": role, "level_db": float(level_db), "balance_db": round(target_db(role), 2)}
    band_db = loudness_db(band) if band is not None else -math.inf
    if not math.isfinite(now) or band_db < SILENT_DB:
        return take, report | {"applied": False, "why": "no band audio to balance against" if band is None
                               else "silent band or take"}
    want = band_db + target_db(role) + float(level_db)
    gain_db = want - now
    peak = float(np.max(np.abs(take.samples))) * 10 ** (gain_db / 20)
    held = 0.0
    if peak > 10 ** (CEILING_DB / 20):
        held = 20 * math.log10(peak) - CEILING_DB
        gain_db -= held
    out = Audio((take.samples * np.float32(10 ** (gain_db / 20))).astype(np.float32), take.sample_rate)
    return out, report | {"applied": True, "gain_db": round(gain_db, 2), "vs_band_db": round(loudness_db(out) - band_db, 2),
                          "held_back_db": round(held, 2)}
