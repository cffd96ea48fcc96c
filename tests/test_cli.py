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
