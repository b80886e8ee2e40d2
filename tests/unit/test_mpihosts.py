"""``mnp mpirun -H`` / ``--hostfile`` (``mnp.cli.mpihosts``): parsing, the shape, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mnp.cli.main import cli
from mnp.cli.mpihosts import (
    HostsError,
    Shape,
    host_shape,
    mpirun_shape,
    parse_host_args,
    parse_hostfile,
    read_hosts,
)


@pytest.mark.parametrize(
    ("values", "hosts"),
    [
        (["n1:4,n2:4"], [("n1", 4), ("n2", 4)]),
        (["n1", "n2"], [("n1", 1), ("n2", 1)]),
        (["n1,n1,n2"], [("n1", 2), ("n2", 1)]),
        (["n1:2", "n1:2,n2:4"], [("n1", 4), ("n2", 4)]),
        ([" n1:3 , n2:3 "], [("n1", 3), ("n2", 3)]),
        (["10.0.0.1:2,node-1:2"], [("10.0.0.1", 2), ("node-1", 2)]),
    ],
)
def test_parse_host_args(values: list[str], hosts: list[tuple[str, int]]) -> None:
    assert parse_host_args(values) == hosts


@pytest.mark.parametrize(
    ("values", "message"),
    [([""], "no host"), (["n1:x"], "must be a number"), (["n1:0"], "at least 1 slot"),
     (["a b:2"], "not a host name"), (["$(id):2"], "not a host name"),
     (["n[1-2]:2"], "not a host name")],
)  # fmt: skip
def test_parse_host_args_refuses(values: list[str], message: str) -> None:
    with pytest.raises(HostsError, match=message.replace("(", r"\(")):
        parse_host_args(values)


def test_parse_hostfile_reads_open_mpi_mpich_and_plain_lines() -> None:
    text = "# cluster\nn1 slots=4 max_slots=8\n\nn2:4   # mpich\nn3\nn3\nn4 slots=1\n"
    assert parse_hostfile(text) == [("n1", 4), ("n2", 4), ("n3", 2), ("n4", 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "no host"), ("# only\n", "no host"), ("n1 slot=4\n", "hf:1: unknown 'slot=4'"),
     ("n1\nn2 slots=0\n", "hf:2: n2 needs at least 1 slot")],
)  # fmt: skip
def test_parse_hostfile_refuses(text: str, message: str) -> None:
    with pytest.raises(HostsError, match=message):
        parse_hostfile(text, "hf")


@pytest.mark.parametrize(
    ("hosts", "np", "shape"),
    [
        ([("a", 4), ("b", 4)], None, (2, 4, 8)),
        ([("a", 4), ("b", 4)], 8, (2, 4, 8)),
        ([("a", 4), ("b", 4)], 6, (2, 3, 6)),
        ([("a", 4), ("b", 4)], 4, (1, 4, 4)),
        ([("a", 4), ("b", 4)], 1, (1, 1, 1)),
        ([("a", 1), ("b", 1), ("c", 1)], None, (3, 1, 3)),
        ([("a", 4), ("b", 2)], None, (2, 3, 6)),
    ],
)
def test_host_shape(hosts: list[tuple[str, int]], np: int | None, shape: tuple[int, ...]) -> None:
    got = host_shape(hosts, np)
    assert (got.nodes, got.tasks_per_node, got.np) == shape
    assert "mnp chooses the nodes itself" in got.notes[-1]


def test_host_shape_says_when_slots_differ_and_refuses_too_many_ranks() -> None:
    notes = host_shape([("a", 4), ("b", 2)], None).notes
    assert len(notes) == 2 and "unequal slots (a:4, b:2)" in notes[0]
    with pytest.raises(HostsError, match="-np 9 is more than the 8 slots"):
        host_shape([("a", 4), ("b", 4)], 9)


def test_read_hosts(tmp_path: Path) -> None:
    assert read_hosts((), None) is None
    f = tmp_path / "hosts"
    f.write_text("x slots=2\ny slots=2\n")
    assert read_hosts((), f) == [("x", 2), ("y", 2)]
    with pytest.raises(HostsError, match="not both"):
        read_hosts(("a",), f)
    with pytest.raises(HostsError, match="cannot read the hostfile"):
        read_hosts((), tmp_path / "missing")


# -- the CLI ---------------------------------------------------------------------------------


def mpirun(*argv: str) -> tuple[int, Any, str]:
    result = CliRunner().invoke(cli, ["--url", "http://127.0.0.1:9", "mpirun", "--dry-run", *argv])
    doc = json.loads(result.stdout) if result.exit_code == 0 else {}
    return result.exit_code, doc, result.stderr


def shape_of(doc: Any) -> tuple[int, int]:
    props = doc["registerJobDefinition"]["nodeProperties"]
    return props["numNodes"], props["mnp"]["tasksPerNode"]


def test_mpirun_host_flags_give_nodes_and_slots_and_say_placement_is_mnps(tmp_path: Path) -> None:
    code, doc, err = mpirun("-H", "n1:4,n2:4", "--", "prog")
    assert code == 0 and shape_of(doc) == (2, 4)
    assert "mnp: note: 2 nodes × 4 tasks from the hosts (n1, n2); mnp chooses the nodes" in err
    code, doc, _ = mpirun("-np", "6", "--host", "n1:4,n2:4", "--", "prog")
    assert code == 0 and shape_of(doc) == (2, 3)
    hostfile = tmp_path / "hf"
    hostfile.write_text("a slots=2\nb slots=2\nc slots=2\n")
    for flag in ("--hostfile", "-hostfile", "--machinefile", "-f"):
        code, doc, _ = mpirun(flag, str(hostfile), "--", "prog")
        assert code == 0 and shape_of(doc) == (3, 2), flag
    code, doc, _ = mpirun("-hosts", "a,b", "--", "prog")
    assert code == 0 and doc["registerJobDefinition"]["nodeProperties"]["numNodes"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--", "prog"], "-np is required"),
        (["-H", "a:2", "-N", "2", "--", "prog"], "no -N/--npernode"),
        (["-np", "5", "-H", "a:2,b:2", "--", "prog"], "more than the 4 slots"),
        (["-H", "a:x", "--", "prog"], "must be a number"),
        (["-H", "a", "--hostfile", "/nonexistent", "--", "prog"], "not both"),
    ],
)
def test_mpirun_host_flag_errors(argv: list[str], message: str) -> None:
    code, _, err = mpirun(*argv)
    assert code == 2 and message in err


def test_mpirun_shape_from_counts_or_hosts() -> None:
    assert mpirun_shape(8, None, None, (), None) == Shape(4, 2, 8, ())
    assert mpirun_shape(6, 3, None, (), None) == Shape(2, 3, 6, ())
    shape = mpirun_shape(None, None, None, ("a:2,b:2",), None)
    assert (shape.nodes, shape.tasks_per_node, shape.np) == (2, 2, 4)
    with pytest.raises(HostsError, match="-np is required"):
        mpirun_shape(None, None, None, (), None)
    with pytest.raises(HostsError, match="no -N/--npernode"):
        mpirun_shape(None, 2, None, ("a:2",), None)
