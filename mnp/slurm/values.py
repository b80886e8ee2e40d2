"""Values of sbatch options, parsed the way Slurm reads them. Pure; no I/O.

Each ``parse_*`` function takes the option's text and returns a typed value, or raises
ValueError whose message states the rule (the caller prefixes the option's name). ``mnp run``
(:mod:`mnp.cli.run`) reads its ``--time`` with :func:`parse_time` and ``--export`` with
:func:`parse_export` too, turning the ValueError into a usage error.

Array task ids travel to the head as text in Slurm's own array syntax without ``%N``
(:mod:`mnp.slurm.taskids`): ``0-15``, ``1-9:2,20``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mnp.slurm.taskids import ARRAY_MAX_SIZE, expand_ids
from mnp.spec import ENV_NAME_PATTERN

MAX_DEPENDENCIES = 20
"""AWS Batch allows at most 20 dependencies per job."""
UNLIMITED = frozenset({"UNLIMITED", "INFINITE"})
TIME_FORMATS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
"""The time-limit formats :func:`parse_time` reads (named in its errors and ``mnp run --help``)."""
ENV_NAME = re.compile(ENV_NAME_PATTERN)
"""A shell variable name."""

# -- time, sizes, counts ---------------------------------------------------------------------


def parse_time(text: str) -> int:
    """A Slurm time limit in seconds: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``. Raises ValueError (naming the formats) for anything else or zero."""
    t = text.strip()
    days, sep, rest = t.partition("-")
    parts = rest.split(":") if sep else t.split(":")
    fields = [days, *parts] if sep else parts
    if not all(f.isdigit() and f.isascii() for f in fields) or len(parts) > 3:
        raise ValueError(f"time {text!r} must look like {TIME_FORMATS}")
    n = [int(f) for f in fields]
    if sep:  # D-HH[:MM[:SS]]
        d, h, m, s = [*n, 0, 0][:4]
        bounded = [h < 24, m < 60, s < 60]
    elif len(n) == 3:  # HH:MM:SS
        d, h, m, s = 0, n[0], n[1], n[2]
        bounded = [m < 60, s < 60]
    else:  # MM or MM:SS
        d, h, m, s = 0, 0, n[0], (n[1] if len(n) == 2 else 0)
        bounded = [s < 60]
    if not all(bounded):
        raise ValueError(f"time {text!r}: hours must be < 24, minutes and seconds < 60")
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError(f"time {text!r} must be more than zero")
    return seconds


def parse_time_limit(text: str) -> int | None:
    """Seconds for a Slurm time limit (every Slurm format, :func:`parse_time`); None for
    ``UNLIMITED``/``INFINITE`` (no timeout)."""
    if text.strip().upper() in UNLIMITED:
        return None
    return parse_time(text)


_SIZE = re.compile(r"(\d+)([KMGT]?)B?", re.IGNORECASE)
_MIB_PER_UNIT = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_memory(text: str) -> int:
    """MiB for a Slurm memory size: a whole number with an optional unit ``K``, ``M``, ``G`` or
    ``T`` (powers of 1024; default ``M``); kibibytes round up to whole MiB. ``0`` stays 0 (Slurm:
    all of a node's memory; the caller decides)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} must be a whole number with an optional unit K, M, G or T (default M)"
        )
    return math.ceil(int(m.group(1)) * _MIB_PER_UNIT[(m.group(2) or "M").upper()])


def parse_count(text: str) -> int:
    """A whole number ≥ 1."""
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or int(t) < 1:
        raise ValueError(f"{text!r} must be a whole number, at least 1")
    return int(t)


def parse_node_range(text: str) -> tuple[int, int]:
    """``N`` or Slurm's ``min-max`` → ``(min, max)``."""
    low, sep, high = text.strip().partition("-")
    try:
        first = parse_count(low)
        last = parse_count(high) if sep else first
    except ValueError:
        raise ValueError(f"{text!r} must be a node count N or a range MIN-MAX") from None
    if last < first:
        raise ValueError(f"{text!r}: the maximum must not be below the minimum")
    return first, last


def parse_nodes(text: str) -> tuple[int, bool]:
    """``N`` or Slurm's ``min-max`` → ``(nodes, ranged)``: a range takes its maximum (mnp
    allocates exactly; Slurm would give at least ``min``), ``ranged`` says so."""
    first, last = parse_node_range(text)
    return last, last != first


def parse_gpus(text: str) -> tuple[int, str | None]:
    """``[type:]count`` → ``(count, type)`` (``-G``, ``--gpus-per-node``)."""
    kind, sep, count = text.strip().rpartition(":")
    try:
        return parse_count(count), (kind if sep else None)
    except ValueError:
        raise ValueError(f"{text!r} must be [TYPE:]COUNT with COUNT at least 1") from None


