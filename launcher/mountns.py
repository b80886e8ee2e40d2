"""Run a command with the attempt's own view of the node: a private ``/tmp``, the gang's
``ssh_config`` as the system one, and the node's share of the CPUs.

The agent makes it in the child it forks for an attempt, before that execs (:func:`preexec`,
the ``preexec_fn`` :func:`launcher.netns.spawn_args` gives: then ``ip netns exec``, any switch
of ids, the command). It also runs as a script by its path (``python -I -S mountns.py …``,
see :func:`argv`); it imports the standard library only, so it needs no ``PYTHONPATH``.

What the command then sees, in a mount namespace of its own (made here, private, so nothing
mounted leaks back to the machine):

- ``/tmp`` is the attempt's directory ``--tmp`` (every process of the attempt, and every SSH
  session of its gang on this node, binds the same directory, so they share one ``/tmp``);
  paths under the machine's ``/tmp`` named by ``--keep`` (the node's root, the job's working
  directory) stay reachable at their usual path, bound from the machine's ``/tmp``;
- ``/etc/ssh/ssh_config`` is ``--ssh-config`` when given (a bare ``ssh <peer>`` then uses the
  gang's key, known hosts and node names: OpenSSH reads the system file whatever ``HOME``);
- its CPU affinity is ``--cpus`` (what ``nproc`` and ``os.sched_getaffinity`` answer);
- the compute environment's shared filesystem, ``--shared-source`` (a directory of the
  machine) is bound at ``--shared-path`` (made if missing; under ``/tmp`` it is made in the
  attempt's own ``/tmp``), so every node of the environment sees one directory there.

Every failure exits 126 with a line on stderr naming the step, before the command runs.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Sequence

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MNT_DETACH = 2
MS_RDONLY = 0x1
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
NETNS_DIR = "/run/netns"
ETC_NETNS = "/etc/netns"
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"


def argv(
    python: str,
    command: Sequence[str],
    tmp: str,
    keep: Sequence[str] = (),
    ssh_config: str | None = None,
    cpus: Sequence[int] = (),
    shared: tuple[str, str] | None = None,
) -> list[str]:
    """The argv that runs ``command`` through this script (see the module docstring);
    ``shared`` is ``(source, mountPath)`` of the shared filesystem."""
    out = [python, "-I", "-S", os.path.abspath(__file__), "--tmp", tmp]
    for path in keep:
        out += ["--keep", path]
    if ssh_config is not None:
        out += ["--ssh-config", ssh_config]
    if cpus:
        out += ["--cpus", ",".join(str(c) for c in cpus)]
    if shared is not None:
        out += ["--shared-source", shared[0], "--shared-path", shared[1]]
    return [*out, "--", *command]


_LIBC: ctypes.CDLL | None = None


def load_libc() -> ctypes.CDLL:
    """The C library, loaded once: ``mount``, ``unshare`` and ``setns``, which Python 3.11's
    :mod:`os` lacks (also :mod:`launcher.netns`'s)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def preexec(view_tmp: str, keep: Sequence[str], ssh_config: str | None,
            cpus: Sequence[int] = (), shared: tuple[str, str] | None = None,
            netns: str | None = None) -> Callable[[], None]:  # fmt: skip
    """The same view, made by the child ``subprocess.Popen`` forks just before it execs the
    command (its ``preexec_fn``): what this script does, without an interpreter to start for
    every attempt. Here that start was most of an attempt's cost: about 12 ms of CPU (6 for
    the interpreter, 3 for ``ctypes``) against 0.7 for ``true``; the ``fork`` that Python code
    in the child needs instead of a ``vfork`` costs the agent about 1 ms.

    With ``netns`` (a name under ``/run/netns``) the child first enters that network
    namespace and, once in its own mount namespace, does what ``ip netns exec`` would: a
    ``/sys`` of the namespace's own, and ``/etc/netns/<name>/*`` bound over ``/etc`` (the
    nodes' ``hosts``). That saves ``ip``'s exec, 1.9 ms of CPU per attempt here.

    The child runs only system calls through the C library loaded here, in the parent. A
    failure writes the step to the attempt's stderr (already its log) and exits 126 before
    the command, as the script does."""
    load_libc()
    cpu_set = {int(c) for c in cpus}

    def in_child() -> None:
        try:
            if netns is not None:
                _enter_netns(netns)
            enter(view_tmp, keep, ssh_config, shared)
            if netns is not None:
                _netns_files(netns)
            if cpu_set:
                os.sched_setaffinity(0, cpu_set)
        except OSError as exc:
            os.write(2, f"mountns: {exc}\n".encode(errors="replace"))
            os._exit(126)

    return in_child


