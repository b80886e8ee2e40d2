"""Secrets at rest: private modes on the head's home and the agent's folders, and no MNP
attempt's SSH private key kept once the attempt has ended (real SQLite, real files)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.attempt import make_private_dir, open_outputs
from launcher.gangfiles import prepare, wiring_dir
from mnp.config import secure_home
from mnp.spec.protocol import Assignment, Wiring
from mnp.store.sqlite import SCHEMA, Store
from tests.unit.helpers_core import Head
from tests.unit.test_gang_service import LOST_AFTER, add_nodes, define, poll, poll_all, start

KEY_MARK = "BEGIN OPENSSH PRIVATE KEY"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A permissive umask, as a user's shell may have: modes must not depend on it."""
    old = os.umask(0o002)
    yield
    os.umask(old)


# --- the store ----------------------------------------------------------------------------------


def test_the_database_and_its_journal_files_are_0600(tmp_path: Path, loose_umask: None) -> None:
    store = Store(tmp_path / "mnp.sqlite3")
    with store.transaction():
        store.set_meta("x", "y")
    names = {p.name: mode(p) for p in tmp_path.iterdir()}
    store.close()
    assert names == {"mnp.sqlite3": 0o600, "mnp.sqlite3-wal": 0o600, "mnp.sqlite3-shm": 0o600}


def test_a_store_an_older_head_left_is_made_0600(tmp_path: Path) -> None:
    path = tmp_path / "mnp.sqlite3"
    Store(path).close()
    os.chmod(path, 0o644)
    Store(path).close()
    assert mode(path) == 0o600


