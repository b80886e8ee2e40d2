"""launcher.process with real processes: exits, start failures, timeouts, kills, logs."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from launcher.attempt import exit_code_of
from launcher.logs import LOG_CHUNK_BYTES, LogTail
from launcher.process import AttemptProcess
from mnp.build.outputs import safe_file_name
from mnp.spec.protocol import SCRIPT_PLACEHOLDER, Assignment, Event

T = TypeVar("T")
Runner = Callable[..., tuple[AttemptProcess, list[Event]]]


def assignment(
    command: list[str],
    *,
    job_id: str = "job-1",
    attempt: int = 1,
    environment: dict[str, str] | None = None,
    timeout: float | None = None,
    grace: float = 0.2,
    workdir: str | None = None,
) -> Assignment:
    return Assignment(
        attempt_id=f"{job_id}/{attempt}",
        job_id=job_id,
        attempt=attempt,
        command=command,
        environment=environment or {},
        timeout_seconds=timeout,
        kill_grace_seconds=grace,
        workdir=workdir,
    )


async def until(predicate: Callable[[], T], what: str, timeout: float = 1.5) -> T:
    """Poll ``predicate`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def procs() -> Iterator[list[AttemptProcess]]:
    """Every AttemptProcess a test creates; all are SIGKILLed and reaped at teardown."""
    created: list[AttemptProcess] = []
    yield created
    for proc in created:
        proc.close()


@pytest.fixture
def run(tmp_path: Path, procs: list[AttemptProcess]) -> Runner:
    """Run one assignment to completion on a fresh loop: (process, events)."""

    def runner(
        a: Assignment,
        *,
        env: dict[str, str] | None = None,
        during: Callable[[AttemptProcess], Awaitable[None]] | None = None,
    ) -> tuple[AttemptProcess, list[Event]]:
        events: list[Event] = []

        async def main() -> None:
            proc = AttemptProcess(a, tmp_path / "root", events.append, env=env or dict(os.environ))
            procs.append(proc)
            proc.start()
            if during is not None:
                await during(proc)
            await asyncio.wait_for(proc.wait(), 1.8)

        asyncio.run(main())
        return procs[-1], events

    return runner


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def output(events: list[Event], stream: str) -> str:
    return "".join(e.data for e in events if e.kind == "log" and e.stream == stream)


def test_true_exits_zero(run: Runner) -> None:
    proc, events = run(assignment(["true"]))
    assert kinds(events) == ["started", "exited"]
    assert events[0].pid == proc.pid and proc.pid is not None
    last = events[-1]
    assert (last.exit_code, last.timed_out, last.reason) == (0, False, None)


def test_exit_code_passed_through(run: Runner) -> None:
    _, events = run(assignment(["sh", "-c", "exit 3"]))
    assert events[-1].kind == "exited" and events[-1].exit_code == 3


def test_command_not_found_is_a_start_failure(run: Runner) -> None:
    proc, events = run(assignment(["nosuchcmd-mnp"]))
    assert kinds(events) == ["start_failed"]
    assert events[0].reason == (
        "CannotStartContainerError: [Errno 2] No such file or directory: 'nosuchcmd-mnp'"
    )
    assert proc.pid is None and proc.exit_code is None


def test_empty_command_and_unusable_workdir_are_start_failures(run: Runner, tmp_path: Path) -> None:
    _, events = run(assignment([]))
    assert kinds(events) == ["start_failed"]
    assert events[0].reason == "CannotStartContainerError: empty command"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _, events = run(assignment(["true"], workdir=str(blocker / "sub")))
    assert kinds(events) == ["start_failed"]
    assert (events[0].reason or "").startswith("CannotStartContainerError: [Errno 20]")


def test_timeout_sends_sigterm(run: Runner) -> None:
    started = time.monotonic()
    _, events = run(assignment(["sleep", "30"], timeout=0.3, grace=0.2))
    last = events[-1]
    assert (last.kind, last.exit_code, last.timed_out, last.reason) == (
        "exited",
        143,
        True,
        "Timeout",
    )
    assert 0.3 <= time.monotonic() - started < 1.5


def test_sigterm_ignored_escalates_to_sigkill_after_grace(run: Runner) -> None:
    async def kill_when_ready(proc: AttemptProcess) -> None:
        ready = proc.attempt_dir / "stdout.log"
        await until(lambda: ready.read_text() == "ready\n", "the TERM trap to be set")
        proc.kill("Terminated by user")
        t0 = time.monotonic()
        assert await proc.wait() == 137
        assert time.monotonic() - t0 >= 0.2  # the grace was honoured

    script = 'trap "" TERM; echo ready; sleep 30'
    _, events = run(assignment(["sh", "-c", script], grace=0.2), during=kill_when_ready)
    last = events[-1]
    assert (last.exit_code, last.timed_out, last.reason) == (137, False, "Terminated by user")


def test_kill_reports_reason_and_late_kills_are_ignored(run: Runner) -> None:
    async def kill(proc: AttemptProcess) -> None:
        proc.kill("Terminated by user", grace=5.0)
        proc.kill("second reason loses", grace=5.0)

    proc, events = run(assignment(["sleep", "30"]), during=kill)
    assert kinds(events) == ["started", "exited"]
    assert (events[-1].exit_code, events[-1].reason) == (143, "Terminated by user")
    proc.kill("after exit")  # no loop needed, no error, no event
    proc.kill_now()
    assert len(events) == 2


def test_leftover_children_are_killed(run: Runner) -> None:
    _, events = run(assignment(["sh", "-c", "sleep 30 & echo $!"]))
    assert events[-1].exit_code == 0
    child = int(output(events, "stdout"))

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"

    asyncio.run(until(gone, f"background child {child} to be killed"))


def test_stdout_and_stderr_with_offsets(run: Runner) -> None:
    script = "import sys; sys.stdout.write('x' * 150000 + 'é'); sys.stderr.write('oops\\n')"
    _, events = run(assignment([sys.executable, "-c", script]))
    assert kinds(events)[0] == "started" and kinds(events)[-1] == "exited"
    assert output(events, "stdout") == "x" * 150000 + "é"
    assert output(events, "stderr") == "oops\n"
    position = 0
    for e in (e for e in events if e.stream == "stdout"):
        assert e.offset == position
        size = len(e.data.encode())
        assert size <= LOG_CHUNK_BYTES
        position += size
    assert position == 150002


def test_utf8_character_split_across_reads(run: Runner, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = (
        "import os, sys, time\n"
        "sys.stdout.buffer.write(b'a\\xc3'); sys.stdout.flush()\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.005)\n"
        "sys.stdout.buffer.write(b'\\xa9b')\n"
    )

    async def split(proc: AttemptProcess) -> None:
        log = proc.attempt_dir / "stdout.log"
        await until(lambda: log.stat().st_size == 2, "the first half of 'é'")
        proc.read_logs()  # reads b"a\xc3": only "a" can be decoded yet
        gate.write_text("")

    _, events = run(assignment([sys.executable, "-c", script]), during=split)
    logs = [(e.offset, e.data) for e in events if e.kind == "log"]
    assert logs == [(0, "a"), (1, "éb")]
    assert events[1].kind == "log" and events[2].kind == "log" and events[3].kind == "exited"


def test_log_tail_holds_back_partial_characters(tmp_path: Path) -> None:
    path = tmp_path / "log"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    tail = LogTail(fd, "stdout")
    try:
        assert tail.read() == []
        os.write(fd, b"a\xe2\x82")
        assert tail.read() == [(0, "a")]
        assert tail.read() == []
        os.write(fd, b"\xac!")
        assert tail.read() == [(1, "€!")]
        os.write(fd, b"\xf0\x9f")
        assert tail.read(final=True) == [(5, "\ufffd")]
    finally:
        tail.close()


def test_environment_is_laid_over_the_base(run: Runner) -> None:
    env = {"BASE_ONLY": "base", "BOTH": "base", "PATH": os.environ["PATH"]}
    a = assignment(
        ["sh", "-c", 'printf "%s|%s|%s" "$BASE_ONLY" "$BOTH" "$ODD"'],
        environment={"BOTH": "job", "ODD": "a b $HOME 'q' \"dq\""},
    )
    _, events = run(a, env=env)
    assert output(events, "stdout") == "base|job|a b $HOME 'q' \"dq\""


def test_workdir_with_hostile_characters(run: Runner, tmp_path: Path) -> None:
    workdir = tmp_path / "dir with spaces 'single' \"double\" $HOME; x" / "sub"
    proc, events = run(assignment(["pwd"], workdir=str(workdir)))
    assert proc.workdir == workdir
    assert output(events, "stdout") == f"{workdir}\n"
    # the logs stay in the agent's own directory: the user's directory gets nothing of mnp's
    assert (proc.attempt_dir / "stdout.log").read_text() == f"{workdir}\n"
    assert (proc.attempt_dir / "stderr.log").read_text() == ""
    assert list(workdir.iterdir()) == []


def test_default_workdir_uses_a_safe_job_id(run: Runner, tmp_path: Path) -> None:
    proc, events = run(assignment(["pwd"], job_id="a/b c$d;'e'", attempt=2))
    expected = tmp_path / "root" / "jobs" / "a_b_c_d__e_.2"
    assert proc.workdir == expected and expected.is_dir()
    assert events[-1].exit_code == 0


def test_safe_file_name_never_escapes() -> None:
    assert safe_file_name("..") == "__"
    assert safe_file_name(".") == "_"
    assert safe_file_name("") == "_"
    assert safe_file_name("../x") == ".._x"
    assert safe_file_name("ok-1.2_3") == "ok-1.2_3"


def test_exit_code_mapping() -> None:
    assert [exit_code_of(c) for c in (0, 3, -9, -15)] == [0, 3, 137, 143]


# --- output files and batch scripts (sbatch) ---------------------------------------------------


def logged(events: list[Event], stream: str) -> str:
    return "".join(e.data for e in events if e.kind == "log" and e.stream == stream)


def test_stdout_path_takes_both_streams_and_still_feeds_the_log(
    run: Runner, tmp_path: Path
) -> None:
    out = tmp_path / "out dir; 'q' $x"
    out.mkdir()
    target = out / "slurm-1.out"
    a = replace(
        assignment(
            [
                sys.executable,
                "-c",
                "import sys; print('o'); sys.stdout.flush(); print('e', file=sys.stderr)",
            ]
        ),
        stdout_path=str(target),
    )
    proc, events = run(a)
    assert proc.exit_code == 0
    assert target.read_text() == "o\ne\n"
    assert logged(events, "stdout") == "o\ne\n"


def test_separate_stderr_path(run: Runner, tmp_path: Path) -> None:
    a = replace(
        assignment(["sh", "-c", "echo o; echo e >&2"]),
        stdout_path=str(tmp_path / "o.txt"),
        stderr_path=str(tmp_path / "e.txt"),
    )
    _, events = run(a)
    assert (tmp_path / "o.txt").read_text() == "o\n"
    assert (tmp_path / "e.txt").read_text() == "e\n"
    assert logged(events, "stderr") == "e\n"


def test_a_missing_output_directory_is_made_at_start_as_slurm_does(
    run: Runner, tmp_path: Path
) -> None:
    out = tmp_path / "nope" / "deeper" / "o.txt"
    a = replace(assignment(["echo", "hi"]), stdout_path=str(out))
    proc, events = run(a)
    assert proc.exit_code == 0, events
    assert out.read_text() == "hi\n"


def test_an_output_path_that_cannot_be_made_fails_the_start(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    a = replace(assignment(["true"]), stdout_path=str(tmp_path / "file" / "o.txt"))
    _, events = run(a)
    assert [e.kind for e in events] == ["start_failed"]
    assert "CannotStartContainerError" in (events[0].reason or "")


def test_script_runs_with_the_command_as_arguments_and_is_removed(
    run: Runner, tmp_path: Path
) -> None:
    script = '#!/bin/sh\nprintf "%s|" "$0" "$@"\n'
    hostile = "a b; 'c' \"d\" $e\nf"
    a = replace(assignment([hostile, "two"]), script=script)
    proc, events = run(a)
    assert proc.exit_code == 0
    path, *args = logged(events, "stdout").rstrip("|").split("|")
    assert args == [hostile, "two"]
    assert path == str(proc.script_path)
    assert not proc.script_path.exists()


def test_script_takes_the_placeholder_position(run: Runner) -> None:
    a = replace(assignment(["sh", "-c", 'sh "$1" x', "-", SCRIPT_PLACEHOLDER]),
                script="#!/bin/sh\necho got $1\n")  # fmt: skip
    _, events = run(a)
    assert logged(events, "stdout") == "got x\n"
