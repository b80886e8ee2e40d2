"""How the CLI shows things: rich tables, times, durations and the wait progress display."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from mnp.spec.states import TERMINAL_STATUSES

JSON = dict[str, Any]

STATUS_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "RUNNING": "cyan",
    "STARTING": "cyan",
    "RUNNABLE": "yellow",
    "PENDING": "yellow",
    "SUBMITTED": "dim",
    "ACTIVE": "green",
    "LOST": "red",
    "STOPPED": "dim",
    "VALID": "green",
    "INVALID": "red",
    "ENABLED": "green",
    "DISABLED": "dim",
}
JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


def now_ms() -> int:
    return int(time.time() * 1000)


def fmt_time(ms: Any) -> str:
    """Epoch milliseconds as local ``YYYY-MM-DD HH:MM:SS``; ``-`` when absent."""
    if not isinstance(ms, int | float) or ms <= 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(start_ms: Any, stop_ms: Any = None, now: int | None = None) -> str:
    """``stop - start`` (or ``now - start`` while running) as ``85ms``, ``12.3s``, ``4m05s``,
    ``1h02m``."""
    if not isinstance(start_ms, int | float) or start_ms <= 0:
        return "-"
    end = stop_ms if isinstance(stop_ms, int | float) and stop_ms > 0 else (now or now_ms())
    seconds = max(0.0, (end - start_ms) / 1000)
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short_name(value: Any) -> str:
    """The name part of an ARN (``…:job-queue/default`` → ``default``), else the value."""
    text = "" if value is None else str(value)
    return text.rsplit("/", 1)[-1] if text.startswith("arn:") else text


def styled(status: Any) -> Text:
    text = "-" if status is None else str(status)
    return Text(text, style=STATUS_STYLE.get(text, ""))


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def wide_console(stderr: bool = False) -> Console:
    """A console for tables: when the output is not a terminal (a pipe, a CI log) and
    ``COLUMNS`` is not set, lines are not wrapped at 80 columns, so each row stays one line."""
    console = Console(highlight=False, stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, 250)
    return console


def new_table(*columns: str, last_wraps: bool = True) -> Table:
    """A borderless table; job ids never wrap; the last column wraps (or is cut with an
    ellipsis when ``last_wraps`` is False) so the others keep one line per row."""
    out = Table(box=None, pad_edge=False, header_style="bold")
    for col in columns[:-1]:
        out.add_column(col, no_wrap=True)
    if last_wraps:
        out.add_column(columns[-1], overflow="fold")
    else:
        out.add_column(columns[-1], no_wrap=True, overflow="ellipsis")
    return out


def jobs_table(summaries: Iterable[JSON]) -> Table:
    """ID, NAME, USER (who submitted), QUEUE, STATUS, NODE, ATTEMPT, CREATED, DURATION, REASON."""
    table = new_table(
        "ID", "NAME", "USER", "QUEUE", "STATUS", "NODE", "ATTEMPT", "CREATED", "DURATION", "REASON"
    )
    for s in summaries:
        table.add_row(
            _dash(s.get("jobId")),
            _dash(s.get("jobName")),
            _dash(s.get("submittedBy")),
            short_name(s.get("jobQueueName") or s.get("jobQueue")) or "-",
            styled(s.get("status")),
            _dash(s.get("nodeId")),
            _dash(s.get("attempt")),
            fmt_time(s.get("createdAt")),
            fmt_duration(s.get("startedAt"), s.get("stoppedAt")),
            _dash(s.get("statusReason")),
        )
    return table


def summary_counts(summary: JSON | None, markup: bool = True) -> str:
    """``RUNNING 2  SUCCEEDED 3`` from an array's statusSummary (zeros left out), coloured
    with rich markup unless ``markup`` is False."""
    parts = []
    for state in JOB_STATES:
        count = (summary or {}).get(state)
        if count:
            style = STATUS_STYLE.get(state, "") if markup else ""
            parts.append(f"[{style}]{state} {count}[/]" if style else f"{state} {count}")
    return "  ".join(parts)


def job_view(d: JSON) -> RenderableType:
    """A readable JobDetail: key facts, then attempts and history tables."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    container = d.get("container") or {}
    array = d.get("arrayProperties") or {}
    rows: list[tuple[str, Any]] = [
        ("job id", d.get("jobId")),
        ("name", d.get("jobName")),
        ("submitted by", d.get("submittedBy")),
        ("status", styled(d.get("status"))),
        ("reason", d.get("statusReason")),
        ("queue", short_name(d.get("jobQueueName") or d.get("jobQueue"))),
        ("definition", short_name(d.get("jobDefinition"))),
        ("compute env", d.get("computeEnvironment")),
        ("node", _node(d)),
        ("command", " ".join(container.get("command") or []) or None),
        ("exit code", container.get("exitCode")),
        ("created", fmt_time(d.get("createdAt"))),
        ("started", fmt_time(d.get("startedAt"))),
        ("stopped", fmt_time(d.get("stoppedAt"))),
        ("duration", fmt_duration(d.get("startedAt"), d.get("stoppedAt"))),
    ]
    if "index" in array:
        rows.append(("array index", f"{array['index']} of {array.get('size', '?')}"))
    elif array.get("size"):
        rows.append(("array size", array["size"]))
        rows.append(("children", Text.from_markup(summary_counts(array.get("statusSummary")))))
    deps = d.get("dependsOn") or []
    if deps:
        rows.append(("depends on", ", ".join(_dep(x) for x in deps)))
    for key, value in rows:
        if value not in (None, "", "-"):
            facts.add_row(key, value if isinstance(value, Text) else str(value))
    parts: list[RenderableType] = [facts]
    attempts = d.get("attempts") or []
    if attempts:
        table = new_table("ATTEMPT", "STARTED", "STOPPED", "DURATION", "EXIT", "REASON")
        for i, a in enumerate(attempts, 1):
            c = a.get("container") or {}
            table.add_row(
                str(i),
                fmt_time(a.get("startedAt")),
                fmt_time(a.get("stoppedAt")),
                fmt_duration(a.get("startedAt"), a.get("stoppedAt")),
                _dash(c.get("exitCode")),
                _dash(a.get("statusReason") or c.get("reason")),
            )
        parts += [Text("\nattempts", style="bold"), table]
    history = d.get("history") or []
    if history:
        table = new_table("STATUS", "AT", "REASON")
        for h in history:
            table.add_row(styled(h.get("status")), fmt_time(h.get("at")), _dash(h.get("reason")))
        parts += [Text("\nhistory", style="bold"), table]
    return Group(*parts)


