"""mnp's Slurm views against real Slurm's output (``tests/golden/slurm``, recorded from
slurm-wlm 22.05 by ``scripts/slurm-golden.sh``).

Each test renders mnp's output for job records equivalent to the recorded jobs (the same
numbers, names, partition, node, user, times and exit codes; times from the recording's own
sacct) and compares it with the golden file byte for byte: header lines, column widths and
justification, separators, value forms, trailing spaces and newlines. Only values mnp has
no counterpart for are normalised (scontrol's Priority, Account, ...; a pending job's reason
Slurm gives for its own scheduler), each named where it is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mnp.slurm.columns import SQUEUE_DEFAULT, render_sacct, render_squeue
from mnp.slurm.hostlist import compress, expand
from mnp.slurm.scontrol import job_record, node_record, render_record
from mnp.slurm.sinfo import SINFO_DEFAULT, SINFO_NODE_DEFAULT, render_sinfo, sinfo_rows
from mnp.slurm.views import JobRow, collapse_pending, job_row

GOLDEN = Path(__file__).parents[1] / "golden" / "slurm"
JSON = dict[str, Any]
WORKDIR = "/tmp/slurm-cmp/jobs"
SQ_ALL = "%i|%A|%F|%K|%P|%j|%u|%t|%T|%M|%D|%R|%N|%r|%l|%V|%S"
SA_ALL = ("JobID,JobIDRaw,JobName,Partition,User,State,ExitCode,Elapsed,ElapsedRaw,NodeList,"
          "NNodes,Submit,Start,End,Reason,Timelimit")  # fmt: skip


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.txt").read_bytes().decode()


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The recording's times are UTC; squeue prints local time."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _ms(text: str) -> int | None:
    if text in ("Unknown", "N/A", ""):
        return None
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)


def recorded() -> dict[str, dict[str, str]]:
    """The recording's jobs by Slurm JobID (``1``, ``3_0``, …), from its ``sacct -P``."""
    lines = golden("sacct-fields-P").splitlines()
    keys = lines[0].split("|")
    return {row["JobID"]: row for row in (dict(zip(keys, x.split("|"), strict=True))
                                           for x in lines[1:])}  # fmt: skip


JOBS = recorded()
IDS = {r["JobName"]: jid for jid, r in JOBS.items() if "_" not in jid}
"""``batchjob`` (the running one), ``fails``; the cancelled job is the other batchjob."""
RUN = next(j for j, r in JOBS.items() if r["State"] == "RUNNING")
CAN = next(j for j, r in JOBS.items() if r["State"].startswith("CANCELLED"))
FAIL = IDS["fails"]
ARRAY = next(j for j in JOBS if "_" in j).partition("_")[0]
HELD = golden("sbatch-held-parsable").strip()


def summary(jid: str, *, pending: bool = False, running: bool = False) -> JSON:
    """The JobSummary/JobDetail mnp would hold for recorded job ``jid`` (``pending``: as it
    was before it started; ``running``: before it ended)."""
    r = JOBS[jid]
    base, _, task = jid.partition("_")
    state = r["State"].split()[0]
    status = {"RUNNING": "RUNNING", "COMPLETED": "SUCCEEDED"}.get(state, "FAILED")
    code = {"FAILED": int(r["ExitCode"].split(":")[0]), "CANCELLED": 143}.get(state, 0)
    limit = r["Timelimit"]
    d: JSON = {
        "jobId": f"mnp-{jid}", "jobNumber": int(r["JobIDRaw"]), "jobName": r["JobName"],
        "jobQueueName": r["Partition"], "submittedBy": r["User"], "status": status,
        "createdAt": _ms(r["Submit"]), "startedAt": _ms(r["Start"]), "stoppedAt": _ms(r["End"]),
        "nodeId": r["NodeList"], "container": {"exitCode": code, "command": []},
        "mnp": {"workingDirectory": WORKDIR, "script": True},
    }  # fmt: skip
    if limit != "UNLIMITED":
        h, m, s = (int(x) for x in limit.split(":"))
        d["timeout"] = {"attemptDurationSeconds": (h * 60 + m) * 60 + s}
    if state == "CANCELLED":
        d |= {"isCancelled": True, "statusReason": "Cancelled by user (scancel)"}
    if r["JobName"] == "fails":
        d["mnp"] |= {"stdout": f"{WORKDIR}/fails-%j.out", "stderr": f"{WORKDIR}/fails-%x.err"}
    if task:
        d |= {"arrayJobNumber": int(base), "arrayJobId": f"mnp-{base}",
              "arrayProperties": {"index": int(task)}}  # fmt: skip
    if running or pending:
        d |= {"status": "RUNNING", "stoppedAt": None, "container": {"command": []}}
        d.pop("isCancelled", None)
        d.pop("statusReason", None)
    if pending:
        d |= {"status": "RUNNABLE", "startedAt": None, "nodeId": None}
    return d


