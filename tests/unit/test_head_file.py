"""Finding a moved head: the real agent with ``--head-file`` against fake heads, and
``mnp down`` choosing between detaching (SIGTERM) and stopping the nodes too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnp.cli.main import cli
from mnp.config import STOP_NODES_SIGNAL
from mnp.providers.local import sweep
from tests.unit.test_launcher_agent import REPO, TOKEN, FakeHead, assignment, until


def start_agent(root: Path, *head_args: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "launcher.agent", *head_args, "--node-id", "node-1",
        "--compute-environment", "local", "--address", "127.0.0.2", "--vcpus", "1",
        "--memory-mib", "512", "--root", str(root), "--no-ssh",
    ]  # fmt: skip
    env = {**os.environ, "MNP_AGENT_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def heads() -> Iterator[list[FakeHead]]:
    made: list[FakeHead] = []
    yield made
    for head in made:
        if not head.dead:
            head.close()


def test_agent_follows_the_head_file_to_a_head_on_another_port(
    heads: list[FakeHead], tmp_path: Path
) -> None:
    root, head_file, gate = tmp_path / "root", tmp_path / "head.url", tmp_path / "gate"
    first = FakeHead()
    heads.append(first)
    head_file.write_text(first.url + "\n")
    agent = start_agent(root, "--head-file", str(head_file))  # --head comes from the file
    try:
        until(lambda: first.registers, "registration with the first head")
        script = f'while [ ! -e "{gate}" ]; do sleep 0.01; done; echo done'
        first.assign(assignment(["sh", "-c", script]))
        until(lambda: first.of("job-1/1", "started"), "job start")
        first.close()
        second = FakeHead()  # another port, as a head restarted with --port 0 would get
        heads.append(second)
        assert second.url != first.url
        head_file.write_text(second.url + "\n")
        gate.write_text("")
        exited = until(lambda: second.of("job-1/1", "exited"), "exited at the second head", 5)
        assert exited is not None and exited["exit_code"] == 0
        assert [e["data"] for e in second.snapshot() if e["kind"] == "log"] == ["done\n"]
        assert second.tokens == {TOKEN}
        assert agent.poll() is None
    finally:
        agent.kill()
        agent.wait(timeout=10)
        sweep(root)


def test_agent_needs_head_or_a_readable_head_file(tmp_path: Path) -> None:
    for args in ([], ["--head-file", str(tmp_path / "missing")]):
        proc = start_agent(tmp_path / "root", *args)
        assert proc.wait(timeout=10) == 2  # argparse's usage error


@pytest.mark.parametrize(
    ("flags", "sig", "said"),
    [
        ([], signal.SIGTERM, "its nodes keep running their jobs"),
        (["--stop-nodes"], STOP_NODES_SIGNAL, "and its nodes"),
    ],
)
def test_down_detaches_unless_told_to_stop_the_nodes(
    tmp_path: Path, flags: list[str], sig: signal.Signals, said: str
) -> None:
    # a stand-in head process (its command line mentions mnp, as the real one's does)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mnp-test"])
    try:
        (tmp_path / "head.pid").write_text(str(proc.pid))
        result = CliRunner().invoke(cli, ["--home", str(tmp_path), "down", *flags])
        assert result.exit_code == 0, result.output
        assert said in result.stdout
        assert proc.wait(timeout=5) == -sig
    finally:
        proc.kill()
        proc.wait()
