import subprocess
import sys

import pytest

from backline.host import cli


def test_help_lists_the_commands_without_importing_torch():
    code = ("import sys; from backline.host import cli; cli.main(['--help']) if False else None; "
            "cli._top_parser(cli._available()).format_help(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    text = cli._top_parser(cli._available()).format_help()
    for group in ("demo", "data", "train", "generate", "bridge", "host"):
        assert group in text


def test_group_help_lists_subcommands(capsys):
    assert cli.main(["data", "--help"]) == 0
    assert "synth" in capsys.readouterr().out


def test_subcommand_help_is_argparse_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "synth", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--songs" in out and "--seed" in out and "--out" in out


def test_unknown_commands_are_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])
    assert "unknown command" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "nonsense"])


def test_user_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert cli.main(["data", "synth", "--songs", "0", "--out", str(tmp_path / "c"), "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("backline: error:") and len(err.splitlines()) == 1


ENGINE_COMMANDS = {"bass": "backline.engines.bass.cli", "drums": "backline.engines.drums.cli",
                   "accompany": "backline.engines.accompany.cli", "separate": "backline.engines.separate.cli",
                   "analysis": "backline.engines.analysis.analyze_cli"}


def _engine_parser(module: str):
    import argparse
    import importlib

    from backline.engines import runner

    command = importlib.import_module(module)
    parser = argparse.ArgumentParser()
    runner.configure(parser, command)
    return parser, command


def test_every_engine_command_speaks_one_vocabulary():
    """The shared flags mean the same on every engine command, and every control the engine declares (but those
    the shared flags carry) is a flag named after it, with the engine's own default left to the engine."""
    from backline.engines.registry import describe_engine
    from backline.engines.runner import SHARED

    for engine, module in ENGINE_COMMANDS.items():
        parser, command = _engine_parser(module)
        flags = {s for a in parser._actions for s in a.option_strings}
        assert {"--mix", "--out", "--seed", "--variations", "--device", "--config", "--overwrite"} <= flags, engine
        desc = describe_engine(engine)
        if "midi" in set(desc.inputs) | set(desc.extra_inputs):
            assert "--band-midi" in flags, engine
        skip = set(SHARED) | set(getattr(command, "SKIP", ())) | {"prompt"}
        for control in desc.controls:
            if control.name not in skip:
                assert "--" + control.name.replace("_", "-") in flags, (engine, control.name)
        defaults = parser.parse_args([])
        assert defaults.device == "auto" and defaults.variations == 1 and defaults.seed == 0
        # the mix as the first argument, as a new user types it (`backline generate bass SONG.wav`), everywhere
        assert str(parser.parse_args(["song.wav"]).mix_file) == "song.wav", engine


@pytest.mark.parametrize("command", [["generate", "bass"], ["generate", "accompaniment"], ["generate", "drums"],
                                     ["separate"], ["analyze"]])
def test_the_mix_given_twice_is_one_line(tmp_path, capsys, command):
    assert cli.main([*command, "a.wav", "--mix", "b.wav", "--out", str(tmp_path / "t"), "--bpm", "120"]
                    if command[0] == "generate" else [*command, "a.wav", "--mix", "b.wav"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the mix is given twice" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_old_drum_spellings_work_and_say_the_new_one(capsys):
    """`--takes` and `--midi` (drums before the one vocabulary) still parse, hidden from --help, with one
    deprecation line each."""
    parser, _ = _engine_parser(ENGINE_COMMANDS["drums"])
    args = parser.parse_args(["--midi", "band.mid", "--takes", "3", "--audio", "mix.wav"])
    assert str(args.band_midi) == "band.mid" and args.variations == 3 and str(args.mix) == "mix.wav"
    err = capsys.readouterr().err.splitlines()
    assert err == ["backline: warning: --midi is deprecated; use --band-midi",
                   "backline: warning: --takes is deprecated; use --variations",
                   "backline: warning: --audio is deprecated; use --mix"]
    assert "--takes" not in parser.format_help() and "--midi " not in parser.format_help()


def test_the_core_imports_no_engine_package():
    """engines/core is the bottom layer: the analysis warnings and fit score reach it as hooks, the registry
    of engines lives above it (`backline.engines.registry`)."""
    import re
    from pathlib import Path

    import backline.engines.core as core

    pattern = re.compile(r"backline\.engines\.(bass|drums|accompany|separate|analysis|codec|diffusion|data|listen)\b")
    for path in Path(core.__file__).parent.glob("*.py"):
        assert not pattern.search(path.read_text(encoding="utf-8")), path.name


def test_the_analysis_warning_reaches_every_run_as_a_hook(tmp_path):
    """`core.hooks.role_warning` finds the analysis engine's check through the registry's provider list (the
    core never imports it): band MIDI with a bass track warns the bass engine, not the drum engine."""
    import subprocess
    import sys

    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Bass"),
                            mido.Message("program_change", program=33, channel=0)])
    for _ in range(4):
        track += [mido.Message("note_on", note=40, velocity=80, time=0),
                  mido.Message("note_off", note=40, velocity=0, time=96)]
    mid.tracks.append(track)
    mid.save(tmp_path / "band.mid")
    code = f"""
import sys
from pathlib import Path
from backline.engines.core import hooks
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
assert hooks.hook("role_warning") is None  # nothing declared a provider yet: no hook, no import
import backline.engines.registry  # the registry declares the analysis engine's hooks
req = lambda engine: GenerationRequest(engine, Path("o"), Timeline.constant(120, 44100), midi=Path({str(tmp_path / 'band.mid')!r}))
print(hooks.role_warning(req("bass"), "debug"))
print(hooks.role_warning(req("drums"), "debug"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    bass, drums = out.stdout.strip().splitlines()[-2:]
    assert "already has a bass" in bass and drums == "None"


def test_analyze_json_is_gone_in_one_line(tmp_path, capsys):
    """`analyze --json FILE` wrote a file around the engine; `--out DIR` writes the engine's own report now, and
    the old flag says so in one line instead of an argparse usage dump."""
    assert cli.main(["analyze", str(tmp_path / "mix.wav"), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--json is gone" in err and "--out DIR" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv", [["generate", "bass"], ["generate", "accompaniment"], ["generate", "drums"], ["separate"],
                                  ["analyze"]])
def test_engine_command_help_imports_no_torch(argv):
    """`--help` (and the parser it comes from) is read from the engines' description modules: no torch, no scipy,
    a fraction of a CPU-second instead of two (issue 23)."""
    code = ("import sys\nfrom backline.host import cli\n"
            f"try:\n    cli.main({argv + ['--help']!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'scipy', 'librosa') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--seed" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_description_modules_say_what_the_builders_take():
    """A description module's BUILDER_OPTIONS (the --weights-like flags) agree with the real builder's signature,
    and the engine module's `describe` is the description module's."""
    import importlib
    import inspect

    from backline.engines import registry

    for name, module in registry.DESCRIPTIONS.items():
        light = importlib.import_module(module)
        engine_mod = registry.engine_module(name)
        builder = getattr(engine_mod, registry.ENGINE_REGISTRY[name].split(":")[1])
        takes = tuple(p for p in inspect.signature(builder).parameters if p not in ("config", "device"))
        assert light.BUILDER_OPTIONS == takes, name
        assert engine_mod.describe is light.describe, name
