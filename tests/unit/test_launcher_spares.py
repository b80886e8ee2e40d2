"""The stock of emptied attempt directories and log files (launcher.spares) and its use by
the attempts of a node: what an ended attempt leaves is reused, never what someone still
holds open, and nothing of one job's output reaches another's log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
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


def test_directories_come_back_and_the_stock_is_bounded(tmp_path: Path) -> None:
    spares = Spares(tmp_path, limit=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert spares.keep_dir(tmp_path / "a")
    assert not spares.keep_dir(tmp_path / "b") and (tmp_path / "b").is_dir()  # full
    assert spares.take_dir(tmp_path / "c") and (tmp_path / "c").is_dir()
    assert not spares.take_dir(tmp_path / "d") and not (tmp_path / "d").exists()


def test_an_earlier_agents_stock_is_removed_on_first_use(tmp_path: Path) -> None:
    old = tmp_path / SPARE_DIR / "7"
    old.mkdir(parents=True)
    (tmp_path / "a").mkdir()
    spares = Spares(tmp_path)
    assert spares.keep_dir(tmp_path / "a")
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
    assert not home.exists() and not home.parent.exists()  # tidied as before
    stock = {p.stat().st_ino for p in (node.root / SPARE_DIR).iterdir()}
    assert len(stock) == 4  # the job's folder, its directory and both logs
    second = node.run("j2", ["sh", "-c", "chmod 755 .; pwd; ls -A"])
    here = attempt_dir_for(second, node.root)
    assert node.output(second) == f"{here}\nstderr.log\nstdout.log\n"  # empty logs, nothing else
    third = node.run("j3", ["stat", "-c", "%a", ".", ".."])
    assert node.output(third) == "700\n700\n"  # whatever the last job made of them
    assert node.output(first) == "one\nerr\n"
    assert (node.root / SPARE_DIR).exists() and len(os.listdir(node.root / SPARE_DIR)) == 4


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
        assert len(stock) == 4 and held not in stock  # removed, not kept for another job
    finally:
        os.kill(leftover, signal.SIGKILL)


def test_a_directory_the_job_left_files_in_is_kept_in_place(tmp_path: Path) -> None:
    node = Node(tmp_path / "root")
    a = node.run("j1", ["sh", "-c", "echo result > out.txt"])
    home = attempt_dir_for(a, node.root)
    assert (home / "out.txt").read_text() == "result\n"
    assert sorted(os.listdir(home)) == ["out.txt", "stderr.log", "stdout.log"]
