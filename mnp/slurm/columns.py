"""squeue ``--format`` and sacct ``--format``: parsing the specifications, rendering rows.

Pure. squeue specifiers are ``%[.][-][width]X`` (``.``: right-justify; default left; a width
both pads and truncates, as Slurm does); sacct fields are ``Name[%width]`` (case-insensitive;
too-long values end in ``+``, as sacct marks them).

One deliberate difference from Slurm: job-id columns (squeue ``%i %A %F``, sacct ``JobID``
``JobIDRaw``) widen to the longest id instead of cutting it, since mnp job ids are 36-character
UUIDs and a cut id cannot be passed to scancel.
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import tzinfo

from mnp.slurm.times import sacct_elapsed, squeue_time, timestamp
from mnp.slurm.views import JobRow, SlurmState

SQUEUE_DEFAULT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
"""Slurm's own default squeue format."""


def _limit(row: JobRow) -> str:
    return "UNLIMITED" if row.time_limit_seconds is None else squeue_time(row.time_limit_seconds)


SQUEUE_FIELDS: dict[str, tuple[str, Callable[[JobRow], str]]] = {
    "i": ("JOBID", lambda r: r.job_id),
    "A": ("JOBID", lambda r: r.raw_id),
    "F": ("ARRAY_JOB_ID", lambda r: r.array_job_id),
    "K": ("ARRAY_TASK_ID", lambda r: r.array_task),
    "P": ("PARTITION", lambda r: r.partition),
    "j": ("NAME", lambda r: r.name),
    "u": ("USER", lambda r: r.user),
    "t": ("ST", lambda r: r.state.short),
    "T": ("STATE", lambda r: r.state.name),
    "M": ("TIME", lambda r: squeue_time(r.elapsed_seconds)),
    "D": ("NODES", lambda r: str(r.nodes)),
    "R": ("NODELIST(REASON)", lambda r: r.node_list_or_reason),
    "N": ("NODELIST", lambda r: r.node_list),
    "r": ("REASON", lambda r: r.reason),
    "l": ("TIME_LIMIT", _limit),
    "V": ("SUBMIT_TIME", lambda r: timestamp(r.submit_ms, None)),
    "S": ("START_TIME", lambda r: timestamp(r.start_ms, None) if r.start_ms else "N/A"),
}
ID_FIELDS = frozenset("iAF")
SQUEUE_NOT_APPLICABLE = {
    "a": "ACCOUNT", "b": "TRES_PER_NODE", "c": "MIN_CPUS", "C": "CPUS", "e": "END_TIME",
    "f": "FEATURES", "g": "GROUP", "h": "OVER_SUBSCRIBE", "H": "SOCKETS", "I": "CORES",
    "J": "THREADS", "k": "COMMENT", "L": "TIME_LEFT", "m": "MIN_MEMORY", "n": "REQ_NODES",
    "O": "CONTIGUOUS", "p": "PRIORITY", "q": "QOS", "Q": "PRIORITY", "v": "RESERVATION",
    "w": "WCKEY", "W": "LICENSES", "x": "EXC_NODES", "y": "NICE", "Y": "SCHEDNODES",
    "z": "S:C:T",
}  # fmt: skip
"""Slurm's squeue fields mnp has no value for: shown as ``N/A`` (what Slurm prints for an
unknown value), with a warning, so scripts that ask for them (``-o "%a %q"``) still run."""
_SPEC = re.compile(r"%(\.)?(-)?(\d*)(.)")


@dataclass(frozen=True, slots=True)
class Spec:
    """One ``%…X`` of a squeue format, or a literal (``field`` empty)."""

    field: str
    width: int = 0
    right: bool = False
    literal: str = ""


def parse_squeue_format(fmt: str) -> list[Spec]:
    """The pieces of a squeue ``-o`` format; ``%%`` is a literal ``%``. Raises ValueError
    for an unknown specifier (naming the known ones) or a ``%`` at the end."""
    out: list[Spec] = []
    pos = 0
    while pos < len(fmt):
        cut = fmt.find("%", pos)
        if cut < 0:
            out.append(Spec("", literal=fmt[pos:]))
            break
        if cut > pos:
            out.append(Spec("", literal=fmt[pos:cut]))
        m = _SPEC.match(fmt, cut)
        if m is None:
            raise ValueError(f"format {fmt!r}: '%' at the end")
        dot, _, width, letter = m.groups()
        if letter == "%":
            out.append(Spec("", literal="%"))
        elif letter in SQUEUE_NOT_APPLICABLE:
            out.append(Spec(letter, int(width or 0), right=bool(dot)))
        elif letter not in SQUEUE_FIELDS:
            known = " ".join(f"%{k}" for k in SQUEUE_FIELDS)
            raise ValueError(f"format {fmt!r}: unknown field %{letter} (known: {known})")
        else:
            out.append(Spec(letter, int(width or 0), right=bool(dot)))
        pos = m.end()
    return out


