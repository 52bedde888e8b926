"""`backline data encode`: turn a Slakh2100-layout corpus into the latent cache the diffusion trainers read.

Layout and loader: `backline.engines.codec.latents` (one TrackNNNNN.safetensors per track with keys "mix",
"mix_no_bass", "stem_S00", …). Runs unchanged under torchrun: tracks are sharded round-robin across ranks,
each rank writes its own files, rank 0 writes index.json once every rank is done. Existing track files are kept
(an interrupted run resumes) unless --overwrite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backline.engines.codec import load_codec
from backline.engines.codec.codec import latent_space_id
from backline.engines.codec.latents import FORMAT, VERSION, save_track_latents, stem_roles
from backline.engines.codec.train import find_tracks
from backline.engines.core.audio import Audio, audio_info, read_audio, write_bytes_atomic
from backline.engines.core.training import Distributed, SilentBar, progress_bar
from backline.engines.data.slakh import read_track

HELP = "encode a Slakh2100-layout corpus into codec latents (mix, mix minus a role, every stem) for diffusion training"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="corpus folder holding TrackNNNNN/{mix.flac, stems/}")
    parser.add_argument("--out", required=True, help="latent cache folder (created)")
    parser.add_argument("--codec", default="both", choices=["mix", "stem", "both"], help="which latents (default both)")
    parser.add_argument("--config", default="shipped", choices=["shipped", "debug", "small", "paper"],
                        help="codec weights: shipped (default) or a random-init size (tests only)")
    parser.add_argument("--mix-weights", default=None, help="mix codec weights from `backline train codec`")
    parser.add_argument("--stem-weights", default=None, help="stem codec weights from `backline train codec`")
    parser.add_argument("--minus", action="append", default=None, metavar="ROLE",
                        help="also cache the mix without every stem of ROLE as mix_no_ROLE (repeatable; default bass)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    parser.add_argument("--overwrite", action="store_true", help="re-encode tracks whose latent file exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _weights_id(codec) -> str:
    """The codec's latent-space id, so a cache can be matched to the encoder that wrote it."""
    return latent_space_id(codec)


def encode_track(track: Path, mix_codec, stem_codec, minus: list[str]) -> tuple[dict, dict]:
    """All latents of one track (see `latents` for the keys) and its metadata."""
    import numpy as np

    stems = [s.audio for s in read_track(track).audio_stems()]
    rate, _, total = audio_info(track / "mix.flac")
    roles = stem_roles(track)
    tensors = {}
    if mix_codec is not None:
        tensors["mix"] = mix_codec.encode_file(track / "mix.flac")
        for role in minus:
            keep = [s for s in stems if roles.get(s.stem, "other") != role]
            if len(keep) == len(stems):
                continue  # the track has no stem of this role: mix_no_role would equal mix; leave it out
            acc = np.zeros((2, total), np.float32)
            for s in keep:
                x = read_audio(s, channels=2, frames=total)
                acc += x.samples[:, :total]
            tensors[f"mix_no_{role}"] = mix_codec.encode(Audio(acc, rate))
    if stem_codec is not None:
        for s in stems:
            tensors[f"stem_{s.stem}"] = stem_codec.encode_file(s)
    n = max(1, -(-round(total * 44100 / rate) // 4096))
    for key, z in list(tensors.items()):  # stems can be a few samples longer/shorter than the mix: align to it
        if z.shape[1] != n:
            fixed = z.new_zeros(z.shape[0], n)
            fixed[:, : min(n, z.shape[1])] = z[:, :n]
            tensors[key] = fixed
    meta = {"track": track.name, "frames": str(n), "samples": str(round(total * 44100 / rate)),
            "sample_rate": "44100", "hop": "4096", "roles": roles, "stems": [s.stem for s in stems]}
    return tensors, meta


def run(args: argparse.Namespace) -> int:
    import json

    ctx = Distributed.setup(args.device)
    try:
        tracks = [t.path for t in find_tracks(args.data)]
        out = Path(args.out)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
        ctx.barrier()
        minus = args.minus or ["bass"]
        device = str(ctx.device)
        mix_codec = stem_codec = None
        ids = {}
        if args.codec in ("mix", "both"):
            mix_codec = load_codec("mix", args.config, device, weights=args.mix_weights)
            ids["mix_codec"] = _weights_id(mix_codec)
        if args.codec in ("stem", "both"):
            stem_codec = load_codec("stem", args.config, device, weights=args.stem_weights)
            ids["stem_codec"] = _weights_id(stem_codec)
        mine = tracks[ctx.rank:: ctx.world_size]
        bar = SilentBar() if args.quiet else progress_bar(len(mine), 0, ctx, "encoding tracks")
        written = kept = 0
        for track in mine:
            target = out / f"{track.name}.safetensors"
            if target.exists() and not args.overwrite:
                kept += 1
            else:
                tensors, meta = encode_track(track, mix_codec, stem_codec, minus)
                save_track_latents(target, tensors, meta | ids, overwrite=args.overwrite)
                written += 1
            bar.update(1)
        bar.close()
        ctx.barrier()
        if ctx.is_main:
            codecs = {}
            for name, codec in (("mix", mix_codec), ("stem", stem_codec)):
                if codec is not None:
                    codecs[name] = {"id": ids[f"{name}_codec"], "dim": codec.dim, "channels": codec.channels,
                                    "config": codec.config.to_dict()}
            present = [t.name for t in tracks if (out / f"{t.name}.safetensors").exists()]
            index = {"format": FORMAT, "version": VERSION, "hop": 4096, "sample_rate": 44100, "codecs": codecs,
                     "minus_roles": minus, "data": str(Path(args.data).resolve()), "tracks": present}
            write_bytes_atomic(out / "index.json", json.dumps(index, indent=1).encode(), overwrite=True)
            print(f"{out}: {len(present)} tracks cached ({written} encoded by rank 0, {kept} kept); "
                  f"world size {ctx.world_size}")
        ctx.barrier()
        return 0
    finally:
        ctx.close()
