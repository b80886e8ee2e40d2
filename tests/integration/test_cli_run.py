"""``mnp run`` / ``mnp mpirun`` as a user runs them: the CLI in a subprocess against a real head
node with 4 local node agents (2 vCPUs each).

MPI over several nodes (the MPICH wheel's mpiexec through each agent's SSH server), exit codes,
every-node mode with labelled output, argv and values that a shell would mangle, Ctrl-C, SIGTERM,
and the caller's working directory and PATH (from a directory that is not the repository).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RANK_LINE = re.compile(r"^rank=(\d+) size=(\d+) node=(\S+) ok=(True|False)$", re.M)
JOB_LINE = re.compile(r"^mnp: job (\S+) \((\d+) nodes?\)$", re.M)


def _python() -> str:
    """``python`` as the user would type it, when that one has mpi4py; else this interpreter."""
    found = shutil.which("python")
    if found is not None:
        check = [found, "-c", "import mpi4py, numpy"]
        if subprocess.run(check, capture_output=True, timeout=60).returncode == 0:
            return "python"
    return sys.executable


def _have_mpich() -> bool:
    try:
        import mpi4py  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        return False
    return (Path(sys.executable).parent / "mpiexec").exists()


needs_mpich = pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cli-run") / "home", nodes=4, vcpus=2) as cluster:
        yield cluster


def argv(c: Cluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, *args]


def mnp(c: Cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI; subprocess.run kills it if it outlives ``timeout``."""
    return subprocess.run(argv(c, *args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def elsewhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory outside the repository and an environment whose PATH starts with a
    ``bin`` holding ``myprog`` (prints its working directory and ``$VIRTUAL_ENV``); mnp itself
    is found through PYTHONPATH, as from a checkout."""
    work, bin_dir = tmp_path / "work dir", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    prog = bin_dir / "myprog"
    prog.write_text('#!/bin/sh\npwd\necho "venv=$VIRTUAL_ENV"\n')
    prog.chmod(0o755)
    extra = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', os.defpath)}",
           "VIRTUAL_ENV": str(tmp_path / "venv"),
           "PYTHONPATH": str(ROOT) + (f":{extra}" if extra else "")}  # fmt: skip
    return work, env


def job_id_of(stderr: str) -> str:
    m = JOB_LINE.search(stderr)
    assert m is not None, stderr
    return m.group(1)


@needs_mpich
def test_mpi_job_runs_two_ranks_on_each_of_four_nodes(c: Cluster) -> None:
    r = mnp(c, "run", "-N", "4", "--ntasks-per-node", "2", "--mpi", "mpich", "--",
            _python(), "examples/mpi_allreduce.py")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    ranks = RANK_LINE.findall(r.stdout)
    assert sorted(int(rank) for rank, *_ in ranks) == list(range(8)), r.stdout
    assert {size for _, size, _, _ in ranks} == {"8"}
    assert all(ok == "True" for *_, ok in ranks)
    addresses = {address for _, _, address, _ in ranks}
    assert len(addresses) == 4
    assert addresses == {n["address"] for n in c.client.nodes()}
    assert "allreduce ok on 4 nodes" in r.stdout
    job_id = job_id_of(r.stderr)
    assert c.client.describe(job_id)["status"] == "SUCCEEDED"
    assert c.client.describe(f"{job_id}#0")["container"]["exitCode"] == 0


@needs_mpich
def test_mpirun_spreads_np_ranks_two_per_node(c: Cluster) -> None:
    r = mnp(c, "mpirun", "-np", "4", "--mpi", "mpich", "--", _python(),
            "examples/mpi_allreduce.py")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(2 nodes)" in r.stderr
    ranks = RANK_LINE.findall(r.stdout)
    assert len(ranks) == 4 and len({address for _, _, address, _ in ranks}) == 2


def test_exit_code_of_the_command_is_the_exit_status(c: Cluster) -> None:
    r = mnp(c, "run", "--", "sh", "-c", "echo before; exit 3")
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout == "before\n"
    assert "(1 node)" in r.stderr and "FAILED" in r.stderr
    r = mnp(c, "run", "-N", "2", "--mpi", "none", "--", "sh", "-c", "exit 4")
    assert r.returncode == 4, r.stdout + r.stderr
    # node 1 fails (as a rank without torch): its 1, not the 143 of the main node stopped then
    r = mnp(c, "run", "-N", "2", "--every-node", "--", "sh", "-c",
            '[ "$NODE_RANK" = 1 ] && exit 1; sleep 30')  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr


def test_every_node_runs_the_command_on_each_node_with_labels(c: Cluster) -> None:
    script = "echo $NODE_RANK/$WORLD_SIZE"
    r = mnp(c, "run", "--every-node", "-N", "2", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(r.stdout.splitlines()) == ["0/2", "1/2"]
    r = mnp(c, "run", "--every-node", "-N", "2", "--label", "--", "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    labelled = dict(sorted(line.split(": ", 1)[::-1] for line in r.stdout.splitlines()))
    assert sorted(labelled) == ["0/2", "1/2"], r.stdout
    node_ids = {n["nodeId"] for n in c.client.nodes()}
    assert len(set(labelled.values())) == 2 and set(labelled.values()) <= node_ids
    job_id = job_id_of(r.stderr)
    for i in (0, 1):
        assert c.client.describe(f"{job_id}#{i}")["nodeId"] == labelled[f"{i}/2"]


def test_argv_and_exported_values_reach_the_job_verbatim(c: Cluster) -> None:
    words = ["a;b", "$HOME", 'it\'s "q"', "two  words", "`id`", "*"]
    r = mnp(c, "run", "--", "printf", "%s\\n", *words)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == words
    value = "x;y $HOME 'z' \"w\""
    r = mnp(c, "run", "-N", "2", "--every-node", "--export", f"Q={value}", "--", "sh", "-c",
            'printf "%s\\n" "$Q"')  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [value, value]


def test_no_wait_prints_the_job_id(c: Cluster) -> None:
    r = mnp(c, "run", "--no-wait", "-J", "no-wait", "--", "true")
    assert r.returncode == 0, r.stderr
    c.wait_status(r.stdout.strip(), "SUCCEEDED")


def test_ctrl_c_terminates_the_job_and_exits_non_zero(c: Cluster) -> None:
    name = f"interrupted-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        argv(c, "run", "-J", name, "--", "sleep", "30"), cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        running = wait_for(
            f"job {name} to run", lambda: c.client.list_jobs(name=name, status="RUNNING"), 30
        )
        job_id = running[0]["jobId"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0, out + err
    assert f"mnp: terminating job {job_id}" in err
    detail = c.client.describe(job_id)
    assert detail["status"] == "FAILED" and detail["isTerminated"] is True


def test_the_job_runs_in_the_callers_directory_with_its_path(c: Cluster, tmp_path: Path) -> None:
    work, env = elsewhere(tmp_path)
    r = subprocess.run(argv(c, "run", "--", "myprog"), capture_output=True, text=True,
                       timeout=120, cwd=work, env=env)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [str(work), f"venv={tmp_path / 'venv'}"]
    r = subprocess.run(argv(c, "run", "-N", "2", "--every-node", "--", "myprog"),
                       capture_output=True, text=True, timeout=120, cwd=work, env=env)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines().count(str(work)) == 2, r.stdout
    r = subprocess.run(argv(c, "run", "--export=NONE", "--", "myprog"), capture_output=True,
                       text=True, timeout=120, cwd=work, env=env)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr  # found on this PATH all the same
    assert r.stdout.splitlines() == [str(work), "venv="]


def test_a_job_exiting_3_from_elsewhere_exits_3(c: Cluster, tmp_path: Path) -> None:
    work, env = elsewhere(tmp_path)
    (work / "fail.sh").write_text("exit 3\n")
    r = subprocess.run(argv(c, "run", "--", "sh", "fail.sh"), capture_output=True, text=True,
                       timeout=120, cwd=work, env=env)  # fmt: skip
    assert r.returncode == 3, r.stdout + r.stderr


def test_sigterm_terminates_the_job_and_exits_143(c: Cluster) -> None:
    name = f"sigterm-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        argv(c, "run", "-J", name, "--", "sleep", "60"), cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        running = wait_for(
            f"job {name} to run", lambda: c.client.list_jobs(name=name, status="RUNNING"), 30
        )
        job_id = running[0]["jobId"]
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 143, out + err
    assert took < 10
    assert f"mnp: terminating job {job_id}" in err
    detail = c.wait_status(job_id, "FAILED", timeout=10)
    assert detail["isTerminated"] is True
    assert "SIGTERM" in detail["statusReason"]


def _has_torch(python: str, env: dict[str, str] | None = None) -> bool:
    check = [python, "-c", "import torch"]
    try:
        return subprocess.run(check, capture_output=True, timeout=120, env=env).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _has_torch(sys.executable), reason="torch is not installed")
def test_readme_torch_example_from_another_directory(c: Cluster, tmp_path: Path) -> None:
    """README's `mnp run -N 2 --every-node -- python examples/torch_ddp.py`, from a fresh
    directory with the example given absolutely, `python` being the one that has torch."""
    work, env = elsewhere(tmp_path)
    if not _has_torch("python", env):  # then this interpreter's directory has the `python`
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    r = subprocess.run(
        argv(c, "run", "-N", "2", "--every-node", "--", "python",
             str(ROOT / "examples" / "torch_ddp.py")),
        capture_output=True, text=True, timeout=240, cwd=work, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("rank=")]
    assert sorted(line.split()[0] for line in lines) == ["rank=0", "rank=1"], r.stdout
    assert all(line.endswith("ok=True") for line in lines), r.stdout
