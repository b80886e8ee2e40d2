"""The node's Docker engine: a lazily made docker SDK client, its thread pool, and the pure
pieces of a container's set-up (name, labels, HostConfig, ``docker exec`` argv).

The docker SDK (``docker`` on PyPI) is imported on first use only, so an agent that runs no
container job never loads it. Its calls block: :meth:`Engine.call` runs them on the engine's
thread pool, never on the agent's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mnp.spec.containers import (
    CONTAINER_LABEL_ATTEMPT,
    CONTAINER_LABEL_JOB,
    CONTAINER_LABEL_NODE,
    CONTAINER_LABEL_ROOT,
    ContainerRun,
)
from mnp.spec.protocol import Assignment

T = TypeVar("T")

LABEL_JOB = CONTAINER_LABEL_JOB
LABEL_ATTEMPT = CONTAINER_LABEL_ATTEMPT
LABEL_NODE = CONTAINER_LABEL_NODE
LABEL_ROOT = CONTAINER_LABEL_ROOT
CONTAINER_WORKDIR = Path("/mnp/work")
"""Where the attempt's working directory appears in its container (its working directory):
the same path on every node, as MPI launchers expect of the directory they start ranks in."""
CONTAINER_WIRING = "/mnp/wiring"
"""Where a multi-node attempt's wiring directory (ssh_config, keys, hostfiles) is mounted."""
ENGINE_THREADS = 8
DOCKER_SOCKET = "/var/run/docker.sock"
PROBLEM_SECONDS = 30.0
"""How long a failed try to reach the engine stands before :meth:`Engine.problem` tries
again (a burst of array children then costs one try, an engine started later is seen)."""
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def container_name(node_id: str, attempt_id: str) -> str:
    """A deterministic container name for an attempt on a node (Docker's name alphabet)."""
    return "mnp-" + _NAME_UNSAFE.sub("_", f"{node_id}-{attempt_id}")


class EngineError(Exception):
    """The Docker engine (or the docker SDK) is not usable."""


class Engine:
    """A lazily made docker ``APIClient`` (from ``DOCKER_HOST`` etc.) and the thread pool its
    blocking calls run on. One per agent; :meth:`call` is safe from the loop at any time."""

    def __init__(self, node_id: str, root: Path, address: str = "") -> None:
        self.node_id = node_id
        self.root = root
        self.address = address
        """The node's address (loopback: a fake node sharing this machine)."""
        self._api: Any = None
        self._problem: tuple[str, float] | None = None
        """The last failure to make the client, and when (monotonic)."""
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="docker")

    def api(self) -> Any:
        """The docker ``APIClient``; raises :class:`EngineError` when the SDK is missing or
        no engine answers (tried again on the next call). Either outcome is remembered for
        :meth:`problem`."""
        with self._lock:
            if self._api is None:
                try:
                    self._api = _client()
                except EngineError as e:
                    self._problem = (str(e), time.monotonic())
                    raise
                self._problem = None
            return self._api

    def problem(self) -> str | None:
        """Why this node has no usable engine now (None: it has one), for the image policy
        ``auto``. Called on the loop, so it never waits for an engine: no ``DOCKER_HOST``
        and no ``/var/run/docker.sock`` means none; an answer (the client made, or the
        failure of the last try, kept :data:`PROBLEM_SECONDS`) is reused; otherwise one try,
        which fails at once for a missing or refused socket, and counts as no engine while
        another thread's try is still waiting."""
        if self._api is not None:
            return None
        if not engine_configured():
            return f"no Docker engine is configured (DOCKER_HOST unset, no {DOCKER_SOCKET})"
        known = self._problem
        if known is not None and time.monotonic() - known[1] < PROBLEM_SECONDS:
            return known[0]
        if self._lock.locked():
            return "the Docker engine has not answered yet"
        try:
            self.api()
        except EngineError as e:
            return str(e)
        return None

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the engine's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def labels(self, assignment: Assignment) -> dict[str, str]:
        return {
            LABEL_JOB: assignment.job_id,
            LABEL_ATTEMPT: assignment.attempt_id,
            LABEL_NODE: self.node_id,
            LABEL_ROOT: str(self.root),
        }

    def remove_orphans(self, keep: Sequence[str]) -> list[str]:
        """Remove (force) this node's containers whose attempt is not in ``keep``; returns
        their attempt ids. Blocking. Raises :class:`EngineError` when no engine answers."""
        try:
            api = self.api()
            found = api.containers(
                all=True,
                filters={"label": [f"{LABEL_NODE}={self.node_id}", f"{LABEL_ROOT}={self.root}"]},
            )
        except EngineError:
            raise
        except Exception as e:  # docker.errors.DockerException, requests' errors
            raise EngineError(f"cannot list containers: {e}") from e
        removed = []
        for c in found:
            aid = (c.get("Labels") or {}).get(LABEL_ATTEMPT, "")
            if aid in keep:
                continue
            with contextlib.suppress(Exception):
                api.remove_container(c["Id"], force=True, v=True)
                removed.append(aid)
        return removed

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def engine_configured() -> bool:
    """Whether the node names an engine at all: ``DOCKER_HOST``, or Docker's usual socket."""
    return bool(os.environ.get("DOCKER_HOST")) or os.path.exists(DOCKER_SOCKET)


