"""Slurm's commands as commands: scontrol and sinfo formats, hostnames/hostlist, salloc's
refusal, and ``mnp slurm install-commands`` writing executables that run.

The formats follow Slurm 22.05: ``scontrol show job`` a record of ``Key=value`` lines (the
first flush, the others indented three spaces, a blank line after), ``-o`` all on one line;
``sinfo`` one line per partition and node state, the default partition marked ``*``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launcher.attempt import SLURM_VERBS, install_srun
from mnp.cli.commands import COMMANDS, command_script, install_commands
from mnp.cli.main import cli
from mnp.cli.sinfo import parse_sinfo_args
from mnp.slurm.scontrol import job_record, node_record, node_state, render_record
from mnp.slurm.sinfo import parse_sinfo_format, render_sinfo, sinfo_rows

T0 = 1_796_000_000_000


def detail(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "jobId": "9368d149-4ca0-4229-b3a7-09619c90b287",
        "jobNumber": 12,
        "jobName": "train",
        "jobQueueName": "batch",
        "status": "RUNNING",
        "statusReason": None,
        "createdAt": T0,
        "startedAt": T0 + 2000,
        "submittedBy": "root",
        "nodeId": "local-2",
        "timeout": {"attemptDurationSeconds": 600},
        "container": {"resourceRequirements": [{"type": "VCPU", "value": "2"},
                                               {"type": "MEMORY", "value": "512"}]},
    }  # fmt: skip
    d.update(over)
    return d


def pairs(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split())


# -- scontrol show job / node ------------------------------------------------------------------


def test_show_job_record_layout_and_values() -> None:
    text = render_record(job_record(detail(), T0 + 62_000))
    lines = text.split("\n")
    assert lines[0] == "JobId=12 JobName=train"
    assert all(line.startswith("   ") and not line.startswith("    ") for line in lines[1:-2])
    assert text.endswith("   Power=\n   \n\n")
    got = pairs(text)
    assert got["JobState"] == "RUNNING" and got["Reason"] == "None"
    assert got["RunTime"] == "00:01:00" and got["TimeLimit"] == "00:10:00"
    assert got["NodeList"] == "local-2" and got["BatchHost"] == "local-2"
    assert got["Partition"] == "batch" and got["NumCPUs"] == "2" and got["CPUs/Task"] == "2"
    assert got["TRES"] == "cpu=2,mem=512M,node=1,billing=2"
    assert got["MinMemoryNode"] == "512M" and got["UserId"] == "root(0)"
    assert got["ExitCode"] == "0:0"


def test_show_job_oneliner_is_one_line_of_the_same_pairs() -> None:
    record = job_record(detail(), T0 + 62_000)
    one = render_record(record, one_line=True)
    assert one.count("\n") == 1 and one.endswith("Power= \n")
    assert pairs(one) == pairs(render_record(record))


def test_show_job_array_task_pending_and_failed() -> None:
    task = detail(
        jobId="abc:3", jobNumber=17, arrayJobNumber=14, status="RUNNABLE", startedAt=None,
        arrayProperties={"index": 3}, nodeId=None, timeout=None,
    )  # fmt: skip
    got = pairs(render_record(job_record(task, T0)))
    assert (got["JobId"], got["ArrayJobId"], got["ArrayTaskId"]) == ("17", "14", "3")
    assert got["JobState"] == "PENDING" and got["Reason"] == "Resources"
    assert got["NodeList"] == "" and "BatchHost" not in got
    assert got["TimeLimit"] == "UNLIMITED" and got["StartTime"] == "Unknown"
    failed = detail(status="FAILED", stoppedAt=T0 + 5000, container={"exitCode": 3})
    got = pairs(render_record(job_record(failed, T0 + 9000)))
    assert got["JobState"] == "FAILED" and got["ExitCode"] == "3:0"
    assert got["Reason"] == "NonZeroExitCode"


def node(node_id: str = "local-1", **over: Any) -> dict[str, Any]:
    n: dict[str, Any] = {
        "nodeId": node_id, "computeEnvironment": "local", "address": "10.200.0.2",
        "status": "ACTIVE", "vcpus": 4, "memoryMiB": 2048, "gpus": 0, "freeVcpus": 4,
        "freeMemoryMiB": 2048, "runningJobs": [],
    }  # fmt: skip
    n.update(over)
    return n


@pytest.mark.parametrize(
    ("over", "state"),
    [
        ({}, "IDLE"),
        ({"freeVcpus": 1, "runningJobs": ["j"]}, "MIXED"),
        ({"freeVcpus": 0, "runningJobs": ["j"]}, "ALLOCATED"),
        ({"status": "LOST"}, "DOWN"),
    ],
)
def test_node_states(over: dict[str, Any], state: str) -> None:
    assert node_state(node(**over)) == state


def test_show_node_record() -> None:
    text = render_record(node_record(node(freeVcpus=1, freeMemoryMiB=1024, gpus=2), ["batch"]))
    assert text.startswith("NodeName=local-1 Arch=x86_64 CoresPerSocket=1 \n   CPUAlloc=3 ")
    got = pairs(text)
    assert got["CPUTot"] == "4" and got["RealMemory"] == "2048" and got["AllocMem"] == "1024"
    assert got["State"] == "MIXED" and got["Partitions"] == "batch" and got["Gres"] == "gpu:2"


# -- sinfo ---------------------------------------------------------------------------------------


def queue(name: str, *envs: str, state: str = "ENABLED") -> dict[str, Any]:
    order = [{"order": i, "computeEnvironment": f"arn:aws:batch:local:0:compute-environment/{e}"}
             for i, e in enumerate(envs, 1)]  # fmt: skip
    return {"jobQueueName": name, "state": state, "status": "VALID",
            "computeEnvironmentOrder": order}  # fmt: skip


NODES = [
    node("local-1"), node("local-2", freeVcpus=0, runningJobs=["j"]), node("local-3"),
    node("gpu1", computeEnvironment="gpus", gpus=1), node("local-4", status="LOST"),
]  # fmt: skip


def test_sinfo_default_table_is_slurms() -> None:
    rows = sinfo_rows([queue("default", "local"), queue("gpu", "gpus")], NODES, "default")
    assert render_sinfo(rows) == (
        "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n"
        "default*     up   infinite      1  alloc local-2\n"
        "default*     up   infinite      2   idle local-[1,3]\n"
        "default*     up   infinite      1   down local-4\n"
        "gpu          up   infinite      1   idle gpu1\n"
    )


def test_sinfo_format_fields_and_noheader() -> None:
    rows = sinfo_rows([queue("gpu", "gpus"), queue("off", "none", state="DISABLED")], NODES, "x")
    fmt = "%P|%a|%l|%D|%t|%N|%c|%m|%G|%T"
    assert render_sinfo(rows, fmt, header=False) == (
        "gpu|up|infinite|1|idle|gpu1|4|2048|gpu:1|idle\noff|drain|infinite|0|n/a||0|0|(null)|n/a\n"
    )
    assert render_sinfo(rows[:1], "%.10P %-6t|", header=True) == (
        " PARTITION STATE |\n       gpu idle  |\n"
    )


def test_sinfo_unknown_fields_and_options_warn_not_fail() -> None:
    specs, unknown = parse_sinfo_format("%P %z %Y")
    assert unknown == ["%z", "%Y"] and len(specs) == 5
    rows = sinfo_rows([queue("gpu", "gpus")], NODES, "gpu")
    assert render_sinfo(rows, "%P %z", header=False) == "gpu* N/A\n"
    args = parse_sinfo_args(["-hN", "-o%P", "--long", "-M", "c1", "--bogus", "-p", "a,b"])
    assert args.noheader and args.per_node and args.fmt == "%P" and args.partitions == {"a", "b"}
    assert len(args.warnings) == 3  # --long, -M c1, --bogus


def test_sinfo_per_node() -> None:
    rows = sinfo_rows([queue("default", "local")], NODES[:3], "default", per_node=True)
    text = render_sinfo(rows, "%N %t", header=False)
    assert text == "local-2 alloc\nlocal-1 idle\nlocal-3 idle\n"


# -- the CLI without a head ----------------------------------------------------------------------


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["--home", "/nonexistent/mnp-home", *args], env=env)


def test_scontrol_hostnames_and_hostlist_need_no_head() -> None:
    r = run("scontrol", "show", "hostnames", "node[01-03],gpu7")
    assert (r.exit_code, r.output) == (0, "node01\nnode02\nnode03\ngpu7\n")
    r = run("scontrol", "show", "hostnames", env={"SLURM_JOB_NODELIST": "local-[1-2]"})
    assert (r.exit_code, r.output) == (0, "local-1\nlocal-2\n")
    r = run("scontrol", "show", "hostlist", "n1,n2,n3,x")
    assert (r.exit_code, r.output) == (0, "n[1-3],x\n")
    r = run("scontrol", "-o", "show", "hostlist", "n1", "n2")
    assert (r.exit_code, r.output) == (0, "n[1-2]\n")


def test_scontrol_refusals_are_clear_exit_1() -> None:
    for args, words in [
        (("suspend", "12"), "cannot suspend"),
        (("requeuehold", "12"), "cannot requeue and hold at once"),
        (("hold",), "hold: which job?"),
        (("update", "JobId=12", "Partition=x"), "update Partition: mnp cannot change"),
        (("update", "JobId=12", "TimeLimit=soon"), "update TimeLimit: "),
        (("update", "JobId=12", "Nice=5"), "use Priority=N"),
        (("update", "NodeName=n1", "State=DRAIN"), "only JobId="),
        (("show", "hostnames", "n[1-"), "invalid hostlist"),
        (("frobnicate",), "not supported"),
    ]:
        r = run("scontrol", *args)
        assert r.exit_code == 1, (args, r.output)
        assert words in r.output, (args, r.output)


def test_scontrol_ignored_options_warn() -> None:
    r = run("scontrol", "-d", "--cluster=x", "show", "hostlist", "a1,a2")
    assert r.exit_code == 0 and "a[1-2]" in r.output
    assert r.output.count("warning: ignoring") == 2


def test_salloc_refuses_pointing_to_mnp_run() -> None:
    r = run("salloc", "-N", "2", "--time=10")
    assert r.exit_code == 1 and "mnp run" in r.output and "mnp sbatch" in r.output


# -- install-commands ----------------------------------------------------------------------------


def test_install_commands_writes_executables_that_run(tmp_path: Path) -> None:
    bin_dir = tmp_path / "my bin"
    r = run("slurm", "install-commands", str(bin_dir))
    assert r.exit_code == 0, r.output
    for name in COMMANDS:
        path = bin_dir / name
        assert path.stat().st_mode & stat.S_IXUSR and path.read_text().startswith("#!/bin/sh\n")
    # from a directory with a decoy mnp package and PATH only the new directory plus sh
    decoy = tmp_path / "cwd"
    (decoy / "mnp").mkdir(parents=True)
    (decoy / "mnp" / "__init__.py").write_text("raise SystemExit('decoy mnp imported')\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "n[1-2]",
           "MNP_HOME": str(tmp_path / "nohead")}  # fmt: skip

    def sh(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=decoy, env=env, capture_output=True, text=True, timeout=60)

    r2 = sh("scontrol", "show", "hostnames")
    assert (r2.returncode, r2.stdout) == (0, "n1\nn2\n"), r2.stderr
    r2 = sh("salloc")
    assert r2.returncode == 1 and "mnp run" in r2.stderr
    r2 = sh("srun", "hostname")  # outside a job: the job-side srun refuses
    assert r2.returncode != 0 and "not inside a job" in r2.stderr
    r2 = sh("squeue")  # no head: mnp's error, exit 1 (not a usage error)
    assert r2.returncode == 1 and "no head node" in r2.stderr
    r2 = sh("sbatch", "--help")
    assert r2.returncode == 0 and "Submit a batch script" in r2.stdout


def test_install_commands_keeps_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "sbatch").write_text("#!/bin/sh\necho real slurm\n")
    with pytest.raises(FileExistsError, match="sbatch"):
        install_commands(tmp_path)
    assert "real slurm" in (tmp_path / "sbatch").read_text()
    assert not (tmp_path / "squeue").exists()
    install_commands(tmp_path, force=True)
    install_commands(tmp_path)  # ours now: rewritten without --force
    assert "mnp slurm install-commands" in (tmp_path / "sbatch").read_text()


def test_command_script_quotes_paths() -> None:
    text = command_script("sinfo", python="/opt/py 3/python", root="/src/it's")
    assert "'/opt/py 3/python' -c " in text and "'/src/it'\"'\"'s' sinfo \"$@\"" in text
    with pytest.raises(ValueError, match="not a Slurm command"):
        command_script("sudo")


def test_batch_jobs_get_the_commands_beside_srun(tmp_path: Path) -> None:
    bin_dir = install_srun(tmp_path)
    assert {p.name for p in bin_dir.iterdir()} == {"srun", *SLURM_VERBS}
    r = subprocess.run(
        [str(bin_dir / "scontrol"), "show", "hostnames", "local-[3-4]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"},
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "local-3\nlocal-4\n"), r.stderr
    assert sys.executable in (bin_dir / "squeue").read_text()


def test_slurm_fields_mnp_has_no_value_for_are_shown_empty_with_a_warning() -> None:
    from mnp.slurm.columns import (
        parse_sacct_format,
        parse_squeue_format,
        sacct_format_warnings,
        squeue_format_warnings,
    )

    assert [s.field for s in parse_squeue_format("%i %a %q")] == ["i", "", "a", "", "q"]
    assert len(squeue_format_warnings("%i %a %q")) == 2
    names = [f.name for f, _ in parse_sacct_format("JobID,MaxRSS,State")]
    assert names == ["JobID", "MaxRSS", "State"]
    assert sacct_format_warnings("JobID,MaxRSS") == [
        "sacct: warning: MaxRSS has no value in mnp: left empty"
    ]


def test_show_job_command_workdir_and_output_paths() -> None:
    """From the JobDetail's ``mnp`` object: patterns filled in as scontrol shows them; a job
    that is not a batch script shows its command."""
    d = detail(jobName="fit", mnp={"workingDirectory": "/w", "script": True,
                                   "stdout": "/w/%x-%j.out", "stderr": "/w/%u.%%.err"})  # fmt: skip
    got = pairs(render_record(job_record(d, T0)))
    assert (got["Command"], got["WorkDir"], got["StdIn"]) == ("(null)", "/w", "/dev/null")
    assert (got["StdOut"], got["StdErr"]) == ("/w/fit-12.out", "/w/root.%.err")
    task = detail(arrayJobNumber=10, arrayProperties={"index": 2},
                  mnp={"workingDirectory": "/w", "script": True})  # fmt: skip
    got = pairs(render_record(job_record(task, T0)))
    assert got["StdOut"] == got["StdErr"] == "/w/slurm-10_2.out"
    plain = render_record(job_record(detail(container={"command": ["python3", "fit.py"]}), T0))
    assert "\n   Command=python3 fit.py\n   WorkDir=(null)\n" in plain
    assert "\n   StdOut=(null)\n" in plain