def held() -> JSON:
    """The held job (mnp has none: a pending job stands for it, its reason normalised)."""
    submit = JOBS[RUN]["Submit"]
    return {
        "jobId": "mnp-held", "jobNumber": int(HELD), "jobName": "held", "jobQueueName": "debug",
        "submittedBy": "root", "status": "RUNNABLE", "createdAt": _ms(submit),
        "container": {"command": []}, "mnp": {"workingDirectory": WORKDIR, "script": True},
    }  # fmt: skip


def row(d: JSON, now: int) -> JobRow:
    """mnp's row for ``d``, with its time limit (which the commands add from the detail)."""
    limit = (d.get("timeout") or {}).get("attemptDurationSeconds")
    return replace(job_row(d, now), time_limit_seconds=limit)


def start_ms(jid: str) -> int:
    ms = _ms(JOBS[jid]["Start"])
    assert ms is not None
    return ms


# -- sbatch ------------------------------------------------------------------------------------


def test_sbatch_lines() -> None:
    """What mnp sbatch prints (mnp.cli.sbatch): ``Submitted batch job N`` / ``N``."""
    assert re.fullmatch(r"Submitted batch job \d+\n", golden("sbatch"))
    assert re.fullmatch(r"Submitted batch job \d+\n", golden("sbatch-array"))
    assert re.fullmatch(r"\d+\n", golden("sbatch-parsable"))
    shown = golden("sbatch").split()[-1]
    assert f"Submitted batch job {shown}\n" == golden("sbatch")


# -- squeue ------------------------------------------------------------------------------------


def pending_rows() -> list[JobRow]:
    """The first capture: two jobs running, the array, the failing and the held job waiting.
    Slurm's array tasks are one job (%A the array's) until they start; Slurm's own reasons
    for the failing and the held job (Priority, JobHeldUser) are given to mnp's rows."""
    now = start_ms(RUN)
    tasks = [replace(row(summary(f"{ARRAY}_{i}", pending=True), now), raw_id=ARRAY)
             for i in range(4)]  # fmt: skip
    fails = replace(row(summary(FAIL, pending=True), now), reason="Priority")
    hold = replace(row(held(), now), reason="JobHeldUser")
    running = [row(summary(j, running=True), now) for j in (RUN, CAN)]
    return [*tasks, fails, hold, *running]


def running_rows(now: int) -> list[JobRow]:
    return [replace(row(held(), now), reason="JobHeldUser"), row(summary(RUN), now)]


def squeue_now() -> int:
    """When the second capture was taken: job RUN's TIME then."""
    line = next(x for x in golden("squeue-running-fields").splitlines() if x.startswith(RUN))
    minutes, seconds = line.split("|")[9].split(":")
    return start_ms(RUN) + (int(minutes) * 60 + int(seconds)) * 1000


@pytest.mark.parametrize(
    ("name", "fmt", "collapse", "header"),
    [
        ("squeue-pending", SQUEUE_DEFAULT, True, True),
        ("squeue-pending-r", SQUEUE_DEFAULT, False, True),
        ("squeue-pending-fields", SQ_ALL, True, True),
        ("squeue-pending-fields-r", SQ_ALL, False, True),
        ("squeue-h-itj", "%i %t %j", True, False),
    ],
)
def test_squeue_while_jobs_wait(name: str, fmt: str, collapse: bool, header: bool) -> None:
    rows = pending_rows()
    rows = collapse_pending(rows) if collapse else rows
    assert render_squeue(rows, fmt, header=header) == golden(name)