def _client() -> Any:
    """A docker ``APIClient`` from the environment (``DOCKER_HOST`` etc.); blocks until the
    engine answers its version. :class:`EngineError` when it cannot be made."""
    try:
        import docker
    except ImportError as e:
        raise EngineError(f"the docker SDK is not installed: {e}") from None
    try:
        return docker.APIClient(version="auto", max_pool_size=64, **docker.utils.kwargs_from_env())
    except docker.errors.DockerException as e:
        raise EngineError(f"cannot reach the Docker engine: {explain(e)}") from e


def host_config(api: Any, run: ContainerRun, workdir: Path, share_host: bool = False) -> Any:
    """The engine's HostConfig for ``run`` (host network, resources, mounts, Linux options).

    ``share_host`` also shares the host's IPC and PID namespaces: for the nodes of an MNP job
    that are fake nodes on one machine (loopback addresses), whose MPI libraries see one
    host and reach each other's ranks through shared memory, as their processes would.
    """
    from docker.types import DeviceRequest, Ulimit
    from docker.types import Mount as DockerMount

    mounts = [DockerMount(str(CONTAINER_WORKDIR), str(workdir), type="bind")]
    for m in run.mounts:
        if m.source is None:
            mounts.append(DockerMount(m.target, None, type="volume", read_only=m.read_only))
        else:
            mounts.append(DockerMount(m.target, m.source, type="bind", read_only=m.read_only))
    kwargs: dict[str, Any] = {
        "network_mode": "host",
        "mounts": mounts,
        "privileged": run.privileged,
        "read_only": run.read_only_root,
        "init": run.init or None,
        "ulimits": [Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in run.ulimits] or None,
        "tmpfs": {
            t.target: ",".join([*([f"size={t.size_mib}m"] if t.size_mib else []), *t.options])
            for t in run.tmpfs
        }
        or None,
        "devices": [f"{d.host_path}:{d.container_path}:{d.permissions}" for d in run.devices]
        or None,
        "cpu_shares": run.cpu_shares,
        "ipc_mode": "host" if share_host else None,
        "pid_mode": "host" if share_host else None,
        # MPI's single-copy transfers between ranks (CMA: process_vm_readv) need it
        "cap_add": ["SYS_PTRACE"] if share_host else None,
    }
    if run.shm_size_mib:
        kwargs["shm_size"] = f"{run.shm_size_mib}m"
    if run.memory_mib:
        kwargs["mem_limit"] = f"{run.memory_mib}m"
        if run.max_swap_mib is not None:
            kwargs["memswap_limit"] = f"{run.memory_mib + run.max_swap_mib}m"
            if run.swappiness is not None:
                kwargs["mem_swappiness"] = run.swappiness
    if run.gpus:
        kwargs["device_requests"] = [DeviceRequest(count=run.gpus, capabilities=[["gpu"]])]
    return api.create_host_config(**{k: v for k, v in kwargs.items() if v is not None})


def explain(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


def exec_argv(docker: str, container: str, env: dict[str, str], command: str) -> list[str]:
    """``docker exec`` argv running ``/bin/sh -c command`` inside ``container`` with ``env``
    added (the container's own environment stays underneath): how the node's SSH server
    puts an MNP job's remote commands (MPI proxies) into the job's container."""
    argv = [docker, "exec", "-i"]
    for k, v in sorted(env.items()):
        argv += ["-e", f"{k}={v}"]
    return [*argv, container, "/bin/sh", "-c", command]
