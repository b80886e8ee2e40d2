"""``mnp run`` / ``mnp mpirun``: option parsing, Slurm time limits, the pure builders (golden),
the exit status, and attaching (against a scripted stand-in client).

Golden files live in ``tests/unit/golden/cli_run/``: each is what ``--dry-run`` prints, run
in ``/`` with :data:`CALLER` as the environment; ``MNP_UPDATE_GOLDEN=1 pytest …`` rewrites them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import click
import pytest
from click.testing import CliRunner

from mnp.cli import attach as attaching
from mnp.cli.attach import Interrupts
from mnp.cli.demo import MpiResult, Rank, Row, mpi_options, parse_ranks
from mnp.cli.main import cli
from mnp.cli.mpihosts import mpirun_counts
from mnp.cli.run import (
    Layout,
    RunOptions,
    attach,
    build_definition,
    build_submission,
    default_name,
    dry_run_text,
    exit_status,
    job_environment,
    resolve_program,
    run_options,
    submit_and_attach,
)
from mnp.client.client import Client
from mnp.errors import NotFound
from mnp.slurm.values import parse_export, parse_time
from tests.unit import goldens

JSON = dict[str, Any]
GOLDEN = Path(__file__).parent / "golden" / "cli_run"
HOSTILE = [
    '/opt/my dir/it\'s "$x";.sh',
    "arg with space",
    "a;b",
    "$HOME",
    "'q'",
    "`id`",
    "new\nline",
    "",
]


CALLER = {
    "PATH": "/home/u/venv/bin:/usr/bin:/bin",
    "VIRTUAL_ENV": "/home/u/venv",
    "PYTHONPATH": "/home/u/src",
    "HOME": "/home/u",
    "PWD": "/somewhere",
    "SHLVL": "2",
    "SLURM_JOB_ID": "7",
    "MNP_HOME": "/home/u/.mnp",
    "AWS_BATCH_JOB_ID": "x",
    "BASH_FUNC_module%%": '() {  echo module "$@"\n}',
}
"""A caller's environment: what srun exports of it (``--export=ALL``) goes in the goldens."""


