"""Paper 000 §3.1's spectral codec: audio ⇄ latents at 4096 samples per frame (mix: stereo, dim 64; stem: mono,
dim 32). See `codec.py` for the API and alignment rules, `model.py` for the network, `latents.py` for the
latent-cache layout that the diffusion trainers read, and README.md for usage."""

from backline.engines.codec.codec import Codec, build_model, load_codec
from backline.engines.codec.model import HOP, SAMPLE_RATE, CodecConfig, make_config

__all__ = ["Codec", "CodecConfig", "HOP", "SAMPLE_RATE", "build_model", "load_codec", "make_config"]