def _node(d: JSON) -> str | None:
    node, address = d.get("nodeId"), d.get("nodeAddress")
    if node and address:
        return f"{node} ({address})"
    return node or address or None


def _dep(dep: JSON) -> str:
    kind = dep.get("type")
    target = dep.get("jobId") or "previous index"
    return f"{target} ({kind})" if kind else str(target)


def status_view(s: JSON) -> Table:
    """The ``getStatus`` answer as key/value rows; lists and maps are summarised."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in s.items():
        if key == "startedAt":
            text = f"{fmt_time(value)} (up {fmt_duration(value)})"
        elif key == "jobCounts" and isinstance(value, dict):
            text = "  ".join(f"{k} {v}" for k, v in value.items()) or "no jobs"
        elif isinstance(value, list):
            names = [_item_name(v) for v in value]
            text = f"{len(value)}: {', '.join(names)}" if names else "0"
        elif isinstance(value, dict):
            text = "  ".join(f"{k} {v}" for k, v in value.items())
        else:
            text = _dash(value)
        table.add_row(key, text)
    return table


def _item_name(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("jobQueueName", "computeEnvironmentName", "nodeId", "name"):
            if key in item:
                return str(item[key])
    return str(item)


def queues_table(queues: Iterable[JSON]) -> Table:
    table = new_table("NAME", "STATE", "STATUS", "PRIORITY", "COMPUTE ENVIRONMENTS", "REASON")
    for q in queues:
        order = sorted(q.get("computeEnvironmentOrder") or [], key=lambda o: o.get("order", 0))
        table.add_row(
            _dash(q.get("jobQueueName")),
            styled(q.get("state")),
            styled(q.get("status")),
            _dash(q.get("priority")),
            ", ".join(short_name(o.get("computeEnvironment")) for o in order) or "-",
            _dash(q.get("statusReason")),
        )
    return table


def ces_table(ces: Iterable[JSON]) -> Table:
    table = new_table("NAME", "TYPE", "STATE", "STATUS", "PROVIDER", "NODES", "REASON")
    for ce in ces:
        extra = ce.get("mnp") or {}
        table.add_row(
            _dash(ce.get("computeEnvironmentName")),
            _dash(ce.get("type")),
            styled(ce.get("state")),
            styled(ce.get("status")),
            _dash(extra.get("provider")),
            _dash(extra.get("nodes")),
            _dash(ce.get("statusReason")),
        )
    return table


def nodes_table(nodes: Iterable[JSON]) -> Table:
    table = new_table(
        "NODE", "CE", "ADDRESS", "NETWORK", "STATUS", "VCPUS", "MEMORY MiB", "GPUS", "JOBS",
        "HEARTBEAT",
    )  # fmt: skip
    for n in nodes:
        beat = n.get("lastHeartbeatAt")
        table.add_row(
            _dash(n.get("nodeId")),
            _dash(n.get("computeEnvironment")),
            _dash(n.get("address")),
            _dash(n.get("network")),
            styled(n.get("status")),
            f"{_dash(n.get('freeVcpus'))}/{_dash(n.get('vcpus'))} free",
            f"{_dash(n.get('freeMemoryMiB'))}/{_dash(n.get('memoryMiB'))} free",
            f"{_dash(n.get('freeGpus'))}/{_dash(n.get('gpus'))}",
            str(len(n.get("runningJobs") or [])),
            f"{fmt_duration(beat)} ago" if beat else "-",
        )
    return table


class WaitProgress:
    """A progress display fed by :meth:`mnp.Client.wait`'s ``on_progress``: one bar per job;
    array parents count finished children out of the array size, with statusSummary counts."""

    def __init__(self, console: Console, names: dict[str, str] | None = None) -> None:
        self._names = names or {}
        self._tasks: dict[str, TaskID] = {}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=console,
        )

    def __enter__(self) -> WaitProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, detail: JSON) -> None:
        job_id = str(detail.get("jobId"))
        status = str(detail.get("status"))
        array = detail.get("arrayProperties") or {}
        if array.get("size") and "index" not in array:
            counts = array.get("statusSummary") or {}
            total = int(array["size"])
            done = int(counts.get("SUCCEEDED", 0)) + int(counts.get("FAILED", 0))
            summary = summary_counts(counts) or status
        else:
            total = 1
            done = 1 if status in TERMINAL_STATUSES else 0
            style = STATUS_STYLE.get(status, "")
            summary = f"[{style}]{status}[/]" if style else status
        if job_id not in self._tasks:
            name = self._names.get(job_id) or str(detail.get("jobName") or job_id)
            self._tasks[job_id] = self._progress.add_task(
                name, total=total, completed=done, summary=summary
            )
        else:
            self._progress.update(self._tasks[job_id], completed=done, summary=summary)
