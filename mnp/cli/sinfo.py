"""``mnp sinfo``: job queues as Slurm partitions, with their nodes (:mod:`mnp.slurm.sinfo`).

The command line is read as Slurm's getopt reads it (``-oFMT``, ``-o FMT``, ``--format=FMT``,
flags together as ``-hN``); options and format fields mnp has no equivalent for are
accepted with a warning (a field prints ``N/A``), never refused, so tools that ask for more
than mnp knows still get their columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import click

from mnp.cli.state import State
from mnp.slurm.scontrol import SHORT_NODE_STATES
from mnp.slurm.sinfo import (
    SINFO_DEFAULT,
    SINFO_NODE_DEFAULT,
    parse_sinfo_format,
    render_sinfo,
    sinfo_rows,
)
from mnp.spec import DEFAULT_QUEUE

TAKES_VALUE = {
    "-o": "format", "--format": "format", "-p": "partition", "--partition": "partition",
    "-t": "states", "--states": "states", "-n": "nodes", "--nodes": "nodes",
    "-O": "ignored", "--Format": "ignored", "-M": "ignored", "--clusters": "ignored",
    "-S": "ignored", "--sort": "ignored", "-i": "ignored", "--iterate": "ignored",
    "-R": "ignored", "-T": "ignored",
}  # fmt: skip
FLAGS = {
    "-h": "noheader", "--noheader": "noheader", "-N": "per_node", "--Node": "per_node",
    "-a": "ignored", "--all": "ignored", "-l": "ignored", "--long": "ignored",
    "-s": "ignored", "--summarize": "ignored", "-r": "ignored", "--responding": "ignored",
    "-d": "ignored", "--dead": "ignored", "-e": "ignored", "--exact": "ignored",
    "-v": "ignored", "--verbose": "ignored", "--local": "ignored", "--federation": "ignored",
}  # fmt: skip


@dataclass
class SinfoArgs:
    fmt: str | None = None
    noheader: bool = False
    per_node: bool = False
    partitions: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def _set(out: SinfoArgs, name: str, option: str, value: str) -> None:
    if name == "format":
        out.fmt = value
    elif name == "partition":
        out.partitions |= {p for p in value.split(",") if p}
    elif name == "states":
        out.states |= {s.strip().upper() for s in value.split(",") if s.strip()}
    elif name == "nodes":
        from mnp.slurm.hostlist import expand

        out.nodes |= set(expand(value))
    else:
        out.warnings.append(f"ignoring {option} {value} (no effect on mnp)")


def parse_sinfo_args(argv: Sequence[str]) -> SinfoArgs:
    """The options of an sinfo command line; raises click.UsageError for an option that
    needs a value and has none."""
    out = SinfoArgs()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            matches = [o for o in (*TAKES_VALUE, *FLAGS) if o.startswith(name) and o[:2] == "--"]
            option = name if name in TAKES_VALUE or name in FLAGS else (
                matches[0] if len(matches) == 1 else name)  # fmt: skip
            if option in TAKES_VALUE:
                if not eq:
                    if not args:
                        raise click.UsageError(f"option {option} needs a value")
                    value = args.pop(0)
                _set(out, TAKES_VALUE[option], option, value)
            elif option in FLAGS:
                setattr(out, FLAGS[option], True) if FLAGS[option] != "ignored" else (
                    out.warnings.append(f"ignoring {option} (no effect on mnp)"))  # fmt: skip
            else:
                out.warnings.append(f"ignoring unknown option {arg}")
        elif arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            while letters:
                option, letters = f"-{letters[0]}", letters[1:]
                if option in TAKES_VALUE:
                    value = letters
                    if not value:
                        if not args:
                            raise click.UsageError(f"option {option} needs a value")
                        value = args.pop(0)
                    _set(out, TAKES_VALUE[option], option, value)
                    break
                if option in FLAGS and FLAGS[option] != "ignored":
                    setattr(out, FLAGS[option], True)
                elif option in FLAGS:
                    out.warnings.append(f"ignoring {option} (no effect on mnp)")
                else:
                    out.warnings.append(f"ignoring unknown option {option}")
        else:
            out.warnings.append(f"ignoring argument {arg!r}")
    return out


@click.command(
    "sinfo",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["--help"],
    },
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="[OPTIONS]")
@click.pass_obj
def sinfo_command(state: State, argv: tuple[str, ...]) -> None:
    """Show partitions (job queues) and their nodes, as Slurm's sinfo.

    -h/--noheader, -o/--format FORMAT (%P %R %a %l %L %D %t %T %N %n %c %m %G %F %C, with
    widths as %.10l or %-9P), -N/--Node (a line per node), -p PARTITION, -t STATES
    (idle,mix,alloc,down), -n NODES. Other options and fields: a warning (fields show N/A).
    """
    args = parse_sinfo_args(argv)
    fmt = args.fmt or (SINFO_NODE_DEFAULT if args.per_node else SINFO_DEFAULT)
    _, unknown = parse_sinfo_format(fmt)
    for w in args.warnings + [f"format field {u} not known to mnp: shown as N/A" for u in unknown]:
        click.echo(f"mnp sinfo: warning: {w}", err=True)
    client = state.client()
    queues = client.queues()
    if args.partitions:
        queues = [q for q in queues if q.get("jobQueueName") in args.partitions]
    nodes = client.nodes()
    if args.nodes:
        nodes = [n for n in nodes if n.get("nodeId") in args.nodes]
    rows = sinfo_rows(queues, nodes, DEFAULT_QUEUE, per_node=args.per_node)
    if args.states:
        rows = [r for r in rows if {r.state, SHORT_NODE_STATES.get(r.state, "").upper()}
                & args.states]  # fmt: skip
    click.echo(render_sinfo(rows, fmt, header=not args.noheader), nl=False)
