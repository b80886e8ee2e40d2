"""The node's fence (:mod:`launcher.fence`): its line protocol never crashes on bad input, and
the real watchdog process stops fenced groups at the lease's end, resumes them on a newer
lease, and kills them on ``kill`` or when its pipe reaches EOF (the agent died)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.fence import Command, parse_line

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lease 12.5", Command("lease", deadline=12.5)),
        ("  lease   7  ", Command("lease", deadline=7.0)),
        ("+group 4242", Command("+group", pgid=4242)),
        ("-group 4242", Command("-group", pgid=4242)),
        ("+container mnp-n1-job_1", Command("+container", name="mnp-n1-job_1")),
        ("-container mnp-x", Command("-container", name="mnp-x")),
        ("kill", Command("kill")),
    ],
)
def test_good_lines_parse(line: str, expected: Command) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "", "lease", "lease soon", "lease nan", "lease 1 2", "+group", "+group 0", "+group 1",
        "+group -5", "+group 12ab", "+group 99999999999", "+container", "+container ../x",
        "+container a;b", "kill now", "KILL", "stop 12", "\x00\xff", "+group 1e3",
    ],
)  # fmt: skip
def test_bad_lines_are_ignored(line: str) -> None:
    assert parse_line(line) is None


def state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait(what: str, cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def job() -> Iterator[subprocess.Popen[bytes]]:
    """A real process in a group of its own (as the agent starts attempts)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    # A process still being exec'd may be in D (disk sleep) for a moment; start from asleep.
    wait("the job to be asleep", lambda: state(proc.pid) == "S")
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def fence() -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.fence"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    yield proc
    proc.kill()
    proc.wait()


def send(fence: subprocess.Popen[bytes], *lines: str | bytes) -> None:
    assert fence.stdin is not None
    for line in lines:
        fence.stdin.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    fence.stdin.flush()


def gone(pid: int) -> bool:
    return state(pid) in (None, "Z")


def test_the_lease_end_stops_the_work_and_a_newer_lease_resumes_it(
    job: subprocess.Popen[bytes], fence: subprocess.Popen[bytes]
) -> None:
    send(fence, f"+group {job.pid}", b"\xff garbage \x00", "lease banana", "+group 1")
    assert state(job.pid) == "S"  # running (asleep in its own work) before any lease ends
    send(fence, f"lease {time.monotonic() + 0.3}")
    wait("the fence to stop the job", lambda: state(job.pid) == "T")
    send(fence, f"lease {time.monotonic() + 30}")
    wait("the job to resume", lambda: state(job.pid) == "S")
    assert fence.poll() is None, "bad lines never crash the fence"
    send(fence, "kill")
    wait("the job to be killed", lambda: job.poll() is not None)


def test_eof_kills_everything_at_once(
    job: subprocess.Popen[bytes], fence: subprocess.Popen[bytes]
) -> None:
    send(fence, f"lease {time.monotonic() + 60}", f"+group {job.pid}")
    assert fence.stdin is not None
    fence.stdin.close()  # the agent died
    wait("the job to be killed", lambda: job.poll() is not None, timeout=2.0)
    assert fence.wait(5) == 0


def test_an_unfenced_group_is_left_alone(
    job: subprocess.Popen[bytes], fence: subprocess.Popen[bytes]
) -> None:
    send(fence, f"+group {job.pid}", f"-group {job.pid}", f"lease {time.monotonic()}")
    assert fence.stdin is not None
    fence.stdin.close()
    assert fence.wait(5) == 0
    assert state(job.pid) == "S"
