"""``scontrol show job`` and ``scontrol show node`` records, in Slurm 22.05's layout.

Pure functions over the head's JobDetail and Node dicts (``docs/native-api.md``), no I/O.
A record is a list of lines of ``Key=value`` pairs: :func:`render_record` prints
them as Slurm does (the first line flush, the others indented three spaces, a blank line
after the record) or, for ``-o``, all on one line, which is what tools split on spaces;
``tests/golden/slurm`` holds real scontrol's records they are compared with.
Fields Slurm has and mnp does not keep carry Slurm's own "unset" values (``(null)``,
``N/A``, ``*``), so a parser finds every key it expects.
"""

from __future__ import annotations

import posixpath
import pwd
import re
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from mnp.slurm.hostlist import compress
from mnp.slurm.sbatch import JOB_NAME_VAR
from mnp.slurm.times import sacct_elapsed, timestamp
from mnp.slurm.views import JobRow, SlurmState, job_row, node_ids

JSON = dict[str, Any]
Record = list[str]
"""A record's lines, each ``Key=value`` pairs joined by spaces."""


def _user(name: str) -> str:
    """``root(0)``: the account name and its uid (``4294967294`` when this host has no such
    account, Slurm's NO_VAL for an unknown uid)."""
    try:
        return f"{name}({pwd.getpwnam(name).pw_uid})"
    except KeyError:
        return f"{name}(4294967294)"


def _group(name: str) -> str:
    try:
        import grp

        gid = pwd.getpwnam(name).pw_gid
        return f"{grp.getgrgid(gid).gr_name}({gid})"
    except KeyError:
        return f"{name}(4294967294)"


def _resource(detail: JSON, kind: str) -> int | None:
    """A VCPU/MEMORY/GPU requirement of the job's container (the first node's for MNP jobs)."""
    container = detail.get("container") or {}
    if not container:
        ranges = (detail.get("nodeProperties") or {}).get("nodeRangeProperties") or [{}]
        container = ranges[0].get("container") or {}
    for item in container.get("resourceRequirements") or []:
        if item.get("type") == kind:
            try:
                return int(float(item.get("value")))
            except (TypeError, ValueError):
                return None
    value = container.get({"VCPU": "vcpus", "MEMORY": "memory"}.get(kind, ""))
    return value if isinstance(value, int) else None


def _dependency(detail: JSON) -> str:
    deps = detail.get("dependsOn") or []
    if not deps:
        return "(null)"
    kinds = {"AFTER_ANY": "afterany", "AFTER_NOT_OK": "afternotok", "AFTER_START": "after"}
    return ",".join(f"{kinds.get(str(d.get('type')), 'afterok')}:{d.get('jobId')}" for d in deps)


def given_name(detail: JSON) -> str:
    """The job name as sbatch was given it (the AWS view holds a mapped one: ``a.b`` →
    ``a_b``), from the job's environment; else ``jobName``."""
    container = detail.get("container") or {}
    for item in container.get("environment") or []:
        if item.get("name") == JOB_NAME_VAR and item.get("value") not in (None, "*****"):
            return str(item["value"])
    return str(detail.get("jobName") or "")