@pytest.mark.parametrize(
    ("name", "fmt", "header"),
    [
        ("squeue-running", SQUEUE_DEFAULT, True),
        ("squeue-running-fields", SQ_ALL, True),
        ("squeue-widths", "%.3i %5j %.1t %10P %5M %.10l", True),
        ("squeue-h-itj-running", "%i %t %j", False),
    ],
)
def test_squeue_after_jobs_ended(name: str, fmt: str, header: bool) -> None:
    assert render_squeue(running_rows(squeue_now()), fmt, header=header) == golden(name)


def test_squeue_state_codes() -> None:
    """``%t %T`` of every state the recording had (in its order)."""
    now = squeue_now()
    by_id = {j: row(summary(j), now) for j in JOBS}
    by_id[HELD] = replace(row(held(), now), reason="JobHeldUser")
    order = [line.split()[0] for line in golden("squeue-state-codes").splitlines()]
    assert render_squeue([by_id[i] for i in order], "%i %t %T", header=False) == golden(
        "squeue-state-codes"
    )


# -- sacct -------------------------------------------------------------------------------------


def sacct_rows() -> list[JobRow]:
    """The recording's jobs in its order, timed when its sacct ran (job RUN's Elapsed)."""
    raw = int(JOBS[RUN]["ElapsedRaw"])
    now = start_ms(RUN) + raw * 1000
    return [row(summary(j), now) for j in JOBS]


@pytest.mark.parametrize(
    ("name", "fmt", "header", "parsable"),
    [
        ("sacct-fields-P", SA_ALL, True, "|2"),
        ("sacct-fields-Pn", SA_ALL, False, "|2"),
        ("sacct-Pn-jse", "JobID,State,ExitCode", False, "|2"),
        ("sacct-table", "JobID,JobName,State,ExitCode,Elapsed,NodeList", True, None),
        ("sacct-widths", "JobID%5,JobName%3,State%20,ExitCode", True, None),
    ],
)
def test_sacct(name: str, fmt: str, header: bool, parsable: str | None) -> None:
    text = render_sacct(sacct_rows(), fmt, header=header, parsable=parsable, tz=UTC)
    assert text == golden(name)


@pytest.mark.parametrize(("name", "parsable"), [("sacct-fields-p", "|"),
                                                 ("sacct-fields-table", None)])  # fmt: skip
def test_sacct_a_second_later(name: str, parsable: str | None) -> None:
    """These two ran a second after the others: the running job's Elapsed is read back."""
    expected = golden(name)
    line = next(x for x in expected.splitlines() if x.split("|")[0].split()[0] == RUN)
    raw = int(line.replace("|", " ").split()[8])
    now = start_ms(RUN) + raw * 1000
    rows = [row(summary(j), now) for j in JOBS]
    assert render_sacct(rows, SA_ALL, parsable=parsable, tz=UTC) == expected


# -- scontrol ----------------------------------------------------------------------------------

NOT_MNP = ("Priority", "Account", "QOS", "Requeue", "EligibleTime", "AccrueTime",
           "LastSchedEval", "AllocNode:Sid", "TRES")  # fmt: skip
"""Keys whose values come from Slurm's scheduler, accounts or node memory: normalised."""


def normalised(text: str, keys: tuple[str, ...] = NOT_MNP) -> str:
    for key in keys:
        text = re.sub(rf"(?<=[ \n]){re.escape(key)}=\S*", f"{key}=*", text)
        text = re.sub(rf"^{re.escape(key)}=\S*", f"{key}=*", text)
    return text


def run_time(name: str) -> int:
    h, m, s = re.search(r"RunTime=(\d+):(\d+):(\d+)", golden(name)).groups()  # type: ignore[union-attr]
    return (int(h) * 60 + int(m)) * 60 + int(s)


