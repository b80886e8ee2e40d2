"""The dashboard's server side through the head's real app (:class:`tests.unit.doors.Doors`):
the page and its files (and nothing else) served with a strict CSP, its operations behind
the same token as the rest of the native API, each user's layout kept in the store across a
restart, the overview's queue depth, the job listing's filters and pages, and the series
ring's sampling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.api.dashboard import static_files
from mnp.config import HeadConfig
from mnp.head import Head
from mnp.service.dashboard import DEFAULT_LAYOUT, Series
from mnp.spec import protocol
from tests.unit.doors import HOST, TOKEN, Doors


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    d = Doors(tmp_path / "home")
    try:
        yield d
    finally:
        d.close()


def as_user(d: Doors, token: str, op: str, body: dict[str, Any]) -> Any:
    return d.http.post(f"/api/v1/{op}", json=body, headers={protocol.TOKEN_HEADER: token})


def user(d: Doors, name: str, role: str = "user") -> str:
    r = d.native("createUser", {"name": name, "role": role})
    r.raise_for_status()
    return str(r.json()["token"])


def definition(d: Doors) -> None:
    body = {"jobDefinitionName": "d", "type": "container",
            "containerProperties": {"command": ["true"]}}  # fmt: skip
    d.native("registerJobDefinition", body).raise_for_status()


def submit(d: Doors, name: str, token: str | None = None, **extra: Any) -> str:
    body = {"jobName": name, "jobQueue": "default", "jobDefinition": "d", **extra}
    r = d.native("submitJob", body) if token is None else as_user(d, token, "submitJob", body)
    r.raise_for_status()
    return str(r.json()["jobId"])


# --- the page and its files ---------------------------------------------------------------
def test_page_and_files_are_served_with_a_strict_policy(doors: Doors) -> None:
    page = doors.http.get("/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert '<script type="module" src="/dashboard/static/app.js">' in page.text
    assert doors.http.get("/dashboard", follow_redirects=False).status_code == 308
    for name in ("app.js", "api.js", "ui.js", "app.css"):
        r = doors.http.get(f"/dashboard/static/{name}")
        assert r.status_code == 200, name
        assert r.headers["x-content-type-options"] == "nosniff"
    assert (
        doors.http.get("/dashboard/static/app.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )


def test_only_the_shipped_files_are_served(doors: Doors) -> None:
    assert set(static_files()) >= {"index.html", "app.js", "api.js", "ui.js", "app.css"}
    for path in ("../__init__.py", "..%2F__init__.py", "nope.js", "/etc/passwd", "__init__.py"):
        assert doors.http.get(f"/dashboard/static/{path}").status_code == 404, path


def test_the_assets_stay_small_and_load_nothing_from_elsewhere() -> None:
    files = static_files()
    assert sum(p.stat().st_size for p in files.values()) < 200_000
    for name, path in files.items():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name


# --- authentication -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "op", ["dashboardOverview", "dashboardJobs", "dashboardSeries", "getDashboardLayout"]
)
def test_the_dashboard_operations_need_a_token(doors: Doors, op: str) -> None:
    assert doors.http.post(f"/api/v1/{op}", json={}).status_code == 401
    assert as_user(doors, "not-a-token", op, {}).status_code == 401
    assert doors.native(op, {}).status_code == 200


def test_an_ordinary_user_reads_but_may_not_disable_a_queue(doors: Doors) -> None:
    token = user(doors, "alice")
    assert as_user(doors, token, "dashboardOverview", {}).status_code == 200
    assert as_user(doors, token, "whoAmI", {}).json()["role"] == "user"
    r = as_user(doors, token, "updateJobQueue", {"jobQueue": "default", "state": "DISABLED"})
    assert r.status_code == 403


# --- layout -------------------------------------------------------------------------------
def test_each_user_arranges_their_own_layout_and_it_survives_a_restart(tmp_path: Path) -> None:
    d = Doors(tmp_path / "home")
    try:
        alice = user(d, "alice")
        first = d.native("getDashboardLayout", {}).json()
        assert first["panels"] == list(DEFAULT_LAYOUT) and first["saved"] is False
        r = as_user(d, alice, "putDashboardLayout", {"panels": ["nodes", "counts"]})
        assert r.status_code == 200
        assert as_user(d, alice, "getDashboardLayout", {}).json()["panels"] == ["nodes", "counts"]
        assert d.native("getDashboardLayout", {}).json()["panels"] == list(DEFAULT_LAYOUT)
    finally:
        d.close()
    head = Head(HeadConfig(home=tmp_path / "home", local=None, token=TOKEN), HOST)
    head.start()  # a restarted head on the same store
    try:
        caller = head.service.users.by_token(alice)
        assert caller is not None
        got = head.ops["getDashboardLayout"](caller, {})
        assert got["panels"] == ["nodes", "counts"] and got["saved"] is True
    finally:
        head.store.close()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"panels": "counts"},
        {"panels": ["counts", "counts"]},
        {"panels": ["nope"]},
        {"panels": [1]},
    ],
)
def test_a_bad_layout_is_refused_naming_panels(doors: Doors, body: dict[str, Any]) -> None:
    r = doors.native("putDashboardLayout", body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "panels"
    assert doors.native("getDashboardLayout", {}).json()["saved"] is False


# --- overview and listing -------------------------------------------------------------------
def test_overview_counts_waiting_work_per_queue(doors: Doors) -> None:
    definition(doors)
    for i in range(3):
        submit(doors, f"j{i}")
    submit(doors, "arr", arrayProperties={"size": 4})
    doors.tick()
    doors.tick()
    ov = doors.native("dashboardOverview", {}).json()
    (queue,) = ov["queues"]
    assert queue["jobQueueName"] == "default" and queue["state"] == "ENABLED"
    # three jobs and four children wait for a node (no array parent counted); none runs
    assert queue["depth"] == {"RUNNABLE": 7}
    (ce,) = ov["computeEnvironments"]
    assert ce["computeEnvironmentName"] == "ce"
    assert ce["nodesUp"] == 0 and ce["utilisation"] == 0.0
    assert sum(ov["jobCounts"].values()) == 8  # the parent and its children are rows too


def test_job_listing_filters_by_user_name_state_and_array(doors: Doors) -> None:
    definition(doors)
    alice = user(doors, "alice")
    mine = [submit(doors, f"own-{i}") for i in range(3)]
    hers = [submit(doors, f"hers-{i}", alice) for i in range(4)]
    arr = submit(doors, "arr", arrayProperties={"size": 3})
    doors.tick()

    def ids(body: dict[str, Any]) -> list[str]:
        r = doors.native("dashboardJobs", body)
        assert r.status_code == 200, r.text
        return [j["jobId"] for j in r.json()["jobSummaryList"]]

    assert ids({"user": "alice"}) == hers[::-1]  # newest first
    assert ids({"jobName": "own-"}) == mine[::-1]
    assert set(ids({})) == {*mine, *hers, arr}  # children only under their array
    assert ids({"arrayJobId": arr}) == [f"{arr}:{i}" for i in range(3)]
    assert set(ids({"jobStatus": "RUNNABLE", "user": "alice"})) == set(hers)
    assert ids({"jobStatus": "SUCCEEDED"}) == []
    # pages of two by user: the token goes on where the page stopped
    first = doors.native("dashboardJobs", {"user": "alice", "maxResults": 2}).json()
    assert [j["jobId"] for j in first["jobSummaryList"]] == hers[:1:-1]
    rest = doors.native(
        "dashboardJobs", {"user": "alice", "maxResults": 2, "nextToken": first["nextToken"]}
    ).json()
    assert [j["jobId"] for j in rest["jobSummaryList"]] == hers[1::-1]
    assert "nextToken" not in rest


@pytest.mark.parametrize(
    "body",
    [
        {"jobStatus": "DONE"},
        {"maxResults": 0},
        {"maxResults": 101},
        {"nextToken": "x"},
        {"jobQueue": 5},
        {"maxResults": True},
    ],
)
def test_a_bad_listing_is_refused(doors: Doors, body: dict[str, Any]) -> None:
    assert doors.native("dashboardJobs", body).status_code == 400


# --- series ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def test_series_samples_once_per_period_and_keeps_an_hour(doors: Doors) -> None:
    clock = Clock()
    state = doors.head.state
    state.clock = clock
    finished = [0]
    series = Series(state, every_seconds=10, keep_seconds=30, finished_count=lambda: finished[0])
    assert series.sample_if_due() is True
    clock.now += 5_000
    assert series.sample_if_due() is False  # younger than the period
    definition(doors)
    submit(doors, "a")
    submit(doors, "b")
    doors.tick()
    finished[0] = 4  # four jobs finished since
    clock.now += 5_000
    assert series.sample_if_due() is True
    out = series.to_json()
    assert out["runnable"] == [0, 2] and out["finished"] == [0, 4] and out["running"] == [0, 0]
    for _ in range(10):
        clock.now += 10_000
        series.sample_if_due()
    assert len(series.to_json()["at"]) == 4  # 30 s of 10 s samples, both ends
    assert series.to_json()["finished"][-1] == 0


def test_series_answers_through_the_api(doors: Doors) -> None:
    out = doors.native("dashboardSeries", {}).json()
    assert out["sampleSeconds"] == 10
    assert len(out["at"]) == len(out["runnable"]) == len(out["finished"]) == 1