def _check(result: int, step: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{step}: {os.strerror(err)}")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, flags: int, step: str) -> None:
    src = source.encode() if source is not None else None
    _check(libc.mount(src, target.encode(), None, flags, None), step)


def enter(
    tmp: str, keep: Sequence[str], ssh_config: str | None, shared: tuple[str, str] | None = None
) -> None:
    """Make the calling process's mount namespace and lay out its view (module docstring)."""
    libc = load_libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(libc, None, "/", MS_REC | MS_PRIVATE, "make / private")
    cwd = os.getcwd()
    # paths under the machine's /tmp, resolved before the bind hides them
    kept = [os.path.relpath(os.path.realpath(p), "/tmp") for p in keep if os.path.isdir(p)]
    machine_tmp = os.open("/tmp", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    config = None  # opened first: it may lie under the /tmp about to be covered
    if ssh_config is not None and os.path.exists(SYSTEM_SSH_CONFIG):
        config = os.open(ssh_config, os.O_PATH | os.O_CLOEXEC)
    # opened now, as it may lie under the /tmp about to be covered
    share, share_real = None, ""
    if shared is not None:
        share = os.open(shared[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        share_real = os.path.realpath(shared[0])
    _mount(libc, tmp, "/tmp", MS_BIND, f"bind {tmp} on /tmp")
    for rel in kept:
        if rel == "." or rel.startswith(".."):
            continue  # not under the machine's /tmp: the bind leaves it alone
        target = os.path.join("/tmp", rel)
        os.makedirs(target, mode=0o711, exist_ok=True)
        # reached through the descriptor: the machine's /tmp is covered now
        source = f"/proc/self/fd/{machine_tmp}/{rel}"
        _mount(libc, source, target, MS_BIND | MS_REC, f"keep /tmp/{rel}")
    os.close(machine_tmp)
    if config is not None:
        _mount(libc, f"/proc/self/fd/{config}", SYSTEM_SSH_CONFIG, MS_BIND, f"bind {ssh_config}")
        os.close(config)
    if shared is not None and share is not None:  # (one implies the other)
        # last: a mountPath under /tmp or under a kept path is not covered again
        os.makedirs(shared[1], mode=0o755, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{share}", shared[1], MS_BIND | MS_REC, f"bind {shared[0]}")
        os.close(share)
        cwd = _on_mount(cwd, share_real, shared[1])
    try:
        os.chdir(cwd)  # the same path, now seen through the new view
    except OSError:
        os.chdir("/")


def _enter_netns(name: str) -> None:
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(load_libc().setns(fd, CLONE_NEWNET), f"setns({name})")
    finally:
        os.close(fd)


def _netns_files(name: str) -> None:
    """In the attempt's mount namespace, after :func:`_enter_netns`: ``/sys`` describing the
    network namespace, and each file of ``/etc/netns/<name>`` over its ``/etc`` namesake, as
    ``ip netns exec`` lays them out (a file that will not bind is passed over, as there)."""
    libc = load_libc()
    flags = MS_RDONLY if os.statvfs("/sys").f_flag & os.ST_RDONLY else 0
    libc.umount2(b"/sys", MNT_DETACH)  # nothing mounted there: the mount below still works
    _check(libc.mount(name.encode(), b"/sys", b"sysfs", flags, None), "mount /sys")
    folder = os.path.join(ETC_NETNS, name)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for entry in names:
        source, target = os.path.join(folder, entry), os.path.join("/etc", entry)
        if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
            err = ctypes.get_errno()
            os.write(2, f"mountns: bind {source} -> {target}: {os.strerror(err)}\n".encode())


def _on_mount(path: str, source: str, mount_path: str) -> str:
    """A working directory the agent made under the shared filesystem's ``source``, seen
    at its ``mountPath`` (where the job expects it); any other path unchanged."""
    if path == source or path.startswith(source.rstrip("/") + "/"):
        return mount_path.rstrip("/") + path[len(source.rstrip("/")) :]
    return path


def main(args: list[str]) -> int:
    """``--tmp DIR [--keep PATH]… [--ssh-config FILE] [--cpus 0,1] [--shared-source DIR
    --shared-path PATH] -- command…``: exec it."""
    if "--" not in args:
        print("mountns: usage: --tmp DIR [--keep PATH]... -- command", file=sys.stderr)
        return 126
    split = args.index("--")
    options, command = args[:split], args[split + 1 :]
    tmp, keep, ssh_config, cpus = "", [], None, ""
    share_source, share_path = "", ""
    pairs = zip(options[::2], options[1::2], strict=False)
    for flag, value in pairs:
        if flag == "--tmp":
            tmp = value
        elif flag == "--keep":
            keep.append(value)
        elif flag == "--ssh-config":
            ssh_config = value
        elif flag == "--cpus":
            cpus = value
        elif flag == "--shared-source":
            share_source = value
        elif flag == "--shared-path":
            share_path = value
    if not tmp or not command:
        print("mountns: --tmp and a command are required", file=sys.stderr)
        return 126
    try:
        shared = (share_source, share_path) if share_source and share_path else None
        enter(tmp, keep, ssh_config, shared)
        if cpus:
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"mountns: {exc}", file=sys.stderr)
        return 126 if not isinstance(exc, FileNotFoundError) else 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