def parse_gres(text: str) -> tuple[int | None, list[str]]:
    """``--gres=gpu[:type][:count],…`` → ``(GPUs per node or None, other resources)``: mnp
    knows GPUs only; the caller warns about the rest."""
    gpus: int | None = None
    others: list[str] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        if parts[0] != "gpu":
            others.append(item)
            continue
        count = parts[-1] if len(parts) > 1 and parts[-1].isdigit() else "1"
        gpus = (gpus or 0) + parse_count(count)
    return gpus, others


# -- arrays ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """``--array``: the Slurm task ids in ascending order and the ``%N`` limit."""

    ids: tuple[int, ...]
    max_running: int | None = None

    @property
    def dense(self) -> bool:
        """True when the ids are ``0..n-1``: AWS array indices equal the Slurm ids."""
        return self.ids == tuple(range(len(self.ids)))


def parse_array(text: str, max_size: int = ARRAY_MAX_SIZE) -> ArraySpec:
    """Slurm's ``--array``: ``0-15``, ``0-15:4``, ``1,3,5,7``, mixtures, optionally ending in
    ``%N`` (at most N tasks running at once); at most ``max_size`` tasks."""
    spec, sep, limit = text.strip().partition("%")
    max_running = None
    if sep:
        try:
            max_running = parse_count(limit)
        except ValueError:
            rule = "the task limit must be a whole number, at least 1"
            raise ValueError(f"%{limit}: {rule}") from None
    if not spec:
        raise ValueError("no task ids (expected e.g. 0-15, 1,3,5 or 0-99%10)")
    return ArraySpec(tuple(expand_ids(spec, max_size)), max_running)


# -- dependencies ----------------------------------------------------------------------------

DEPENDENCY_TYPES: Mapping[str, str | None] = {
    "afterok": None,  # AWS's default: the dependency SUCCEEDED
    "afterany": "AFTER_ANY",
    "afternotok": "AFTER_NOT_OK",
    "after": "AFTER_START",
    "aftercorr": "N_TO_N",
}
"""Slurm dependency type → SubmitJob ``dependsOn[].type`` (None: left out, i.e. AFTER_OK)."""
UNSUPPORTED_DEPENDENCIES = {
    "expand": "growing a running job is not supported by mnp",
    "afterburstbuffer": "mnp has no burst buffers",
}
_JOB_REF = re.compile(r"([A-Za-z0-9-]+)(?:_(\d+))?")


@dataclass(frozen=True, slots=True)
class Dependency:
    kind: str
    """The Slurm type (a key of :data:`DEPENDENCY_TYPES`)."""
    job_id: str
    task: int | None = None
    """``<job>_<task>``: one Slurm array task of that job."""


@dataclass(frozen=True, slots=True)
class DependencySpec:
    items: tuple[Dependency, ...] = ()
    mode: str = "ALL"
    """``ALL`` (Slurm's ``,``) or ``ANY`` (Slurm's ``?``)."""
    singleton: bool = False


def parse_dependency(text: str) -> DependencySpec:
    """Slurm's ``--dependency``: ``type:job[:job…]`` items (``job`` is an id or ``id_task``)
    and ``singleton``, joined by ``,`` (all must hold) or ``?`` (any). Raises ValueError naming
    every unsupported or malformed part; mixing ``,`` and ``?`` is refused, as Slurm does."""
    t = text.strip()
    if "," in t and "?" in t:
        raise ValueError("use ',' (all of) or '?' (any of) between dependencies, not both")
    mode = "ANY" if "?" in t else "ALL"
    problems: list[str] = []
    items: list[Dependency] = []
    singleton = False
    for part in t.split("?" if mode == "ANY" else ","):
        kind, _, rest = part.strip().partition(":")
        if kind == "singleton" and not rest:
            singleton = True
            continue
        if kind in UNSUPPORTED_DEPENDENCIES:
            problems.append(f"{kind}: {UNSUPPORTED_DEPENDENCIES[kind]}")
            continue
        if kind not in DEPENDENCY_TYPES:
            known = ", ".join([*DEPENDENCY_TYPES, "singleton"])
            problems.append(f"{part.strip()!r}: unknown dependency type (known: {known})")
            continue
        if not rest:
            problems.append(f"{kind}: needs at least one job id ({kind}:JOBID[:JOBID…])")
            continue
        for ref in rest.split(":"):
            if "+" in ref:
                problems.append(f"{kind}:{ref}: a delay (+minutes) is not supported by mnp")
                continue
            m = _JOB_REF.fullmatch(ref)
            if m is None:
                problems.append(f"{kind}:{ref}: {ref!r} is not a job id (or JOBID_TASK)")
                continue
            task = int(m.group(2)) if m.group(2) is not None else None
            items.append(Dependency(kind, m.group(1), task))
    if len(items) > MAX_DEPENDENCIES:
        problems.append(f"{len(items)} job dependencies; at most {MAX_DEPENDENCIES}")
    if problems:
        raise ValueError("; ".join(problems))
    return DependencySpec(tuple(items), mode, singleton)


