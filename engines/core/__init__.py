"""The shared core every engine, the bridge and the host build on.

One module per job, one way to do each thing: `audio` (file I/O, resampling), `timeline` (tempo maps, bars),
`midi`, `errors`, `takes` (the one take writer), `protocol` (the engine contract), `weights` (safetensors
loading), `training` (the one training loop), `effects` and `render` (instruments, the take renderer), `windows`
(overlap-add), `frontend` (the STFT front end), `balance` (level against the band), `presets`, `transcribe`
(audio to MIDI), `hooks` (what an optional engine adds to every run: the analysis engine's warning and fit
score). Nothing here imports an engine package: the arrows point into `core`; the engines are listed in
`backline.engines.registry`, one layer up.
"""
