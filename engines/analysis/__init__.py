"""Listening models: MusiCoder (paper 004), a SimCLR encoder with (mix, stem) matching (paper 002a) and the
hierarchical instrument tagger (paper 001). The public API lives in `backline.engines.analysis.api`."""