# -- output file patterns --------------------------------------------------------------------

HEAD_PATTERNS = frozenset("jAaxNu%")
"""Patterns the head expands per attempt (docs/native-api.md)."""
TRANSLATED = {"J": "%j", "s": "batch", "t": "0", "n": "0"}
"""Slurm patterns with a fixed meaning for a batch script: ``%J`` is the job id, the batch
step's id ``%s`` is ``batch``, its task ``%t`` and relative node ``%n`` are 0."""
_PATTERN = re.compile(r"%(\d*)(.?)", re.DOTALL)


def translate_output(text: str) -> str:
    """A ``--output``/``--error`` file name with Slurm's patterns in the head's form.

    Kept: ``%j %A %a %x %N %u %%``; translated: :data:`TRANSLATED`. A backslash anywhere turns
    every pattern off (Slurm's rule): backslashes are dropped and each ``%`` kept literally.
    Raises ValueError naming every pattern the head cannot expand (``%b``, ``%4a``…).
    """
    if "\\" in text:
        return text.replace("\\", "").replace("%", "%%")
    problems: list[str] = []

    def one(m: re.Match[str]) -> str:
        width, letter = m.group(1), m.group(2)
        if width:
            problems.append(f"%{width}{letter} (zero-padded widths are not supported)")
        elif letter in HEAD_PATTERNS:
            return m.group(0)
        elif letter in TRANSLATED:
            return TRANSLATED[letter]
        else:
            problems.append(f"%{letter} (supported: %j %A %a %x %N %u %J %s %t %n %%)")
        return m.group(0)

    out = _PATTERN.sub(one, text)
    if problems:
        raise ValueError("unsupported pattern " + ", ".join(problems))
    return out


# -- the environment -------------------------------------------------------------------------

NOT_EXPORTED_PREFIXES = ("AWS_BATCH", "SLURM_", "MNP_")
NOT_EXPORTED = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
"""Names ``--export=ALL`` leaves out: the head's own variables and this shell's state."""


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What ``--export=ALL`` sends: ``environ`` without :data:`NOT_EXPORTED`, names starting
    with :data:`NOT_EXPORTED_PREFIXES` and names that are not shell names (``BASH_FUNC_x%%``)."""
    return {
        k: v
        for k, v in environ.items()
        if k not in NOT_EXPORTED
        and not k.upper().startswith(NOT_EXPORTED_PREFIXES)
        and ENV_NAME.fullmatch(k)
    }


def _export_items(text: str) -> list[str]:
    """Comma-separated items; a piece that is not ``NAME`` or ``NAME=…`` continues the value
    before it (``A=x,y,B=1`` → ``A=x,y`` and ``B=1``)."""
    items: list[str] = []
    for piece in text.split(","):
        name = piece.partition("=")[0]
        if items and "=" in items[-1] and not ENV_NAME.fullmatch(name):
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


def parse_export(items: Sequence[str], environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``VAR=value`` pairs (a later one for the same name wins); a bare ``VAR`` takes its value
    from ``environ`` (Slurm's ``--export=VAR``). Raises ValueError naming the first bad item."""
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"{item!r}: expected VAR=value")
        if not eq:
            if name not in environ:
                raise ValueError(f"{name} is not set here")
            value = environ[name]
        out[name] = value
    return tuple(out.items())


def parse_export_spec(text: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The job's environment for ``--export``: ``ALL`` (everything, see
    :func:`inherited_environment`), ``NONE``/``NIL`` (nothing), and ``VAR=value`` or ``VAR``
    (value from ``environ``) items, alone or after ``ALL``. Without ``ALL`` only the named
    variables go, as in Slurm."""
    env: dict[str, str] = {}
    items: list[str] = []
    for item in _export_items(text.strip()):
        if item.upper() == "ALL":
            env |= inherited_environment(environ)
        elif item.upper() in ("NONE", "NIL"):
            continue
        elif item:
            items.append(item)
    env |= dict(parse_export(items, environ))
    return env