def _cell(text: str, width: int, right: bool) -> str:
    if not width:
        return text
    text = text[:width]
    return text.rjust(width) if right else text.ljust(width)


def render_squeue(rows: Sequence[JobRow], fmt: str, header: bool = True) -> str:
    """squeue's output: the header (unless ``header`` is False) and one line per row."""
    specs = parse_squeue_format(fmt)
    values = [[_squeue_value(s, r) for s in specs] for r in rows]
    widths = []
    for i, s in enumerate(specs):
        width = s.width
        if s.field in ID_FIELDS and width:
            width = max([width, *(len(v[i]) for v in values)])
        widths.append(width)
    lines = []
    if header:
        titles = [_squeue_title(s) for s in specs]
        lines.append(_line(specs, widths, titles))
    lines += [_line(specs, widths, v) for v in values]
    return "".join(line + "\n" for line in lines)


def _squeue_value(s: Spec, r: JobRow) -> str:
    if not s.field:
        return s.literal
    field = SQUEUE_FIELDS.get(s.field)
    return field[1](r) if field is not None else "N/A"


def _squeue_title(s: Spec) -> str:
    if not s.field:
        return s.literal
    field = SQUEUE_FIELDS.get(s.field)
    return field[0] if field is not None else SQUEUE_NOT_APPLICABLE[s.field]


def squeue_format_warnings(fmt: str) -> list[str]:
    """A warning per field of ``fmt`` mnp shows as ``N/A`` (:data:`SQUEUE_NOT_APPLICABLE`)."""
    return [
        f"squeue: warning: %{s.field} ({SQUEUE_NOT_APPLICABLE[s.field]}) has no value in mnp:"
        " shown as N/A"
        for s in parse_squeue_format(fmt)
        if s.field in SQUEUE_NOT_APPLICABLE
    ]


def _line(specs: Sequence[Spec], widths: Sequence[int], values: Sequence[str]) -> str:
    return "".join(
        _cell(v, w, s.right) if s.field else v
        for s, w, v in zip(specs, widths, values, strict=True)
    )


# -- sacct ---------------------------------------------------------------------------------------

SACCT_DEFAULT = "JobID,JobName,State,ExitCode,Elapsed,NodeList"


@dataclass(frozen=True, slots=True)
class SacctField:
    name: str
    width: int
    left: bool
    value: Callable[[JobRow, tzinfo | None], str]


def _f(name: str, width: int, value: Callable[[JobRow, tzinfo | None], str],
       left: bool = False) -> SacctField:  # fmt: skip
    return SacctField(name, width, left, value)


SACCT_FIELDS = {
    f.name.lower(): f
    for f in (
        _f("JobID", 12, lambda r, tz: r.job_id, left=True),
        _f("JobIDRaw", 12, lambda r, tz: r.raw_id, left=True),
        _f("JobName", 10, lambda r, tz: r.name),
        _f("Partition", 10, lambda r, tz: r.partition),
        _f("User", 9, lambda r, tz: r.user),
        _f("State", 10, lambda r, tz: sacct_state(r)),
        _f("ExitCode", 8, lambda r, tz: "0:0" if r.state is SlurmState.CANCELLED
           else r.exit_code),
        _f("Elapsed", 10, lambda r, tz: sacct_elapsed(r.elapsed_seconds)),
        _f("ElapsedRaw", 10, lambda r, tz: str(r.elapsed_seconds)),
        _f("NodeList", 15, lambda r, tz: r.node_list or "None assigned"),
        _f("NNodes", 8, lambda r, tz: str(r.nodes)),
        _f("Submit", 19, lambda r, tz: timestamp(r.submit_ms, tz)),
        _f("Start", 19, lambda r, tz: timestamp(r.start_ms, tz)),
        _f("End", 19, lambda r, tz: timestamp(r.end_ms, tz)),
        # an ended job's own exit is not a reason to sacct (scontrol says NonZeroExitCode)
        _f("Reason", 22, lambda r, tz: "None" if r.reason == "NonZeroExitCode" else r.reason),
        _f("Timelimit", 10, lambda r, tz: "UNLIMITED" if r.time_limit_seconds is None
           else sacct_elapsed(r.time_limit_seconds)),
    )
}  # fmt: skip


