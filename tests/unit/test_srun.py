"""``srun`` inside batch scripts (launcher.srun): what each command line starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher.srun import Plan, plan, run_copies

MNP = {"MNP_WIRING_DIR": "/w", "MNP_NODE_ALIASES": "node0 node1 node2", "MNP_TASKS_PER_NODE": "2"}


def test_one_node_runs_n_copies() -> None:
    assert plan(["-n", "3", "prog", "-x"], {}, "py") == Plan(("prog", "-x"), 3, False, ())
    assert plan(["--ntasks=2", "--", "prog"], {}, "py").copies == 2
    assert plan(["prog"], {"SLURM_NTASKS": "4"}, "py").copies == 4  # the job's tasks
    assert plan(["prog"], {}, "py").copies == 1


def test_multi_node_launches_mpi_over_the_job_nodes() -> None:
    assert plan(["prog", "a b"], MNP, "py").argv == (
        "py", "-m", "launcher.wire", "--np", "6", "--", "prog", "a b"
    )  # fmt: skip
    assert "4" in plan(["-N2", "prog"], MNP, "py").argv  # 2 nodes × 2 tasks
    assert plan(["-n", "5", "--ntasks-per-node", "3", "prog"], MNP, "py").argv[4] == "5"
    assert plan(["--ntasks-per-node=1", "prog"], MNP, "py").argv[4] == "3"


def test_options_that_do_not_apply_are_named() -> None:
    got = plan(["-l", "--cpu-bind=cores", "--mem", "4G", "-c", "2", "prog"], {}, "py")
    assert got.argv == ("prog",)
    assert got.ignored == ("--cpu-bind", "--cpus-per-task", "--label", "--mem")


@pytest.mark.parametrize("args", [[], ["-n", "0", "prog"], ["-n", "x", "prog"], ["-n"]])
def test_bad_usage(args: list[str]) -> None:
    with pytest.raises(ValueError):
        plan(args, {}, "py")


def test_copies_get_their_task_ids_and_the_first_failure_is_the_status(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    code = 'import os, sys; open(sys.argv[1] + os.environ["SLURM_PROCID"], "w").write(' \
        'os.environ["SLURM_NTASKS"]); sys.exit(3 if os.environ["SLURM_PROCID"] == "1" else 0)'
    assert run_copies([sys.executable, "-c", code, str(out)], 3, {}) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids0", "ids1", "ids2"]
    assert (tmp_path / "ids2").read_text() == "3"


def test_command_line_usage_error_exits_64() -> None:
    r = subprocess.run([sys.executable, "-m", "launcher.srun"], capture_output=True, text=True)
    assert r.returncode == 64 and "no command" in r.stderr
