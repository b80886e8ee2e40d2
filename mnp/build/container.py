"""Container jobs, head side: AWS Batch container fields → what a node's Docker runtime runs.

A job whose container properties name an ``image`` runs in a Docker container on its node;
one without keeps running as a plain process. :func:`container_run` is the one place that
turns the stored fields (``ContainerSpec`` plus the compute environment's shared
filesystem) into the plain :class:`mnp.spec.containers.ContainerRun` a node agent receives. It is
pure: same inputs, same output (golden-tested in ``tests/unit/golden/containers/``).

How AWS applies the resources, and so mnp: MEMORY is a hard limit (the kernel's OOM killer
ends the container past it); VCPU becomes CPU shares, 1024 per vCPU (a relative weight,
not a cap); GPU becomes a device request for that many GPUs.

:func:`field_errors` checks the same fields at registration, so the builder never meets a
malformed document; every problem is reported at once as ``(field path, message)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mnp.build.images import policy_of
from mnp.spec.containers import ContainerRun, Device, Mount, Tmpfs, Ulimit
from mnp.spec.environments import ComputeEnvironment
from mnp.spec.jobs import Job
from mnp.spec.resources import ContainerSpec
from mnp.spec.sharedfs import SharedFilesystem

log = logging.getLogger("mnp.build.container")

CPU_SHARES_PER_VCPU = 1024
MIN_CPU_SHARES = 2
"""Docker's (and the kernel's) floor for a CPU weight."""
ULIMIT_NAMES = frozenset(
    {
        "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
        "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
    }
)  # fmt: skip
DEVICE_PERMISSIONS = {"READ": "r", "WRITE": "w", "MKNOD": "m"}


def cpu_shares(vcpus: float) -> int:
    """CPU shares for ``vcpus`` as AWS sets them: 1024 per vCPU, at least 2."""
    return max(MIN_CPU_SHARES, round(vcpus * CPU_SHARES_PER_VCPU))


def container_run(
    spec: ContainerSpec, shared_filesystem: SharedFilesystem | None = None
) -> ContainerRun | None:
    """What the node runs for ``spec``; None when it names no image (a plain process).

    ``shared_filesystem`` is the compute environment's: mounted read-write at its
    ``mountPath`` in every container, from the node's ``mountPath`` (its ``source`` on this
    machine, where local nodes bind it). Mounts come in this order: the shared filesystem
    (unless a ``mountPoint`` takes its path), then ``mountPoints`` in their order.
    Assumes :func:`field_errors` found nothing (values are converted, not re-checked).
    """
    if not spec.image:
        return None
    x = spec.extra
    linux: Mapping[str, Any] = x.get("linuxParameters") or {}
    max_swap = linux.get("maxSwap")
    swappiness = linux.get("swappiness")
    shm = linux.get("sharedMemorySize")
    r = spec.resources
    return ContainerRun(
        image=str(spec.image),
        user=None if x.get("user") is None else str(x["user"]),
        privileged=bool(x.get("privileged", False)),
        read_only_root=bool(x.get("readonlyRootFilesystem", False)),
        mounts=_mounts(x, shared_filesystem),
        ulimits=tuple(
            Ulimit(str(u["name"]), int(u["softLimit"]), int(u["hardLimit"]))
            for u in x.get("ulimits") or []
        ),
        tmpfs=tuple(
            Tmpfs(
                str(t["containerPath"]),
                None if t.get("size") is None else int(t["size"]),
                tuple(str(o) for o in t.get("mountOptions") or []),
            )
            for t in linux.get("tmpfs") or []
        ),
        shm_size_mib=None if shm is None else int(shm),
        init=bool(linux.get("initProcessEnabled", False)),
        devices=tuple(_device(d) for d in linux.get("devices") or []),
        memory_mib=r.memory_mib or None,
        max_swap_mib=None if max_swap is None else int(max_swap),
        # AWS ignores swappiness unless maxSwap is set
        swappiness=None if max_swap is None or swappiness is None else int(swappiness),
        cpu_shares=cpu_shares(r.vcpus),
        gpus=r.gpus,
    )


def _mounts(x: Mapping[str, Any], shared: SharedFilesystem | None) -> tuple[Mount, ...]:
    """The shared filesystem first, then ``mountPoints`` in their order. A volume whose
    ``host.sourcePath`` lies on the shared filesystem's ``mountPath`` is taken from its
    ``source`` (the Docker engine sees the machine, not a node's mount namespace)."""
    mounts: list[Mount] = []
    volumes = {v.get("name"): v for v in x.get("volumes") or []}
    for mp in x.get("mountPoints") or []:
        volume = volumes.get(mp.get("sourceVolume")) or {}
        source = (volume.get("host") or {}).get("sourcePath")
        if shared is not None and source is not None:
            source = shared.on_machine(str(source))
        mounts.append(Mount(str(mp["containerPath"]), source, bool(mp.get("readOnly", False))))
    taken = {m.target.rstrip("/") for m in mounts}
    if shared is not None and shared.mount_path.rstrip("/") not in taken:
        mounts.insert(0, Mount(shared.mount_path, shared.source, False))
    return tuple(mounts)


def _device(d: Mapping[str, Any]) -> Device:
    permissions = d.get("permissions") or DEVICE_PERMISSIONS
    return Device(
        str(d["hostPath"]),
        str(d.get("containerPath") or d["hostPath"]),
        "".join(DEVICE_PERMISSIONS[p] for p in permissions),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _absolute(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("/")


def field_errors(props: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    """Problems with the container fields mnp applies (``user``, ``privileged``,
    ``readonlyRootFilesystem``, ``ulimits``, ``volumes``, ``mountPoints``,
    ``linuxParameters``) in one ``containerProperties`` document at ``path``; empty when
    all is well. Fields mnp does not apply are not looked at."""
    errors = _container_errors(props)
    linux = props.get("linuxParameters")
    if linux is not None:
        errors += _linux_errors(linux)
    return [(f"{path}.{where}", message) for where, message in errors]


def _container_errors(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """:func:`field_errors` outside ``linuxParameters``, each path relative to ``props``."""
    errors: list[tuple[str, str]] = []

    def bad(where: str, message: str) -> None:
        errors.append((where, message))

    if props.get("user") is not None and not isinstance(props["user"], str):
        bad("user", "must be a string (a name or uid[:gid])")
    for flag in ("privileged", "readonlyRootFilesystem"):
        if props.get(flag) is not None and not isinstance(props[flag], bool):
            bad(flag, "must be true or false")
    for i, u in enumerate(props.get("ulimits") or []):
        if not isinstance(u, Mapping):
            bad(f"ulimits[{i}]", "must be an object")
            continue
        if u.get("name") not in ULIMIT_NAMES:
            bad(f"ulimits[{i}].name", f"must be one of {', '.join(sorted(ULIMIT_NAMES))}")
        soft: Any = u.get("softLimit")
        hard: Any = u.get("hardLimit")
        for key, value in (("softLimit", soft), ("hardLimit", hard)):
            if not _is_int(value):
                bad(f"ulimits[{i}].{key}", "is required and must be an integer")
        if _is_int(soft) and _is_int(hard) and hard != -1 and soft > hard:
            bad(f"ulimits[{i}].softLimit", f"{soft} exceeds hardLimit {hard}")
    for i, v in enumerate(props.get("volumes") or []):
        source = ((v or {}).get("host") or {}).get("sourcePath") if isinstance(v, Mapping) else 1
        if source is not None and not _absolute(source):
            bad(f"volumes[{i}].host.sourcePath", "must be an absolute path")
    for i, mp in enumerate(props.get("mountPoints") or []):
        if not isinstance(mp, Mapping) or not _absolute(mp.get("containerPath")):
            bad(f"mountPoints[{i}].containerPath", "is required and must be an absolute path")
    return errors


def _linux_errors(linux: Any) -> list[tuple[str, str]]:
    """:func:`field_errors` of ``linuxParameters``, each path relative to the container."""
    if not isinstance(linux, Mapping):
        return [("linuxParameters", "must be an object")]
    errors: list[tuple[str, str]] = []

    def bad(where: str, message: str) -> None:
        errors.append((f"linuxParameters.{where}", message))

    limits: tuple[tuple[str, int, int | None], ...] = (
        ("sharedMemorySize", 1, None), ("maxSwap", 0, None), ("swappiness", 0, 100),
    )  # fmt: skip
    for key, low, high in limits:
        value = linux.get(key)
        if value is None:
            continue
        if not _is_int(value) or value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            bad(key, f"must be an integer {span}")
    if linux.get("initProcessEnabled") is not None and not isinstance(
        linux["initProcessEnabled"], bool
    ):
        bad("initProcessEnabled", "must be true or false")
    for i, t in enumerate(linux.get("tmpfs") or []):
        where = f"tmpfs[{i}]"
        if not isinstance(t, Mapping) or not _absolute(t.get("containerPath")):
            bad(f"{where}.containerPath", "is required and must be an absolute path")
            continue
        if not _is_int(t.get("size")) or t["size"] < 1:
            bad(f"{where}.size", "is required and must be a positive integer (MiB)")
        options = t.get("mountOptions") or []
        if not isinstance(options, list) or not all(
            isinstance(o, str) and o and "," not in o for o in options
        ):
            bad(f"{where}.mountOptions", "must be a list of options without commas")
    for i, d in enumerate(linux.get("devices") or []):
        where = f"devices[{i}]"
        if not isinstance(d, Mapping) or not _absolute(d.get("hostPath")):
            bad(f"{where}.hostPath", "is required and must be an absolute path")
            continue
        if d.get("containerPath") is not None and not _absolute(d["containerPath"]):
            bad(f"{where}.containerPath", "must be an absolute path")
        perms = d.get("permissions") or []
        if not isinstance(perms, list) or any(p not in DEVICE_PERMISSIONS for p in perms):
            bad(f"{where}.permissions", "must list READ, WRITE and/or MKNOD")
    return errors


def attempt_container(
    job: Job, ces: Mapping[str, ComputeEnvironment], ce_name: str
) -> ContainerRun | None:
    """:func:`container_run` for one attempt of ``job`` placed in environment ``ce_name``
    (its container: the node range's for an MNP node job), with the environment's image
    policy (:mod:`mnp.build.images`) when that lets the node run it as a plain process.

    The head does not choose between engine and process itself: under ``auto`` only the
    node knows whether its engine answers, and one rule on the node (``launcher.container.
    without_image``) serves ``process`` and ``auto`` alike, for single, array and
    multi-node jobs (whose wiring the node lays out for a process or for a container).
    """
    run = container_run(job.container, attempt_shared_fs(ces, ce_name))
    ce = ces.get(ce_name)
    if run is None or ce is None:
        return run
    tags = ce.doc.get("tags") if isinstance(ce.doc.get("tags"), Mapping) else None
    without = policy_of(tags, ce_name).without_engine(run.image)
    return run if without is None else replace(run, without_engine=without)


def attempt_shared_fs(
    ces: Mapping[str, ComputeEnvironment], ce_name: str
) -> SharedFilesystem | None:
    """The shared filesystem an attempt placed in environment ``ce_name`` sees (None: none),
    with ``source`` where the node's machine has it: an SSH host has it at ``mountPath``
    itself (checked at its bring-up); local nodes bind ``source`` there."""
    ce = ces.get(ce_name)
    if ce is None or ce.shared_filesystem is None:
        return None
    if ce.hosts:
        return replace(ce.shared_filesystem, source=ce.shared_filesystem.mount_path)
    return ce.shared_filesystem
