"""Secrets at rest on a real head with real local nodes, after one short MNP job: the home,
the store, the logs and the attempts' folders are the head's user's only, the job's SSH key
is gone once the job ended, and a real ``nobody`` process can read none of it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_multinode import mnp_definition, settled

pytestmark = pytest.mark.integration

KEY_MARK = b"OPENSSH PRIVATE KEY"
# the main node reports the modes of its own folders and files, as the job sees them
PROBE = [
    "sh", "-c",
    'stat -c "%a %n" "$PWD" "$(dirname "$PWD")" "$MNP_NODE_ROOT" "$PWD/stdout.log" '
    '"$PWD/stderr.log" "$MNP_WIRING_DIR" "$MNP_WIRING_DIR"/*',
]  # fmt: skip


@dataclass
class Ran:
    cluster: Cluster
    job_id: str
    probe: dict[str, int]
    """path → mode, as the main node's command saw them."""


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(scope="module")
def ran() -> Iterator[Ran]:
    # not under pytest's 0700 temp folder: ``nobody`` must be able to reach the home's
    # folder, so that only the home's own modes keep it out
    base = Path(tempfile.mkdtemp(prefix="mnp-secrets-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        with Cluster(base / "home", nodes=2, vcpus=1) as c:
            mnp_definition(c, "secrets", PROBE, nodes=2)
            job_id = c.submit("secrets", "secrets")
            d = c.wait_status(job_id, "SUCCEEDED", "FAILED", timeout=60)
            out = c.logs(f"{job_id}#0")
            assert d["status"] == "SUCCEEDED", (d, out)
            settled(c, job_id, 2)
            probe = {}
            for line in out.splitlines():
                octal, _, path = line.partition(" ")
                probe[path] = int(octal, 8)
            yield Ran(c, job_id, probe)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_home_store_logs_and_attempt_folders_are_private(ran: Ran) -> None:
    home = ran.cluster.home
    assert mode(home) == 0o711  # passable, never listable (see mnp.config.secure_home)
    for name in ("mnp.sqlite3", "mnp.sqlite3-wal", "mnp.sqlite3-shm", "head.json", "token",
                 "credentials"):  # fmt: skip
        assert mode(home / name) == 0o600, name
    # made world-readable by the test harness before the head started: fixed at start
    assert mode(home / "head-test.log") == 0o600
    logs = [p for p in (home / "logs").rglob("*")]
    assert any(p.name == "stdout.log" for p in logs), logs
    for p in [home / "logs", *logs]:
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p
    roots = list((home / "nodes").iterdir())
    assert len(roots) == 2 and mode(home / "nodes") == 0o711
    for node_root in roots:
        assert (mode(node_root), mode(node_root / "agent.log")) == (0o711, 0o600), node_root
        # the agent's own jobs' MPI files: not listable through the passable root
        assert (mode(node_root / "tmp"), mode(node_root / "shm")) == (0o700, 0o700), node_root
    # the attempt's directory, its job folder, the node root, its logs and its wiring
    probe = {str(Path(p).relative_to(home / "nodes")): m for p, m in ran.probe.items()}
    root = next(p for p in probe if "/" not in p)
    attempt = f"{root}/jobs/{ran.job_id}_0.1"
    expected = {
        root: 0o711,
        f"{root}/jobs": 0o700,
        attempt: 0o700,
        f"{attempt}/stdout.log": 0o600,
        f"{attempt}/stderr.log": 0o600,
        f"{attempt}/.mnp": 0o700,
        f"{attempt}/.mnp/id_ed25519": 0o600,
        f"{attempt}/.mnp/hostfile": 0o600,
    }
    assert {p: probe.get(p) for p in expected} == expected, probe
    loose = {p: oct(m) for p, m in probe.items() if m & 0o077 and p != root}
    assert not loose, loose


def test_the_jobs_key_is_gone_from_the_store_once_it_ended(ran: Ran) -> None:
    db_path = ran.cluster.home / "mnp.sqlite3"

    def stored_keys() -> list[str]:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE json_extract(doc, '$.gang_state.key') IS NOT NULL"
                " OR instr(doc, 'PRIVATE KEY') > 0"
            ).fetchall()
        finally:
            db.close()
        return [r[0] for r in rows]

    wait_for("the MNP job's key to leave the store", lambda: not stored_keys() or None)
    # nor left in the files' free pages or the WAL
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob("mnp.sqlite3*"))
    assert KEY_MARK not in raw


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to user nobody needs root")
def test_user_nobody_can_read_neither_the_store_nor_the_logs(ran: Ran) -> None:
    home = ran.cluster.home
    log = next((home / "logs").rglob("stdout.log"))
    paths = [home / "mnp.sqlite3", home / "head.json", home / "token", log]
    agent_logs = list((home / "nodes").glob("*/agent.log"))
    opener = "import sys\nfor p in sys.argv[1:]:\n" \
             "    try:\n        open(p, 'rb').close()\n        print('READ', p)\n" \
             "    except PermissionError:\n        print('DENIED', p)\n"  # fmt: skip
    done = subprocess.run(
        ["/usr/bin/python3", "-c", opener, *map(str, paths + agent_logs)],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    results = done.stdout.splitlines()
    assert len(results) == len(paths) + len(agent_logs), results
    assert all(r.startswith("DENIED ") for r in results), results