def job_record(detail: JSON, now_ms: int, tz: tzinfo | None = None) -> Record:
    """The ``scontrol show job`` record of one JobDetail (an array task's own, not its
    parent's: callers expand an array into its tasks, as Slurm lists them)."""
    row = job_row(detail, now_ms)
    limit = (detail.get("timeout") or {}).get("attemptDurationSeconds")
    cpus = _resource(detail, "VCPU") or 1
    memory = _resource(detail, "MEMORY")
    gpus = _resource(detail, "GPU")
    nodes = node_ids(detail)
    state = row.state
    running = state in (SlurmState.RUNNING, SlurmState.COMPLETING)
    started = row.start_ms is not None
    end_ms = row.end_ms
    if end_ms is None and started and isinstance(limit, int) and row.start_ms is not None:
        end_ms = row.start_ms + limit * 1000  # Slurm shows a running job's expected end
    tres = f"cpu={cpus * row.nodes}" + (f",mem={memory * row.nodes}M" if memory else "")
    tres += f",node={row.nodes},billing={cpus * row.nodes}" + (f",gres/gpu={gpus}" if gpus else "")
    ident = f"JobId={row.raw_id}"
    if row.array_task != "N/A":
        ident += f" ArrayJobId={row.array_job_id} ArrayTaskId={row.array_task}"
    attempts = detail.get("attempts")
    restarts = max(0, len(attempts) - 1) if isinstance(attempts, list) else 0
    submit, start = timestamp(row.submit_ms, tz), timestamp(row.start_ms, tz)
    held = bool(nodes) and (running or state.ended)
    time_limit = sacct_elapsed(limit) if isinstance(limit, int) else "UNLIMITED"
    return [
        f"{ident} JobName={given_name(detail)}",
        f"UserId={_user(row.user)} GroupId={_group(row.user)} MCS_label=N/A",
        "Priority=1 Nice=0 Account=(null) QOS=(null)",
        f"JobState={state.name} Reason={row.reason} Dependency={_dependency(detail)}",
        f"Requeue=0 Restarts={restarts} BatchFlag=1 Reboot=0 ExitCode={row.exit_code}",
        f"RunTime={sacct_elapsed(row.elapsed_seconds)} TimeLimit={time_limit} TimeMin=N/A",
        f"SubmitTime={submit} EligibleTime={submit}",
        f"AccrueTime={submit}",
        f"StartTime={start} EndTime={timestamp(end_ms, tz)} Deadline=N/A",
        f"SuspendTime=None SecsPreSuspend=0 LastSchedEval={start if started else submit}"
        " Scheduler=Main",
        f"Partition={row.partition} AllocNode:Sid=(null):0",
        "ReqNodeList=(null) ExcNodeList=(null)",
        f"NodeList={compress(nodes) if held else ''}",  # Slurm's for a job given no nodes
        *([f"BatchHost={nodes[0]}"] if held else []),
        f"NumNodes={row.nodes} NumCPUs={cpus * row.nodes} NumTasks={row.nodes} "
        f"CPUs/Task={cpus} ReqB:S:C:T=0:0:*:*",
        f"TRES={tres}",
        "Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*",
        f"MinCPUsNode={cpus} MinMemoryNode={f'{memory}M' if memory else '0'} MinTmpDiskNode=0",
        "Features=(null) DelayBoot=00:00:00",
        "OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)",
        *_io_lines(detail, row),
        "Power=",
        "",  # scontrol ends a job's record with an empty line, so -o's with a space
    ]


def _command(detail: JSON) -> str:
    """Slurm's Command: the batch script's path, else (``--wrap``, ``mnp submit``) the
    container's command; ``(null)`` when neither is known (Slurm's for ``--wrap``)."""
    extras = detail.get("mnp") or {}
    if extras.get("scriptPath"):
        return str(extras["scriptPath"])
    if extras.get("script"):
        return "(null)"
    command = (detail.get("container") or {}).get("command") or []
    return " ".join(str(c) for c in command) if command else "(null)"


def expand_output(pattern: str, detail: JSON, row: JobRow) -> str:
    """An output path with Slurm's patterns filled in as scontrol shows them: ``%j`` the
    job's own id, ``%A`` its array's, ``%a`` its task id, ``%x`` the name, ``%u`` the user,
    ``%N`` the first node (kept while it has none), ``%%`` a ``%``."""
    nodes = node_ids(detail)
    task = row.array_task if row.array_task != "N/A" else "4294967294"  # Slurm's NO_VAL
    values = {"j": row.raw_id, "A": row.array_job_id, "a": task, "x": given_name(detail),
              "u": row.user, "%": "%", **({"N": nodes[0]} if nodes else {})}  # fmt: skip
    return _PATTERN.sub(lambda m: values.get(m.group(1), m.group(0)), pattern)