@pytest.fixture(autouse=True)
def caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with :data:`CALLER` as its whole environment (and
    ``MNP_UPDATE_GOLDEN``, which ``--export=ALL`` leaves out)."""
    for name in list(os.environ):
        if name != "MNP_UPDATE_GOLDEN":
            monkeypatch.delenv(name)
    for name, value in CALLER.items():
        monkeypatch.setenv(name, value)


def assert_golden(name: str, text: str) -> None:
    goldens.check("cli_run", name, text)


# -- time limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 300),
        ("90", 5400),
        (" 10 ", 600),
        ("5:30", 330),
        ("0:45", 45),
        ("1:02:03", 3723),
        ("48:00:00", 172800),
        ("2-3", 2 * 86400 + 3 * 3600),
        ("2-03:04", 2 * 86400 + 3 * 3600 + 4 * 60),
        ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("0-0:0:1", 1),
    ],
)
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1:2:3:4", "1-2:3:4:5", "-5", "5:", ":5", "1:60", "1:60:00", "1-24", "0",
     "0:00", "1.5", "１", "1 -2", "1-", "+5"],
)  # fmt: skip
def test_bad_times_name_the_formats(text: str) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_time(text)


# -- options ---------------------------------------------------------------------------------------


def test_the_job_gets_the_callers_environment_as_srun_exports_it() -> None:
    env = dict(job_environment([], CALLER))
    assert env == dict(job_environment(["ALL"], CALLER))
    assert {k: env[k] for k in ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "HOME")} == {
        k: CALLER[k] for k in ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "HOME")
    }
    assert env["BASH_FUNC_module%%"] == CALLER["BASH_FUNC_module%%"]  # `module load` works
    assert not {"PWD", "SHLVL", "SLURM_JOB_ID", "MNP_HOME", "AWS_BATCH_JOB_ID"} & set(env)
    assert job_environment(["NONE"], CALLER) == ()
    assert job_environment(["A=1,PATH"], CALLER) == (("A", "1"), ("PATH", CALLER["PATH"]))
    assert job_environment(["NONE,A=x,1", "B=2"], CALLER) == (("A", "x,1"), ("B", "2"))
    everything = dict(job_environment(["ALL,PATH=/only", "Q=1"], CALLER))
    assert (everything["PATH"], everything["Q"], everything["HOME"]) == ("/only", "1", "/home/u")
    with pytest.raises(ValueError, match="UNSET"):
        job_environment(["UNSET"], CALLER)


def test_the_job_starts_in_the_callers_directory_with_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["run"], ["run", "-N", "2", "--every-node"], ["mpirun", "-np", "4"]):
        result = CliRunner().invoke(cli, [argv[0], "--dry-run", *argv[1:], "--", "python", "x"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["submitJob"]["mnp"] == {
            "workingDirectory": str(tmp_path), "submitDir": str(tmp_path),
        }  # fmt: skip
        defn = doc["registerJobDefinition"]
        containers = [defn["containerProperties"]] if defn["type"] == "container" else [
            r["container"] for r in defn["nodeProperties"]["nodeRangeProperties"]
        ]  # fmt: skip
        for container in containers:  # every node: MPI ranks on other nodes need it too
            env = {e["name"]: e["value"] for e in container["environment"]}
            assert env["PATH"] == CALLER["PATH"] and env["VIRTUAL_ENV"] == CALLER["VIRTUAL_ENV"]
            assert env["PYTHONPATH"] == CALLER["PYTHONPATH"]
        assert containers[0]["command"] == ["python", "x"]  # the job's PATH finds it


def test_without_path_in_the_job_a_program_is_found_on_the_callers(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "myprog").write_text("#!/bin/sh\npwd\n")
    (bin_dir / "myprog").chmod(0o755)
    (tmp_path / "local.sh").write_text("")
    environ = {"PATH": f"/nonexistent:{bin_dir}"}
    own_path = (("PATH", environ["PATH"]),)
    assert resolve_program(["myprog", "a"], tmp_path, environ, own_path) == ["myprog", "a"]
    assert resolve_program(["myprog", "a"], tmp_path, environ, ()) == [str(bin_dir / "myprog"), "a"]
    assert resolve_program(["absent"], tmp_path, environ, ()) == ["absent"]
    assert resolve_program(["./local.sh"], tmp_path, environ, ()) == [str(tmp_path / "local.sh")]


def test_exports_take_values_or_the_environment() -> None:
    pairs = parse_export(["A=1", "B=x=y", "C=", "HOME", "A=2"], {"HOME": "/h"})
    assert pairs == (("A", "2"), ("B", "x=y"), ("C", ""), ("HOME", "/h"))
    for bad in (["1A=2"], ["=x"], ["UNSET"], ["A B=1"]):
        with pytest.raises(ValueError):
            parse_export(bad, {})


@pytest.mark.parametrize(
    ("program", "name"),
    [
        ("python", "run-python"),
        ("/usr/bin/python3.11", "run-python3-11"),
        ("./my script's;$x.sh", "run-my-script-s--x-sh"),
        ("", "run-command"),
        ("/", "run-command"),
        ("x" * 200, "run-" + "x" * 124),
    ],
)
def test_default_name_is_a_valid_batch_name(program: str, name: str) -> None:
    assert default_name([program, "arg"]) == name


def test_run_options_choose_the_layout() -> None:
    cmd = ["prog"]
    single = run_options(cmd)
    assert (single.layout, single.nodes, single.mpi, single.tasks_per_node) == (
        Layout.SINGLE, 1, "none", None,
    )  # fmt: skip
    many = run_options(cmd, nodes=3)
    assert (many.layout, many.nodes, many.mpi) == (Layout.MPI, 3, "auto")
    one_mpi = run_options(cmd, mpi="none")
    assert (one_mpi.layout, one_mpi.nodes, one_mpi.mpi) == (Layout.MPI, 1, "none")
    ranks = run_options(cmd, ntasks=4)
    assert (ranks.layout, ranks.nodes, ranks.tasks_per_node, ranks.mpi) == (
        Layout.MPI, 1, 4, "auto",
    )  # fmt: skip
    every = run_options(cmd, nodes=2, every_node=True)
    assert (every.layout, every.mpi) == (Layout.EVERY_NODE, "none")


@pytest.mark.parametrize(
    ("nodes", "ntasks", "per_node", "expect"),
    [
        (None, 8, 2, (4, 2, 8)),
        (None, 7, 2, (4, 2, 8)),
        (2, 5, None, (2, 3, 6)),
        (4, None, 2, (4, 2, 8)),
        (3, 6, 2, (3, 2, 6)),
        (None, 1, None, (1, 1, 1)),
    ],
)
def test_run_options_count_nodes_and_ranks(
    nodes: int | None, ntasks: int | None, per_node: int | None, expect: tuple[int, int, int]
) -> None:
    o = run_options(["prog"], nodes=nodes, ntasks=ntasks, ntasks_per_node=per_node)
    assert (o.nodes, o.tasks_per_node, o.ranks) == expect


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every_node": True, "mpi": "mpich"},
        {"nodes": 2, "ntasks": 9, "ntasks_per_node": 2},
    ],
)
def test_run_options_refuse_contradictions(kwargs: dict[str, Any]) -> None:
    with pytest.raises(click.UsageError):
        run_options(["prog"], **kwargs)
    with pytest.raises(click.UsageError):
        run_options([])


@pytest.mark.parametrize(
    ("np", "per_node", "nodes", "expect"),
    [
        (8, None, None, (4, 2)),
        (3, None, None, (2, 2)),
        (2, None, None, (1, 2)),
        (1, None, None, (1, 1)),
        (8, 4, None, (2, 4)),
        (8, None, 2, (2, 4)),
        (6, None, 4, (4, 2)),
        (8, 2, 3, (3, 2)),
    ],
)
def test_mpirun_counts(
    np: int, per_node: int | None, nodes: int | None, expect: tuple[int, int]
) -> None:
    assert mpirun_counts(np, per_node, nodes) == expect


# -- builders: golden through the CLI's --dry-run -----------------------------------------------

CASES: dict[str, list[str]] = {
    "single": ["run", "--", "sh", "-c", "exit 3"],
    "single-shaped": ["run", "-c", "2", "--mem", "512", "-t", "1-02:03:04", "-J", "my-job",
                      "-p", "gpu", "--export", "A=1", "--export", "B=two words", "python",
                      "train.py", "--lr", "0.1"],
    "mpi": ["run", "-N", "4", "--ntasks-per-node", "2", "--mpi", "mpich", "--", "python",
            "/opt/examples/mpi_allreduce.py"],
    "mpi-auto-ntasks": ["run", "-N", "2", "-n", "4", "-t", "30", "--", "./a.out"],
    "mpi-one-node": ["run", "--mpi", "none", "--", "hostname"],
    "every-node": ["run", "--every-node", "-N", "2", "--ntasks-per-node", "1", "--", "sh", "-c",
                   "echo $NODE_RANK/$WORLD_SIZE"],
    "mpirun": ["mpirun", "-np", "8", "--mpi", "openmpi", "--", "python", "prog.py"],
    "hostile-single": ["run", "--export", "Q=it's \"quoted\"; $HOME `id`", "--", *HOSTILE],
    "hostile-mpi": ["run", "-N", "2", "-J", "weird_1", "--export", "Q=a;b $c", "--", *HOSTILE],
    "hostile-every-node": ["run", "--every-node", "-N", "3", "--", "sh", "-c",
                           "echo \"$NODE_RANK\"; echo '$WORLD_SIZE' > \"out file\""],
}  # fmt: skip


def dry_run(argv: list[str]) -> str:
    """``--dry-run`` of ``argv`` in ``/`` (what the goldens show as the working directory)."""
    here = os.getcwd()
    os.chdir("/")
    try:
        result = CliRunner(env={"PYTEST_CURRENT_TEST": None}).invoke(
            cli, ["--url", "http://127.0.0.1:9", argv[0], "--dry-run", *argv[1:]]
        )
    finally:
        os.chdir(here)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_golden(case: str) -> None:
    assert_golden(f"{case}.json", dry_run(CASES[case]))


@pytest.mark.parametrize("case", ["hostile-single", "hostile-mpi"])
def test_hostile_command_and_values_pass_through_untouched(case: str) -> None:
    doc = json.loads(dry_run(CASES[case]))
    defn = doc["registerJobDefinition"]
    if defn["type"] == "container":
        containers = [defn["containerProperties"]]
    else:
        containers = [r["container"] for r in defn["nodeProperties"]["nodeRangeProperties"]]
    assert containers[0]["command"] == HOSTILE
    assert all(c.get("environment") for c in containers)
    assert doc["submitJob"]["jobDefinition"] == defn["jobDefinitionName"] == "run-it-s---x---sh"


def test_builders_are_the_dry_run() -> None:
    opts = run_options(["python", "/x.py"], nodes=4, ntasks_per_node=2, mpi="mpich")
    doc = json.loads(dry_run_text(opts))
    assert doc["registerJobDefinition"] == build_definition(opts)
    assert build_submission(opts, "run-python:7") == {
        "jobName": "run-python", "jobQueue": "default", "jobDefinition": "run-python:7",
    }  # fmt: skip


def test_mpi_ranges_main_node_runs_the_command_others_serve_ssh() -> None:
    defn = build_definition(RunOptions(("prog",), Layout.MPI, nodes=3, mpi="auto"))
    ranges = defn["nodeProperties"]["nodeRangeProperties"]
    assert [r["targetNodes"] for r in ranges] == ["0", "1:"]
    assert ranges[0]["container"]["command"] == ["prog"]
    assert "command" not in ranges[1]["container"]
    assert defn["nodeProperties"]["mnp"] == {"mpi": "auto"}


def test_relative_paths_with_a_slash_are_made_absolute() -> None:
    runner = CliRunner()
    with runner.isolated_filesystem() as where:
        Path("examples").mkdir()
        Path("examples/job.py").write_text("print(1)\n")
        result = runner.invoke(cli, ["run", "--dry-run", "--", "python", "examples/job.py",
                                     "other/missing.py"])  # fmt: skip
        assert result.exit_code == 0, result.output
        defn = json.loads(result.stdout)["registerJobDefinition"]
        command = defn["containerProperties"]["command"]
        assert command == ["python", str(Path(where, "examples/job.py").resolve()),
                           "other/missing.py"]  # fmt: skip


def test_mpirun_takes_mpirun_flags_and_notes_uneven_ranks() -> None:
    doc = json.loads(dry_run(["mpirun", "-n", "6", "--npernode", "3", "--", "prog"]))
    props = doc["registerJobDefinition"]["nodeProperties"]
    assert (props["numNodes"], props["mnp"]) == (2, {"mpi": "auto", "tasksPerNode": 3})
    runner = CliRunner()
    result = runner.invoke(cli, ["mpirun", "--dry-run", "-np", "3", "--", "prog"])
    assert result.exit_code == 0
    assert "4 ranks (2 on each of 2 nodes), not 3" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--every-node", "--mpi", "mpich", "--", "x"],
        ["run", "-t", "1:60", "--", "x"],
        ["run", "-t", "soon", "--", "x"],
        ["run", "--export", "1A=2", "--", "x"],
        ["run", "-N", "0", "--", "x"],
        ["run"],
        ["mpirun", "--", "x"],
        ["mpirun", "-np", "4", "--mpi", "none", "--", "x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    result = CliRunner().invoke(cli, [argv[0], "--dry-run", *argv[1:]])
    assert result.exit_code == 2, result.output


def test_options_after_the_command_belong_to_the_command() -> None:
    doc = json.loads(dry_run(["run", "ls", "-N", "2", "--label"]))
    command = doc["registerJobDefinition"]["containerProperties"]["command"]
    assert command == ["ls", "-N", "2", "--label"]


# -- exit status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expect"),
    [
        ("SUCCEEDED", None, 0),
        ("SUCCEEDED", 0, 0),
        ("FAILED", 3, 3),
        ("FAILED", 143, 143),
        ("FAILED", None, 1),
        ("FAILED", 0, 1),
        ("FAILED", 300, 1),
        ("FAILED", -9, 1),
    ],
)
def test_exit_status(status: str, code: int | None, expect: int) -> None:
    assert exit_status(status, code) == expect


# -- attaching, against a scripted client ----------------------------------------------------------


class Script:
    """Statuses each job goes through (one per describe; the last repeats), shared by every
    stand-in client; a job absent from ``statuses`` is not found until it is added."""

    def __init__(self, statuses: dict[str, list[JSON]], logs: dict[str, list[str]]) -> None:
        self.statuses = statuses
        self.logs = logs
        self.terminated: list[str] = []
        self.lock = threading.Lock()
        self.on_describe: dict[str, Any] = {}

    def describe(self, job_id: str) -> JSON:
        with self.lock:
            hook = self.on_describe.pop(job_id, None)
            steps = self.statuses.get(job_id)
            if not steps:
                raise NotFound(job_id)
            detail = steps.pop(0) if len(steps) > 1 else steps[0]
        if hook is not None:
            hook()
        return {"jobId": job_id, **detail}


class ScriptedClient:
    def __init__(self, script: Script) -> None:
        self.script = script

    def describe(self, job_id: str) -> JSON:
        return self.script.describe(job_id)

    def terminate(self, job_id: str, reason: str) -> None:
        self.script.terminated.append(job_id)
        for steps in self.script.statuses.values():
            steps[:] = [{"status": "FAILED", "statusReason": reason,
                         "container": {"exitCode": 143}, "nodeId": "local-1"}]  # fmt: skip

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        yield from self.script.logs.get(job_id, [])

    def __enter__(self) -> ScriptedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def run_attach(script: Script, opts: RunOptions, label: bool) -> int:
    client = cast(Client, ScriptedClient(script))
    return attach(client, lambda: client, "J", opts, label)


def test_attach_streams_labelled_output_and_exits_with_the_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = {"status": "RUNNING", "nodeId": "local-2"}
    failed = {"status": "FAILED", "statusReason": "Essential container in task exited",
              "nodeId": "local-2", "container": {"exitCode": 3}}  # fmt: skip
    script = Script({"J": [{"status": "RUNNABLE"}, running, running, failed]},
                    {"J": ["one\n", "two"]})  # fmt: skip
    assert run_attach(script, RunOptions(("x",)), label=True) == 3
    out, err = capsys.readouterr()
    assert out == "local-2: one\nlocal-2: two\n"
    assert "job J FAILED: Essential container in task exited, exit code 3" in err


def test_attach_every_node_follows_each_node_and_takes_the_main_nodes_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = {"status": "SUCCEEDED"}
    script = Script(
        {"J": [{"status": "RUNNING"}] * 3 + [done],
         "J#0": [{"status": "SUCCEEDED", "nodeId": "local-1", "container": {"exitCode": 0}}],
         "J#1": [{"status": "SUCCEEDED", "nodeId": "local-3"}]},
        {"J#0": ["0/2\n"], "J#1": ["1/2\n"]},
    )  # fmt: skip
    opts = run_options(["sh"], nodes=2, every_node=True)
    assert run_attach(script, opts, label=True) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == ["local-1: 0/2", "local-3: 1/2"]


def test_attach_takes_the_code_of_the_node_whose_failure_stopped_the_main_node(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = {"status": "FAILED", "statusReason": "Node J#1 on local-2 (10.0.0.3) failed: 1"}
    script = Script(
        {"J": [{"status": "RUNNING"}, failed],
         "J#0": [{"status": "FAILED", "nodeId": "local-1", "container": {"exitCode": 143}}],
         "J#1": [{"status": "FAILED", "nodeId": "local-2", "container": {"exitCode": 1}}]},
        {},
    )  # fmt: skip
    assert run_attach(script, run_options(["python"], nodes=2, every_node=True), False) == 1
    script.statuses["J#1"] = [{"status": "FAILED", "container": {"exitCode": 143}}]
    script.statuses["J"] = [failed]
    assert run_attach(script, run_options(["python"], nodes=2, every_node=True), False) == 143


def test_attach_gives_up_on_nodes_that_never_started(capsys: pytest.CaptureFixture[str]) -> None:
    script = Script({"J": [{"status": "RUNNABLE"}, {"status": "FAILED", "statusReason": "no"}]},
                    {})  # fmt: skip
    assert run_attach(script, run_options(["x"], nodes=2), label=False) == 1
    assert "job J FAILED: no" in capsys.readouterr().err


def test_ctrl_c_terminates_the_job_and_waits_for_its_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = {"status": "RUNNING", "nodeId": "local-1"}
    script = Script({"J": [running] * 1000}, {})
    script.on_describe["J"] = lambda: os.kill(os.getpid(), signal.SIGINT)
    previous = signal.getsignal(signal.SIGINT)
    assert run_attach(script, RunOptions(("sleep", "30")), label=False) == 143
    assert script.terminated == ["J"]
    assert signal.getsignal(signal.SIGINT) == previous
    assert "mnp: terminating job J" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_terminate_the_job_like_ctrl_c_and_exit_128_plus_it(
    signum: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    running = {"status": "RUNNING", "nodeId": "local-1"}
    script = Script({"J": [running] * 1000}, {})
    script.on_describe["J"] = lambda: os.kill(os.getpid(), signum)
    previous = signal.getsignal(signum)
    with pytest.raises(SystemExit) as exited:
        run_attach(script, RunOptions(("sleep", "30")), label=False)
    assert exited.value.code == 128 + signum
    assert script.terminated == ["J"]
    assert signal.getsignal(signum) == previous
    err = capsys.readouterr().err
    assert "mnp: terminating job J" in err
    assert f"job J FAILED: Terminated by mnp run ({signum.name})" in err


class StuckClient(ScriptedClient):
    """A job that goes on running after it was told to terminate."""

    def terminate(self, job_id: str, reason: str) -> None:
        self.script.terminated.append(job_id)


def test_after_sigterm_a_job_slow_to_end_is_not_waited_for_long(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(attaching, "STOP_SECONDS", 0.3)
    script = Script({"J": [{"status": "RUNNING", "nodeId": "local-1"}]}, {})
    script.on_describe["J"] = lambda: os.kill(os.getpid(), signal.SIGTERM)
    client = cast(Client, StuckClient(script))
    with pytest.raises(SystemExit) as exited:
        attach(client, lambda: client, "J", RunOptions(("x",)), label=False)
    assert exited.value.code == 143 and script.terminated == ["J"]
    assert "job J is still ending; not waiting for it" in capsys.readouterr().err


class SubmittingClient(ScriptedClient):
    """Registers and submits job ``J``; a SIGTERM arrives while the submit is under way."""

    def register_job_definition(self, body: JSON) -> JSON:
        return {"jobDefinitionName": body["jobDefinitionName"], "revision": 1}

    def submit(self, body: JSON) -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        return "J"


def test_a_sigterm_during_the_submit_terminates_the_job_once_it_has_an_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = Script({"J": [{"status": "RUNNING", "nodeId": "local-1"}] * 1000}, {})
    client = SubmittingClient(script)

    class OneHead:
        url = home = None

        def client(self) -> Client:
            return cast(Client, client)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        submit_and_attach(cast(Any, OneHead()), RunOptions(("sleep", "30")), label=False,
                          no_wait=False, dry_run=False)  # fmt: skip
    assert exited.value.code == 143 and script.terminated == ["J"]
    assert signal.getsignal(signal.SIGTERM) == previous
    assert "Terminated by mnp run (SIGTERM)" in capsys.readouterr().err


def test_a_second_ctrl_c_detaches_with_130() -> None:
    interrupts = Interrupts("J")
    interrupts.handle(signal.SIGINT, None)
    assert interrupts.pending.is_set()
    with pytest.raises(SystemExit) as exited:
        interrupts.handle(signal.SIGINT, None)
    assert exited.value.code == 130


# -- the demo's MPI example ------------------------------------------------------------------------


def test_demo_mpi_example_is_mnp_run_with_this_python() -> None:
    opts = mpi_options(3)
    assert opts.command[0] == sys.executable
    assert (opts.layout, opts.nodes, opts.tasks_per_node, opts.mpi) == (Layout.MPI, 3, 2, "mpich")


def test_demo_checks_ranks_on_distinct_nodes() -> None:
    output = (
        "launcher.wire: 1 nodes ready in 0.1 s\n"
        "rank=1 size=4 node=10.0.0.1 ok=True\nrank=0 size=4 node=10.0.0.1 ok=True\n"
        "rank=3 size=4 node=10.0.0.2 ok=True\nrank=2 size=4 node=10.0.0.2 ok=False\n"
        "allreduce FAILED on 2 nodes\n"
    )
    ranks = parse_ranks(output)
    assert [r.rank for r in ranks] == [0, 1, 2, 3]
    row = Row("J", "mpi-allreduce", "FAILED", "", "1", "1", "-", "", None, None)
    result = MpiResult(row, mpi_options(2), ranks, {"10.0.0.1": "n1", "10.0.0.2": "n2"})
    assert result.problems() == ["mpi-allreduce: rank 2 got a wrong sum"]
    assert result.summary() == "MPI: 4 ranks on 2 distinct nodes: n1 (10.0.0.1), n2 (10.0.0.2)"
    same_node = MpiResult(row, mpi_options(2), [Rank(0, 2, "a", True), Rank(1, 2, "a", True)], {})
    assert same_node.problems() == [
        "mpi-allreduce: 2 rank lines, expected 4",
        "mpi-allreduce: ranks ran on 1 distinct node addresses, expected 2",
    ]
