"""``mnp sbatch`` as a user runs it: the CLI in a subprocess, from a submit directory of its own,
against a real head node with 4 local node agents (2 vCPUs each).

Output files land where ``--output`` said with the script's output in them; array task ids,
``%N`` limits, dependencies (afterok, afternotok, afterany), time limits and exit codes behave
as under Slurm; names, paths, arguments and values a shell would mangle arrive byte-exact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"^Submitted batch job (\S+)\n\Z")
HOSTILE_ARGS = ["a;b", "$HOME", "'q'", '"dq"', "`id`", "new\nline", "tab\there", ""]
HOSTILE_VALUE = "x y;'q' \"dq\" $HOME `id` \\ %j\nsecond line"


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("sbatch") / "home", nodes=4, vcpus=2) as cluster:
        yield cluster


@pytest.fixture
def submit_dir(tmp_path: Path) -> Path:
    """A submit directory whose name a shell would mangle."""
    d = tmp_path / 'it\'s a "dir"; $x'
    d.mkdir()
    return d


def sbatch(
    c: Cluster, cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url, "sbatch", *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd, env=full_env
    )


def submitted(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    m = SUBMITTED.match(r.stdout)
    assert m is not None, r.stdout
    return m.group(1)


def finished(c: Cluster, job_id: str, status: str = "SUCCEEDED", timeout: float = 60) -> Any:
    detail = c.wait_status(job_id, "SUCCEEDED", "FAILED", timeout=timeout)
    assert detail["status"] == status, (detail, c.logs(job_id) if "#" not in job_id else "")
    return detail


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_single_node_script_writes_its_output_where_output_said(
    c: Cluster, submit_dir: Path
) -> None:
    s = script(submit_dir / "hello.sh", (
        "#!/bin/bash\n"
        "#SBATCH --job-name=hello-sbatch\n"
        "#SBATCH --output=hello-%x-%j.out\n"
        "#SBATCH -c 2 --mem=100M -t 5\n"
        'echo "job=$SLURM_JOB_ID name=$SLURM_JOB_NAME cpus=$SLURM_CPUS_PER_TASK"\n'
        'echo "pwd=$PWD"\n'
        'echo "submit=$SLURM_SUBMIT_DIR"\n'
        "echo to-stderr >&2\n"
    ))  # fmt: skip
    job_id = submitted(sbatch(c, submit_dir, s.name))
    finished(c, job_id)
    out = submit_dir / f"hello-hello-sbatch-{job_id}.out"
    wait_for(f"{out} to be written", lambda: out.exists() and "to-stderr" in out.read_text())
    assert out.read_text() == (
        f"job={job_id} name=hello-sbatch cpus=2\npwd={submit_dir}\nsubmit={submit_dir}\nto-stderr\n"
    )


def test_hostile_arguments_paths_and_values_arrive_byte_exact(c: Cluster, submit_dir: Path) -> None:
    workdir = submit_dir / "work dir; `id` $HOME 'q'"
    workdir.mkdir()
    out_name = "out $x;'q' \"dq\"\nline-%j.txt"
    err_name = "err $(id) %%.txt"
    s = script(submit_dir / "args 'n' \"q\";$x.sh", (
        "#!/bin/bash\n"
        "printf '<%s>\\n' \"$@\"\n"
        "printf 'pwd=<%s>\\n' \"$PWD\"\n"
        "printf 'env=<%s>\\n' \"$HOSTILE\"\n"
        "echo oops >&2\n"
    ))  # fmt: skip
    r = sbatch(c, submit_dir, "-D", str(workdir), "-o", out_name, "-e", err_name, s.name,
               *HOSTILE_ARGS, env={"HOSTILE": HOSTILE_VALUE})  # fmt: skip
    job_id = submitted(r)
    finished(c, job_id)
    out = workdir / out_name.replace("%j", job_id)
    err = workdir / "err $(id) %.txt"
    wait_for("the output files", lambda: out.exists() and err.exists() and err.read_text())
    expected = "".join(f"<{a}>\n" for a in HOSTILE_ARGS)
    expected += f"pwd=<{workdir}>\nenv=<{HOSTILE_VALUE}>\n"
    assert out.read_text() == expected
    assert err.read_text() == "oops\n"


def test_wrap_and_standard_input_and_parsable(c: Cluster, submit_dir: Path) -> None:
    r = sbatch(c, submit_dir, "--parsable", "-o", "wrap.out", "--wrap",
               "printf '%s|%s\\n' \"a;b\" '$HOME' && exit 3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    detail = finished(c, job_id, "FAILED")
    assert detail["container"]["exitCode"] == 3
    assert detail["jobName"] == "wrap"
    assert (submit_dir / "wrap.out").read_text() == "a;b|$HOME\n"
    r = sbatch(c, submit_dir, "-o", "stdin.out", stdin="#!/bin/sh\necho from stdin\n")
    finished(c, submitted(r))
    assert (submit_dir / "stdin.out").read_text() == "from stdin\n"


def test_wait_exits_with_the_jobs_code(c: Cluster, submit_dir: Path) -> None:
    r = sbatch(c, submit_dir, "-W", "--wrap", "exit 7")
    assert r.returncode == 7, r.stdout + r.stderr
    assert SUBMITTED.match(r.stdout)


def test_sweep_example_runs_sparse_task_ids_two_at_a_time(c: Cluster, submit_dir: Path) -> None:
    shutil.copy(ROOT / "examples" / "sweep.sbatch", submit_dir)
    job_id = submitted(sbatch(c, submit_dir, "sweep.sbatch"))
    finished(c, job_id, timeout=90)
    for task in (1, 3, 5, 7):
        out = submit_dir / f"sweep-{job_id}_{task}.out"
        assert out.read_text() == (
            f"task {task} of array {job_id} (4 tasks): rate={task / 1000:.3f}\n"
        )
    children = [c.client.describe(f"{job_id}:{i}") for i in range(4)]
    spans = [(ch["startedAt"], ch["stoppedAt"]) for ch in children]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 2, spans


def test_afternotok_cleanup_runs_only_after_a_failure(c: Cluster, submit_dir: Path) -> None:
    shutil.copy(ROOT / "examples" / "cleanup.sbatch", submit_dir)
    results = submit_dir / "results dir"
    results.mkdir()
    fail = submitted(sbatch(c, submit_dir, "-J", "train", "--wrap", "sleep 1; exit 1"))
    cleanup = submitted(sbatch(c, submit_dir, f"--dependency=afternotok:{fail}",
                               "cleanup.sbatch", "results dir"))  # fmt: skip
    never = submitted(sbatch(c, submit_dir, "-d", f"afterok:{fail}", "--wrap", "true"))
    anyway = submitted(sbatch(c, submit_dir, "-d", f"afterany:{fail}", "-o", "any.out",
                              "--wrap", "echo ran anyway"))  # fmt: skip
    finished(c, fail, "FAILED")
    finished(c, cleanup)
    assert (submit_dir / f"cleanup-{cleanup}.out").read_text() == (
        f"moved results dir to results dir.failed-{cleanup}\n"
    )
    assert not results.exists() and (submit_dir / f"results dir.failed-{cleanup}").is_dir()
    detail = finished(c, never, "FAILED")
    assert "DEPENDENCY" in (detail.get("statusReason") or "")
    finished(c, anyway)
    assert (submit_dir / "any.out").read_text() == "ran anyway\n"
    ok = submitted(sbatch(c, submit_dir, "--wrap", "true"))
    skipped = submitted(sbatch(c, submit_dir, "-d", f"afternotok:{ok}", "--wrap", "true"))
    finished(c, ok)
    finished(c, skipped, "FAILED")


def test_array_output_patterns_and_task_dependencies(c: Cluster, submit_dir: Path) -> None:
    first = submitted(sbatch(c, submit_dir, "--array=2,4", "-J", "arr", "-o", "%x_%A_%a.out",
                             "--wrap", "echo task $SLURM_ARRAY_TASK_ID"))  # fmt: skip
    then = submitted(sbatch(c, submit_dir, "-d", f"afterok:{first}_4", "-o", "then.out",
                            "--wrap", "echo after task 4"))  # fmt: skip
    finished(c, first)
    finished(c, then)
    assert (submit_dir / f"arr_{first}_2.out").read_text() == "task 2\n"
    assert (submit_dir / f"arr_{first}_4.out").read_text() == "task 4\n"
    # sbatch prints numbers; the head keeps the dependency by the task's UUID form
    parent = c.client.describe(first)["jobId"]
    assert c.client.describe(then)["dependsOn"] == [{"jobId": f"{parent}:1"}]
    single = submitted(sbatch(c, submit_dir, "--array=17", "-o", "one_%A_%a.out",
                              "--wrap", "echo task $SLURM_ARRAY_TASK_ID"))  # fmt: skip
    finished(c, single)
    assert (submit_dir / f"one_{single}_17.out").read_text() == "task 17\n"


def test_time_limit_ends_the_job(c: Cluster, submit_dir: Path) -> None:
    job_id = submitted(sbatch(c, submit_dir, "-t", "0:02", "--wrap", "sleep 60"))
    detail = finished(c, job_id, "FAILED", timeout=30)
    assert "timeout" in (detail.get("statusReason") or "").lower(), detail


def test_bad_options_are_refused_before_anything_is_submitted(c: Cluster, submit_dir: Path) -> None:
    before = len(c.client.list_jobs(limit=None))
    r = sbatch(c, submit_dir, "-J", "bad name", "-d", "expand:1", "--wrap", "true")
    assert r.returncode == 1
    assert "-J" not in r.stderr, "any job name is taken, as Slurm takes it"
    assert "-d (command line): expand:" in r.stderr
    r = sbatch(c, submit_dir, "--frobnicate", "--wrap", "true")
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr
    assert len(c.client.list_jobs(limit=None)) == before


def _have_mpich() -> bool:
    try:
        import mpi4py  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        return False
    return (Path(sys.executable).parent / "mpiexec").exists()


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_mpi_hello_example_runs_on_four_nodes(c: Cluster, tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    for name in ("mpi_hello.sbatch", "mpi_allreduce.py"):
        shutil.copy(ROOT / "examples" / name, tmp_path / "examples")
    r = sbatch(c, tmp_path, "examples/mpi_hello.sbatch", env={"PYTHON": sys.executable})
    job_id = submitted(r)
    finished(c, job_id, timeout=120)
    text = (tmp_path / f"mpi-hello-{job_id}.out").read_text()
    ranks = re.findall(r"^rank=(\d+) size=8 node=(\S+) ok=True$", text, re.M)
    assert sorted(int(r) for r, _ in ranks) == list(range(8)), text
    assert len({node for _, node in ranks}) == 4
    assert "allreduce ok on 4 nodes" in text


RANKS_SCRIPT = (
    "#!/bin/sh\n"
    "#SBATCH -N 2 --ntasks-per-node=2 -o ranks.out\n"
    "#MNP --mpi mpich\n"
    'echo "rank $PMI_RANK of $PMI_SIZE: $1"\n'
)


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_mnp_mpi_runs_the_script_as_every_rank(c: Cluster, tmp_path: Path) -> None:
    s = script(tmp_path / "ranks.sh", RANKS_SCRIPT)
    job_id = submitted(sbatch(c, tmp_path, s.name, "a b"))
    finished(c, job_id, timeout=120)
    lines = sorted((tmp_path / "ranks.out").read_text().splitlines())
    assert lines == [f"rank {i} of 4: a b" for i in range(4)]


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_mpi_job_from_a_hostile_directory_leaves_only_its_output(
    c: Cluster, submit_dir: Path
) -> None:
    s = script(submit_dir / "ranks.sh", RANKS_SCRIPT)
    job_id = submitted(sbatch(c, submit_dir, s.name, "a b"))
    finished(c, job_id, timeout=120)
    lines = sorted((submit_dir / "ranks.out").read_text().splitlines())
    assert lines == [f"rank {i} of 4: a b" for i in range(4)]
    assert sorted(p.name for p in submit_dir.iterdir()) == ["ranks.out", "ranks.sh"]


def test_singleton_any_mode_and_aftercorr(c: Cluster, submit_dir: Path) -> None:
    first = submitted(sbatch(c, submit_dir, "-J", "single", "--wrap", "sleep 2"))
    second = submitted(sbatch(c, submit_dir, "-J", "single", "-d", "singleton", "--wrap", "true"))
    ok = submitted(sbatch(c, submit_dir, "--wrap", "true"))
    bad = submitted(sbatch(c, submit_dir, "--wrap", "exit 1"))
    either = submitted(sbatch(c, submit_dir, "-d", f"afternotok:{ok}?afternotok:{bad}",
                              "--wrap", "true"))  # fmt: skip
    arr = submitted(sbatch(c, submit_dir, "-a", "0-1", "-o", "a_%a.out",
                           "--wrap", "echo first $SLURM_ARRAY_TASK_ID"))  # fmt: skip
    corr = submitted(sbatch(c, submit_dir, "-a", "0-1", "-d", f"aftercorr:{arr}", "-o", "c_%a.out",
                            "--wrap", "cat a_$SLURM_ARRAY_TASK_ID.out"))  # fmt: skip
    one = finished(c, first)
    two = finished(c, second)
    assert two["startedAt"] >= one["stoppedAt"]
    finished(c, either)
    finished(c, arr)
    finished(c, corr)
    assert (submit_dir / "c_0.out").read_text() == "first 0\n"
    assert (submit_dir / "c_1.out").read_text() == "first 1\n"
    finished(c, ok)
    finished(c, bad, "FAILED")


def test_srun_in_a_one_node_script_starts_its_tasks(c: Cluster, submit_dir: Path) -> None:
    s = script(submit_dir / "tasks.sh", (
        "#!/bin/sh\n#SBATCH -n 2 -o tasks.out\n"
        "srun sh -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'\n"
        "srun -n 1 --cpu-bind=cores sh -c 'exit 4' || echo \"step failed: $?\"\n"
    ))  # fmt: skip
    job_id = submitted(sbatch(c, submit_dir, s.name))
    finished(c, job_id)
    lines = (submit_dir / "tasks.out").read_text().splitlines()
    assert sorted(x for x in lines if x.startswith("task")) == [
        f"task {i} of 2" for i in range(2)
    ], lines
    assert "srun: warning: ignored here: --cpu-bind" in lines
    assert "step failed: 4" in lines


@pytest.mark.skipif(not _have_mpich(), reason="pip install -e '.[mpi]' needed")
def test_srun_in_a_multi_node_script_runs_mpi_ranks_on_every_node(
    c: Cluster, tmp_path: Path
) -> None:
    script(tmp_path / "ranks.py", (
        "import os, sys\nfrom mpi4py import MPI\nw = MPI.COMM_WORLD\n"
        'sys.stdout.write(f"rank {w.Get_rank()} {w.Get_size()} {os.environ[\'MNP_NODE_ID\']}\\n")\n'
    ))  # fmt: skip
    s = script(tmp_path / "mpi.sh", (
        "#!/bin/sh\n#SBATCH -N 2 --ntasks-per-node=2 -o mpi.out\n"
        f"srun {sys.executable} ranks.py\n"
    ))  # fmt: skip
    job_id = submitted(sbatch(c, tmp_path, s.name))
    finished(c, job_id, timeout=120)
    text = (tmp_path / "mpi.out").read_text()
    rows = sorted(line.split()[1:] for line in text.splitlines() if line.startswith("rank "))
    assert [r[:2] for r in rows] == [[str(i), "4"] for i in range(4)], text
    assert len({r[2] for r in rows}) == 2  # two nodes, two ranks each
