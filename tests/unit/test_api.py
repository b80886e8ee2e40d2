"""The Python API: specs and their checks (every problem at once), the pure builders (golden),
planning (closure, order, cycles), submission against a recording stand-in client, failure
reports, job-spec files holding specs, and the shipped examples as specs.

Golden files live in ``tests/unit/golden/api/``: ``{"registerJobDefinition", "submitJob"}``
for one spec; ``MNP_UPDATE_GOLDEN=1 pytest …`` rewrites them.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.client import dsl as api
from mnp.client.dsl import (
    After,
    ArrayJob,
    Job,
    MpiJob,
    NToN,
    build_definition,
    build_submission,
)
from mnp.client.jobspec import JobSpecError, load_jobspec
from mnp.client.plan import plan
from mnp.client.run import Failure, JobFailed, Run, submit
from mnp.errors import FieldError, InvalidInput
from tests.unit import goldens

JSON = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
HOSTILE = ['/opt/my dir/it\'s "$x";.sh', "a;b", "$HOME", "`id`", "new\nline", ""]
IDS = {"prep": "id-prep", "sweep": "id-sweep", "mpi": "id-mpi", "align": "id-align"}


def requests(job: Job, ids: dict[str, str] | None = None) -> str:
    doc = {
        "registerJobDefinition": build_definition(job),
        "submitJob": build_submission(job, f"{job.name}:3", ids or IDS),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def paths(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.path for e in exc.value.errors]


# -- builders (golden) ---------------------------------------------------------------------------


PREP = Job("prep", ["python3", "/abs/prep.py"])
SWEEP = ArrayJob("sweep", ["python3", "/abs/step.py"], size=6)
MPI = MpiJob("mpi", ["python3", "/abs/allreduce.py"], nodes=4, tasks_per_node=2)

CASES: dict[str, Job] = {
    "job-minimal": Job("hello", ["echo", "hi"]),
    "job-everything": Job(
        "everything",
        ["python3", Path("/abs/train.py"), "--lr", "0.1"],
        vcpus=2,
        memory_mib=512,
        gpus=1,
        environment={"MODE": "fast", "EMPTY": ""},
        timeout=600,
        attempts=3,
        queue="gpu",
        depends_on=[PREP, After(SWEEP, "any"), After("mpi", "notok"), After(SWEEP, "start")],
        working_dir="/shared/work",
        output=Path("/shared/logs/%x-%j.out"),
        image="python:3.11-slim",
        tags={"project": "demo"},
    ),
    "array": ArrayJob(
        "squares", ["bash", "/abs/square.sh"], size=6, max_running=2, depends_on=["prep"]
    ),
    "array-sequential-nton": ArrayJob(
        "call", ["call"], size=4, sequential=True, depends_on=[NToN("align"), After(SWEEP, index=5)]
    ),
    "mpi": MpiJob(
        "allreduce",
        ["python3", "/abs/allreduce.py"],
        nodes=4,
        tasks_per_node=2,
        mpi="mpich",
        memory_mib=1024,
        environment={"OMP_NUM_THREADS": "1"},
        depends_on=[SWEEP],
    ),
    "mpi-one-node": MpiJob("solo", ["python3", "/abs/allreduce.py"], nodes=1),
    "every-node": MpiJob(
        "ddp", ["torchrun", "/abs/train.py"], nodes=3, every_node=True, gpus=2, timeout=3600
    ),
    "hostile-job": Job(
        "hostile",
        [*HOSTILE[:-1], ""],
        environment={"X": "\n".join(HOSTILE)},
        working_dir="/tmp/it's a $dir;",
        output='/tmp/out "q"\n.txt',
    ),
    "hostile-mpi": MpiJob("hostile-mpi", HOSTILE, nodes=2, environment={"Y": '"$(rm -rf /)"'}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_builders_match_golden(name: str) -> None:
    goldens.check("api", f"{name}.json", requests(CASES[name]))


def test_hostile_arguments_pass_byte_exact() -> None:
    defn = build_definition(CASES["hostile-mpi"])
    ranges = defn["nodeProperties"]["nodeRangeProperties"]
    assert ranges[0]["container"]["command"] == HOSTILE
    assert "command" not in ranges[1]["container"]  # the other node only serves SSH
    body = build_submission(CASES["hostile-job"], "hostile", {})
    assert body["mnp"] == {"workingDirectory": "/tmp/it's a $dir;", "stdout": '/tmp/out "q"\n.txt'}


def test_definitions_need_no_shell_and_default_to_one_vcpu() -> None:
    defn = build_definition(Job("x", ["a b", "c"]))
    assert defn["containerProperties"] == {
        "command": ["a b", "c"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}],
    }


def test_queue_override_and_missing_dependency_id() -> None:
    assert build_submission(PREP, "prep", {}, queue="other")["jobQueue"] == "other"
    with pytest.raises(KeyError):
        build_submission(Job("x", ["y"], depends_on=[PREP]), "x", {})


def test_specs_are_frozen_copies() -> None:
    env = {"A": "1"}
    command = ["echo", "x"]
    job = Job("x", command, environment=env)
    env["A"] = "2"
    command.append("more")
    assert job.environment == {"A": "1"} and job.command == ("echo", "x")
    with pytest.raises(AttributeError):
        job.name = "y"  # type: ignore[misc]


# -- checks --------------------------------------------------------------------------------------


def test_every_problem_of_a_job_at_once() -> None:
    with pytest.raises(InvalidInput) as exc:
        Job(
            "bad name",
            "echo hi",  # type: ignore[arg-type]
            vcpus=0,
            memory_mib=2,
            gpus=-1,
            environment={"1X": "a", "Y": 3},  # type: ignore[dict-item]
            timeout=0,
            attempts=11,
            queue="",
            depends_on=PREP,  # type: ignore[arg-type]
            working_dir="relative/dir",
            output="out.txt",
            image="",
            tags={"a": 1},  # type: ignore[dict-item]
        )
    assert paths(exc) == [
        "Job.name", "Job.command", "Job.vcpus", "Job.memory_mib", "Job.gpus",
        "Job.environment['1X']", "Job.environment['Y']", "Job.timeout", "Job.attempts",
        "Job.queue", "Job.depends_on", "Job.working_dir", "Job.output", "Job.image", "Job.tags",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Job("x", []), ["Job.command: must not be empty"]),
        (lambda: Job("x", ["a", 1]),
         ["Job.command: must be a list of strings (an argv; no shell)"]),
        (lambda: Job("x", ["a"], depends_on=[3]), ["Job.depends_on[0]: must be a Job, ArrayJob, "
                                                   "MpiJob, After or a job name"]),
        (lambda: Job("x", ["a"], depends_on=["p"] * 21),
         ["Job.depends_on: at most 20 dependencies"]),
        (lambda: ArrayJob("x", ["a"], size=1), ["ArrayJob.size: must be 2..10000, got 1"]),
        (lambda: ArrayJob("x", ["a"], size=10_001, max_running=0, sequential=1),
         ["ArrayJob.size: must be 2..10000, got 10001", "ArrayJob.max_running: must be ≥ 1, got 0",
          "ArrayJob.sequential: must be True or False"]),
        (lambda: ArrayJob("", ["a"], size=True), ["ArrayJob.name: '': 1-128 letters, digits, - "
                                                  "and _, starting alphanumeric",
                                                  "ArrayJob.size: must be 2..10000, got True"]),
        (lambda: MpiJob("x", ["a"], nodes=0, tasks_per_node=0, mpi="lam"),
         ["MpiJob.nodes: must be 1..1000, got 0", "MpiJob.tasks_per_node: must be 1..1024, got 0",
          "MpiJob.mpi: must be one of none, auto, openmpi, mpich, intelmpi"]),
        (lambda: MpiJob("x", ["a"], nodes=2, every_node=True, mpi="openmpi"),
         ["MpiJob.mpi: every_node runs the command on each node, not mpiexec"]),
        (lambda: After(PREP, "ok!"),  # type: ignore[arg-type]
         ["After.condition: must be one of ok, any, notok, start, n_to_n"]),
        (lambda: After(3, index=-1),  # type: ignore[arg-type]
         ["After.job: must be a Job, ArrayJob, MpiJob or a job name",
          "After.index: must be an array index (≥ 0)"]),
        (lambda: After(SWEEP, "n_to_n", index=1),
         ["After.index: an n_to_n dependency takes no index"]),
    ],
)  # fmt: skip
def test_checks_name_the_field(make: Any, expected: list[str]) -> None:
    with pytest.raises(InvalidInput) as exc:
        make()
    assert [str(e) for e in exc.value.errors] == expected


def test_constants_match_the_head() -> None:
    from mnp.service.validation import NAME_RE
    from mnp.spec.noderanges import MPI_CHOICES

    assert api.MPI_CHOICES == MPI_CHOICES
    assert api.NAME_RE.pattern == NAME_RE.strip("^$")


# -- planning ------------------------------------------------------------------------------------


def names(jobs: list[Job]) -> list[str]:
    return [j.name for j in jobs]


def test_plan_pulls_in_dependencies_and_orders_them_first() -> None:
    sweep = ArrayJob("sweep", ["s"], size=3, depends_on=["prep"])
    mpi = MpiJob("mpi", ["m"], nodes=2, depends_on=[sweep])
    report = Job("report", ["r"], depends_on=[After(mpi, "any"), sweep])
    assert names(plan([report, PREP])) == ["prep", "sweep", "mpi", "report"]
    assert names(plan(PREP)) == ["prep"]


def test_plan_keeps_the_given_order_where_it_can() -> None:
    a, b, c = Job("a", ["x"]), Job("b", ["x"]), Job("c", ["x"])
    assert names(plan([c, a, b])) == ["c", "a", "b"]
    assert names(plan([Job("d", ["x"], depends_on=["b"]), a, b])) == ["a", "b", "d"]


def test_a_cycle_is_an_error_naming_its_jobs() -> None:
    jobs = [
        Job("p", ["x"], depends_on=["q"]),
        Job("q", ["x"], depends_on=["r"]),
        Job("r", ["x"], depends_on=["q"]),
        Job("s", ["x"]),
    ]
    with pytest.raises(InvalidInput) as exc:
        plan(jobs)
    assert [str(e) for e in exc.value.errors] == ["depends_on: dependency cycle: q → r → q"]


def test_plan_reports_every_problem_at_once() -> None:
    array3 = ArrayJob("a3", ["x"], size=3)
    jobs = [
        Job("dup", ["x"]),
        Job("self", ["x"], depends_on=["self"]),
        Job("ghost", ["x"], depends_on=["nobody"]),
        Job("nton", ["x"], depends_on=[NToN(array3)]),
        ArrayJob("a4", ["x"], size=4, depends_on=[NToN(array3), After(array3, index=3)]),
        Job("idx", ["x"], depends_on=[After(PREP, index=0)]),
    ]
    with pytest.raises(InvalidInput) as exc:
        plan(jobs)
    assert [str(e) for e in exc.value.errors] == [
        "self.depends_on[0]: a job cannot depend on itself",
        "ghost.depends_on[0]: no job named 'nobody' is submitted",
        "nton.depends_on[0]: n_to_n links two array jobs",
        "a4.depends_on[0]: n_to_n needs arrays of one size: 4 ≠ 3",
        "a4.depends_on[1]: index 3: a3 has children 0..2",
        "idx.depends_on[0]: index 0: prep is not an array job",
    ]


def test_two_different_jobs_with_one_name_are_refused_equal_ones_merged() -> None:
    assert names(plan([Job("a", ["x"]), Job("a", ["x"])])) == ["a"]
    with pytest.raises(InvalidInput) as exc:
        plan([Job("a", ["x"]), Job("b", ["x"], depends_on=[Job("a", ["y"])])])
    assert [str(e) for e in exc.value.errors] == ["a: two different jobs have this name"]


# -- submitting ----------------------------------------------------------------------------------


class RecordingClient:
    """Stand-in for :class:`mnp.Client`: records requests; answers describe/list from
    ``details``/``children``."""

    url = "http://stand-in"

    def __init__(self, reject: str | None = None) -> None:
        self.calls: list[tuple[str, JSON]] = []
        self.revisions: dict[str, int] = {}
        self.reject = reject
        self.details: dict[str, JSON] = {}
        self.children: dict[str, list[JSON]] = {}

    def register_job_definition(self, defn: JSON) -> JSON:
        self.calls.append(("register", defn))
        name = defn["jobDefinitionName"]
        self.revisions[name] = self.revisions.get(name, 0) + 1
        return {"jobDefinitionName": name, "revision": self.revisions[name]}

    def submit(self, spec: JSON) -> str:
        self.calls.append(("submit", spec))
        if spec["jobName"] == self.reject:
            raise InvalidInput([FieldError("jobQueue", "no such queue")])
        return f"id-{spec['jobName']}"

    def describe_jobs(self, ids: list[str]) -> list[JSON]:
        return [self.details[i] for i in ids if i in self.details]

    def describe(self, job_id: str) -> JSON:
        return self.details[job_id]

    def list_jobs(self, array_job_id: str | None = None, status: str | None = None) -> list[JSON]:
        kids = self.children.get(array_job_id or "", [])
        return [k for k in kids if status is None or k["status"] == status]

    def terminate(self, job_id: str, reason: str) -> None:
        self.calls.append(("terminate", {"jobId": job_id, "reason": reason}))


def test_submit_registers_and_submits_in_dependency_order() -> None:
    client = RecordingClient()
    client.revisions["sweep"] = 4  # an earlier revision exists: the new one is pinned
    mpi = MpiJob("mpi", ["m"], nodes=2, depends_on=[SWEEP])
    report = Job("report", ["r"], depends_on=[mpi, After(SWEEP, "any")])
    run = submit([report, SWEEP], client)  # type: ignore[arg-type]
    assert run.ids == {"sweep": "id-sweep", "mpi": "id-mpi", "report": "id-report"}
    submits = [body for kind, body in client.calls if kind == "submit"]
    assert [b["jobDefinition"] for b in submits] == ["sweep:5", "mpi:1", "report:1"]
    assert submits[2]["dependsOn"] == [
        {"jobId": "id-mpi"},
        {"jobId": "id-sweep", "type": "AFTER_ANY"},
    ]
    kinds = [kind for kind, _ in client.calls]
    assert kinds == ["register", "submit"] * 3


def test_submit_with_base_dir_and_queue(tmp_path: Path) -> None:
    (tmp_path / "step.sh").write_text("echo")
    client = RecordingClient()
    submit([Job("s", ["bash", "step.sh"])], client, queue="q2", base_dir=tmp_path)  # type: ignore[arg-type]
    defn, body = client.calls[0][1], client.calls[1][1]
    assert defn["containerProperties"]["command"] == ["bash", str(tmp_path / "step.sh")]
    assert body["jobQueue"] == "q2"


def test_a_rejected_submission_names_what_was_submitted() -> None:
    client = RecordingClient(reject="sweep")
    with pytest.raises(InvalidInput) as exc:
        submit([Job("after", ["x"], depends_on=[SWEEP]), PREP], client)  # type: ignore[arg-type]
    assert exc.value.__notes__ == ["submitting sweep failed; already submitted: prep (id-prep)"]


def test_nothing_is_submitted_when_planning_fails() -> None:
    client = RecordingClient()
    with pytest.raises(InvalidInput):
        submit([Job("a", ["x"], depends_on=["b"])], client)  # type: ignore[arg-type]
    assert client.calls == []


def test_wait_raises_job_failed_naming_failures() -> None:
    client = RecordingClient()
    client.details = {
        "id-ok": {"jobId": "id-ok", "status": "SUCCEEDED"},
        "id-bad": {
            "jobId": "id-bad",
            "status": "FAILED",
            "statusReason": "Essential container in task exited",
            "container": {"exitCode": 3},
        },
        "id-arr": {
            "jobId": "id-arr",
            "status": "FAILED",
            "statusReason": "ARRAY:CHILD_FAILED - 2 of 3 child jobs failed",
            "arrayProperties": {"size": 3, "statusSummary": {}},
        },
        "id-mpi": {
            "jobId": "id-mpi",
            "status": "FAILED",
            "statusReason": "node 1 exited",
            "nodeProperties": {"numNodes": 2, "mainNode": 0},
        },
        "id-mpi#0": {"jobId": "id-mpi#0", "status": "FAILED", "container": {"exitCode": 7}},
    }
    client.children["id-arr"] = [
        {"status": "FAILED", "statusReason": "boom", "arrayProperties": {"index": 2},
         "container": {"exitCode": 1}},
        {"status": "SUCCEEDED", "arrayProperties": {"index": 1}},
        {"status": "FAILED", "statusReason": "timeout", "arrayProperties": {"index": 0}},
    ]  # fmt: skip
    ids = {"ok": "id-ok", "bad": "id-bad", "arr": "id-arr", "mpi": "id-mpi"}
    run = Run(client, ids)  # type: ignore[arg-type]
    with pytest.raises(JobFailed) as exc:
        run.wait(stream=False)
    assert exc.value.statuses == {"ok": "SUCCEEDED", "bad": "FAILED", "arr": "FAILED",
                                  "mpi": "FAILED"}  # fmt: skip
    assert exc.value.failures == [
        Failure("bad", "id-bad", "Essential container in task exited", 3),
        Failure("arr", "id-arr", "ARRAY:CHILD_FAILED - 2 of 3 child jobs failed", None,
                "2 of 3 children failed: [0] timeout, [2] boom (exit code 1)"),
        Failure("mpi", "id-mpi", "node 1 exited", 7),
    ]  # fmt: skip
    assert str(exc.value).startswith(
        "3 jobs failed: bad (id-bad): Essential container in task exited (exit code 3); arr"
    )
    run.cancel("stop")
    assert [c[1]["jobId"] for c in client.calls if c[0] == "terminate"] == list(ids.values())


def test_wait_returns_statuses_and_times_out_naming_jobs() -> None:
    client = RecordingClient()
    client.details = {"id-a": {"jobId": "id-a", "status": "SUCCEEDED"}}
    run = Run(client, {"a": "id-a"})  # type: ignore[arg-type]
    assert run.wait(stream=False, out=io.StringIO()) == {"a": "SUCCEEDED"}
    client.details["id-b"] = {"jobId": "id-b", "status": "RUNNABLE"}
    with pytest.raises(TimeoutError, match=r"waiting for b \(RUNNABLE\)"):
        Run(client, {"a": "id-a", "b": "id-b"}).wait(  # type: ignore[arg-type]
            stream=False, timeout=0.05, poll_interval=0.01
        )


# -- job-spec files and the examples ---------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_jobspec_file_with_specs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from mnp import ArrayJob, Job, submit
        prep = Job("prep", ["true"])
        JOBS = [ArrayJob("arr", ["true"], size=2, depends_on=["prep"]), prep]
        if __name__ == "__main__":
            raise SystemExit("not run by mnp submit")
        """,
    )
    spec = load_jobspec(path)
    assert spec.jobs == [] and names(spec.specs) == ["prep", "arr"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("JOBS = [Job('a', ['x']), {'jobName': 'b'}]", "JOBS[1]: mixes dicts and Job objects"),
        ("JOBS = [Job('a', ['x'], depends_on=['a2']), Job('a2', ['x'], depends_on=['a'])]",
         "JOBS: depends_on: dependency cycle: a → a2 → a"),
        ("JOB = Job('a', ['x'], vcpus=0)", "running the file failed: InvalidInput: Job.vcpus"),
    ],
)  # fmt: skip
def test_jobspec_file_problems(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "from mnp import Job\n" + body + "\n")
    with pytest.raises(JobSpecError) as exc:
        load_jobspec(path)
    assert expected in str(exc.value)


