"""Attempts run as their ``run_as`` account (issue 11) on a root agent, with real accounts
and real processes: ids, groups and home; private attempt files; output paths opened with
the user's rights; unknown accounts; wiring; srun; containers' ``--user``."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher.accounts import Account, account_for, job_python, package_path
from launcher.attempt import attempt_dir_for
from launcher.attempts import Attempts
from launcher.container import ContainerAttempt
from launcher.engine import Engine
from launcher.gangfiles import prepare, wiring_dir
from launcher.process import AttemptProcess
from mnp.spec.containers import ContainerRun
from mnp.spec.protocol import Assignment, Event, Wiring
from tests.unit.run_as_accounts import made_accounts, reachable_dir

Users = dict[str, pwd.struct_passwd]


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    with made_accounts() as accounts:
        yield accounts


@pytest.fixture
def root() -> Iterator[Path]:
    with reachable_dir() as d:
        yield d / "node"


def account(users: Users, name: str) -> Account:
    found = account_for(name, "n1")
    assert found is not None and found.uid == users[name].pw_uid
    return found


def job(command: list[str], name: str = "job-1", **fields: object) -> Assignment:
    fields.setdefault("environment", {})
    return Assignment(
        attempt_id=f"{name}/1", job_id=name, attempt=1, command=command,
        timeout_seconds=None, kill_grace_seconds=0.2, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def until(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def run(a: Assignment, root: Path, who: Account | None) -> list[Event]:
    """Run one assignment to its end as ``who``; its events."""
    events: list[Event] = []

    async def main() -> None:
        proc = AttemptProcess(a, root, events.append, env=dict(os.environ), account=who)
        try:
            proc.start()
            await asyncio.wait_for(proc.wait(), 10)
        finally:
            proc.close()

    asyncio.run(main())
    return events


def out(events: list[Event]) -> str:
    return "".join(e.data for e in events if e.kind == "log" and e.stream == "stdout")


def test_the_job_runs_with_the_accounts_ids_groups_home_and_umask(users: Users, root: Path) -> None:
    alice = account(users, "mnpt-alice")
    script = 'id -u; id -g; echo "$HOME $USER $LOGNAME"; umask; touch mine; stat -c %a%U mine'
    events = run(job(["sh", "-c", script]), root, alice)
    assert events[-1].kind == "exited" and events[-1].exit_code == 0, events
    uid, gid, names, mask, made = out(events).split("\n")[:5]
    assert (int(uid), int(gid)) == (alice.uid, alice.gid)
    assert names == f"{alice.home} mnpt-alice mnpt-alice"
    assert (mask, made) == ("0077", "600mnpt-alice")


def test_attempt_files_are_the_accounts_and_nobody_elses(users: Users, root: Path) -> None:
    alice, bob = account(users, "mnpt-alice"), account(users, "mnpt-bob")
    bobs = job(["sh", "-c", "echo secret; ls -ld . ; stat -c %a%U stdout.log"], "bob-job")
    events = run(bobs, root, bob)
    assert out(events).split("\n")[2] == "600mnpt-bob", out(events)
    bob_dir = attempt_dir_for(bobs, root)
    assert bob_dir.stat().st_uid == bob.uid and stat.S_IMODE(bob_dir.stat().st_mode) == 0o700
    for above in (bob_dir.parent, root / "jobs", root):
        assert stat.S_IMODE(above.stat().st_mode) == 0o711, above
    probe = f"ls {bob_dir}; cat {bob_dir}/stdout.log; ls {root}/jobs; ls {root}; echo end"
    events = run(job(["sh", "-c", probe], "alice-job"), root, alice)
    errors = "".join(e.data for e in events if e.kind == "log" and e.stream == "stderr")
    assert out(events) == "end\n" and errors.count("Permission denied") == 4, errors


def test_an_output_path_the_user_links_elsewhere_is_not_written_as_root(
    users: Users, root: Path
) -> None:
    alice = account(users, "mnpt-alice")
    mine = root.parent / "alice-out"
    mine.mkdir()
    os.chown(mine, alice.uid, alice.gid)
    target = Path("/etc/mnpt-run-as-victim")
    assert not target.exists()
    (mine / "out.txt").symlink_to(target)  # what the user could have done in their own dir
    events = run(job(["echo", "hi"], stdout_path=str(mine / "out.txt")), root, alice)
    assert [e.kind for e in events] == ["start_failed"]
    assert "Permission denied" in (events[0].reason or ""), events[0].reason
    assert not target.exists()
    events = run(job(["echo", "hi"], "j2", stdout_path=str(mine / "ok.txt")), root, alice)
    assert out(events) == "hi\n"
    st = (mine / "ok.txt").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (alice.uid, 0o600)


def test_an_unknown_account_fails_the_start_naming_it_and_the_node(root: Path) -> None:
    events: list[Event] = []

    async def main() -> None:
        attempts = Attempts(root, "node-7", "127.0.0.1", dict(os.environ), events.append)
        attempts.start(job(["true"], run_as="mnpt-nosuchuser"))
        attempts.close()

    asyncio.run(main())
    assert [(e.kind, e.reason) for e in events] == [
        ("start_failed", "CannotStartContainerError: no account mnpt-nosuchuser on node node-7")
    ]


def test_attempts_switch_to_run_as_and_a_batch_scripts_srun_too(users: Users, root: Path) -> None:
    events: list[Event] = []
    script = "#!/bin/sh\nsrun -n 2 id -u\n"

    async def main() -> None:
        attempts = Attempts(root, "n1", "127.0.0.1", dict(os.environ), events.append)
        batch = {"SLURM_JOB_ID": "7", "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1"}
        attempts.start(job(["x"], run_as="mnpt-bob", script=script, environment=batch))
        deadline = time.monotonic() + 10
        while not any(e.kind == "exited" for e in events) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        attempts.read_logs()
        attempts.close()

    asyncio.run(main())
    assert events[-1].kind == "exited" and events[-1].exit_code == 0, events
    assert out(events) == f"{users['mnpt-bob'].pw_uid}\n" * 2


def test_gang_wiring_is_readable_by_the_account_only(users: Users, root: Path) -> None:
    alice = account(users, "mnpt-alice")
    wiring = Wiring(
        authorized_key="k",
        files={"id_ed25519": "KEY", "ssh-wrapper": "#!/bin/sh\n"},
        ssh_environment={},
    )
    a = job(["true"], wiring=wiring)
    prepare(a, attempt_dir_for(a, root), account=alice)
    d = wiring_dir(attempt_dir_for(a, root))
    for path, mode in ((d, 0o700), (d / "id_ed25519", 0o600), (d / "ssh-wrapper", 0o700)):
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (alice.uid, mode), path


def test_a_container_without_a_user_runs_as_the_account_and_keeps_its_own(
    users: Users, root: Path
) -> None:
    alice = account(users, "mnpt-alice")

    async def main() -> tuple[str | None, str | None, str | None]:
        engine = Engine("n1", root)
        try:
            plain = job(["true"], container=ContainerRun(image="busybox"))
            own = job(["true"], container=ContainerRun(image="busybox", user="1234"))
            return (
                ContainerAttempt(plain, root, print, engine=engine, account=alice).run.user,
                ContainerAttempt(own, root, print, engine=engine, account=alice).run.user,
                ContainerAttempt(plain, root, print, engine=engine).run.user,
            )
        finally:
            engine.close()

    assert asyncio.run(main()) == (f"{alice.uid}:{alice.gid}", "1234", None)


def test_an_agent_that_is_not_root_ignores_run_as(users: Users) -> None:
    code = "from launcher.accounts import account_for; print(account_for('mnpt-alice', 'n1'))"
    bob = account(users, "mnpt-bob")
    python = job_python(bob)  # this machine's own Python may be out of bob's reach
    done = subprocess.run(
        [python, "-c", code], user=bob.uid, group=bob.gid, capture_output=True, text=True,
        env={"PYTHONPATH": package_path()}, cwd="/", timeout=30, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "None\n"), done.stderr
    assert "not root" in done.stderr


def test_run_as_may_be_a_uid_with_a_gid_and_bad_forms_name_the_node(users: Users) -> None:
    alice = users["mnpt-alice"]
    found = account_for(f"{alice.pw_uid}:{users['mnpt-bob'].pw_gid}", "n1")
    assert found is not None and (found.name, found.gid) == ("mnpt-alice", users["mnpt-bob"].pw_gid)
    named = account_for(f"mnpt-alice:{grp.getgrgid(users['mnpt-bob'].pw_gid).gr_name}", "n1")
    assert named is not None and named.gid == users["mnpt-bob"].pw_gid
    assert account_for("root", "n1") is None  # the agent's own account: nothing to switch
    for bad in ("mnpt-alice:mnpt-nosuchgroup", "4000000000", "a\0b"):
        with pytest.raises(ValueError, match=r"no account .* on node n1"):
            account_for(bad, "n1")


def test_an_account_that_cannot_reach_the_node_root_fails_to_start_saying_where(
    users: Users,
) -> None:
    from launcher.accounts import impassable

    alice = account(users, "mnpt-alice")
    with reachable_dir() as base:
        closed = base / "closed"
        root = closed / "node"
        root.mkdir(parents=True)
        os.chmod(closed, 0o700)  # as /root is: the node's root under it is out of reach
        assert impassable(root, alice) == closed
        os.chmod(closed, 0o711)
        assert impassable(root, alice) is None
        os.chmod(closed, 0o770)
        os.chown(closed, 0, alice.gid)  # passable through the account's group
        assert impassable(root, alice) is None
        os.chmod(closed, 0o700)
        sink: list[Event] = []

        async def start() -> None:
            attempts = Attempts(root, "n1", "127.0.0.1", dict(os.environ), sink.append)
            attempts.start(job(["true"], run_as="mnpt-alice"))

        asyncio.run(start())
        assert [e.kind for e in sink] == ["start_failed"]
        assert f"{closed} is closed to it" in (sink[0].reason or "")
        os.chmod(closed, 0o711)
        os.chmod(root, 0o700)  # the node's root itself the agent opens up for the account
        assert impassable(root.parent, alice) is None