@pytest.mark.parametrize(
    ("name", "jid", "one_line", "keys"),
    [
        # Command: the script's path, which the head does not keep (mnp: (null))
        ("scontrol-job-running", RUN, False, (*NOT_MNP, "Command")),
        ("scontrol-job-running-o", RUN, True, (*NOT_MNP, "Command")),
        # a cancelled script's ExitCode is 0:15 or 143:0 in Slurm, as its shell or its
        # child died first; mnp reads a 143 as the signal (0:15)
        ("scontrol-job-cancelled-o", CAN, True, (*NOT_MNP, "Command", "ExitCode")),
        ("scontrol-job-array-task", f"{ARRAY}_0", False, NOT_MNP),
        ("scontrol-job-array-task-o", f"{ARRAY}_0", True, NOT_MNP),
        ("scontrol-job-failed", FAIL, False, NOT_MNP),
        ("scontrol-job-failed-o", FAIL, True, NOT_MNP),
    ],
)
def test_scontrol_show_job(name: str, jid: str, one_line: bool, keys: tuple[str, ...]) -> None:
    d = summary(jid, running=JOBS[jid]["State"] == "RUNNING")
    now = start_ms(jid) + run_time(name) * 1000
    text = render_record(job_record(d, now, UTC), one_line)
    assert normalised(text, keys) == normalised(golden(name), keys)


def test_scontrol_show_job_held() -> None:
    """A job that never started: empty NodeList, no BatchHost, Unknown start (mnp's pending
    job stands for the held one: its Reason normalised too)."""
    now = _ms(JOBS[RUN]["Submit"]) or 0
    keys = (*NOT_MNP, "Reason")
    text = render_record(job_record(held(), now, UTC))
    assert normalised(text, keys) == normalised(golden("scontrol-job-held"), keys)


def test_scontrol_hostnames_and_hostlist() -> None:
    assert "".join(f"{n}\n" for n in expand("localhost,node[1-3],gpu[08-10]")) == golden(
        "scontrol-hostnames"
    )
    names = ["node1", "node2", "node3", "gpu08", "gpu09", "gpu10"]
    assert compress(names) + "\n" == golden("scontrol-hostlist")


def local_node() -> JSON:
    return {
        "nodeId": "localhost", "computeEnvironment": "local", "address": "127.0.0.1",
        "status": "ACTIVE", "vcpus": 2, "memoryMiB": 1000, "gpus": 0, "freeVcpus": 1,
        "freeMemoryMiB": 1000, "runningJobs": ["mnp-1"],
    }  # fmt: skip


def test_scontrol_show_node_layout() -> None:
    """The lines mnp has, in Slurm's order, with its trailing spaces; Slurm's OS, BootTime
    and LastBusyTime lines (nothing mnp knows) left out of the comparison."""
    text = render_record(node_record(local_node(), ["debug"]))
    skip = re.compile(r"^   (OS=|BootTime=|LastBusyTime=)")
    expected = "".join(x for x in golden("scontrol-node").splitlines(keepends=True)
                       if not skip.match(x))  # fmt: skip
    keys = ("CPULoad", "NodeAddr", "NodeHostName", "Version", "FreeMem", "Sockets")
    assert normalised(text, keys) == normalised(expected, keys)


# -- sinfo -------------------------------------------------------------------------------------

QUEUE = {"jobQueueName": "debug", "state": "ENABLED", "status": "VALID",
         "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "local"}]}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "fmt", "header", "per_node"),
    [
        ("sinfo-mix", SINFO_DEFAULT, True, False),
        ("sinfo-N", SINFO_NODE_DEFAULT, True, True),
        ("sinfo-h-PaDc", "%P %a %D %c", False, False),
        ("sinfo-fields", "%P|%R|%a|%l|%L|%D|%t|%T|%N|%n|%c|%m|%G|%F|%C", True, False),
        ("sinfo-widths", "%10P %.3a %5D %.8t %N", True, False),
    ],
)
def test_sinfo(name: str, fmt: str, header: bool, per_node: bool) -> None:
    rows = sinfo_rows([QUEUE], [local_node()], "debug", per_node=per_node)
    assert render_sinfo(rows, fmt, header=header) == golden(name)


def test_sinfo_idle() -> None:
    node = local_node() | {"freeVcpus": 2, "runningJobs": []}
    assert render_sinfo(sinfo_rows([QUEUE], [node], "debug")) == golden("sinfo-idle")


def test_scontrol_show_partition() -> None:
    from mnp.cli.scontrol import _partition_record

    text = render_record(_partition_record(QUEUE, [local_node()]))
    assert text.replace("Default=NO", "Default=YES") == golden("scontrol-partition")
