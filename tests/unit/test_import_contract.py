"""The package picture holds: every arrow between mnp's units is one the contract allows, no
unit imports a third-party package it should not, and no import cycle exists.

The contract itself is data in :mod:`tests.unit.import_contract`; these tests walk the real
tree, and show on a copy of it that a forbidden import is caught.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.import_contract import ALLOWED, ROOTS, THIRD_PARTY, cycles, violations, walk

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree() -> Path:
    return REPO


def test_the_tree_keeps_the_contract(tree: Path) -> None:
    problems = violations(walk(tree))
    assert not problems, "\n".join(problems)


def test_every_unit_has_a_third_party_rule() -> None:
    assert set(ALLOWED) == set(THIRD_PARTY)


def test_the_units_form_no_cycle() -> None:
    # the contract itself: the arrows between units, read as a graph, must be acyclic, or
    # "dependencies point one way" would not hold even with every module obeying it
    seen: dict[str, int] = {}

    def visit(unit: str, path: tuple[str, ...]) -> None:
        if seen.get(unit) == 2:
            return
        assert seen.get(unit) != 1, f"the contract has a cycle: {' -> '.join((*path, unit))}"
        seen[unit] = 1
        for other in ALLOWED[unit]:
            if other in ALLOWED and other != unit and not other.startswith(unit + "."):
                visit(other, (*path, unit))
        seen[unit] = 2

    for unit in ALLOWED:
        visit(unit, ())


def _copy(tmp_path: Path) -> Path:
    for top in ROOTS:
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + "\n" + line + "\n")


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        # the pure scheduler must not know the HTTP edge
        ("mnp/scheduler/reconcile.py", "from mnp.api import app", "mnp.scheduler may not import"),
        # the node side may use plain data and builders only
        ("launcher/agent.py", "import mnp.service.core", "launcher may not import"),
        # plain data imports no third-party package
        ("mnp/spec/states.py", "import pydantic", "may not import pydantic (third party)"),
        # a function-level import counts as much as one at the top
        ("mnp/build/mpi.py", "def f() -> None:\n    import click", "may not import click"),
        # the API reaches the store only through the service
        ("mnp/api/aws/logs.py", "from mnp.store import sqlite", "mnp.api may not import"),
    ],
)
def test_a_forbidden_import_is_caught(
    tmp_path: Path, module: str, line: str, expected: str
) -> None:
    copy = _copy(tmp_path)
    before = violations(walk(copy))
    _append(copy / module, line)
    after = violations(walk(copy))
    new = [p for p in after if p not in before]
    assert any(expected in p for p in new), new


def test_a_new_cycle_is_caught(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    # states is imported by spec.jobs; making states import jobs closes a loop
    _append(copy / "mnp/spec/states.py", "from mnp.spec import jobs")
    found = cycles(walk(copy))
    assert any({"mnp.spec.states", "mnp.spec.jobs"} <= set(c) for c in found), found
