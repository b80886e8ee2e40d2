"""The MPI builders produce command lines that really run, without the head node or sshd.

- one "node" (hostfile ``localhost``): the generated argv of the MPICH wheel's ``mpiexec``
  and of Debian's Open MPI 4 ``mpirun`` run ``examples/mpi_allreduce.py`` with 4 ranks;
- two "nodes" through ``launcher.wire`` itself: a fake ``ssh`` first on ``PATH`` runs the
  "remote" command locally in a scrubbed environment with that node's own variables (as a
  node's SSH server would), so the readiness wait, the ssh config/wrapper wiring, variable
  forwarding and the exec are all exercised; the real multi-node-over-SSH tests come with
  the node agent's SSH server;
- ``--dry-run`` for every flavour, and the readiness timeout (exit 70).

Every child runs in its own session and is killed, with its descendants, on timeout.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnp.build import mpi

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mpi_allreduce.py"
MPICH_MPIEXEC = Path(sys.executable).parent / "mpiexec"
OPENMPI_MPIRUN = Path("/usr/bin/mpirun")
OPENMPI_LIBMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"
OMPI_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
TIMEOUT = 30.0
LINE = re.compile(r"^rank=(\d+) size=(\d+) node=(\S+) ok=(True|False)$", re.M)


def _flavour_of(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        r = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10)
        return mpi.detect_flavour(r.stdout + r.stderr)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _have_mpi4py() -> bool:
    try:
        import mpi4py  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


needs_mpi4py = pytest.mark.skipif(not _have_mpi4py(), reason="mpi4py and numpy needed")
needs_mpich = pytest.mark.skipif(
    _flavour_of(MPICH_MPIEXEC) != "mpich", reason=f"MPICH wheel's mpiexec not at {MPICH_MPIEXEC}"
)
needs_openmpi = pytest.mark.skipif(
    _flavour_of(OPENMPI_MPIRUN) != "openmpi" or not Path(OPENMPI_LIBMPI).exists(),
    reason="Debian Open MPI 4 (openmpi-bin, libopenmpi-dev) needed",
)


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float = TIMEOUT) -> Result:
    """Run ``argv`` in its own session; on timeout kill it and every descendant, then fail."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"{argv} timed out after {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    finally:
        _kill_tree(proc.pid)  # leftovers (ranks, proxies) of a finished launcher too
    return Result(proc.returncode, out, err, time.monotonic() - started)


def _kill_tree(pid: int) -> None:
    try:
        import psutil
    except ImportError:
        psutil = None
    victims = []
    if psutil is not None:
        try:
            victims = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            victims = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for v in victims:
        try:
            v.kill()
        except psutil.Error:
            pass


def base_env(**extra: str) -> dict[str, str]:
    """A small, explicit environment: no MPI or MNP variables leak in from the test runner."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "PYENV_VERSION") if k in os.environ}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def check_allreduce(r: Result, ranks: int, nodes: dict[str, int] | None = None) -> None:
    assert r.code == 0, f"exit {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    lines = LINE.findall(r.out)
    assert sorted(int(rank) for rank, *_ in lines) == list(range(ranks)), r.out
    assert all(size == str(ranks) and ok == "True" for _, size, _, ok in lines), r.out
    if nodes is not None:
        seen: dict[str, int] = {}
        for _, _, node, _ in lines:
            seen[node] = seen.get(node, 0) + 1
        assert seen == nodes, r.out
    summary = f"allreduce ok on {len(nodes) if nodes else 1} nodes"
    assert summary in r.out, r.out


def write_exec(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# ---- (a), (b): the builders' argv on one node ---------------------------------------------


@needs_mpi4py
@needs_mpich
def test_mpich_generated_argv_runs_allreduce_on_4_ranks(tmp_path: Path) -> None:
    hostile = tmp_path / 'host file\'s "dir"; $x'
    hostile.mkdir()
    hostfile = hostile / "hostfile.mpich"
    hostfile.write_text(mpi.hostfile("mpich", [("localhost", 4)]))
    argv = mpi.launch_argv(
        "mpich", str(MPICH_MPIEXEC), 4, None, str(hostfile), str(tmp_path / "ssh_config"),
        "lo", [sys.executable, str(EXAMPLE)], [],
    )  # fmt: skip
    r = run(argv, base_env())
    check_allreduce(r, 4)
    print(f"mpich, 4 ranks, 1 node: {r.seconds:.2f} s")


@needs_mpi4py
@needs_openmpi
def test_openmpi_generated_argv_runs_allreduce_on_4_ranks(tmp_path: Path) -> None:
    hostile = tmp_path / 'host file\'s "dir"; $x'
    hostile.mkdir()
    hostfile = hostile / "hostfile.openmpi"
    hostfile.write_text(mpi.hostfile("openmpi", [("localhost", 4)]))
    argv = mpi.launch_argv(
        "openmpi", str(OPENMPI_MPIRUN), 4, 4, str(hostfile), str(tmp_path / "ssh_config"),
        "lo", [sys.executable, str(EXAMPLE)], ["MPI4PY_LIBMPI"],
    )  # fmt: skip
    r = run(argv, base_env(MPI4PY_LIBMPI=OPENMPI_LIBMPI, **OMPI_ROOT))
    check_allreduce(r, 4)
    print(f"openmpi, 4 ranks, 1 node: {r.seconds:.2f} s")


# ---- launcher.wire over two fake-ssh "nodes" ---------------------------------------------

FAKE_SSH = r"""#!/bin/sh
# Fake ssh for tests: log the argv, refuse hosts marked down, else run the remote command
# here, in a scrubbed environment with the node's own variables (like a node's SSH server).
root=__ROOT__
line="ssh"; for a in "$@"; do line="$line [$a]"; done
printf '%s\n' "$line" >> "$root/ssh.log"  # one write: probes of several nodes run at once
while [ $# -gt 0 ]; do
  case "$1" in
    -[FoplLiJRDWEbcemSw]) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host=$1; shift
if [ -e "$root/down-$host" ]; then
  echo "ssh: connect to host $host port 2222: Connection refused" >&2
  exit 255
fi
n=${host#node}
mkdir -p "$root/$host/tmp" "$root/$host/shm"
exec env -i PATH="$PATH" HOME="$HOME" ${PYENV_VERSION:+PYENV_VERSION="$PYENV_VERSION"} \
  MNP_NODE_ADDRESS="127.0.0.$((n + 2))" TMPDIR="$root/$host/tmp" \
  OMPI_MCA_btl_vader_backing_directory="$root/$host/shm" /bin/sh -c "$*"
"""


@dataclass
class FakeJob:
    root: Path
    wiring: Path
    env: dict[str, str]

    def ssh_log(self) -> str:
        log = self.root / "ssh.log"
        return log.read_text() if log.exists() else ""


def fake_job(tmp_path: Path, nodes: int, tasks: int, wiring_name: str = "wiring") -> FakeJob:
    """A wiring directory as the head node would write it, plus the fake ssh on PATH."""
    root = tmp_path / "fake"
    (root / "bin").mkdir(parents=True)
    write_exec(root / "bin" / "ssh", FAKE_SSH.replace("__ROOT__", shlex.quote(str(root))))
    wiring = tmp_path / wiring_name
    wiring.mkdir()
    aliases = [f"node{i}" for i in range(nodes)]
    for name in ("openmpi", "mpich"):
        text = mpi.hostfile(name, [(a, tasks) for a in aliases])
        (wiring / mpi.FLAVOURS[name].hostfile_name).write_text(text)
    (wiring / "ssh_config").write_text("# read by the real ssh only\n")
    write_exec(wiring / "ssh-wrapper", mpi.ssh_wrapper())
    env = base_env(
        PATH=f"{root / 'bin'}:{os.environ['PATH']}",
        TMPDIR=str(tmp_path),
        MNP_WIRING_DIR=str(wiring),
        MNP_NODE_ALIASES=" ".join(aliases),
        MNP_NUM_NODES=str(nodes),
        MNP_NODE_INDEX="0",
        MNP_TASKS_PER_NODE=str(tasks),
        MNP_MPI_IFACE="lo",
    )
    return FakeJob(root, wiring, env)


WIRE = [sys.executable, "-m", "launcher.wire"]


@needs_mpi4py
@needs_mpich
def test_wire_launches_mpich_over_two_fake_ssh_nodes(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=2, tasks=2)
    r = run([*WIRE, "--", "python", str(EXAMPLE)], job.env)
    check_allreduce(r, 4, nodes={"127.0.0.2": 2, "127.0.0.3": 2})
    log = job.ssh_log()
    cfg = job.wiring / "ssh_config"
    assert f"[-F] [{cfg}]" in log and "[node1] [true]" in log  # readiness probe
    assert "hydra_pmi_proxy" in log  # the wrapper added -F for hydra
    print(f"launcher.wire + mpich, 4 ranks, 2 fake nodes: {r.seconds:.2f} s")


@needs_mpi4py
@needs_openmpi
def test_wire_launches_openmpi_over_two_fake_ssh_nodes(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=2, tasks=2)
    # No OMPI_ALLOW_RUN_AS_ROOT here: launcher.wire adds the flavour's fixed variables.
    job.env["MPI4PY_LIBMPI"] = OPENMPI_LIBMPI
    job.env["MNP_MPI_FORWARD_ENV"] = "MPI4PY_LIBMPI"
    cmd = [*WIRE, "--mpi", "openmpi", "--", sys.executable, str(EXAMPLE)]
    r = run(cmd, job.env)
    check_allreduce(r, 4, nodes={"127.0.0.2": 2, "127.0.0.3": 2})
    assert "/usr/bin/orted" in job.ssh_log()
    print(f"launcher.wire + openmpi, 4 ranks, 2 fake nodes: {r.seconds:.2f} s")


@needs_mpi4py
@needs_mpich
def test_sbatch_example_runs_as_a_plain_script(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=4, tasks=2)
    job.env["PYTHON"] = sys.executable
    r = run([str(REPO / "examples" / "mpi_hello.sbatch")], job.env)
    check_allreduce(r, 8, nodes={f"127.0.0.{i + 2}": 2 for i in range(4)})
    print(f"mpi_hello.sbatch, 8 ranks, 4 fake nodes: {r.seconds:.2f} s")


def test_wire_names_the_nodes_that_never_became_ready(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=3, tasks=1)
    (job.root / "down-node2").touch()
    cmd = [*WIRE, "--mpi", "mpich", "--mpiexec", "/bin/true", "--ready-timeout", "1", "--", "x"]
    r = run(cmd, job.env)
    assert r.code == 70, r.err
    assert "1 of 2 nodes never became ready within 1 s (node2)" in r.err
    assert "Connection refused" in r.err
    assert r.seconds < 5
    assert job.ssh_log().count("[node1] [true]") == 1  # a ready node is not probed again


def test_wire_without_mpi_waits_then_execs_the_command(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=2, tasks=1)
    r = run([*WIRE, "--mpi", "none", "--", "sh", "-c", "echo ran $MNP_NODE_ALIASES"], job.env)
    assert (r.code, r.out) == (0, "ran node0 node1\n"), r.err
    assert "[node1] [true]" in job.ssh_log()


# ---- (c) --dry-run --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(mpi.FLAVOURS))
def test_wire_dry_run_prints_the_builders_argv(tmp_path: Path, name: str) -> None:
    job = fake_job(tmp_path, nodes=4, tasks=2)
    job.env["MNP_MPI_FORWARD_ENV"] = "PYTHONPATH"
    cmd = [*WIRE, "--mpi", name, "--mpiexec", "/opt/mpi/bin/mpiexec", "--dry-run"]
    r = run([*cmd, "--np", "6", "--", "/venv/bin/python", "a b.py", "--x=$y;"], job.env)
    assert r.code == 0, r.err
    f = mpi.FLAVOURS[name]
    expected = mpi.launch_argv(
        name, "/opt/mpi/bin/mpiexec", 6, 2, str(job.wiring / f.hostfile_name),
        str(job.wiring / "ssh_config"), "lo", ["/venv/bin/python", "a b.py", "--x=$y;"],
        ["PYTHONPATH"],
    )  # fmt: skip
    assert r.out.splitlines() == expected
    assert job.ssh_log() == ""  # a dry run does not wait for the nodes


@needs_mpich
@needs_openmpi
def test_wire_dry_run_detects_and_resolves_launchers(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=2, tasks=1)
    auto = run([*WIRE, "--dry-run", "--", "true"], job.env)
    assert auto.out.splitlines()[0] == str(MPICH_MPIEXEC), auto.err  # next to python first
    assert "-launcher-exec" in auto.out
    ompi = run([*WIRE, "--mpi", "openmpi", "--dry-run", "--", "true"], job.env)
    assert os.path.realpath(ompi.out.splitlines()[0]).startswith("/usr/"), ompi.err
    assert "plm_rsh_agent" in ompi.out
    assert ompi.out.splitlines()[-1] == "/usr/bin/true" or ompi.out.splitlines()[-1].endswith(
        "/true"
    )


def test_wire_dry_run_aliases_a_hostile_wiring_directory(tmp_path: Path) -> None:
    job = fake_job(tmp_path, nodes=2, tasks=1, wiring_name='job\'s "wiring"; $HOME')
    cmd = [*WIRE, "--mpi", "mpich", "--mpiexec", "/m/mpiexec", "--dry-run", "--", "true"]
    r = run(cmd, job.env)
    assert r.code == 0, r.err
    argv = r.out.splitlines()
    wrapper = argv[argv.index("-launcher-exec") + 1]
    assert mpi.is_plain_path(wrapper) and wrapper.startswith(str(tmp_path))
    assert Path(wrapper).resolve() == (job.wiring / "ssh-wrapper").resolve()


# ---- torch every-node mode --------------------------------------------------------------


def test_torch_ddp_example_on_two_local_nodes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    started = time.monotonic()
    for rank in range(2):
        env = base_env(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
            NODE_RANK=str(rank), GLOO_SOCKET_IFNAME="lo", MNP_NODE_ADDRESS=f"127.0.0.{rank + 2}",
        )  # fmt: skip
        script = str(REPO / "examples" / "torch_ddp.py")
        pipe = subprocess.PIPE
        proc = subprocess.Popen(
            [sys.executable, script], env=env, stdout=pipe, stderr=pipe, text=True,
            start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            outs.append(out)
    finally:
        for p in procs:
            _kill_tree(p.pid)
    assert outs == [f"rank={r} world=2 node=127.0.0.{r + 2} sum=3 ok=True\n" for r in range(2)]
    print(f"torch gloo, 2 local nodes: {time.monotonic() - started:.2f} s")
