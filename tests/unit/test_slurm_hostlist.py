"""Slurm hostlist compress/expand (``mnp.slurm.hostlist``): tables and round trips."""

from __future__ import annotations

import random

import pytest

from mnp.slurm.hostlist import compress, expand


@pytest.mark.parametrize(
    ("names", "text"),
    [
        ([], ""),
        (["local-1"], "local-1"),
        (["local-1", "local-2", "local-3"], "local-[1-3]"),
        (["local-3", "local-1", "local-2"], "local-[1-3]"),
        (["local-1", "local-2", "local-4"], "local-[1-2,4]"),
        (["local-1", "local-1", "local-2"], "local-[1-2]"),
        (["node9", "node10", "node11"], "node[9-11]"),
        (["node09", "node10"], "node[09-10]"),
        (["node001", "node002", "node010"], "node[001-002,010]"),
        (["node1", "node02"], "node[1,02]"),
        (["a1", "b1", "a2", "b2"], "a[1-2],b[1-2]"),
        (["local-2", "gpu-1", "local-1"], "local-[1-2],gpu-1"),
        (["login", "local-1", "local-2"], "login,local-[1-2]"),
        (["rack1-node1-ib", "rack1-node2-ib"], "rack1-node[1-2]-ib"),
        (["n1-ib", "n1-eth"], "n1-ib,n1-eth"),
        (["10.0.0.1", "10.0.0.2"], "10.0.0.[1-2]"),
    ],
)
def test_compress(names: list[str], text: str) -> None:
    assert compress(names) == text


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", []),
        ("  ", []),
        ("local-1", ["local-1"]),
        ("local-[1-3]", ["local-1", "local-2", "local-3"]),
        ("node[09-11]", ["node09", "node10", "node11"]),
        ("node[1,3-4],login", ["node1", "node3", "node4", "login"]),
        ("a[1-2],b[1-2]", ["a1", "a2", "b1", "b2"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
        ("n1, n2", ["n1", "n2"]),
        ("n1,n1", ["n1", "n1"]),
    ],
)
def test_expand(text: str, names: list[str]) -> None:
    assert expand(text) == names


@pytest.mark.parametrize(
    "bad", ["n[1-2", "n1-2]", "n[[1]]", "n[2-1]", "n[a]", "n[1-]", "n[]", "n1,,n2", "n[1-9999999]"]
)
def test_expand_refuses_malformed_lists(bad: str) -> None:
    with pytest.raises(ValueError, match="hostlist"):
        expand(bad)


@pytest.mark.parametrize("bad", ["", "a,b", "n[1]", "x]"])
def test_compress_refuses_names_it_cannot_write(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        compress([bad])


def test_round_trips_keep_every_name_once() -> None:
    rng = random.Random(5)
    prefixes = ["local-", "gpu", "node0", "r1-n", "login"]
    for _ in range(300):
        names = [
            f"{rng.choice(prefixes)}{rng.choice(['', '0', '00'])}{rng.randint(0, 30)}"
            for _ in range(rng.randint(1, 25))
        ]
        text = compress(names)
        back = expand(text)
        assert sorted(back) == sorted(set(names)), text
        assert compress(back) == text


def test_expand_then_compress_is_the_canonical_form() -> None:
    assert compress(expand("local-[3,1-2],local-4")) == "local-[1-4]"
