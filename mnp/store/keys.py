"""SSH private keys at rest: what the store removes from job documents an older head wrote.

A running MNP attempt's document holds its key (a restarted head re-sends the nodes'
assignments with it); once the attempt has ended (neither the job nor any of its node jobs
STARTING or RUNNING) nobody needs it, and it must not stay on disk.
"""

from __future__ import annotations

import json
import sqlite3

from mnp.spec.states import JobStatus

LIVE = (JobStatus.STARTING.value, JobStatus.RUNNING.value)


def scrub_ended_keys(db: sqlite3.Connection) -> bool:
    """Drop the key from every MNP job document whose attempt has ended; call inside a
    transaction. True when any document had gang state (the caller then vacuums, since
    older heads did not zero deleted content)."""
    live_parents = {
        p
        for (p,) in db.execute(
            "SELECT DISTINCT parent_id FROM jobs WHERE parent_id IS NOT NULL AND status IN (?, ?)",
            LIVE,
        )
    }
    rows = db.execute(
        "SELECT job_id, status, doc FROM jobs WHERE instr(doc, '\"gang_state\"') > 0"
    ).fetchall()
    for job_id, status, text in rows:
        doc = json.loads(text)
        gang_state = doc.get("gang_state") or {}
        if "key" in gang_state and status not in LIVE and job_id not in live_parents:
            del gang_state["key"]
            db.execute(
                "UPDATE jobs SET doc = ? WHERE job_id = ?",
                (json.dumps(doc, separators=(",", ":")), job_id),
            )
    return bool(rows)
