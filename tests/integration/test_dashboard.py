"""The web dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real head with local nodes: log in with the head's token, watch a running array
fill its grid, open a job and watch its log follow, cancel a waiting job from its page, with
no error on the browser's console. A screenshot of each step is kept under ``artifacts/``
(git-ignored) for whoever reads the CI run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
TIMEOUT_MS = 20_000


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/install.sh --test installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_in_chromium(tmp_path: Path, browser: Any) -> None:
    with Cluster(tmp_path / "home", nodes=2, vcpus=4) as c:
        token = json.loads((c.home / "head.json").read_text())["token"]
        ticker = c.register(
            "ticker",
            ["sh", "-c", "for i in $(seq 1 30); do echo tick $i; sleep 0.2; done; echo done"],
        )
        quick = c.register("quick", ["sh", "-c", "sleep 4; echo child $AWS_BATCH_JOB_ARRAY_INDEX"])
        blocker = c.register("blocker", ["sleep", "60"])

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)

        # log in with the head's token: the overview shows the default queue
        page.goto(c.url + "/dashboard/")
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#who:has-text('(admin)')")
        page.wait_for_selector("[data-queue='default']")

        # an array fills its grid: every child appears, and all end SUCCEEDED
        array = c.submit("grid", quick, arrayProperties={"size": 6})
        page.goto(f"{c.url}/dashboard/#/job/{array}")
        cells = page.locator("#array-grid .cell")
        wait_for("the grid's 6 cells", lambda: cells.count() == 6)
        page.wait_for_selector("#array-grid .cell.st-RUNNING", timeout=TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / "dashboard-array.png"), full_page=True)
        done = page.locator("#array-grid .cell.st-SUCCEEDED")
        wait_for("every child SUCCEEDED in the grid", lambda: done.count() == 6, timeout=30)

        # a job's log follows while it runs, to its last line
        job = c.submit("ticking", ticker)
        page.goto(f"{c.url}/dashboard/#/job/{job}")
        page.wait_for_selector("#log:has-text('tick 3')")
        assert c.client.describe(job)["status"] == "RUNNING"  # followed live, not read after
        page.wait_for_selector("#log:has-text('done')", timeout=30_000)
        page.wait_for_selector(".job-head .st-SUCCEEDED")
        assert page.inner_text("#log").count("tick 1\n") == 1  # each byte once

        # cancel a waiting job from its page
        first = c.submit("first", blocker)
        waiting = c.submit("waiting", blocker, dependsOn=[{"jobId": first}])
        c.wait_status(waiting, "PENDING")
        page.goto(f"{c.url}/dashboard/#/job/{waiting}")
        page.click("#cancel")
        page.click("#cancel-confirm")
        c.wait_status(waiting, "FAILED")
        page.wait_for_selector(".job-head .st-FAILED")
        assert c.client.describe(waiting)["isCancelled"] is True
        c.client.terminate(first, "test over")

        # a multi-node job: each node with its address and MPI rank range
        c.client.register_job_definition({
            "jobDefinitionName": "pair", "type": "multinode",
            "nodeProperties": {
                "numNodes": 2, "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0:", "container": {
                    "command": ["sh", "-c", "sleep 3"],
                    "resourceRequirements": [{"type": "VCPU", "value": "1"}]}}],
                "mnp": {"mpi": "mpich", "tasksPerNode": 3},
            },
        })  # fmt: skip
        pair = c.submit("pair", "pair")
        c.wait_status(pair, "RUNNING", "SUCCEEDED", "FAILED", timeout=60)
        page.goto(f"{c.url}/dashboard/#/job/{pair}")
        page.wait_for_selector("tr[data-node-index='1'] td:has-text('3-5')")
        assert "0-2" in page.inner_text("tr[data-node-index='0']")
        addresses = {d["nodeAddress"] for d in (c.client.describe(f"{pair}#{i}") for i in (0, 1))}
        row_text = page.inner_text("[data-panel='mnp-nodes']")
        assert all(a and a in row_text for a in addresses), (addresses, row_text)

        # the overview draws its charts; the jobs list and nodes pages render
        page.goto(c.url + "/dashboard/#/")
        page.wait_for_selector("[data-panel='depth'] svg polyline", state="attached")
        page.goto(c.url + "/dashboard/#/jobs?name=tick")
        page.wait_for_selector(f"tr[data-job='{job}']")
        page.goto(c.url + "/dashboard/#/nodes")
        wait_for("two nodes listed", lambda: page.locator("tr[data-node]").count() == 2)
        page.screenshot(path=str(ARTIFACTS / "dashboard-nodes.png"), full_page=True)
        page.goto(c.url + "/dashboard/#/")
        page.wait_for_selector("[data-queue='default'] button:has-text('Disable')")
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

        # arrange the overview: drop the throughput chart, put nodes first; kept on reload
        page.click("#arrange")
        page.uncheck(".arrange input[name='throughput']")
        page.check(".arrange input[name='nodes']")
        page.check(".arrange input[name='deadLetters']")
        for _ in range(5):
            page.click(".arrange li[data-panel='nodes'] button")
        page.click("#save-layout")
        page.wait_for_selector(".panels > [data-panel='nodes']:first-child")
        page.reload()
        page.wait_for_selector(".panels > [data-panel='nodes']:first-child")
        assert page.locator(".panels > [data-panel='throughput']").count() == 0
        page.wait_for_selector("[data-panel='deadLetters'] td.empty")  # none: no rule

        # an ordinary user reads everything but is offered no action on another's job
        bob = c.client.create_user("bob")["token"]
        page.click("#logout")
        page.fill("#token", bob)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#who:has-text('bob (user)')")
        page.wait_for_selector("[data-queue='default']")
        assert page.locator("[data-queue='default'] button").count() == 0
        page.goto(f"{c.url}/dashboard/#/job/{job}")
        page.wait_for_selector("#actions:has-text('Read only')")
        assert page.locator("#actions button").count() == 0
        page.wait_for_selector("#log-state:has-text('only its owner or an admin')")
        for name in ("array", "nodes", "overview"):
            shutil.copy(ARTIFACTS / f"dashboard-{name}.png", tmp_path / f"dashboard-{name}.png")
        assert errors == []
