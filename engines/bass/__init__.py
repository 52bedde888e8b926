"""The bass engine: paper 000's conditional latent diffusion from a mix to a bass stem, with style grounding."""
