"""sbatch's option table and the one tokenizer that reads it, for ``#SBATCH``/``#MNP`` lines
and for ``mnp sbatch``'s command line alike. Pure; no I/O.

Forms accepted, as getopt_long accepts them: ``--opt=value``, ``--opt value``, ``-Xvalue``,
``-X value`` and clustered short flags (``-Qv``). A long name may be shortened to any prefix
that names one option (``--err`` is ``--error``), and a prefix naming several is an error in
getopt's words (``option '--t' is ambiguous; possibilities: '--time' '--test-only' …``). Options
Slurm knows but mnp does not implement are listed in :data:`IGNORED` with the reason shown in
their warning (accepted, never exit 2); anything else is unknown (a warning in a script, a
usage error on the command line).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum


class Arg(Enum):
    NONE = "none"
    REQUIRED = "required"
    OPTIONAL = "optional"
    """Only ``--opt=value`` carries a value (``--exclusive[=user]``)."""


@dataclass(frozen=True, slots=True)
class Option:
    key: str
    """The setting it makes (:class:`mnp.slurm.sbatch.SbatchRequest`'s field names)."""
    long: str
    short: str | None = None
    arg: Arg = Arg.REQUIRED
    const: str = "yes"
    """The value a flag (``Arg.NONE``) sets."""
    help: str = ""


def _o(key: str, long: str, short: str | None, help: str, arg: Arg = Arg.REQUIRED,
       const: str = "yes") -> Option:  # fmt: skip
    return Option(key, long, short, arg, const, help)


F = Arg.NONE
SBATCH_OPTIONS: tuple[Option, ...] = (
    _o("job_name", "--job-name", "-J", "Job name, any text (default: the script's file name)."),
    _o("nodes", "--nodes", "-N",
       "Nodes: N, or MIN-MAX (mnp takes MIN). More than 1: an MNP job. Default: as many as -n "
       "needs on the partition's nodes."),
    _o("ntasks", "--ntasks", "-n", "Tasks in all (SLURM_NTASKS)."),
    _o("ntasks_per_node", "--ntasks-per-node", None, "Tasks per node."),
    _o("ntasks_per_node", "--tasks-per-node", None, "Same as --ntasks-per-node."),
    _o("cpus_per_task", "--cpus-per-task", "-c", "vCPUs per task (VCPU = tasks per node × this)."),
    _o("mem", "--mem", None, "Memory per node: N[K|M|G|T] (default M)."),
    _o("mem_per_cpu", "--mem-per-cpu", None, "Memory per vCPU: N[K|M|G|T]."),
    _o("gpus", "--gpus", "-G", "GPUs in all, [TYPE:]N (spread evenly over the nodes)."),
    _o("gpus_per_node", "--gpus-per-node", None, "GPUs per node, [TYPE:]N."),
    _o("gres", "--gres", None, "gpu[:TYPE][:N] → GPUs per node; other resources are ignored."),
    _o("time", "--time", "-t", "Time limit per attempt: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]."),
    _o("array", "--array", "-a", "Array task ids: 0-15, 0-15:4, 1,3,5, …, optionally %N."),
    _o("dependency", "--dependency", "-d",
       "afterok/afterany/afternotok/after/aftercorr:JOB[:JOB…], singleton; joined by , or ?."),
    _o("output", "--output", "-o", "stdout file (patterns %j %A %a %x %N %u %J %s %t %n %%)."),
    _o("error", "--error", "-e", "stderr file (default: with stdout)."),
    _o("partition", "--partition", "-p", "Job queue (default: default)."),
    _o("chdir", "--chdir", "-D", "Working directory (default: where mnp sbatch runs)."),
    _o("chdir", "--workdir", None, "Same as --chdir (Slurm's older name)."),
    _o("export", "--export", None, "ALL (default), NONE, or [ALL,]VAR[=value],…"),
    _o("wrap", "--wrap", None, "Run this shell command instead of a script."),
    _o("signal", "--signal", None,
       "[R:]SIG[@TIME]: srun's tasks get SIG (default USR1) TIME s (default 60) before the limit."),
    _o("requeue", "--requeue", None, "Run again once when a node is lost.", F, "yes"),
    _o("requeue", "--no-requeue", None, "Never run again.", F, "no"),
    _o("hold", "--hold", "-H", "Submit held: the job waits until `scontrol release`.", F),
    _o("parsable", "--parsable", None, "Print the job id alone.", F),
    _o("quiet", "--quiet", "-Q", "No warnings.", F),
    _o("dry_run", "--test-only", None, "Print the requests as JSON; submit nothing.", F),
    _o("dry_run", "--dry-run", None, "Same as --test-only.", F),
    _o("wait", "--wait", "-W", "Wait for the job to end; exit with its exit code.", F),
)  # fmt: skip

MNP_OPTIONS: tuple[Option, ...] = (
    _o("mpi", "--mpi", None,
       "MPI flavour for a multi-node job (none: the script runs as written on the main node)."),
    _o("every_node", "--every-node", None, "Run the script on every node (not supported yet).", F),
)  # fmt: skip
"""Options for ``#MNP`` lines (and the command line): mnp's own, not Slurm's."""


@dataclass(frozen=True, slots=True)
class Ignored:
    long: str
    short: str | None
    arg: Arg
    why: str


def _i(long: str, short: str | None, arg: Arg, why: str) -> Ignored:
    return Ignored(long, short, arg, why)


R, OPT = Arg.REQUIRED, Arg.OPTIONAL
_NO_ACCOUNTS = "mnp has no accounts, QOS or reservations"
_PLACEMENT = "mnp places jobs itself"
IGNORED: tuple[Ignored, ...] = (
    _i("--mail-type", None, R, "mnp sends no mail"),
    _i("--mail-user", None, R, "mnp sends no mail"),
    _i("--account", "-A", R, _NO_ACCOUNTS),
    _i("--qos", "-q", R, _NO_ACCOUNTS),
    _i("--reservation", None, R, _NO_ACCOUNTS),
    _i("--wckey", None, R, _NO_ACCOUNTS),
    _i("--comment", None, R, "not kept"),
    _i("--constraint", "-C", R, _PLACEMENT),
    _i("--nodelist", "-w", R, _PLACEMENT),
    _i("--exclude", "-x", R, _PLACEMENT),
    _i("--exclusive", None, OPT, "mnp jobs get the resources they ask for"),
    _i("--oversubscribe", "-s", F, _PLACEMENT),
    _i("--contiguous", None, F, _PLACEMENT),
    _i("--switches", None, R, _PLACEMENT),
    _i("--distribution", "-m", R, _PLACEMENT),
    _i("--hint", None, R, _PLACEMENT),
    _i("--cpu-bind", None, R, _PLACEMENT),
    _i("--mem-bind", None, R, _PLACEMENT),
    _i("--threads-per-core", None, R, _PLACEMENT),
    _i("--cores-per-socket", None, R, _PLACEMENT),
    _i("--sockets-per-node", None, R, _PLACEMENT),
    _i("--ntasks-per-core", None, R, _PLACEMENT),
    _i("--ntasks-per-socket", None, R, _PLACEMENT),
    _i("--licenses", "-L", R, "mnp has no licenses"),
    _i("--nice", None, OPT, "use the queue's priority"),
    _i("--priority", None, R, "use the queue's priority"),
    _i("--begin", "-b", R, "mnp starts jobs as soon as they can run"),
    _i("--open-mode", None, R, "output files are truncated per attempt"),
    _i("--time-min", None, R, "the time limit is --time"),
    _i("--tmp", None, R, "mnp has no per-job disk requests"),
    _i("--get-user-env", None, OPT, "the job's environment is --export's"),
    _i("--propagate", None, OPT, "limits are the node's"),
    _i("--kill-on-invalid-dep", None, R, "mnp always fails a job whose dependency failed"),
    _i("--no-kill", "-k", OPT, "a lost node fails the attempt"),
    _i("--overcommit", "-O", F, _PLACEMENT),
    _i("--verbose", "-v", F, "not used"),
    _i("--profile", None, R, "not used"),
    _i("--acctg-freq", None, R, "not used"),
    _i("--cluster", "-M", R, "mnp has one cluster per head node"),
    _i("--clusters", None, R, "mnp has one cluster per head node"),
    _i("--uid", None, R, "jobs run as the node agent's user"),
    _i("--gid", None, R, "jobs run as the node agent's user"),
    _i("--requeue-exit", None, R, "not supported"),
    _i("--mincpus", None, R, "nodes are as the compute environment defines them"),
    _i("--extra-node-info", "-B", R, _PLACEMENT),
    _i("--core-spec", "-S", R, _PLACEMENT),
    _i("--thread-spec", None, R, _PLACEMENT),
    _i("--spread-job", None, F, _PLACEMENT),
    _i("--use-min-nodes", None, F, _PLACEMENT),
    _i("--gres-flags", None, R, _PLACEMENT),
    _i("--cpu-freq", None, R, "not used"),
    _i("--network", None, R, "not used"),
    _i("--power", None, R, "not used"),
    _i("--mcs-label", None, R, "not used"),
    _i("--deadline", None, R, "mnp starts jobs as soon as they can run"),
    _i("--delay-boot", None, R, "nodes are not rebooted"),
    _i("--reboot", None, F, "nodes are not rebooted"),
    _i("--bb", None, R, "mnp has no burst buffers"),
    _i("--bbf", None, R, "mnp has no burst buffers"),
    _i("--ignore-pbs", None, F, "mnp reads no #PBS lines"),
    _i("--export-file", None, R, "use --export"),
    _i("--container", None, R, "not supported"),
    _i("--batch", None, R, _PLACEMENT),
    _i("--gpus-per-task", None, R, "use --gpus-per-node or -G"),
    _i("--gpus-per-socket", None, R, "use --gpus-per-node or -G"),
    _i("--cpus-per-gpu", None, R, "use --cpus-per-task"),
    _i("--mem-per-gpu", None, R, "use --mem"),
    _i("--ntasks-per-gpu", None, R, _PLACEMENT),
    _i("--gpu-bind", None, R, _PLACEMENT),
    _i("--gpu-freq", None, R, "not used"),
    _i("--tres-per-task", None, R, "use -c and --gpus-per-node"),
    _i("--input", "-i", R, "jobs read no standard input"),
)
"""Every option here is accepted with a warning on stderr (``… ignored (why)``), never exit 2:
Slurm sites' scripts carry them (``--signal``, ``--exclusive``, ``--constraint``, ``--qos``,
``--account``, ``--mail-type`` …) and must run unchanged."""


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    value: str
    spelling: str
    """The option as written (``-J``, ``--job-name``), for messages."""
    origin: str
    """``line N`` of the script, or ``command line``."""

    @property
    def where(self) -> str:
        return f"{self.spelling} ({self.origin})"


@dataclass(slots=True)
class Parsed:
    """Settings read from one source, in order; later ones override earlier ones."""

    settings: list[Setting] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    """Known options used wrongly: ``--time (needs a value)``, ``--requeue (takes no value)``."""
    positional: list[str] = field(default_factory=list)


Table = dict[str, Option | Ignored]


def _tables(options: Sequence[Option]) -> tuple[Table, Table]:
    longs: Table = {}
    shorts: Table = {}
    every: list[Option | Ignored] = [*options, *IGNORED]
    for o in every:
        longs.setdefault(o.long, o)
        if o.short:
            shorts.setdefault(o.short, o)
    return longs, shorts


def _prefixed(name: str, longs: Table) -> tuple[Option | Ignored | None, list[str]]:
    """getopt_long's abbreviation rule: ``name`` itself, else the one option whose long name
    starts with it; ``(None, [candidates])`` when it names several (synonyms setting the same
    thing count once), ``(None, [])`` when none."""
    spec = longs.get(name)
    if spec is not None or len(name) < 3:
        return spec, []
    found: dict[object, tuple[Option | Ignored, str]] = {}
    for long, o in longs.items():
        if long.startswith(name):
            same = (o.key, o.const) if isinstance(o, Option) else o.long
            found.setdefault(same, (o, long))
    if len(found) == 1:
        return next(iter(found.values()))[0], []
    return None, sorted(long for _, long in found.values())


def parse_tokens(
    tokens: Sequence[str], options: Sequence[Option], origin: str, *, stop_at_positional: bool
) -> tuple[Parsed, int]:
    """Read options from ``tokens`` into ``out``; returns it and the index of the first token
    not consumed (the first positional when ``stop_at_positional``, after ``--``).

    Unknown options go to ``unknown`` (their arity is guessed: ``--opt value`` takes the value
    when it does not start with ``-``); ignored ones add a warning naming them and why; a
    known option missing its value, or a flag given one, goes to ``malformed``.
    """
    longs, shorts = _tables(options)
    out = Parsed()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "--":
            return out, i
        if not tok.startswith("-") or tok == "-":
            if stop_at_positional:
                return out, i - 1
            out.positional.append(tok)
            continue
        if tok.startswith("--"):
            name, eq, inline = tok.partition("=")
            spec, ambiguous = _prefixed(name, longs)
            if ambiguous:
                choices = " ".join(f"'{c}'" for c in ambiguous)
                out.malformed.append(f"option '{name}' is ambiguous; possibilities: {choices}")
                if not eq and i < len(tokens) and not tokens[i].startswith("-"):
                    i += 1  # its value, most likely
                continue
            if spec is not None:
                name = spec.long
            arg = spec.arg if spec is not None else (Arg.OPTIONAL if eq else Arg.REQUIRED)
            value: str | None = inline if eq else None
            if value is None and arg is Arg.REQUIRED:
                if i < len(tokens) and (spec is not None or not tokens[i].startswith("-")):
                    value, i = tokens[i], i + 1
                elif spec is not None:
                    out.malformed.append(f"{name} (needs a value)")
                    continue
            if spec is not None and arg is Arg.NONE and eq:
                out.malformed.append(f"{name} (takes no value)")
                continue
            _record(out, spec, name, value, origin)
            continue
        j = 1  # a cluster of short options: -Qv, -Jname, -J name
        while j < len(tok):
            name = "-" + tok[j]
            spec = shorts.get(name)
            rest = tok[j + 1 :]
            if spec is None:
                out.unknown.append(name)
                break
            if spec.arg is Arg.NONE:
                _record(out, spec, name, None, origin)
                j += 1
                continue
            value = rest or None
            if value is None and spec.arg is Arg.REQUIRED:
                if i >= len(tokens):
                    out.malformed.append(f"{name} (needs a value)")
                    break
                value, i = tokens[i], i + 1
            _record(out, spec, name, value, origin)
            break
    return out, i


def _record(out: Parsed, spec: Option | Ignored | None, name: str, value: str | None,
            origin: str) -> None:  # fmt: skip
    if spec is None:
        out.unknown.append(name)
    elif isinstance(spec, Ignored):
        out.warnings.append(f"{origin}: {name} ignored ({spec.why})")
    else:
        out.settings.append(Setting(spec.key, spec.const if value is None else value, name, origin))


INPUT_ENVIRONMENT: Mapping[str, str] = {
    "SBATCH_JOB_NAME": "--job-name", "SBATCH_PARTITION": "--partition",
    "SBATCH_TIMELIMIT": "--time", "SBATCH_ARRAY_INX": "--array", "SBATCH_EXPORT": "--export",
    "SBATCH_GPUS": "--gpus", "SBATCH_GPUS_PER_NODE": "--gpus-per-node",
    "SBATCH_MEM_PER_CPU": "--mem-per-cpu", "SBATCH_MEM_PER_NODE": "--mem",
    "SBATCH_REQUEUE": "--requeue", "SBATCH_NO_REQUEUE": "--no-requeue", "SBATCH_WAIT": "--wait",
    "SBATCH_ACCOUNT": "--account", "SBATCH_QOS": "--qos", "SBATCH_RESERVATION": "--reservation",
    "SBATCH_EXCLUSIVE": "--exclusive", "SLURM_EXPORT_ENV": "--export",
}  # fmt: skip
"""sbatch's input environment variables: each stands for an option, which the script's
directives yield to and the command line overrides (Slurm's order)."""


def environment_settings(environ: Mapping[str, str], options: Sequence[Option]) -> Parsed:
    """Settings from :data:`INPUT_ENVIRONMENT` variables present in ``environ``."""
    longs, _ = _tables(options)
    out = Parsed()
    for var, long in INPUT_ENVIRONMENT.items():
        if var not in environ:
            continue
        spec = longs[long]
        tokens = [long] if spec.arg is Arg.NONE else [f"{long}={environ[var]}"]
        parsed, _ = parse_tokens(tokens, options, f"environment {var}", stop_at_positional=False)
        out.settings += parsed.settings
        out.warnings += parsed.warnings
    return out


def help_text() -> str:
    """The option table as ``mnp sbatch --help`` shows it."""
    lines = []
    for title, table in (("sbatch options", SBATCH_OPTIONS), ("#MNP options", MNP_OPTIONS)):
        lines.append(f"{title}:\n")
        for o in table:
            names = ", ".join(n for n in (o.short, o.long) if n)
            metavar = "" if o.arg is Arg.NONE else " VALUE"
            lines.append(f"  {names}{metavar}\n      {o.help}\n")
        lines.append("\n")
    ignored = " ".join(o.long for o in IGNORED)
    lines.append("Ignored with a warning:\n")
    lines += [f"  {line}\n" for line in textwrap.wrap(ignored, 88)]
    lines.append("\nInput environment variables (between the script and the command line):\n")
    lines += [f"  {line}\n" for line in textwrap.wrap(" ".join(INPUT_ENVIRONMENT), 88)]
    return "".join(lines)
