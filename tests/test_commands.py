"""The one dispatcher behind `sec-train`, `sec-data` and `python -m sec_train.bench`."""

from sec_train import cli
from sec_train.bench.__main__ import main as bench
from sec_train.commands import run_command


def test_unknown_or_missing_command_lists_the_commands(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: sec-train COMMAND") and all(name in err for name in cli.COMMANDS)
    assert bench([]) == 2
    assert "python -m sec_train.bench" in capsys.readouterr().err


def test_target_names_a_module_function_and_gets_the_rest_of_argv():
    commands = {"show": ("json:dumps", "argv as JSON")}
    assert run_command("prog", commands, ["show", "a", "b"]) == '["a", "b"]'


def test_import_reaches_the_converter_with_its_command_name(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert cli.main(["import", "sam2", "--ckpt", str(missing), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("sec-train import sam2:")