def old_store(path: Path, jobs: list[tuple[str, str | None, str, dict[str, object]]]) -> None:
    """Rows as an older head wrote them: (job id, parent id, status, gang_state)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    for job_id, parent, status, gang_state in jobs:
        doc = json.dumps({"gang_state": gang_state} if gang_state else {})
        db.execute(
            "INSERT INTO jobs VALUES (?, 's', ?, NULL, 'q', 'n', ?, 0, ?)",
            (job_id, parent, status, doc),
        )
    db.commit()
    db.close()


def test_keys_of_ended_attempts_an_older_head_stored_are_scrubbed(tmp_path: Path) -> None:
    path = tmp_path / "mnp.sqlite3"
    ended = {"port": 1, "key": [f"-----{KEY_MARK}-----\nENDED\n", "ssh-ed25519 A e"]}
    running = {"port": 2, "key": [f"-----{KEY_MARK}-----\nRUNNING\n", "ssh-ed25519 B r"]}
    settling = {"port": 3, "key": [f"-----{KEY_MARK}-----\nSETTLING\n", "ssh-ed25519 C s"]}
    old_store(
        path,
        [
            ("done", None, "SUCCEEDED", ended),
            ("done#0", "done", "SUCCEEDED", {}),
            ("live", None, "RUNNING", running),
            # decided, but a node still stopping: a restarted head may re-send its assignment
            ("stopping", None, "FAILED", settling),
            ("stopping#1", "stopping", "RUNNING", {}),
        ],
    )
    Store(path).close()
    db = sqlite3.connect(path)
    keys = {
        job_id: json.loads(doc).get("gang_state", {}).get("key", [""])[0]
        for job_id, doc in db.execute("SELECT job_id, doc FROM jobs")
    }
    db.close()
    assert keys["done"] == ""
    assert "RUNNING" in keys["live"] and "SETTLING" in keys["stopping"]
    # gone from the files, not only from the row (vacuumed, WAL truncated)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"ENDED" not in raw and b"RUNNING" in raw


# --- the gang drops its key -----------------------------------------------------------------------


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home", lost_after_seconds=LOST_AFTER)
    h.environment()
    h.queue()
    add_nodes(h, 5)
    yield h
    h.close()


def stored_key(h: Head, job_id: str) -> object:
    h.state.flush()
    db = sqlite3.connect(h.db_path)
    (doc,) = db.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    db.close()
    return json.loads(doc).get("gang_state", {}).get("key")


def files_hold_key(h: Head) -> bool:
    return any(KEY_MARK.encode() in p.read_bytes() for p in h.home.glob("mnp.sqlite3*"))


def test_the_key_is_dropped_when_the_last_node_of_a_succeeded_attempt_settles(head: Head) -> None:
    h = head
    define(h, num=2)
    job_id = h.submit(jobDefinition="mnp")
    nodes = start(h, job_id)
    assert stored_key(h, job_id) is not None, "a running attempt keeps its key"
    h.exited(nodes[0][0], nodes[0][1].attempt_id, 0)
    assert h.status(job_id) == "SUCCEEDED"
    assert stored_key(h, job_id) is not None, "node 1 is still stopping"
    h.exited(nodes[1][0], nodes[1][1].attempt_id, 143)
    assert stored_key(h, job_id) is None
    assert not files_hold_key(h)


def test_the_key_is_dropped_after_a_failure_and_a_teardown(head: Head) -> None:
    h = head
    define(h, num=2)
    failed = h.submit(jobDefinition="mnp")
    nodes = start(h, failed)
    h.exited(nodes[1][0], nodes[1][1].attempt_id, 3)
    h.exited(nodes[0][0], nodes[0][1].attempt_id, 143)
    assert (h.status(failed), stored_key(h, failed)) == ("FAILED", None)
    torn = h.submit(jobDefinition="mnp")
    nodes = start(h, torn)
    h.api["terminateJob"]({"jobId": torn, "reason": "stop"})
    for i in (0, 1):
        h.exited(nodes[i][0], nodes[i][1].attempt_id, 143)
    assert (h.status(torn), stored_key(h, torn)) == ("FAILED", None)
    assert not files_hold_key(h)


def test_a_lost_node_ends_the_attempt_and_its_key_the_retry_gets_a_new_one(head: Head) -> None:
    h = head
    define(h, num=2, retryStrategy={"attempts": 2})
    job_id = h.submit(jobDefinition="mnp")
    nodes = start(h, job_id)
    first = stored_key(h, job_id)
    lost_node = nodes[1][0]
    h.clock.advance(LOST_AFTER + 1)
    for n in h.state.nodes:
        if n != lost_node:
            poll(h, n)
    h.scheduler.tick()
    poll_all(h)
    h.exited(nodes[0][0], nodes[0][1].attempt_id, 143)
    assert h.status(job_id) == "RUNNABLE"
    assert stored_key(h, job_id) is None, "the lost node's job settled with the main node"
    h.ticks(3)
    assert h.status(job_id) == "STARTING"
    second = stored_key(h, job_id)
    assert second is not None and second != first


# --- the home and the agent's folders -------------------------------------------------------------


def test_secure_home_fixes_an_older_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs" / "job" / "1").mkdir(parents=True, mode=0o755)
    (home / "nodes" / "n1" / "jobs").mkdir(parents=True, mode=0o755)
    for f in ("token", "credentials", "mnp.sqlite3", "logs/job/1/stdout.log", "nodes/n1/agent.log"):
        (home / f).write_text("x")
        os.chmod(home / f, 0o644)
    (home / "nodes" / "n1" / "wrapper").write_text("#!/bin/sh\n")
    os.chmod(home / "nodes" / "n1" / "wrapper", 0o755)
    outside = tmp_path / "outside"
    outside.write_text("not mine to change")
    os.chmod(outside, 0o644)
    (home / "logs" / "link").symlink_to(outside)
    os.chmod(home, 0o755)
    secure_home(home)
    for d in ("logs", "logs/job", "logs/job/1", "nodes/n1/jobs"):
        assert mode(home / d) == 0o700, d
    # passable, never listable: jobs of other accounts reach their own attempt directories
    for d in ("", "nodes", "nodes/n1"):
        assert mode(home / d) == 0o711, d
    for f in ("token", "credentials", "mnp.sqlite3", "logs/job/1/stdout.log", "nodes/n1/agent.log"):
        assert mode(home / f) == 0o600, f
    assert mode(home / "nodes" / "n1" / "wrapper") == 0o700, "a script stays runnable"
    assert mode(outside) == 0o644, "a link is not followed"


def test_attempt_directories_logs_and_wiring_are_private(tmp_path: Path, loose_umask: None) -> None:
    root = make_private_dir(tmp_path / "node")
    attempt = make_private_dir(root / "jobs" / "j" / "1")
    for fd in open_outputs(Assignment("j/1", "j", 1, ["true"], {}, None, 1.0), attempt):
        os.close(fd)
    wiring = Wiring("ssh-ed25519 A", {"id_ed25519": "secret"}, {})
    wired_job = Assignment("k/1", "k", 1, ["true"], {}, None, 1.0, wiring=wiring)
    prepare(wired_job, root / "jobs" / "k" / "1")
    for d in (root, root / "jobs", root / "jobs" / "j", attempt, root / "jobs" / "k" / "1"):
        assert mode(d) == 0o700, d
    wired = wiring_dir(root / "jobs" / "k" / "1")
    assert (mode(wired), mode(wired / "id_ed25519")) == (0o700, 0o600)
    assert {mode(attempt / n) for n in ("stdout.log", "stderr.log")} == {0o600}


def test_roots_default_home_is_passable_for_the_accounts_its_jobs_run_as(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnp.config import ROOT_HOME, default_home

    monkeypatch.delenv("MNP_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if os.geteuid() == 0:
        assert default_home() == ROOT_HOME  # not under /root (0700)
        (tmp_path / ".mnp").mkdir()
    assert default_home() == tmp_path / ".mnp"  # a home an older head made is kept
    monkeypatch.setenv("MNP_HOME", str(tmp_path / "elsewhere"))
    assert default_home() == tmp_path / "elsewhere"
