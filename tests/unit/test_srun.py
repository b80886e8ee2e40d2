"""``srun`` inside batch jobs (launcher.srun, launcher.srun_task): options as getopt reads them,
the step's layout, where the program is found, and each task's ``SLURM_*`` variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import srun_task
from launcher.srun import (
    TASK_WRAPPER,
    UsageError,
    find_program,
    layout,
    local_argv,
    next_step_id,
    parse,
    parse_signal,
    plan,
)

ROOT = Path(__file__).resolve().parents[2]
MNP = {"MNP_WIRING_DIR": "/w", "MNP_NODE_ALIASES": "node0 node1 node2", "SLURM_NTASKS": "6",
       "PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "5"}  # fmt: skip


def test_options_end_at_the_command_and_long_ones_may_be_abbreviated() -> None:
    r = parse(["-ln2", "--ntasks-per-n=1", "--exclusive", "--cpu-bind", "cores", "prog", "-n", "9"])
    assert r.command == ("prog", "-n", "9")
    assert r.values["ntasks"] == "2" and r.values["label"] == "1"
    assert r.values["ntasks-per-node"] == "1"
    assert r.ignored == ("--cpu-bind", "--exclusive")  # accepted, named in a warning
    assert parse(["--", "-prog"]).command == ("-prog",)
    assert parse(["-K", "--mpi=pmi2", "x"]).values["mpi"] == "pmi2"


@pytest.mark.parametrize(
    "args", [[], ["-n"], ["--bogus", "x"], ["--n", "2", "x"], ["-Z", "x"], ["--label=1", "x"]]
)
def test_bad_usage(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(args)


@pytest.mark.parametrize(
    ("ntasks", "nodes", "per_node", "job_nodes", "job_tasks", "counts"),
    [
        (None, None, None, 1, 4, (4,)),  # the job's tasks
        (3, None, None, 1, 1, (3,)),
        (5, None, None, 3, 6, (2, 2, 1)),  # Slurm's block layout
        (7, None, None, 3, 6, (3, 2, 2)),
        (1, None, None, 3, 6, (1,)),  # fewer tasks than nodes: fewer nodes
        (None, 2, 1, 2, 4, (1, 1)),  # srun -N 2 --ntasks-per-node 1: once per node
        (None, 1, None, 3, 6, (2,)),  # -N 1: the job's tasks per node
        (None, None, 2, 3, 3, (2, 2, 2)),
        (None, None, None, 2, 4, (2, 2)),
    ],
)
def test_layout(
    ntasks: int | None, nodes: int | None, per_node: int | None, job_nodes: int, job_tasks: int,
    counts: tuple[int, ...],
) -> None:  # fmt: skip
    assert layout(ntasks, nodes, per_node, job_nodes, job_tasks) == counts


def test_layout_refuses_what_the_allocation_lacks() -> None:
    with pytest.raises(UsageError, match="only 1 node"):
        layout(None, 2, None, 1, 1)
    with pytest.raises(UsageError, match="do not fit"):
        layout(5, 2, 2, 2, 4)


def test_tasks_per_node_in_slurms_compressed_form() -> None:
    assert srun_task.compress_counts([2, 2]) == "2(x2)"
    assert srun_task.compress_counts([3, 2, 2, 1]) == "3,2(x2),1"
    assert srun_task.compress_counts([4]) == "4"
    assert [srun_task.place(r, [2, 2, 1]) for r in range(5)] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0)
    ]  # fmt: skip


def test_programs_are_found_on_path_then_in_the_working_directory(tmp_path: Path) -> None:
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    for p in (work / "prog", work / "both", bin_dir / "both"):
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    assert find_program("prog", str(work), str(bin_dir)) == str(work / "prog")
    assert find_program("both", str(work), str(bin_dir)) == str(bin_dir / "both")
    assert find_program("./prog", str(work), "") == str(work / "prog")
    with pytest.raises(UsageError, match="ambiguous"):
        parse(["--ntasks-per", "1", "prog"])
    assert find_program("missing", str(work), str(bin_dir)) is None
    assert find_program("/bin/sh", str(work), "") == "/bin/sh"


def test_a_multi_node_step_gets_its_own_nodes_and_counts() -> None:
    step = plan(parse(["-N", "2", "--ntasks-per-node", "1", "sh", "run.sh"]), MNP, "/", 3)
    assert step.counts == (1, 1) and step.nodes == ("node0", "node1")
    assert step.command == ("/usr/bin/sh", "run.sh")
    assert step.task_args == ("--counts", "1,1", "--step", "3")
    one = plan(parse(["-n", "4", "sh"]), {"PATH": "/bin", "SLURM_NTASKS": "1"}, "/", 0)
    assert one.counts == (4,) and one.nodes == ()


def test_signal_is_sent_its_time_before_the_job_ends() -> None:
    assert parse_signal("USR2@90") == ("", 12, 90)
    assert parse_signal("B:SIGUSR1") == ("B", 10, 60)
    assert parse_signal("10@5") == ("", 10, 5)
    with pytest.raises(UsageError):
        parse_signal("NOPE@1")
    env = {**MNP, "SLURM_JOB_END_TIME": "1000", "SLURM_SIGNAL": "USR2@90"}
    step = plan(parse(["sh"]), env, "/", 0)
    assert step.task_args[-2:] == ("--signal", "12@910")  # sbatch's, through SLURM_SIGNAL
    step = plan(parse(["--signal=USR1@10", "sh"]), env, "/", 0)
    assert step.task_args[-2:] == ("--signal", "10@990")
    assert "--signal" not in plan(parse(["--signal=B:USR1", "sh"]), env, "/", 0).task_args


def test_local_launch_argv_per_flavour() -> None:
    assert local_argv("mpich", "/m", 4, ["p"]) == ["/m", "-launcher", "fork", "-n", "4", "p"]
    assert local_argv("openmpi", "/o", 2, ["p"])[:5] == ["/o", "-np", "2", "--host", "localhost:2"]


def test_step_ids_count_up_beside_the_jobs_srun(tmp_path: Path) -> None:
    (tmp_path / "srun").write_text('#!/bin/sh\nexec python -m launcher.srun "$@"\n')
    env = {"PATH": f"/nonexistent:{tmp_path}"}
    assert [next_step_id(env) for _ in range(3)] == [0, 1, 2]
    assert next_step_id({"PATH": "/nonexistent"}) == 0


def _task(args: list[str], env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    code = "import os; print(' '.join(f'{k}={os.getenv(k)}' for k in os.environ['KEYS'].split()))"
    keys = ("SLURM_PROCID SLURM_LOCALID SLURM_NODEID SLURM_NTASKS SLURM_TASKS_PER_NODE "
            "SLURM_STEP_ID SLURM_CPUS_ON_NODE FOO")  # fmt: skip
    full = {"PATH": os.environ["PATH"], "KEYS": keys, **env}
    return subprocess.run(
        [sys.executable, TASK_WRAPPER, *args, "--", sys.executable, "-c", code],
        env=full, capture_output=True, text=True, cwd=tmp, timeout=30,
    )  # fmt: skip


def test_a_task_takes_its_ids_from_the_mpi_launchers_rank(tmp_path: Path) -> None:
    r = _task(["--counts", "2,2", "--step", "4"], {"PMI_RANK": "3"}, tmp_path)
    cpus = len(os.sched_getaffinity(0))
    assert r.stdout.split() == [
        "SLURM_PROCID=3", "SLURM_LOCALID=1", "SLURM_NODEID=1", "SLURM_NTASKS=4",
        "SLURM_TASKS_PER_NODE=2(x2)", "SLURM_STEP_ID=4", f"SLURM_CPUS_ON_NODE={cpus}", "FOO=None",
    ], r.stderr  # fmt: skip
    r = _task(["--counts", "3", "--rank", "9"], {"OMPI_COMM_WORLD_RANK": "2"}, tmp_path)
    assert r.stdout.split()[:3] == ["SLURM_PROCID=2", "SLURM_LOCALID=2", "SLURM_NODEID=0"]


def test_a_task_labels_its_lines_writes_its_own_file_and_exports(tmp_path: Path) -> None:
    args = ["--counts", "12", "--rank", "3", "--label", "--export", "NONE,FOO=1,KEYS"]
    r = _task(args, {}, tmp_path)
    assert r.stdout.startswith(" 3: SLURM_PROCID=3 ") and r.stdout.endswith("FOO=1\n"), r
    env = {"SLURM_JOB_ID": "77"}
    r = _task(["--counts", "2", "--rank", "1", "--output", "o-%j-%t.txt"], env, tmp_path)
    assert r.stdout == "" and (tmp_path / "o-77-1.txt").read_text().startswith("SLURM_PROCID=1")
    assert srun_task.expand_pattern("%j_%3t_%%_%x", {"j": "5", "t": "7", "x": "n"}) == "5_007_%_n"


def test_outside_an_allocation_srun_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = subprocess.run(
        [sys.executable, "-m", "launcher.srun", "true"], capture_output=True, text=True,
        env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert r.returncode == 1 and "not inside a job allocation" in r.stderr


def test_command_line_usage_error_exits_64(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "launcher.srun", "--bogus"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SLURM_JOB_ID": "1"}, cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert r.returncode == 64 and "unrecognized option '--bogus'" in r.stderr


def test_tasks_started_directly_fail_the_step_with_the_highest_status(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLURM_JOB_ID": "1"}
    code = "import os, sys; sys.exit(int(os.environ['SLURM_PROCID']) + 2)"
    r = subprocess.run(
        [sys.executable, "-m", "launcher.srun", "--mpi=none", "-n3", sys.executable, "-c", code],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert r.returncode == 4, r.stderr
