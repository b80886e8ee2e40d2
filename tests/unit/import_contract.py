"""The package picture of mnp, written once as data, and the walk that checks it.

Every module of ``mnp`` and ``launcher`` is read with :mod:`ast` (nothing is imported), each
``import``/``from … import`` found anywhere in it — at the top, inside functions, under
``TYPE_CHECKING`` — is an arrow, and three rules are checked:

1. An arrow between two of mnp's own units goes only where :data:`ALLOWED` says.
2. A unit imports no third-party package beyond :data:`THIRD_PARTY` allows (an empty set:
   the standard library only).
3. No import cycle among modules (a cycle through a function-level import is still one).

A *unit* is the longest key of :data:`ALLOWED` that is a prefix of a module's dotted name, so
``launcher.wire`` can be held to a stricter rule than the rest of ``launcher``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOTS = ("mnp", "launcher")

_SPEC = {"mnp.errors", "mnp.spec"}
_BUILD = {*_SPEC, "mnp.build", "mnp.slurm.hostlist", "mnp.slurm.taskids"}
_HEAD_CORE = {*_BUILD, "mnp.config", "mnp.store", "mnp.providers", "mnp.ec2"}

ALLOWED: dict[str, set[str]] = {
    # plain data and pure code: what the node side may use
    "mnp.errors": set(),
    "mnp.spec": {"mnp.errors"},
    "mnp.slurm": {*_SPEC, "mnp.slurm"},
    "mnp.build": _BUILD,
    # the head's insides, lowest first
    "mnp.config": {"mnp.errors"},
    "mnp.store": {*_SPEC},
    "mnp.providers": {*_SPEC, "mnp.config", "mnp.build", "mnp.ec2"},
    "mnp.ec2": {*_SPEC, "mnp.ec2"},  # EC2's rules, pure (a boto3 client comes as an argument)
    "mnp.scheduler": {*_HEAD_CORE, "mnp.scheduler"},
    "mnp.nodes": {*_HEAD_CORE, "mnp.scheduler", "mnp.nodes"},
    "mnp.service": {*_HEAD_CORE, "mnp.scheduler", "mnp.nodes", "mnp.service"},
    # the HTTP edge reaches the head through the service and the node sessions only
    "mnp.api": {*_SPEC, "mnp.config", "mnp.service", "mnp.nodes", "mnp.api"},
    # the head-node process: the one place that assembles all of the above
    # the simulated cluster: assembles a head in-process, as mnp.head does
    "mnp.sim": {*_HEAD_CORE, "mnp.scheduler", "mnp.nodes", "mnp.service", "mnp.sim"},
    "mnp.head": {*_HEAD_CORE, "mnp.scheduler", "mnp.nodes", "mnp.service", "mnp.api"},
    # the client side
    "mnp.client": {*_SPEC, "mnp.config", "mnp.client"},
    "mnp.cli": {
        *_BUILD, "mnp", "mnp.config", "mnp.client", "mnp.slurm", "mnp.cli",
        "mnp.head",  # `mnp up` in the foreground runs the head in this process
        "mnp.api.aws.credentials",  # `mnp env` reads the head's key file
    },
    "mnp": {"mnp.client"},  # the package itself: lazy re-exports of the Python API
    "mnp.__main__": {"mnp.cli"},
    # the node side
    "launcher": {*_BUILD, "launcher", "mnp.ec2.imds"},  # a Spot notice, on EC2
    "launcher.wire": {*_BUILD},  # runs inside jobs
    # runs inside jobs, from any interpreter (mnp's packages on its PYTHONPATH): the step's
    # MPI launch is launcher.wire's
    "launcher.srun": {*_BUILD, "launcher.srun", "launcher.srun_task", "launcher.wire"},
    "launcher.srun_task": set(),  # run as a file by ranks on every node: stdlib only
}

_HTTP_EDGE = {"starlette", "uvicorn", "httptools", "pydantic"}

THIRD_PARTY: dict[str, set[str]] = {
    "mnp.errors": set(),
    "mnp.spec": {"orjson"},  # jsontext: faster JSON when installed (the standard library's else)
    "mnp.slurm": set(),
    "mnp.build": set(),
    "mnp.config": set(),
    "mnp.store": set(),
    # the local provider removes a killed agent's containers; the ec2 one launches instances
    "mnp.providers": {"docker", "boto3", "botocore"},
    "mnp.ec2": set(),
    "mnp.scheduler": {"asyncssh"},  # one SSH key pair per multi-node attempt
    "mnp.nodes": set(),
    "mnp.service": {"pydantic"},  # typed requests, validated at the service's door
    "mnp.api": _HTTP_EDGE | {"prometheus_client"},
    "mnp.head": _HTTP_EDGE | {"uvloop"},
    "mnp.sim": set(),
    "mnp.client": {"httpx"},
    "mnp.cli": {"click", "rich", "httpx"},
    "mnp": set(),
    "mnp.__main__": set(),
    "launcher": {"asyncssh", "docker", "uvloop"},  # uvloop if installed (SSH bundles: none)
    "launcher.wire": set(),
    "launcher.srun": set(),
    "launcher.srun_task": set(),
}


@dataclass(frozen=True)
class Arrow:
    source: str  # module doing the import
    target: str  # module (or package) imported
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def arrows_of(name: str, source: str, is_package: bool) -> list[Arrow]:
    found: list[Arrow] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Arrow(name, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            found.append(Arrow(name, base, node.lineno))
            # ``from mnp.build import mpi`` imports the module mnp.build.mpi, not just the package
            found += [Arrow(name, f"{base}.{a.name}", node.lineno) for a in node.names]
    return found


def walk(root: Path) -> dict[str, list[Arrow]]:
    """Every module under ``root``'s :data:`ROOTS` → the arrows it draws."""
    graph: dict[str, list[Arrow]] = {}
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            name = module_name(root, path)
            graph[name] = arrows_of(name, path.read_text(), path.name == "__init__.py")
    return graph


