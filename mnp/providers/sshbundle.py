"""The node agent as a file set for a host reached over SSH: the agent's import closure.

What ``python -m launcher.agent`` needs on a host, taken from this head's own installation
(so a host always runs the head's version): the ``launcher`` package, the plain-data parts of
``mnp`` it may import (:data:`MNP_MODULES`, the arrows of ``launcher`` in
``tests/unit/import_contract.py``; a unit test keeps the two equal) and the third-party
distributions it imports (:data:`THIRD_PARTY`, with everything they require, as installed
here). Compiled parts of those (cryptography's abi3 module, cffi's backend) are copied as
they are: a host whose Python cannot load them fails the import check at start-up, which
names the error (``NoUsablePython: …``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import io
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import mnp

MNP_MODULES = (
    "mnp.errors", "mnp.spec", "mnp.build", "mnp.slurm.hostlist", "mnp.slurm.taskids",
    "mnp.ec2.imds",
)  # fmt: skip
"""The ``mnp`` units ``launcher`` may import (the import contract's arrows)."""
THIRD_PARTY = ("asyncssh",)
"""The distributions the agent imports at start (docker is imported only when used)."""

_SKIP = re.compile(r"(^|/)__pycache__/|\.pyc$|\.dist-info/|^\.\./")


@dataclass(frozen=True, slots=True)
class Bundle:
    version: str
    digest: str
    """SHA-256 over every file's path and bytes: what a host's installed copy must match."""
    tar: bytes


def _package_files(module: str) -> list[tuple[str, Path]]:
    """(path in the bundle, file) for a module or package of this installation."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    top = origin.parents[len(module.split(".")) - (0 if origin.name == "__init__.py" else 1)]
    if origin.name != "__init__.py":
        return [(str(origin.relative_to(top)), origin)]
    return [(str(f.relative_to(top)), f) for f in origin.parent.rglob("*.py") if f.is_file()]


def _distribution_files(name: str, seen: set[str]) -> list[tuple[str, Path]]:
    """The files of distribution ``name`` and of everything it requires (unconditionally)."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return []
    seen.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return []
    out = [
        (str(f), Path(str(dist.locate_file(f))))
        for f in dist.files or []
        if not _SKIP.search(str(f))
    ]
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        dep = re.match(r"[A-Za-z0-9_.-]+", req)
        if dep:
            out += _distribution_files(dep.group(0), seen)
    return out


def collect() -> list[tuple[str, Path]]:
    """Every file of the bundle, sorted by its path in the bundle."""
    files: dict[str, Path] = {}
    for module in ("mnp", "launcher", *MNP_MODULES):
        if module == "mnp":
            init = Path(mnp.__file__)
            files["mnp/__init__.py"] = init
            continue
        files.update(_package_files(module))
    seen: set[str] = set()
    for name in THIRD_PARTY:
        files.update(_distribution_files(name, seen))
    for pkg in ("mnp/spec", "mnp/build", "mnp/slurm", "mnp/ec2"):  # packages of the modules above
        init = Path(mnp.__file__).parent.parent / pkg / "__init__.py"
        if init.is_file():
            files[f"{pkg}/__init__.py"] = init
    return sorted((k, v) for k, v in files.items() if v.is_file())


def build() -> Bundle:
    """The bundle of this installation (an uncompressed tar: hosts are near, CPU is scarce)."""
    digest = hashlib.sha256()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in collect():
            data = path.read_bytes()
            digest.update(name.encode() + b"\0" + data + b"\0")
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return Bundle(mnp.__version__, digest.hexdigest(), buf.getvalue())


_lock = threading.Lock()
_cached: Bundle | None = None


def current() -> Bundle:
    """:func:`build`, once per head process (thread-safe: bring-ups run in threads)."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = build()
        return _cached
