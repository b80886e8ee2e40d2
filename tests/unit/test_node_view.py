"""What an attempt sees of a node with a namespace of its own: its private ``/tmp``, the gang's
``ssh_config`` as the system one, the node's share of the CPUs (``launcher.mountns``), and
which paths under the machine's ``/tmp`` stay reachable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import mountns
from launcher.netns import MAX_KEPT, View, node_cpus, spawn_args, tmp_dirs_named

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")


@pytest.mark.parametrize(
    ("address", "vcpus", "machine", "expected"),
    [
        ("10.200.0.2", 1, [0, 1], (0,)),
        ("10.200.0.3", 1, [0, 1], (1,)),
        ("10.200.0.4", 1, [0, 1], (0,)),  # a third 1-vCPU node shares a CPU
        ("10.200.0.3", 2, [0, 1, 2, 3], (0, 3)),  # wraps round
        ("10.200.0.3", 8, [0, 1], (0, 1)),  # never more than the machine has
        ("10.200.0.3", 0, [0, 1], (1,)),
        ("node-a", 1, [4], (4,)),
    ],
)
def test_node_cpus_spread_nodes_and_cap_at_the_machine(
    address: str, vcpus: int, machine: list[int], expected: tuple[int, ...]
) -> None:
    assert node_cpus(address, vcpus, machine) == expected


def test_named_tmp_paths_keep_their_deepest_existing_directory(tmp_path: Path) -> None:
    if not str(tmp_path).startswith("/tmp/"):
        pytest.skip("needs pytest's tmp_path under /tmp")
    (tmp_path / "d i r").mkdir()
    (tmp_path / "f").write_text("x")
    texts = [
        f"python {tmp_path / 'f'} --out={tmp_path / 'new' / 'file'}",  # a file: its folder
        f"{tmp_path / 'd i r'}",  # cut at the space: its existing prefix's folder
        "/tmp/hostfile /tmp",  # not there / the machine's /tmp itself: nothing to keep
        "/var/lib/x",
    ]
    assert tmp_dirs_named(texts) == (str(tmp_path),)
    many = [f"{tmp_path}/{i}/x" for i in range(40)]
    for i in range(40):
        (tmp_path / str(i)).mkdir()
    assert len(tmp_dirs_named(many)) == MAX_KEPT


def test_without_a_namespace_a_view_is_made_in_the_child_alone() -> None:
    """A host's root agent: its attempts' private /tmp and ssh_config, no ``ip netns exec``,
    no helper to start: the child Popen forks makes the view before it execs the command."""
    view = View("/x/tmp", ("/tmp/a",), "/x/ssh_config")
    argv, extra = spawn_args(["true"], None, None, view)
    assert argv == ["true"]
    assert set(extra) == {"preexec_fn"} and callable(extra["preexec_fn"])
    assert spawn_args(["true"], None, None, None) == (["true"], {})


def view_probe(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A private /tmp, a kept folder with a file in it, an ssh_config, and a shell line that
    shows what a command sees of them."""
    private = tmp_path / "private"
    private.mkdir()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "seen").write_text("kept\n")
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    BatchMode yes\n")
    probe = (
        "echo made > /tmp/hostfile; ls -a /tmp | tr '\\n' ' '; echo; cat seen; "
        "cat /etc/ssh/ssh_config; nproc; pwd"
    )
    return private, kept, config, probe


def assert_view(done: subprocess.CompletedProcess[str], private: Path, kept: Path) -> None:
    assert done.returncode == 0, done
    listing, seen, *rest = done.stdout.splitlines()
    # the attempt's own file, and the way to the kept path; nothing else of the machine's /tmp
    top = kept.relative_to("/tmp").parts[0]
    assert set(listing.split()) == {".", "..", "hostfile", top}, done.stdout
    assert seen == "kept"  # the kept path, and the cwd in it, are reachable as before
    if os.path.exists(mountns.SYSTEM_SSH_CONFIG):
        assert rest[:2] == ["Host *", "    BatchMode yes"], done.stdout
    assert rest[-2:] == ["1", str(kept)], done.stdout
    assert (private / "hostfile").read_text() == "made\n"
    assert not Path("/tmp/hostfile").exists() or Path("/tmp/hostfile").read_text() != "made\n"
    assert "BatchMode yes" not in Path(mountns.SYSTEM_SSH_CONFIG).read_text(), "it leaked out"