def sacct_state(row: JobRow) -> str:
    """sacct's State: the long name, ``CANCELLED by <uid>`` for a cancelled job (Slurm names
    who cancelled it; mnp, not recording that, names the job's owner, who or whose admin
    did)."""
    if row.state is not SlurmState.CANCELLED:
        return row.state.name
    try:
        return f"CANCELLED by {pwd.getpwnam(row.user).pw_uid}"
    except KeyError:
        return "CANCELLED by 4294967294"  # Slurm's NO_VAL: an unknown uid


SACCT_ID_FIELDS = frozenset({"jobid", "jobidraw"})
SACCT_NOT_APPLICABLE = (
    "Account", "AdminComment", "AllocCPUS", "AllocNodes", "AllocTRES", "AssocID", "AveCPU",
    "AveDiskRead", "AveDiskWrite", "AvePages", "AveRSS", "AveVMSize", "Cluster", "Comment",
    "ConsumedEnergy", "CPUTime", "CPUTimeRAW", "DerivedExitCode", "Eligible", "Flags", "GID",
    "Group", "MaxDiskRead", "MaxDiskWrite", "MaxPages", "MaxRSS", "MaxRSSNode", "MaxVMSize",
    "MinCPU", "NCPUS", "NTasks", "Priority", "QOS", "QOSRAW", "ReqCPUS", "ReqMem", "ReqNodes",
    "ReqTRES", "Reservation", "Suspended", "SystemCPU", "TotalCPU", "UID", "UserCPU", "WCKey",
    "WorkDir",
)  # fmt: skip
"""Slurm's sacct fields mnp has no value for: empty cells (as sacct leaves a value it does
not have), with a warning, so scripts that ask for them (``--format=…,MaxRSS``) still run."""
for _name in SACCT_NOT_APPLICABLE:
    SACCT_FIELDS.setdefault(_name.lower(), _f(_name, 10, lambda r, tz: ""))


def sacct_format_warnings(text: str) -> list[str]:
    """A warning per field of ``text`` mnp leaves empty (:data:`SACCT_NOT_APPLICABLE`)."""
    empty = {n.lower() for n in SACCT_NOT_APPLICABLE}
    return [
        f"sacct: warning: {f.name} has no value in mnp: left empty"
        for f, _ in parse_sacct_format(text)
        if f.name.lower() in empty
    ]


def parse_sacct_format(text: str) -> list[tuple[SacctField, int]]:
    """``JobID,jobname%30,State`` → fields with their widths. A width given makes the column
    right-justified, as sacct does (``JobID%5``: ``    1``). Raises ValueError for an unknown
    field (naming the known ones) or a bad width."""
    out: list[tuple[SacctField, int]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, pct, width = item.partition("%")
        field = SACCT_FIELDS.get(name.lower())
        if field is None:
            known = ",".join(f.name for f in SACCT_FIELDS.values())
            raise ValueError(f"invalid field requested: {name!r} (known: {known})")
        if pct and not (width.isdigit() and int(width) > 0):
            raise ValueError(f"field {item!r}: the width after % must be a positive number")
        if pct:
            field = replace(field, left=False)
        out.append((field, int(width) if pct else field.width))
    if not out:
        raise ValueError("no field requested")
    return out


def _sacct_cell(text: str, width: int, left: bool, mark: bool = True) -> str:
    if len(text) > width:
        text = text[: width - 1] + "+" if mark else text[:width]
    return text.ljust(width) if left else text.rjust(width)


def render_sacct(rows: Sequence[JobRow], fmt: str, *, header: bool = True,
                 parsable: str | None = None, tz: tzinfo | None = None) -> str:  # fmt: skip
    """sacct's output. ``parsable``: None (columns, a dashed line under the header), ``"|"``
    (``-p``: each field followed by ``|``) or ``"|2"`` (``-P``: ``|`` between fields only)."""
    fields = parse_sacct_format(fmt)
    values = [[f.value(r, tz) for f, _ in fields] for r in rows]
    titles = [f.name for f, _ in fields]
    if parsable is not None:
        end = "|" if parsable == "|" else ""
        lines = ([titles] if header else []) + values
        return "".join("|".join(v) + end + "\n" for v in lines)
    widths = [
        max([w, *(len(v[i]) for v in values)]) if f.name.lower() in SACCT_ID_FIELDS else w
        for i, (f, w) in enumerate(fields)
    ]
    out = []
    if header:
        # a header is cut without the "+" (``JobName%3``: ``Job``)
        out.append(" ".join(_sacct_cell(t, w, f.left, mark=False) for t, w, (f, _) in
                            zip(titles, widths, fields, strict=True)) + " ")  # fmt: skip
        out.append(" ".join("-" * w for w in widths) + " ")
    for v in values:
        out.append(" ".join(_sacct_cell(t, w, f.left) for t, w, (f, _) in
                            zip(v, widths, fields, strict=True)) + " ")  # fmt: skip
    return "".join(line + "\n" for line in out)
