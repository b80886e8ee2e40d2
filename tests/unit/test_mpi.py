"""MPI wiring builders (mnp.build.mpi) against golden files, and launcher.wire's pure parts.

Golden files live in ``tests/unit/golden/mpi/``; ``MNP_UPDATE_GOLDEN=1 pytest …`` rewrites
them (review the diff before committing). argv and environments are stored as JSON, one
element per line, so control characters stay visible and diffs stay readable.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from launcher import wire
from mnp.build import mpi
from mnp.spec.protocol import WIRING_PLACEHOLDER
from tests.unit import goldens

GOLDEN = Path(__file__).parent / "golden" / "mpi"
REPO = Path(__file__).resolve().parents[2]
FLAVOURS = sorted(mpi.FLAVOURS)

# Fixed inputs. "placeholder": what the head node generates (paths under the wiring
# placeholder). "hostile": spaces, quotes, $, ; and a newline wherever the builders allow
# them; the ssh paths are plain (launcher.wire aliases a non-plain wiring directory).
W = WIRING_PLACEHOLDER
HOSTS = [("node0", 2), ("node1", 2), ("node2", 2), ("node3", 2)]
HOSTILE_DIR = '/fsx/it\'s a "job"; $HOME/.mnp'
HOSTILE_COMMAND = [
    "/opt/my app/bin/python",
    "-c",
    "print('a; b $HOME \"q\"')",
    "new\nline",
    "",
]
ALIAS = "/tmp/mnp-wiring-abc123/w"


def assert_golden(name: str, text: str) -> None:
    goldens.check("mpi", name, text)


def as_json(value: object) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


# ---- the table ---------------------------------------------------------------------------


def test_table_has_the_three_flavours_with_distinct_variables() -> None:
    assert set(mpi.FLAVOURS) == {"openmpi", "mpich", "intelmpi"}
    for name, f in mpi.FLAVOURS.items():
        assert f.name == name
        assert f.hostfile_name in {"hostfile.openmpi", "hostfile.mpich"}
        assert f.hostfile_env and f.ssh_env and f.iface_env
    names = [n for f in mpi.FLAVOURS.values() for n in (*f.hostfile_env, *f.ssh_env)]
    assert len(names) == len(set(names)), "flavours must not share variables"


def test_hydra_extra_args_use_the_name_hydra_reads() -> None:
    assert "HYDRA_LAUNCHER_EXTRA_ARGS" in mpi.FLAVOURS["mpich"].ssh_env
    assert all("HYDRA_LAUNCH_EXTRA_ARGS" not in f.ssh_env for f in mpi.FLAVOURS.values())


def test_openmpi_environment_points_open_mpi_4_and_5_at_the_hostfile() -> None:
    """Open MPI 5's mpirun (PRRTE) ignores ``orte_default_hostfile``: a bare ``mpirun -np 8``
    would start every rank on the main node, or refuse for want of slots."""
    env = mpi.mpi_environment("openmpi", W, f"{W}/ssh_config", f"{W}/hostfile.openmpi", "eth0")
    assert env["OMPI_MCA_orte_default_hostfile"] == f"{W}/hostfile.openmpi"
    assert env["PRTE_MCA_prte_default_hostfile"] == f"{W}/hostfile.openmpi"
    # the ssh and interface settings go by the OMPI_MCA_ names, which Open MPI 5 translates
    assert env["OMPI_MCA_plm_rsh_agent"] == f"ssh -F {W}/ssh_config"
    assert env["OMPI_MCA_oob_tcp_if_include"] == "eth0"


def test_openmpi_argv_leaves_the_ssh_args_to_the_environment() -> None:
    """PRRTE hands a ``--mca plm_rsh_args`` value to each prted cut at its ``=``; a prted that
    spawns further prteds then runs ``ssh -o ConnectionAttempts host`` and fails."""
    argv = mpi.launch_argv("openmpi", "mpirun", 4, 1, "/h", "/w/ssh_config", "eth0", ["x"], [])
    assert "plm_rsh_args" not in argv and "plm_ssh_args" not in argv
    assert not [a for a in argv[:-1] if "=" in a], argv
    assert argv[argv.index("plm_rsh_agent") + 1] == "ssh -F /w/ssh_config"
    env = mpi.mpi_environment("openmpi", "/w", "/w/ssh_config", "/h", None)
    assert env["OMPI_MCA_plm_rsh_args"] == f"-o ConnectionAttempts={mpi.SSH_CONNECTION_ATTEMPTS}"


# ---- hostfile ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_hostfile_golden(name: str) -> None:
    assert_golden(f"hostfile-{name}.txt", mpi.hostfile(name, HOSTS))


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ([], "at least one host"),
        ([("node0", 1), ("node0", 2)], "appears twice"),
        ([("node 0", 1)], "whitespace"),
        ([("node0:1", 1)], "whitespace"),
        ([("a#b", 1)], "whitespace"),
        ([("", 1)], "non-empty"),
        ([("node0", 0)], "at least 1"),
    ],
)
def test_hostfile_refuses_bad_hosts(hosts: list[tuple[str, int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mpi.hostfile("mpich", hosts)


def test_unknown_flavour_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="intelmpi, mpich, openmpi"):
        mpi.hostfile("lam", HOSTS)


# ---- environment -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_environment_golden(name: str) -> None:
    f = mpi.FLAVOURS[name]
    env = mpi.mpi_environment(
        name, W, f"{W}/ssh_config", f"{W}/{f.hostfile_name}", "lo", shm_dir=f"{W}/shm"
    )
    assert_golden(f"env-{name}.json", as_json(env))


@pytest.mark.parametrize("name", FLAVOURS)
def test_environment_hostile_golden(name: str) -> None:
    env = mpi.mpi_environment(
        name, HOSTILE_DIR, f"{ALIAS}/ssh_config", f"{HOSTILE_DIR}/hostfile\n", None
    )
    assert_golden(f"env-{name}-hostile.json", as_json(env))


@pytest.mark.parametrize("name", FLAVOURS)
def test_environment_refuses_a_config_path_launchers_would_split(name: str) -> None:
    with pytest.raises(mpi.UnsafePathError, match="not a plain path"):
        mpi.mpi_environment(name, HOSTILE_DIR, f"{HOSTILE_DIR}/ssh_config", "/h", None)


# ---- launch argv -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAVOURS)
def test_argv_golden(name: str) -> None:
    f = mpi.FLAVOURS[name]
    argv = mpi.launch_argv(
        name,
        "/opt/mpi/bin/mpiexec",
        8,
        2,
        f"{W}/{f.hostfile_name}",
        f"{W}/ssh_config",
        "lo",
        ["/venv/bin/python", "train.py", "--lr", "0.1"],
        ["MPI4PY_LIBMPI", "PYTHONPATH", "MPI4PY_LIBMPI"],
    )
    assert_golden(f"argv-{name}.json", as_json(argv))


@pytest.mark.parametrize("name", FLAVOURS)
def test_argv_hostile_golden(name: str) -> None:
    argv = mpi.launch_argv(
        name,
        "/opt/my mpi/bin/mpiexec",
        3,
        None,
        f"{HOSTILE_DIR}/hostfile",
        f"{ALIAS}/ssh_config",
        None,
        HOSTILE_COMMAND,
        [],
    )
    assert_golden(f"argv-{name}-hostile.json", as_json(argv))
    assert argv[-len(HOSTILE_COMMAND) :] == HOSTILE_COMMAND


@pytest.mark.parametrize("name", FLAVOURS)
def test_argv_refuses_a_non_plain_ssh_path(name: str) -> None:
    with pytest.raises(mpi.UnsafePathError) as info:
        mpi.launch_argv(name, "mpiexec", 1, 1, "/h", f"{HOSTILE_DIR}/ssh_config", None, ["x"], [])
    wanted = "ssh-wrapper" if mpi.FLAVOURS[name].ssh_path_is_wrapper else "ssh_config"
    assert info.value.path == f"{HOSTILE_DIR}/{wanted}"


def test_argv_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as info:
        mpi.launch_argv("openmpi", "", 0, 0, "/h", "/c", None, [], ["OK", "BAD-NAME", "1X"])
    message = str(info.value)
    for part in ("mpiexec path", "ranks must", "ranks per node", "command is empty", "BAD-NAME"):
        assert part in message
    assert "'OK'" not in message


def test_argv_refuses_a_bad_interface() -> None:
    with pytest.raises(ValueError, match="interface"):
        mpi.launch_argv("mpich", "m", 1, 1, "/h", "/c", "lo; rm -rf /", ["x"], [])


def test_argv_takes_an_explicit_wrapper() -> None:
    argv = mpi.launch_argv("mpich", "m", 2, 1, "/h", "/c", None, ["x"], [], ssh_wrapper="/w/s")
    assert argv[argv.index("-launcher-exec") + 1] == "/w/s"


# ---- ssh wrapper -------------------------------------------------------------------------


def test_ssh_wrapper_golden() -> None:
    assert_golden("ssh-wrapper.sh", mpi.ssh_wrapper())
    assert mpi.ssh_wrapper(f"{W}/ssh_config") == mpi.ssh_wrapper()  # placeholder: relative
    assert_golden("ssh-wrapper-absolute.sh", mpi.ssh_wrapper(f"{HOSTILE_DIR}/ssh_config"))


@pytest.mark.parametrize("absolute", [False, True])
def test_ssh_wrapper_runs_from_a_hostile_directory(tmp_path: Path, absolute: bool) -> None:
    here = tmp_path / 'it\'s a "dir"; $HOME\nx'
    here.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done\n')
    wrapper = here / "ssh-wrapper"
    cfg = here / "ssh_config"
    wrapper.write_text(mpi.ssh_wrapper(str(cfg) if absolute else "ssh_config"))
    for p in (fake, wrapper):
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    out = subprocess.run(
        [str(wrapper), "-x", "node1", "echo $HOME; true"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        timeout=10,
        check=True,
    ).stdout
    assert out.decode().split("\0")[:-1] == ["-F", str(cfg), "-x", "node1", "echo $HOME; true"]


# ---- flavour detection -------------------------------------------------------------------

INTEL_VERSION = (  # not captured here (no Intel MPI on this machine); the documented shape
    "Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619 (id: c2e19c2f3e)\n"
    "Copyright 2003-2023, Intel Corporation.\n"
)


@pytest.mark.parametrize("name", ["openmpi", "mpich"])
def test_detects_captured_version_texts(name: str) -> None:
    text = (GOLDEN / f"version-{name}.txt").read_text()
    assert mpi.detect_flavour(text) == name


def test_detects_intel_before_its_hydra_details() -> None:
    assert mpi.detect_flavour(INTEL_VERSION + "HYDRA build details:\n") == "intelmpi"


def test_detection_of_an_unknown_launcher_quotes_it() -> None:
    with pytest.raises(ValueError, match="LAM 7"):
        mpi.detect_flavour("mpirun (LAM 7.1.4)\n")


# ---- launcher.wire: arguments and environment --------------------------------------------


def test_wire_parses_options_and_command() -> None:
    o = wire.parse_args(
        ["--mpi", "mpich", "--np", "3", "-x", "A,B", "-x", "C", "--", "python", "--np", "x"]
    )
    assert (o.mpi, o.np, o.forward_env) == ("mpich", 3, ("A", "B", "C"))
    assert o.command == ("python", "--np", "x")
    assert wire.parse_args(["--dry-run", "true"]).command == ("true",)


@pytest.mark.parametrize(
    "argv", [["--"], [], ["--np", "0", "--", "x"], ["--mpi", "lam", "--", "x"]]
)
def test_wire_refuses_bad_usage(argv: list[str]) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.parse_args(argv)
    assert info.value.exit_code == wire.EXIT_USAGE


def test_wire_layout_from_env() -> None:
    layout = wire.layout_from_env(
        {
            "MNP_WIRING_DIR": "/w",
            "MNP_NODE_ALIASES": " node0  node1 node2 ",
            "MNP_NUM_NODES": "3",
            "MNP_NODE_INDEX": "0",
            "MNP_TASKS_PER_NODE": "4",
            "MNP_MPI_IFACE": "lo",
            "MNP_MPI_FORWARD_ENV": "A, B C",
        },
        need_wiring=True,
    )
    assert layout.aliases == ("node0", "node1", "node2")
    assert layout.others == ("node1", "node2")
    assert (layout.tasks_per_node, layout.iface, layout.forward_env) == (4, "lo", ("A", "B", "C"))


def test_wire_layout_names_every_problem() -> None:
    with pytest.raises(wire.WireError) as info:
        wire.layout_from_env(
            {
                "MNP_NODE_ALIASES": "node0 node1",
                "MNP_NUM_NODES": "3",
                "MNP_NODE_INDEX": "1",
                "MNP_TASKS_PER_NODE": "zero",
            },
            need_wiring=True,
        )
    message = str(info.value)
    assert info.value.exit_code == wire.EXIT_USAGE
    for part in ("MNP_NUM_NODES=3", "not the main node", "'zero'", "MNP_WIRING_DIR"):
        assert part in message


def test_wire_main_index_falls_back_to_the_batch_variable() -> None:
    env = {"MNP_NODE_ALIASES": "n2 n0", "MNP_NODE_INDEX": "2", "AWS_BATCH_JOB_MAIN_NODE_INDEX": "2"}
    assert wire.layout_from_env(env, need_wiring=False).aliases == ("n2", "n0")


# ---- launcher.wire: readiness with a fake clock ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_returns_at_once_when_every_node_answers() -> None:
    clock = FakeClock()
    calls: list[list[str]] = []

    def probe(nodes: Sequence[str], timeout: float) -> dict[str, str | None]:
        calls.append(list(nodes))
        return dict.fromkeys(nodes)

    assert wire.wait_until_ready(["n1", "n2"], probe, 60, clock=clock, sleep=clock.sleep) == {}
    assert calls == [["n1", "n2"]] and clock.sleeps == []


def test_wait_backs_off_and_probes_only_pending_nodes() -> None:
    clock = FakeClock()
    calls: list[list[str]] = []

    def probe(nodes: Sequence[str], timeout: float) -> dict[str, str | None]:
        calls.append(list(nodes))
        up_after = {"n1": 100.0, "n2": 101.0}
        return {n: None if clock.now >= up_after[n] else "refused" for n in nodes}

    assert wire.wait_until_ready(["n1", "n2"], probe, 60, clock=clock, sleep=clock.sleep) == {}
    assert calls[0] == ["n1", "n2"] and all(c == ["n2"] for c in calls[1:])
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8]


def test_wait_gives_up_at_the_deadline_with_the_last_errors() -> None:
    clock = FakeClock()

    def probe(nodes: Sequence[str], timeout: float) -> dict[str, str | None]:
        assert timeout <= wire.PROBE_TIMEOUT
        clock.now += 0.5  # a probe takes time too
        return {n: None if n == "n1" else f"refused at {clock.now:g}" for n in nodes}

    left = wire.wait_until_ready(["n1", "n2", "n3"], probe, 5, clock=clock, sleep=clock.sleep)
    assert set(left) == {"n2", "n3"}
    assert clock.now <= 105 + wire.MIN_PROBE_TIMEOUT  # one short probe at the deadline
    assert left["n2"] == f"refused at {clock.now:g}"
    assert all(s <= wire.MAX_BACKOFF for s in clock.sleeps)


# ---- launcher.wire: launcher resolution and argv -----------------------------------------


def test_resolve_prefers_the_first_candidate_of_the_wanted_flavour() -> None:
    texts = {
        "/venv/bin/mpiexec": "HYDRA build details:",
        "/usr/bin/mpirun": "mpirun (Open MPI) 4.1.4",
    }
    cands = list(texts)
    assert wire.resolve_launcher("auto", None, cands, texts.__getitem__) == (cands[0], "mpich")
    assert wire.resolve_launcher("openmpi", None, cands, texts.__getitem__) == (
        "/usr/bin/mpirun",
        "openmpi",
    )
    with pytest.raises(wire.WireError) as info:
        wire.resolve_launcher("intelmpi", None, cands, texts.__getitem__)
    assert info.value.exit_code == wire.EXIT_UNAVAILABLE
    assert "/usr/bin/mpirun (openmpi)" in str(info.value)


def test_resolve_trusts_an_explicit_launcher_and_flavour() -> None:
    def never(path: str) -> str:
        raise AssertionError("must not run --version")

    assert wire.resolve_launcher("mpich", "/x/mpiexec", [], never) == ("/x/mpiexec", "mpich")


def test_candidates_start_next_to_python(tmp_path: Path) -> None:
    venv, other = tmp_path / "venv" / "bin", tmp_path / "other"
    for d in (venv, other):
        d.mkdir(parents=True)
        (d / "mpiexec").write_text("#!/bin/sh\n")
        (d / "mpiexec").chmod(0o755)
    (other / "mpirun").symlink_to(other / "mpiexec")
    found = wire.launcher_candidates(str(venv / "python"), f"{other}:{venv}")
    assert found == [str(venv / "mpiexec"), str(other / "mpiexec")]


def test_build_argv_aliases_a_non_plain_wiring_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wiring = tmp_path / "my job's wiring"
    wiring.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    layout = wire.Layout(str(wiring), ("node0", "node1"), 2, "lo", ())
    options = wire.parse_args(["--", "/bin/true"])
    argv = wire.build_argv(options, layout, {"PATH": "/bin"}, "/m/mpiexec", "openmpi")
    agent = argv[argv.index("plm_rsh_agent") + 1]
    config = agent.removeprefix("ssh -F ")
    assert mpi.is_plain_path(config) and config.startswith(str(tmp_path))
    assert Path(config).parent.resolve() == wiring.resolve()
    assert argv[argv.index("--hostfile") + 1] == str(Path(config).parent / "hostfile.openmpi")


def test_build_argv_refuses_more_ranks_than_slots() -> None:
    layout = wire.Layout("/w", ("node0", "node1"), 2, None, ())
    with pytest.raises(wire.WireError, match="exceeds 2 nodes"):
        wire.build_argv(wire.parse_args(["--np", "5", "--", "x"]), layout, {}, "/m", "mpich")


def test_launcher_wire_imports_without_head_dependencies() -> None:
    forbidden = ["starlette", "uvicorn", "pydantic", "click", "rich", "boto3", "docker"]
    code = "; ".join(
        [
            "import sys",
            *(f"sys.modules[{name!r}] = None" for name in forbidden),
            "import launcher.wire",
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r}"
            " and sys.modules[m] is not None)",
            "assert not bad, bad",
        ]
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
