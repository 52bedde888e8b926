"""Preset files for the browser: the shared preset class and reader (`backline.engines.core.presets`), re-exported
so the host and the engines read presets one way (`presets/<engine>/*.toml` in the install plus the user's
folders; a broken file is skipped with one line, a reference outside the preset's folder is refused)."""

from backline.engines.core.presets import Preset, builtin_preset_dir, load_presets, read_preset

__all__ = ["Preset", "builtin_preset_dir", "load_presets", "read_preset"]
