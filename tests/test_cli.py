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