def test_examples_load_as_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNP_SHARED", str(tmp_path))
    found = {n: load_jobspec(EXAMPLES / f"{n}.py").specs for n in (
        "sweep", "monte_carlo", "genomics", "mpi_job", "pipeline_api")}  # fmt: skip
    assert [type(j).__name__ for j in found["sweep"]] == ["ArrayJob"]
    assert names(found["monte_carlo"]) == ["pi-estimate", "pi-reduce"]
    genomics = found["genomics"]
    assert names(genomics) == ["align", "call", "annotate"]
    assert [build_submission(j, j.name, {"align": "A", "call": "C"}).get("dependsOn")
            for j in genomics] == [None, [{"jobId": "A", "type": "N_TO_N"}],
                                   [{"jobId": "C", "type": "N_TO_N"}]]  # fmt: skip
    assert all(j.environment["WORK"] == str(tmp_path / "genomics") for j in genomics)
    assert isinstance(found["mpi_job"][0], MpiJob)
    assert names(found["pipeline_api"]) == ["prepare", "simulate", "allreduce", "report"]


class StreamingClient(RecordingClient):
    """Adds logs (two lines per target) and clone (itself: it keeps no per-call state)."""

    def clone(self) -> StreamingClient:
        return self

    def __enter__(self) -> StreamingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        assert follow
        yield f"out of {job_id}\n"
        yield "no newline at the end"