@root_only
def test_the_view_made_in_the_child_is_the_helpers(tmp_path: Path) -> None:
    """What the agent's attempts get: the view made between fork and exec, as the script
    makes it (the next test)."""
    private, kept, config, probe = view_probe(tmp_path)
    cpu = min(os.sched_getaffinity(0))
    view = View(str(private), (str(kept),), str(config), (cpu,))
    argv, extra = spawn_args(["/bin/sh", "-c", probe], None, None, view)
    done = subprocess.run(argv, cwd=kept, capture_output=True, text=True, timeout=30, **extra)
    assert_view(done, private, kept)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace of mnp's naming with an ``/etc/netns`` hosts file (removed after,
    also on failure)."""
    name = f"mnp-t{os.getpid() % 10_000}-view"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("10.9.9.9 peer-node\n")
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


@root_only
def test_the_child_enters_the_namespace_as_ip_netns_exec_would(
    tmp_path: Path, namespace: str
) -> None:
    """What an attempt on a namespace node sees, made between fork and exec: the node's
    interfaces (only ``lo`` here), its ``/sys``, its hosts file, and the private ``/tmp``."""
    private = tmp_path / "private"
    private.mkdir()
    probe = "ls /sys/class/net; cat /etc/hosts; echo x > /tmp/mine; ls /tmp"
    argv, extra = spawn_args(["/bin/sh", "-c", probe], namespace, None,
                             View(str(private), (), None))  # fmt: skip
    assert argv == ["/bin/sh", "-c", probe]  # no ip, no helper: the child did it all
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, **extra)
    assert done.returncode == 0 and done.stderr == "", done
    assert done.stdout.split() == ["lo", "10.9.9.9", "peer-node", "mine"], done.stdout
    assert (private / "mine").read_text() == "x\n"
    assert "peer-node" not in Path("/etc/hosts").read_text()  # nothing leaked to the machine


@root_only
def test_a_view_that_cannot_be_made_fails_the_attempt_before_its_command(
    tmp_path: Path,
) -> None:
    view = View(str(tmp_path / "missing"), (), None)
    argv, extra = spawn_args(["/bin/sh", "-c", "echo ran"], None, None, view)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, **extra)
    assert done.returncode == 126 and done.stdout == ""
    assert done.stderr.startswith("mountns: ") and "missing" in done.stderr, done.stderr


def test_the_helper_argv_carries_every_option_then_the_command() -> None:
    argv = mountns.argv("py", ["cmd", "--tmp", "a b"], "/t", ["/tmp/k"], "/s", [0, 2])
    assert argv[:4] == ["py", "-I", "-S", mountns.__file__]
    assert argv[4:] == [
        "--tmp", "/t", "--keep", "/tmp/k", "--ssh-config", "/s", "--cpus", "0,2",
        "--", "cmd", "--tmp", "a b",
    ]  # fmt: skip


def test_the_helper_refuses_a_call_without_tmp_or_command() -> None:
    script = mountns.__file__
    for args in ([], ["--tmp", "/x"], ["--tmp", "/x", "--"], ["--", "true"]):
        done = subprocess.run([sys.executable, "-I", "-S", script, *args], capture_output=True)
        assert done.returncode == 126, (args, done)
        assert b"mountns:" in done.stderr


@root_only
def test_the_helper_gives_a_private_tmp_keeps_named_paths_binds_ssh_config_and_cpus(
    tmp_path: Path,
) -> None:
    private, kept, config, probe = view_probe(tmp_path)
    cpu = min(os.sched_getaffinity(0))
    argv = mountns.argv(
        sys.executable, ["/bin/sh", "-c", probe], str(private), [str(kept)], str(config), [cpu]
    )
    done = subprocess.run(argv, cwd=kept, capture_output=True, text=True, timeout=30)
    assert_view(done, private, kept)


def test_the_jobs_software_under_tmp_stays_reachable(tmp_path: Path) -> None:
    import tempfile

    from launcher.attempts import software_dirs

    venv = Path(tempfile.mkdtemp(prefix="mnpt-venv-"))  # under the machine's /tmp
    try:
        (venv / "bin").mkdir()
        kept = software_dirs({"PATH": f"{venv / 'bin'}:/usr/bin", "PYTHONPATH": "/nowhere"})
        assert str(venv / "bin") in kept
        assert "/usr/bin" not in kept and "/nowhere" not in kept  # only what /tmp would hide
        assert all(p.startswith("/tmp/") for p in kept)
    finally:
        shutil.rmtree(venv, ignore_errors=True)
