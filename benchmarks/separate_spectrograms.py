"""Spectrograms to look at: the `separate` engine on the real filosax01 clip, against the two files it is made of,
or on a held-out corpus song against its real bass stem.

    .venv/bin/python benchmarks/separate_spectrograms.py --realdev ../shared/realdev --out runs/filosax.png [--weights W]
    .venv/bin/python benchmarks/separate_spectrograms.py --track HELDOUT/Track00002 --out runs/song.png [--weights W]

One PNG, seven panels top to bottom, each log frequency 30 Hz (bottom) to 2 kHz (top), 80 dB range from the mix's
peak, white ticks at 50, 100, 150, 300, 600 and 1200 Hz on the left edge: (1) the mix (the two files summed),
(2) the bass+drums file, (3) the piano+drums file, (4) the separated bass, (5) the separated other (the piano
task), (6) the separated drums, (7) the piano task's residual, piano+drums file − (other + ½ drums). The script
prints each panel's level against the mix and its share of energy below 150 Hz, and the two SI-SDRi figures of
`separate_eval.py`'s realdev rows. Why: a figure on one 5 s clip says little; the picture says which notes went
where (the issue asks for it to be looked at and described: see weights/TRAINING.md).

`--track`: a held-out song (never trained on), `--seconds` from `--start` as `separate_eval.py` scores it; five
panels, same scale: (1) the mix, (2) the real bass stem, (3) the separated bass, (4) the residual, real bass −
separated bass (what was missed, plus what leaked in, with its sign flipped), (5) the real "other" stem (where a
leak would come from); printed: each panel's level and share below 150 Hz, and the bass SI-SDRi beside the 150 Hz
low-pass's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import hardware  # noqa: E402

from backline.engines.analysis.tagger import _colormap, encode_png  # noqa: E402 - the project's PNG writer
from backline.engines.codec.fidelity import si_sdr  # noqa: E402
from backline.engines.core.audio import Audio, read_audio, write_bytes_atomic  # noqa: E402
from backline.engines.core.frontend import stft  # noqa: E402

SR = 44100
N_FFT, HOP, ROWS, RANGE_DB = 4096, 256, 160, 80.0
TICKS_HZ = (50, 100, 150, 300, 600, 1200)


def panel(x: np.ndarray, ref_db: float | None) -> tuple[np.ndarray, float, float]:
    """RGB panel [ROWS, frames, 3] of mono x (log frequency 30 Hz–2 kHz), the dB reference used, and the share
    of x's energy below 150 Hz."""
    mag = stft(torch.from_numpy(x.astype(np.float32)), N_FFT, HOP).abs().numpy()
    db = 20 * np.log10(mag + 1e-7)
    ref = float(db.max()) if ref_db is None else ref_db
    freqs = np.arange(mag.shape[0]) * SR / N_FFT
    rows = np.exp(np.linspace(np.log(2000), np.log(30), ROWS))  # top row 2 kHz
    img = np.stack([np.interp(rows, freqs, col) for col in db.T], axis=1)
    rgb = _colormap(np.clip((img - (ref - RANGE_DB)) / RANGE_DB, 0.0, 1.0))
    for hz in TICKS_HZ:
        rgb[int(np.argmin(np.abs(rows - hz))), :6] = 255
    low = float(np.sum(mag[freqs < 150] ** 2) / np.sum(mag ** 2))
    return rgb, ref, low


def write_panels(rows: list[tuple[str, np.ndarray]], out: Path) -> None:
    """Stack the panels (one dB scale, the first row's peak) into one PNG; print each one's level and low share."""
    ref = None
    panels = []
    m = rows[0][1]
    for name, x in rows:
        rgb, ref, low = panel(x, ref)
        panels += [rgb, np.full((3, rgb.shape[1], 3), 255, np.uint8)]
        print(f"  {name:<50} {10 * np.log10(np.sum(x ** 2) / np.sum(m ** 2)):+6.1f} dB re the mix, "
              f"{low:.0%} below 150 Hz")
    write_bytes_atomic(out, encode_png(np.repeat(np.concatenate(panels[:-1]), 2, axis=1)))


def song(sep, track: Path, start: float, seconds: float, out: Path) -> int:
    """The held-out song's panels (see the module docstring)."""
    from separate_eval import butter, mono, track_roles

    stems = track_roles(track, int(start * SR), int(seconds * SR))
    mix2 = sum(stems.values())
    bass = mono(sep.separate(Audio(mix2.astype(np.float32), SR), [("bass", False)])[0])
    m, ref = mono(mix2), mono(stems["bass"])
    rows = [("mix", m), ("real bass stem", ref), ("separated bass", bass),
            ("residual: real bass - separated bass", ref - bass), ("real other stem", mono(stems["other"]))]
    write_panels(rows, out)
    print(f"bass SI-SDRi {si_sdr(ref, bass) - si_sdr(ref, m):+.2f} dB "
          f"(150 Hz low-pass {si_sdr(ref, butter(m, 150, 'low')) - si_sdr(ref, m):+.2f} dB)")
    print(f"wrote {out} (panels top to bottom: {'; '.join(r[0] for r in rows)})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--realdev", type=Path, help="../shared/realdev")
    src.add_argument("--track", type=Path, help="a held-out corpus track folder (Slakh layout)")
    p.add_argument("--start", type=float, default=5.0, help="--track: seconds in")
    p.add_argument("--seconds", type=float, default=20.0, help="--track: excerpt length")
    p.add_argument("--out", type=Path, required=True, help="PNG to write (a new file)")
    p.add_argument("--weights", type=Path)
    a = p.parse_args()
    if a.out.exists():
        print(f"{a.out}: already exists; pass a new file", file=sys.stderr)
        return 2
    if a.track and not (a.track / "extras.json").exists():
        print(f"{a.track}: not a corpus track (no extras.json)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    print(hardware())
    from backline.engines.separate.engine import WEIGHTS, Separator, load_model

    sep = Separator(load_model(a.weights or WEIGHTS))
    if a.track:
        return song(sep, a.track, a.start, a.seconds, a.out)

    bd = read_audio(a.realdev / "filosax01_bass_drums.wav", sample_rate=SR, channels=2).samples
    pd = read_audio(a.realdev / "filosax01_piano_drums.wav", sample_rate=SR, channels=2).samples
    n = min(bd.shape[1], pd.shape[1])
    bd, pd = bd[:, :n], pd[:, :n]
    mix = bd + pd
    bass, drums, other = (s.samples.mean(axis=0) for s in
                          sep.separate(Audio(mix, SR), [("bass", False), ("drums", False), ("other", False)]))
    m = mix.mean(axis=0)
    rows = [("mix (the two files summed)", m), ("bass+drums file", bd.mean(axis=0)),
            ("piano+drums file", pd.mean(axis=0)), ("separated bass", bass), ("separated other", other),
            ("separated drums", drums), ("residual: piano+drums file - (other + 1/2 drums)",
                                         pd.mean(axis=0) - (other + 0.5 * drums))]
    write_panels(rows, a.out)
    print(f"SI-SDRi: piano+drums file from other + 1/2 drums {si_sdr(pd.mean(0), other + 0.5 * drums) - si_sdr(pd.mean(0), m):+.2f} dB, "
          f"bass+drums file from bass + 1/2 drums {si_sdr(bd.mean(0), bass + 0.5 * drums) - si_sdr(bd.mean(0), m):+.2f} dB")
    print(f"wrote {a.out} (panels top to bottom: {'; '.join(r[0] for r in rows)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