def test_wait_streams_jobs_children_and_nodes_with_labels() -> None:
    client = StreamingClient()
    client.details = {
        "J": {"jobId": "J", "status": "SUCCEEDED", "nodeId": "n1"},
        "Q": {"jobId": "Q", "status": "SUCCEEDED"},  # never ran: nothing to follow
        "A": {"jobId": "A", "status": "SUCCEEDED", "arrayProperties": {"size": 3}},
        "M": {"jobId": "M", "status": "SUCCEEDED", "nodeProperties": {"numNodes": 2,
                                                                      "mainNode": 0}},
        "M#0": {"jobId": "M#0", "status": "SUCCEEDED", "nodeId": "n1",
                "nodeDetails": {"nodeIndex": 0}},
        "M#1": {"jobId": "M#1", "status": "SUCCEEDED", "nodeId": "n2",
                "nodeDetails": {"nodeIndex": 1}},
    }  # fmt: skip
    client.children["A"] = [
        {"status": "SUCCEEDED", "nodeId": "n1", "arrayProperties": {"index": 0}},
        {"status": "SUCCEEDED", "attempt": 1, "arrayProperties": {"index": 2}},
        {"status": "FAILED", "attempt": 0, "arrayProperties": {"index": 1}},
    ]
    out = io.StringIO()
    run = Run(client, {"job": "J", "queued": "Q", "arr": "A", "mpi": "M"})  # type: ignore[arg-type]
    assert set(run.wait(out=out).values()) == {"SUCCEEDED"}
    assert sorted(out.getvalue().splitlines()) == sorted([
        "job: out of J", "job: no newline at the end",
        "arr[0]: out of A:0", "arr[0]: no newline at the end",
        "arr[2]: out of A:2", "arr[2]: no newline at the end",
        "mpi: out of M#0", "mpi: no newline at the end",
        "mpi#1: out of M#1", "mpi#1: no newline at the end",
    ])  # fmt: skip


def test_dict_jobspec_files_take_the_after_conditions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        JOBS = [{"jobName": "a", "jobDefinition": "d"},
                {"jobName": "b", "jobDefinition": "d",
                 "dependsOn": [{"jobId": "@a", "type": "AFTER_ANY"}]}]
        """,
    )
    assert load_jobspec(path).jobs[1]["dependsOn"] == [{"jobId": "@a", "type": "AFTER_ANY"}]
