"""Session epochs and rejoin (issue 11) on the head's side, with a real store: every register
starts a new session, a poll or report of another session (or of a LOST/STOPPED node) is
refused with nothing applied, a LOST node rejoins, a STOPPED one stays gone; the lease and
the SSH hosts brought up at once are validated in the configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.config import HOST_BRINGUP_ENV, HeadConfig
from mnp.head import Head
from mnp.nodes.sessions import NodeGone, NodeSessions, StaleSession
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.spec.environments import ComputeEnvironment, ComputeEnvironmentType, NodeStatus, State
from mnp.spec.protocol import Event, Poll, Register, Report
from mnp.spec.resources import Resources
from mnp.store.sqlite import Store


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def open_head(home: Path, clock: Clock) -> NodeSessions:
    config = HeadConfig(home=home, local=None, lost_after_seconds=10.0)
    state = HeadState(config, Store(config.db_path), clock=clock)
    scheduler = Scheduler(state, "http://127.0.0.1:1")
    scheduler.restore()
    if "ce" not in state.ces:
        ce = ComputeEnvironment(
            "ce", ComputeEnvironmentType.UNMANAGED, State.ENABLED, "local", 0,
            Resources(4, 4096, 0), clock(),
        )  # fmt: skip
        state.store.save_ce(ce)
        state.ces["ce"] = ce
    return NodeSessions(scheduler)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[NodeSessions]:
    tmp_path.mkdir(exist_ok=True)
    s = open_head(tmp_path, Clock())
    yield s
    s.s.store.close()


def register(s: NodeSessions) -> int:
    s.register(Register("n1", "ce", "127.0.0.9", 4, 4096, 0, 1))
    return s.s.nodes["n1"].session_epoch


def test_every_register_starts_a_new_session_and_the_old_one_is_stale(
    sessions: NodeSessions,
) -> None:
    first = register(sessions)
    sessions.poll(Poll("n1", [], 0.0, epoch=first))
    second = register(sessions)
    assert second == first + 1
    with pytest.raises(StaleSession, match="stale session"):
        sessions.poll(Poll("n1", [], 0.0, epoch=first))
    before = sessions.s.node_rt["n1"].last_seq
    ev = Event("job/1", "log", 1, seq=10**9, stream="stdout", data="x")
    with pytest.raises(StaleSession):
        sessions.report(Report("n1", [ev], first))
    assert sessions.s.node_rt["n1"].last_seq == before, "nothing of a stale report applied"
    assert sessions.poll(Poll("n1", [], 0.0, epoch=second)).lease_seconds == 7.0


def test_a_lost_node_is_stale_until_it_rejoins_and_a_stopped_one_stays_gone(
    sessions: NodeSessions,
) -> None:
    epoch = register(sessions)
    sessions.rt.fleet.lose("n1", "test")
    assert sessions.s.nodes["n1"].status == NodeStatus.LOST
    with pytest.raises(StaleSession, match="LOST"):
        sessions.poll(Poll("n1", [], 0.0, epoch=epoch))
    with pytest.raises(StaleSession):
        sessions.report(Report("n1", [], epoch))
    rejoined = register(sessions)
    node = sessions.s.nodes["n1"]
    assert (node.status, rejoined) == (NodeStatus.ACTIVE, epoch + 1)
    assert sessions.s.node_rt["n1"].used == Resources(0, 0, 0), "full capacity again"
    sessions.poll(Poll("n1", [], 0.0, epoch=rejoined))
    node.status = NodeStatus.STOPPED
    with pytest.raises(NodeGone):
        register(sessions)


def test_the_epoch_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    s = open_head(tmp_path, clock)
    register(s)
    epoch = register(s)
    s.s.store.close()
    again = open_head(tmp_path, clock)
    assert again.s.nodes["n1"].session_epoch == epoch
    again.poll(Poll("n1", [], 0.0, epoch=epoch))
    assert register(again) == epoch + 1
    again.s.store.close()


@pytest.mark.parametrize(
    ("lost_after", "lease", "expected"), [(10.0, None, 7.0), (3.0, None, 1.5), (4.0, 3.5, 3.5)]
)
def test_the_lease_defaults_below_the_lost_node_allowance(
    lost_after: float, lease: float | None, expected: float
) -> None:
    assert HeadConfig(lost_after_seconds=lost_after, lease_seconds=lease).lease == expected


@pytest.mark.parametrize("lease", [0.0, -1.0, 10.0, 12.0])
def test_a_lease_not_shorter_than_the_allowance_is_refused(lease: float) -> None:
    with pytest.raises(ValueError, match="lease_seconds: must be more than 0 and less than"):
        HeadConfig(lost_after_seconds=10.0, lease_seconds=lease)


def test_host_bringups_at_once_default_to_8_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(HOST_BRINGUP_ENV, raising=False)
    assert HeadConfig().host_bringup_threads == 8
    monkeypatch.setenv(HOST_BRINGUP_ENV, "1")
    config = HeadConfig(home=tmp_path, local=None)
    assert config.host_bringup_threads == 1
    head = Head(config, "http://127.0.0.1:1")
    try:
        assert head.host_threads._max_workers == 1  # the head's pool of SSH bring-ups
    finally:
        head.host_threads.shutdown()
        head.provider_threads.shutdown()
        head.store.close()
    monkeypatch.setenv(HOST_BRINGUP_ENV, "many")
    with pytest.raises(ValueError, match=r"MNP_HOST_BRINGUP_THREADS='many' \(host_bringup_thr"):
        HeadConfig()


@pytest.mark.parametrize("threads", [0, -1])
def test_fewer_than_one_host_bringup_at_once_is_refused(threads: int) -> None:
    refused = f"host_bringup_threads: must be at least 1, got {threads}$"
    with pytest.raises(ValueError, match=refused):
        HeadConfig(host_bringup_threads=threads)


def test_an_unmanaged_join_whose_answer_was_lost_may_be_repeated_until_the_secret_is_used(
    sessions: NodeSessions,
) -> None:
    from mnp.nodes.sessions import Credentials, Forbidden

    r = Register("n1", "ce", "127.0.0.9", 4, 4096, 0, 1)
    assert sessions.admit_register(r, Credentials()) is True  # a new node joins
    sessions.register(r)
    lost = sessions.issue_secret("n1")  # ... and this answer never reaches the agent
    assert sessions.admit_register(r, Credentials()) is True  # so it may join again
    sessions.register(r)
    secret = sessions.issue_secret("n1")
    assert secret != lost
    with pytest.raises(Forbidden):
        sessions.admit("n1", Credentials(secret=lost))  # the lost secret was replaced
    sessions.admit("n1", Credentials(secret=secret))  # the agent's first call with it
    sessions.s.flush()  # (the call itself flushes the head's state before it answers)
    with pytest.raises(Forbidden):  # from now on the head's token alone is not enough
        sessions.admit_register(r, Credentials())
    reopened = open_head(sessions.s.config.home, Clock())  # and that is durable
    try:
        with pytest.raises(Forbidden):
            reopened.admit_register(r, Credentials())
    finally:
        reopened.s.store.close()
