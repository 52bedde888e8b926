"""The shared core every engine, the bridge and the host build on.

One module per job, one way to do each thing: `audio` (file I/O, resampling), `timeline` (tempo maps, bars),
`midi`, `errors`, `takes` (the one take writer), `protocol` (the engine contract), `weights` (safetensors
loading), `training` (the one training loop), `effects` and `render` (instruments, the take renderer), `windows`
(overlap-add), `frontend` (the STFT front end), `balance` (level against the band), `presets`, `transcribe`
(audio to MIDI). Nothing here imports an engine package: the arrows point into `core`.
"""
