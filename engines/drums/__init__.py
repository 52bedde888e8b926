"""The drum engine (paper 002b, Dahale et al.): drum parts with fills where drummers put them.

representation.py (grid, drum classes, tokens) → inputs.py (MIDI files, JACK MIDI, audio) → models.py
(seq2seq, fill locator, infiller, fill VAE) → pipeline.py → velocity.py → engine.py (Engine protocol, MIDI/WAV
writing) ; novelty.py labels fills; train.py / cli.py are `backline train drums` / `backline generate drums`.
"""
