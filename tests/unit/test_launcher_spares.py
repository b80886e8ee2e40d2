"""The stock of emptied log files (launcher.spares) and its use by the attempts of a node: an
ended attempt's logs are reused, never what someone still holds open, never a directory (a
left-over process may stand in it), and nothing of one job's output reaches another's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher.attempt import attempt_dir_for
from launcher.attempts import Attempts
from launcher.spares import SPARE_DIR, Spares
from mnp.spec.protocol import Assignment, Event


def test_a_file_someone_holds_open_is_not_kept(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_text("x")
    spares = Spares(tmp_path)
    with open(log):  # any open descriptor, even a reading one
        assert not spares.keep_file(log)
    fd = os.open(log, os.O_WRONLY | os.O_CLOEXEC)
    holder = subprocess.Popen(["sleep", "30"], stdout=fd)
    os.close(fd)
    try:
        assert not spares.keep_file(log)
    finally:
        holder.kill()
        holder.wait()
    assert spares.keep_file(log) and not log.exists()
    assert spares.take_file(tmp_path / "again.log")
    assert (tmp_path / "again.log").read_text() == ""  # kept empty: no disk held for it
    assert not spares.take_file(tmp_path / "more.log")  # the stock is empty now


def test_links_and_directories_are_not_kept_as_files(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("mine")
    (tmp_path / "link").symlink_to(target)
    os.link(target, tmp_path / "hard")
    spares = Spares(tmp_path)
    assert not spares.keep_file(tmp_path / "link")
    assert not spares.keep_file(tmp_path / "hard")  # two links: someone else's name for it
    assert not spares.keep_file(tmp_path)
    assert target.read_text() == "mine"


def test_the_stock_is_bounded(tmp_path: Path) -> None:
    spares = Spares(tmp_path, limit=1)
    for name in ("a", "b"):
        (tmp_path / name).write_text("x")
    assert spares.keep_file(tmp_path / "a")
    assert not spares.keep_file(tmp_path / "b") and (tmp_path / "b").exists()  # full
    assert spares.take_file(tmp_path / "c") and (tmp_path / "c").read_text() == ""
    assert not spares.take_file(tmp_path / "d") and not (tmp_path / "d").exists()


def test_opening_a_file_while_it_is_kept_does_not_kill_the_agent(tmp_path: Path) -> None:
    # an open by another process breaks the lease the keeping holds: the kernel signals the
    # holder (SIGIO by default, which would end the agent); here the rename waits for that
    script = f"""
import os, subprocess, sys
from pathlib import Path
from launcher import spares as mod
log = Path({str(tmp_path / "stdout.log")!r})
log.write_text("x")
rename = os.rename
openers = []
def slow(a, b):
    openers.append(subprocess.Popen([sys.executable, "-c", f"open({{str(log)!r}}).close()"]))
    try:
        openers[0].wait(timeout=1)  # blocked by the lease: it breaks it, the kernel signals us
    except subprocess.TimeoutExpired:
        pass
    rename(a, b)
mod.os.rename = slow
print(mod.Spares(log.parent).keep_file(log))
print("opener", openers[0].wait(timeout=30) is not None)  # the lease was given back
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.split() == ["True", "opener", "True"]


def test_an_earlier_agents_stock_is_removed_on_first_use(tmp_path: Path) -> None:
    old = tmp_path / SPARE_DIR / "7"
    old.mkdir(parents=True)
    (tmp_path / "a").write_text("x")
    spares = Spares(tmp_path)
    assert spares.keep_file(tmp_path / "a")
    assert os.listdir(tmp_path / SPARE_DIR) == ["1"]
    assert (tmp_path / SPARE_DIR).stat().st_mode & 0o777 == 0o700