_PATTERN = re.compile(r"%(.)", re.DOTALL)


def _io_lines(detail: JSON, row: JobRow) -> list[str]:
    """Command, WorkDir, StdErr, StdIn and StdOut, from what the job was submitted with
    (``mnp``: its working directory and output patterns); Slurm's unset ``(null)`` where the
    head did not say."""
    extras = detail.get("mnp") or {}
    workdir = str(extras.get("workingDirectory") or "")
    stdout = str(extras.get("stdout") or "")
    if not stdout and workdir and extras.get("script"):
        stdout = posixpath.join(workdir, "slurm-%A_%a.out" if row.array_task != "N/A"
                                else "slurm-%j.out")  # fmt: skip
    stderr = str(extras.get("stderr") or stdout)
    return [
        f"Command={_command(detail)}",
        f"WorkDir={workdir or '(null)'}",
        f"StdErr={expand_output(stderr, detail, row) if stderr else '(null)'}",
        "StdIn=/dev/null",
        f"StdOut={expand_output(stdout, detail, row) if stdout else '(null)'}",
    ]


def node_state(node: JSON) -> str:
    """Slurm's long node state: ``DOWN`` (lost or stopped), ``IDLE``, ``MIXED`` (some CPUs
    busy) or ``ALLOCATED`` (none free)."""
    if node.get("status") != "ACTIVE":
        return "DOWN"
    total, free = node.get("vcpus"), node.get("freeVcpus")
    if not node.get("runningJobs") and (not isinstance(free, int) or free == total):
        return "IDLE"
    if isinstance(free, int) and free <= 0:
        return "ALLOCATED"
    return "MIXED"


SHORT_NODE_STATES = {"DOWN": "down", "IDLE": "idle", "MIXED": "mix", "ALLOCATED": "alloc"}


def node_record(node: JSON, partitions: Sequence[str]) -> Record:
    """The ``scontrol show node`` record of one Node."""
    total = int(node.get("vcpus") or 0)
    free = node.get("freeVcpus")
    alloc = total - free if isinstance(free, int) else 0
    memory = int(node.get("memoryMiB") or 0)
    free_mem = node.get("freeMemoryMiB")
    alloc_mem = memory - free_mem if isinstance(free_mem, int) else 0
    gpus = int(node.get("gpus") or 0)
    gres = f"gpu:{gpus}" if gpus else "(null)"
    address = str(node.get("address") or node.get("nodeId") or "")
    cfg = f"cpu={total},mem={memory}M,billing={total}" + (f",gres/gpu={gpus}" if gpus else "")
    used = f"cpu={alloc}" + (f",mem={alloc_mem}M" if alloc_mem else "") if alloc else ""
    free_text = str(free_mem) if isinstance(free_mem, int) else "N/A"
    return [
        # scontrol ends this line and Partitions= with a space
        f"NodeName={node.get('nodeId', '')} Arch=x86_64 CoresPerSocket=1 ",
        f"CPUAlloc={alloc} CPUEfctv={total} CPUTot={total} CPULoad=N/A",
        "AvailableFeatures=(null)",
        "ActiveFeatures=(null)",
        f"Gres={gres}",
        f"NodeAddr={address} NodeHostName={address} Version=mnp",
        f"RealMemory={memory} AllocMem={alloc_mem} FreeMem={free_text} Sockets={total} Boards=1",
        f"State={node_state(node)} ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A",
        f"Partitions={','.join(partitions) or '(null)'} ",
        f"CfgTRES={cfg}",
        f"AllocTRES={used}",
        "CapWatts=n/a",
        "CurrentWatts=0 AveWatts=0",
        "ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s",
    ]


def render_record(record: Record, one_line: bool = False) -> str:
    """Slurm's text of one record: the first line flush, the rest indented three spaces,
    then a blank line; with ``one_line`` (``scontrol -o``) every pair on one line."""
    if one_line:
        return " ".join(record) + "\n"
    return "\n".join([record[0], *(f"   {line}" for line in record[1:])]) + "\n\n"
