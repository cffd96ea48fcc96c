"""The `corebench` command end to end: the console script, its exit codes and one-line errors, and
what `methods`, `plan` and `status` print for the shipped quickstart grid on digits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from corebench.cli import main
from corebench.methods import list_methods

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def test_the_console_script_runs_the_cli_and_lists_every_method():
    script = Path(sys.executable).with_name("corebench")  # pyproject's [project.scripts] entry
    done = subprocess.run([str(script), "methods"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0] for line in done.stdout.splitlines()[2:] if line.strip()}
    assert rows == set(list_methods())


def test_a_missing_grid_file_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["run", str(missing), "--results", str(tmp_path / "r"), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"corebench: error: grid file: '{missing}' is not allowed; allowed: an existing YAML file\n"
    assert not (tmp_path / "r").exists()  # nothing written


def test_a_bad_flag_value_exits_2_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", str(QUICKSTART), "--workers", "0"])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "corebench run: error: argument --workers: '0' is not allowed; allowed: a positive integer"


def test_an_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train-everything"])
    assert stop.value.code == 2
    assert "invalid choice: 'train-everything'" in capsys.readouterr().err


def test_plan_counts_the_cells_to_run_first(tmp_path, capsys):
    args = ["plan", str(QUICKSTART), "--cache", str(tmp_path / "cache"), "--no-probe"]
    assert main([*args, "--results", str(tmp_path / "empty")]) == 0
    first, second = capsys.readouterr().out.splitlines()[:2]
    assert re.fullmatch(r"58 cells to run, 0 done; scoring runs: 0 published, 0 cached, [1-9]\d* to make", first)
    assert second == "grid quickstart: 58 cells"
    assert main([*args, "--results", str(REPO / "results")]) == 0  # the committed records count as done
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "0 cells to run, 58 done; scoring runs: 0 published, 0 cached, 0 to make"


def test_status_counts_the_committed_quickstart_records(capsys):
    assert main(["status", str(REPO / "results"), "--grid", str(QUICKSTART)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("grid quickstart: 58 of 58 cells done, 0 pending (0 stale, 0 failed"), first


def _library_messages() -> list[tuple[str, int, str]]:
    """Every string literal inside a `raise` or an `invalid`/`writable_folder`/`resolve_device`
    call in the package, the command-line module left out: (file, line, text)."""
    import ast

    found = []
    for path in sorted((REPO / "bench").rglob("*.py")):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            call = node.exc if isinstance(node, ast.Raise) else node
            if isinstance(call, ast.Call) and (isinstance(node, ast.Raise) or getattr(call.func, "id", "") in
                                               ("invalid", "writable_folder", "resolve_device")):
                for part in ast.walk(call):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        found.append((path.relative_to(REPO).as_posix(), part.lineno, part.value))
    return found


def test_library_messages_name_no_command_line_flag():
    """The library names a value by its parameter; only the CLI knows the flags (issue 17, item 7)."""
    flagged = [m for m in _library_messages() if re.search(r"(^|[\s(`'])--[a-z][a-z-]+", m[2])]
    assert flagged == []


def test_the_cli_prints_the_flag_for_a_library_parameter_and_leaves_grid_keys_alone(tmp_path, capsys):
    from corebench.cli import as_typed

    assert as_typed("results_dir: '/x' is not allowed; allowed: a folder") == "--results: '/x' is not allowed; allowed: a folder"
    assert as_typed("slurm_overrides.partiton: 'p' is not allowed") == "--slurm.partiton: 'p' is not allowed"
    assert as_typed("slurm.time: 'soon' is not allowed") == "slurm.time: 'soon' is not allowed"  # the grid's key
    assert as_typed("device: 'tpu' is not allowed") == "device: 'tpu' is not allowed"  # the grid's key
    # end to end: the library raises `time_limit: ...`, the user reads the flag they typed
    assert main(["run", str(QUICKSTART), "--results", str(tmp_path / "r"), "--time-limit", "soon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("corebench: error: --time-limit: 'soon' is not allowed") and err.count("\n") == 1
