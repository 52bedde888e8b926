"""`backline codec roundtrip IN OUT`: write what the models hear — a file through the codec and back.

Musicians use it to judge a reference recording before grounding a style on it (a bass that comes back dull or
out of tune will steer the model that way); checks use it to listen to the codec itself. The output is 44.1 kHz
(the codec's rate), mono for `--role stem`, stereo for `--role mix`, written atomically and never over an existing
file unless --overwrite. The fidelity measures of `backline.engines.codec.fidelity` are printed beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backline.engines.codec import load_codec
from backline.engines.codec.fidelity import fidelity
from backline.engines.core import audio as core_audio
from backline.engines.core.audio import atomic_output, audio_info, write_audio
from backline.engines.core.errors import AudioFileError

HELP = "encode and decode a file through the mix or stem codec, to hear what the models hear"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file (wav, flac, ogg, mp3, aiff)")
    parser.add_argument("output", help="where to write the round trip (.wav or .flac)")
    parser.add_argument("--role", default="mix", choices=["mix", "stem"],
                        help="mix: the stereo codec the engines listen with (default); stem: the mono codec a "
                             "generated bass is decoded with")
    parser.add_argument("--weights", default=None, help="codec weights from `backline train codec` (default: shipped)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no measures")


def run(args: argparse.Namespace) -> int:
    import threading

    from tqdm import tqdm

    out = Path(args.output)
    if out.suffix.lower() not in (".wav", ".flac"):
        raise AudioFileError(f"cannot write '{out.suffix}'", path=out, fix="name a .wav or .flac file")
    _, channels, frames = audio_info(args.input)
    # refuse before any work: exists, read-only, under a file, or a disk without room for the float32 result
    final, tmp = atomic_output(out, overwrite=args.overwrite, need_bytes=frames * max(2, channels) * 4 + 2**20)
    tmp.unlink(missing_ok=True)
    audio = core_audio.read_audio(args.input)  # looked up at call time (the fault tests watch it)
    codec = load_codec(args.role, weights=args.weights)
    cancel = threading.Event()
    with tqdm(total=2 * 100, desc=f"{args.role} codec", unit="%", disable=args.quiet,
              bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
        def stage(offset: int):
            def progress(fraction: float, _message: str) -> None:
                bar.n = offset + int(100 * fraction)
                bar.refresh()
            return progress

        try:
            z = codec.encode(audio, progress=stage(0), cancel=cancel)
            length = max(1, round(audio.frames * codec.sample_rate / audio.sample_rate))
            back = codec.decode(z, length, channels=codec.channels, progress=stage(100), cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
        bar.n = 200
        bar.refresh()
    written = write_audio(final, back, overwrite=args.overwrite)
    print(f"wrote {written} ({back.channels} ch, {back.sample_rate} Hz, {back.seconds:.1f} s)")
    if not args.quiet:
        reference = audio.resampled(codec.sample_rate).with_channels(back.channels)
        m = fidelity(reference, back)
        print(f"hop-band share {100 * m['hop_band_in']:.2f} % in → {100 * m['hop_band_out']:.2f} % out; "
              f"loudness {m['loudness_change_lu']:+.1f} LU; chroma cosine {m['chroma_cosine']:.3f}; "
              f"SI-SDR {m['si_sdr_db']:.1f} dB; MR-STFT {m['mr_stft']:.2f}")
    return 0
