"""Users and authorization on the real Service + Scheduler (temp SQLite, fake clock): who
submitted, which account a job runs as, what a user may and may not do, and the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import AccessDenied, Conflict, InvalidInput, NotFound
from mnp.service.users import MASK, Caller, Role, owner, owner_name
from mnp.store.sqlite import Store
from tests.unit.helpers_core import Head

Api = dict[str, Any]


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    yield h
    h.close()


def make_user(h: Head, name: str, role: str = "user") -> tuple[Api, dict[str, Any]]:
    made = h.api["createUser"]({"name": name, "role": role})
    return h.api_as(Caller(name, Role(role))), made


def submit_as(api: Api, name: str = "job", definition: str = "def", **body: Any) -> str:
    req = {"jobName": name, "jobQueue": "q", "jobDefinition": definition, **body}
    return str(api["submitJob"](req)["jobId"])


def test_create_user_answers_secrets_once_and_keeps_only_the_token_hash(head: Head) -> None:
    _, made = make_user(head, "alice")
    assert made["token"] and made["awsAccessKeyId"].startswith("MNPU")
    row = head.store.users.by_name("alice")
    assert row is not None and made["token"] not in repr(row)
    assert row.token_sha256 != made["token"] and len(row.token_sha256) == 64
    listed = head.api["listUsers"]({})["users"]
    assert listed[0] == {"name": owner_name(), "role": "admin", "owner": True}
    assert [u["name"] for u in listed[1:]] == ["alice"]
    assert all("token" not in u and "awsSecretAccessKey" not in u for u in listed)
    assert head.service.users.by_token(made["token"]) == Caller("alice", Role.USER)
    assert head.service.users.by_token("nope") is None


@pytest.mark.parametrize("bad", ["Alice", "1abc", "a b", "x" * 33, "a;rm", "", "root"])
def test_user_names_follow_the_posix_login_rule(head: Head, bad: str) -> None:
    with pytest.raises(InvalidInput) as e:
        head.api["createUser"]({"name": bad})
    assert e.value.errors[0].path == "name"


def test_bad_role_and_duplicates_are_refused(head: Head) -> None:
    with pytest.raises(InvalidInput, match="role"):
        head.api["createUser"]({"name": "bob", "role": "root"})
    make_user(head, "bob")
    with pytest.raises(Conflict):
        head.api["createUser"]({"name": "bob"})
    with pytest.raises((Conflict, InvalidInput)):  # the owner's name (reserved if root)
        head.api["createUser"]({"name": owner_name()})


def test_only_admins_manage_users_and_resources(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    carol, _ = make_user(head, "carol", "admin")
    with pytest.raises(AccessDenied, match="alice may not create user eve"):
        alice["createUser"]({"name": "eve"})
    with pytest.raises(AccessDenied, match="alice may not DeleteJobQueue q"):
        alice["deleteJobQueue"]({"jobQueue": "q"})
    with pytest.raises(AccessDenied):
        alice["createComputeEnvironment"]({"computeEnvironmentName": "x", "type": "UNMANAGED"})
    with pytest.raises(AccessDenied):
        queue_arn = head.api["describeJobQueues"]({})["jobQueues"][0]["jobQueueArn"]
        alice["tagResource"]({"resourceArn": queue_arn, "tags": {"a": "b"}})
    carol["createUser"]({"name": "eve"})  # an admin may
    carol["deleteUser"]({"name": "eve"})
    with pytest.raises(NotFound):
        carol["deleteUser"]({"name": "eve"})
    assert alice["whoAmI"]({}) == {"name": "alice", "role": "user", "owner": False}
    assert head.api["whoAmI"]({})["owner"] is True


def test_submit_records_the_submitter_and_the_account_it_runs_as(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    mine = submit_as(alice)
    theirs = head.submit("owners")
    assert head.describe(mine)["submittedBy"] == "alice"
    assert head.describe(theirs)["submittedBy"] == owner_name()
    head.definition("as-bob", containerProperties={"user": "bob"})
    as_bob = head.submit("as-bob", jobDefinition="as-bob")
    head.ticks()
    runs = {a.job_id: a.run_as for a in head.poll("n1")[0]}
    assert runs == {mine: "alice", theirs: None, as_bob: "bob"}
    summary = head.api["listJobs"]({"jobQueue": "q", "jobStatus": "RUNNABLE"})
    by_id = {s["jobId"]: s for s in summary["jobSummaryList"]}
    assert all(by_id[j]["submittedBy"] for j in by_id)


def test_submitter_survives_a_restart_and_old_jobs_read_as_the_owner(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    h.basic(("n1",))
    alice, _ = make_user(h, "alice")
    job = submit_as(alice)
    h.close()
    h = Head.open(tmp_path / "home")
    try:
        assert h.describe(job)["submittedBy"] == "alice"
        assert h.store.load_job(job).spec.run_as == "alice"  # type: ignore[union-attr]
    finally:
        h.close()
    store = Store(tmp_path / "home" / "mnp.sqlite3")
    try:  # a spec stored before users existed has neither field
        doc = store.spec(store.load_job(job).spec.spec_id).to_doc()  # type: ignore[union-attr]
        doc.pop("submitted_by"), doc.pop("run_as")
        from mnp.spec.definitions import JobSpec

        old = JobSpec.from_doc(doc)
        assert old.submitted_by is None and old.run_as is None
        assert owner().owns(old.submitted_by)
    finally:
        store.close()


def test_a_user_may_run_only_as_themselves_and_not_privileged(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    head.definition("as-bob", containerProperties={"user": "bob"})
    head.definition("as-alice", containerProperties={"user": "alice"})
    head.definition("root", containerProperties={"privileged": True})
    with pytest.raises(InvalidInput) as e:
        submit_as(alice, definition="as-bob")
    assert e.value.errors[0].path == "jobDefinition.containerProperties.user"
    assert "alice may run jobs only as themselves" in str(e.value)
    with pytest.raises(InvalidInput) as e:
        submit_as(alice, definition="root")
    assert e.value.errors[0].path == "jobDefinition.containerProperties.privileged"
    submit_as(alice, definition="as-alice")
    head.submit("root-ok", jobDefinition="root")  # the owner may


def test_a_user_may_cancel_terminate_and_tag_only_their_own_jobs(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    bob, _ = make_user(head, "bob")
    job = submit_as(alice)
    arn = head.describe(job)["jobArn"]
    for op in ("cancelJob", "terminateJob"):
        with pytest.raises(AccessDenied, match=f"bob may not .* job {job}: it belongs to alice"):
            bob[op]({"jobId": job, "reason": "x"})
    with pytest.raises(AccessDenied):
        bob["tagResource"]({"resourceArn": arn, "tags": {"k": "v"}})
    assert head.status(job) != "FAILED"
    alice["tagResource"]({"resourceArn": arn, "tags": {"k": "v"}})
    alice["cancelJob"]({"jobId": job, "reason": "mine"})
    assert head.status(job) == "FAILED"
    other = head.submit("owners")
    with pytest.raises(AccessDenied):
        alice["terminateJob"]({"jobId": other, "reason": "x"})


def test_describing_is_open_but_others_environment_is_masked(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    bob, _ = make_user(head, "bob")
    env = {"environment": [{"name": "SECRET", "value": "hunter2"}]}
    job = submit_as(alice, containerOverrides=env)

    def seen(api: Api) -> list[dict[str, str]]:
        detail = api["describeJobs"]({"jobs": [job]})["jobs"][0]
        return [e for e in detail["container"]["environment"] if e["name"] == "SECRET"]

    assert seen(bob) == [{"name": "SECRET", "value": MASK}]
    assert seen(alice) == [{"name": "SECRET", "value": "hunter2"}]
    assert seen(head.api) == [{"name": "SECRET", "value": "hunter2"}]


def test_definitions_record_who_registered_them(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    bob, _ = make_user(head, "bob")
    alice["registerJobDefinition"](
        {"jobDefinitionName": "ad", "type": "container", "containerProperties": {"command": ["x"]}}
    )
    found = head.api["describeJobDefinitions"]({"jobDefinitionName": "ad"})["jobDefinitions"]
    assert found[0]["registeredBy"] == "alice"
    with pytest.raises(AccessDenied, match="bob may not deregister job definition ad:1"):
        bob["deregisterJobDefinition"]({"jobDefinition": "ad:1"})
    with pytest.raises(AccessDenied):
        alice["deregisterJobDefinition"]({"jobDefinition": "def:1"})  # the owner's
    alice["deregisterJobDefinition"]({"jobDefinition": "ad:1"})


def test_logs_of_others_jobs_are_denied_and_left_out(head: Head) -> None:
    alice, _ = make_user(head, "alice")
    caller = Caller("bob", Role.USER)
    job = submit_as(alice)
    head.ticks()
    (assignment,) = head.poll("n1")[0]
    head.event("n1", assignment.attempt_id, "started")
    stream = head.describe(job)["container"]["logStreamName"]
    as_bob = head.service.logs.for_caller(caller)
    with pytest.raises(AccessDenied, match="bob may not read log stream"):
        as_bob.find_stream(stream)
    assert as_bob.find_streams() == []
    as_alice = head.service.logs.for_caller(Caller("alice", Role.USER))
    assert [r.name for r in as_alice.find_streams()] == [stream]
    assert head.service.logs.for_caller(owner()).find_stream(stream) is not None


def test_another_users_job_is_refused_to_cancel_and_terminate_also_once_it_has_ended(
    head: Head,
) -> None:
    alice, _ = make_user(head, "alice")
    bob, _ = make_user(head, "bob")
    job = submit_as(alice)
    head.ticks(2)
    got, _ = head.poll("n1")
    head.started("n1", got[0].attempt_id)
    head.exited("n1", got[0].attempt_id, 0)
    assert head.status(job) == "SUCCEEDED"
    for op in ("cancelJob", "terminateJob"):
        with pytest.raises(AccessDenied, match="it belongs to alice"):
            bob[op]({"jobId": job, "reason": "not mine"})
        assert alice[op]({"jobId": job, "reason": "mine, ended"}) == {}  # a no-op, as AWS