class Node:
    """An :class:`Attempts` on its own loop, its events collected and its attempts ended."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: list[Event] = []
        self.attempts = Attempts(root, "n1", "127.0.0.1", dict(os.environ), self._sink)

    def _sink(self, event: Event) -> None:
        self.events.append(event)
        if event.kind in ("exited", "start_failed"):
            self.attempts.ended(event.attempt_id)

    def run(self, job_id: str, command: list[str]) -> Assignment:
        a = Assignment(f"{job_id}#1", job_id, 1, command, {}, None, 0.2)

        async def main() -> None:
            self.attempts.start(a)
            deadline = time.monotonic() + 5
            while not any(e.attempt_id == a.attempt_id and e.kind == "exited" for e in self.events):
                assert time.monotonic() < deadline, f"{job_id} did not exit"
                await asyncio.sleep(0.005)

        asyncio.run(main())
        return a

    def output(self, a: Assignment) -> str:
        return "".join(e.data for e in self.events if e.attempt_id == a.attempt_id and e.data)


def test_attempts_reuse_what_the_last_one_left(tmp_path: Path) -> None:
    node = Node(tmp_path / "root")
    first = node.run("j1", ["sh", "-c", "echo one; echo err >&2"])
    home = attempt_dir_for(first, node.root)
    assert not home.exists()  # tidied as before
    stock = {p.stat().st_ino for p in (node.root / SPARE_DIR).iterdir()}
    assert len(stock) == 2  # both logs; the directories are removed
    second = node.run("j2", ["sh", "-c", "pwd; ls -A"])
    here = attempt_dir_for(second, node.root)
    assert node.output(second) == f"{here}\nstderr.log\nstdout.log\n"  # empty logs, nothing else
    assert node.output(first) == "one\nerr\n"
    assert (node.root / SPARE_DIR).exists() and len(os.listdir(node.root / SPARE_DIR)) == 2


def test_a_leftover_process_standing_in_a_jobs_directory_never_writes_into_the_next(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path / "root")
    gone = tmp_path / "go"
    # a process of its own session outlives the job, in the job's directory, and writes there
    # (relative paths) once the next job has started
    escape = f"setsid sh -c 'while [ ! -e {gone} ]; do sleep 0.01; done; echo late > leaked.txt' &"
    first = node.run("j1", ["sh", "-c", escape])
    second = node.run("j2", ["sh", "-c", f"touch {gone}; sleep 0.5; ls -A"])
    assert node.output(second) == "stderr.log\nstdout.log\n"
    assert not (attempt_dir_for(first, node.root) / "leaked.txt").exists()
    assert not attempt_dir_for(second, node.root).exists()  # nothing but logs: tidied


def test_a_log_still_written_by_a_leftover_process_is_not_reused(tmp_path: Path) -> None:
    node = Node(tmp_path / "root")
    pidfile = tmp_path / "leftover.pid"
    # a process of its own session outlives the job's group and keeps writing to its stdout
    escape = f"setsid sh -c 'echo $$ > {pidfile}; while :; do echo late; sleep 0.05; done' &"
    wait = f"while [ ! -s {pidfile} ]; do :; done"
    first = node.run("j1", ["sh", "-c", f"{escape} {wait}"])
    leftover = int(pidfile.read_text())
    try:
        assert not attempt_dir_for(first, node.root).exists()
        node.run("j2", ["true"])  # its logs go to the stock when it ends
        held = os.stat(f"/proc/{leftover}/fd/1").st_ino
        stock = {p.stat().st_ino for p in (node.root / SPARE_DIR).iterdir()}
        assert len(stock) == 2 and held not in stock  # removed, not kept for another job
    finally:
        os.kill(leftover, signal.SIGKILL)


def test_a_directory_the_job_left_files_in_is_kept_in_place(tmp_path: Path) -> None:
    node = Node(tmp_path / "root")
    a = node.run("j1", ["sh", "-c", "echo result > out.txt"])
    home = attempt_dir_for(a, node.root)
    assert (home / "out.txt").read_text() == "result\n"
    assert sorted(os.listdir(home)) == ["out.txt", "stderr.log", "stdout.log"]
