"""The bass engines: `bass` (follow: listen → plan → render, `follow_engine.py`) and `bass-latent` (paper 000's
conditional latent diffusion from a mix to a bass stem, with style grounding, `engine.py`); shared pieces in
`common.py`, `grid.py` and `transcription.py`."""