def unit_of(module: str, units: Iterable[str] = ALLOWED) -> str | None:
    best = None
    for unit in units:
        if (module == unit or module.startswith(unit + ".")) and (
            best is None or len(unit) > len(best)
        ):
            best = unit
    return best


def _covered(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def violations(graph: Mapping[str, list[Arrow]]) -> list[str]:
    """Every broken rule, one line each (empty: the picture holds)."""
    problems: list[str] = []
    modules = set(graph)
    for name, arrows in sorted(graph.items()):
        unit = unit_of(name)
        if unit is None:
            problems.append(f"{name}: in no unit of the contract (add it to ALLOWED)")
            continue
        for a in arrows:
            top = a.target.split(".")[0]
            if top in ROOTS:
                if name.startswith(a.target + "."):
                    continue  # a module's own packages are imported before it anyway
                # `from mnp import Client` names the package, `from mnp.x import y` a module;
                # only arrows to real modules or packages count
                if a.target not in modules:
                    continue
                if unit_of(a.target) == unit and unit != "mnp":
                    continue
                if not _covered(a.target, ALLOWED[unit]) and a.target != name:
                    problems.append(f"{name}:{a.line}: {unit} may not import {a.target}")
            elif top not in (*sys.stdlib_module_names, "__future__", *THIRD_PARTY[unit]):
                problems.append(f"{name}:{a.line}: {unit} may not import {top} (third party)")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: Mapping[str, list[Arrow]]) -> list[list[str]]:
    """Each import cycle among mnp's modules once (Tarjan's strongly connected components)."""
    edges = {
        name: sorted({a.target for a in arrows if a.target in graph and a.target != name
                      and not name.startswith(a.target + ".")})  # a package's own children
        for name, arrows in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found
