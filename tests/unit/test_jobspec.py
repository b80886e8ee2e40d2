"""Job-spec files: loading, checking (every error at once), ``@name`` resolution, submission;
and the shipped examples."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any, cast

import pytest

from mnp.client.client import Client, RequestInvalid
from mnp.client.jobspec import (
    JobSpecError,
    load_jobspec,
    resolve_command_paths,
    resolve_definition_paths,
    resolve_submit_paths,
    submit_jobspec,
)
from mnp.errors import FieldError, TransientError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def write(tmp_path: Path, text: str, name: str = "spec.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


class RecordingClient:
    """Duck-typed stand-in for :class:`mnp.Client` that records calls."""

    def __init__(self, reject: dict[str, Exception] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reject = reject or {}

    def register_job_definition(self, defn: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("register", defn))
        return {"jobDefinitionName": defn["jobDefinitionName"], "revision": 1}

    def submit(self, spec: dict[str, Any]) -> str:
        self.calls.append(("submit", spec))
        if spec["jobName"] in self.reject:
            raise self.reject[spec["jobName"]]
        return f"id-{spec['jobName']}"


def test_loads_jobs_and_definitions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        from pathlib import Path
        HERE = Path(__file__).parent
        JOB_DEFINITIONS = [{"jobDefinitionName": "step", "type": "container",
                            "containerProperties": {"command": ["bash", HERE / "step.sh"]}}]
        JOBS = [
            {"jobName": "prep", "jobDefinition": "step"},
            {"jobName": "train", "jobDefinition": "step", "jobQueue": "gpu",
             "dependsOn": [{"jobId": "@prep"}], "arrayProperties": {"size": 3}},
        ]
        """,
    )
    spec = load_jobspec(path)
    assert spec.path == path
    assert spec.job_definitions[0]["containerProperties"]["command"] == [
        "bash",
        str(tmp_path / "step.sh"),
    ]
    assert [j["jobName"] for j in spec.jobs] == ["prep", "train"]
    assert spec.jobs[0]["jobQueue"] == "default"
    assert spec.jobs[1]["jobQueue"] == "gpu"
    json.dumps(spec.jobs)  # plain JSON-ready data


def test_single_job(tmp_path: Path) -> None:
    spec = load_jobspec(write(tmp_path, 'JOB = {"jobName": "one", "jobDefinition": "d"}'))
    assert spec.jobs == [{"jobName": "one", "jobDefinition": "d", "jobQueue": "default"}]
    assert spec.job_definitions == []


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        JOB_DEFINITIONS = [{"jobDefinitionName": "d", "type": "lambda"}, "nope"]
        JOBS = [
            {"jobDefinition": "d"},
            {"jobName": "b", "jobDefinition": "d", "dependsOn": [{"jobId": "@ghost"}]},
            ["not", "a", "dict"],
            {"jobName": "c", "jobDefinition": "d", "jobQeue": "typo",
             "arrayProperties": {"size": "6"}, "containerOverrides": {"command": "echo hi"}},
            {"jobName": "e", "jobDefinition": "d", "dependsOn": [{"type": "SIDEWAYS"}]},
            {"jobName": "f", "jobDefinition": "d", "parameters": {"x": object()}},
        ]
        """,
    )
    with pytest.raises(JobSpecError) as info:
        load_jobspec(path)
    paths = {e.path for e in info.value.errors}
    assert paths == {
        "JOB_DEFINITIONS[0].type",
        "JOB_DEFINITIONS[1]",
        "JOBS[0].jobName",
        "JOBS[1].dependsOn[0].jobId",
        "JOBS[2]",
        "JOBS[3].jobQeue",
        "JOBS[3].arrayProperties.size",
        "JOBS[3].containerOverrides.command",
        "JOBS[4].dependsOn[0].type",
        "JOBS[4].dependsOn[0].jobId",
        "JOBS[5].parameters",
    }
    by_path = {e.path: e.message for e in info.value.errors}
    assert by_path["JOBS[0].jobName"] == "required"
    assert "ghost" in by_path["JOBS[1].dependsOn[0].jobId"]
    assert str(path) in str(info.value)
    assert "JOBS[0].jobName: required" in str(info.value)


def test_reference_must_point_backwards_and_be_unambiguous(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        JOBS = [
            {"jobName": "a", "jobDefinition": "d", "dependsOn": [{"jobId": "@b"}]},
            {"jobName": "b", "jobDefinition": "d"},
            {"jobName": "b", "jobDefinition": "d"},
            {"jobName": "c", "jobDefinition": "d", "dependsOn": [{"jobId": "@b"}]},
        ]
        """,
    )
    with pytest.raises(JobSpecError) as info:
        load_jobspec(path)
    messages = {e.path: e.message for e in info.value.errors}
    assert set(messages) == {"JOBS[0].dependsOn[0].jobId", "JOBS[3].dependsOn[0].jobId"}
    assert "defined before" in messages["JOBS[0].dependsOn[0].jobId"]
    assert "ambiguous" in messages["JOBS[3].dependsOn[0].jobId"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X = 1", "defines neither JOB nor JOBS"),
        ("JOB = {}\nJOBS = []", "define JOB or JOBS, not both"),
        ("JOBS = []", "JOBS: must not be empty"),
        ("JOBS = {'jobName': 'x'}", "JOBS: must be a list of dicts, got dict"),
        ("1 / 0", "running the file failed: ZeroDivisionError"),
        ("def broken(:\n", "running the file failed: SyntaxError"),
        ("import sys; sys.exit(3)", "running the file failed: SystemExit"),
    ],
)
def test_file_level_problems(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(JobSpecError, match=expected):
        load_jobspec(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="running the file failed"):
        load_jobspec(tmp_path / "absent.py")


def test_submit_registers_first_and_resolves_references(tmp_path: Path) -> None:
    spec = load_jobspec(
        write(
            tmp_path,
            """
            JOB_DEFINITIONS = [{"jobDefinitionName": "d", "type": "container"}]
            JOBS = [
                {"jobName": "arr", "jobDefinition": "d", "arrayProperties": {"size": 2}},
                {"jobName": "next", "jobDefinition": "d",
                 "dependsOn": [{"jobId": "@arr", "type": "N_TO_N"}, {"jobId": "literal-id"}]},
            ]
            """,
        )
    )
    client = RecordingClient()
    result = submit_jobspec(cast(Client, client), spec)
    assert result == [("arr", "id-arr"), ("next", "id-next")]
    assert [c[0] for c in client.calls] == ["register", "submit", "submit"]
    assert client.calls[2][1]["dependsOn"] == [
        {"jobId": "id-arr", "type": "N_TO_N"},
        {"jobId": "literal-id"},
    ]
    assert spec.jobs[1]["dependsOn"][0]["jobId"] == "@arr"  # the loaded spec is not changed


def test_submit_rejection_names_the_job_and_what_was_submitted(tmp_path: Path) -> None:
    spec = load_jobspec(
        write(
            tmp_path,
            """
            JOBS = [{"jobName": "a", "jobDefinition": "d"}, {"jobName": "b", "jobDefinition": "d"}]
            """,
        )
    )
    bad = RequestInvalid("bad", [FieldError("timeout.attemptDurationSeconds", "must be >= 60")])
    with pytest.raises(JobSpecError) as info:
        submit_jobspec(cast(Client, RecordingClient({"b": bad})), spec)
    assert [str(e) for e in info.value.errors] == [
        "JOBS[1].timeout.attemptDurationSeconds: must be >= 60"
    ]
    assert "already submitted: a (id-a)" in info.value.message

    with pytest.raises(TransientError) as other:
        submit_jobspec(cast(Client, RecordingClient({"b": TransientError("busy")})), spec)
    assert any("already submitted: a (id-a)" in n for n in other.value.__notes__)


def test_resolve_command_paths(tmp_path: Path) -> None:
    weird = tmp_path / "dir with 'quotes' $HOME; and\nnewline"
    weird.mkdir()
    (weird / "run me.sh").write_text("echo hi\n")
    (tmp_path / "train.py").write_text("")
    rel = f"{weird.name}/run me.sh"
    argv = ["bash", rel, "train.py", "-v", "missing/file.sh", "/abs/x.sh", "train.py"]
    assert resolve_command_paths(argv, tmp_path) == [
        "bash",
        str(weird / "run me.sh"),
        str(tmp_path / "train.py"),
        "-v",
        "missing/file.sh",
        "/abs/x.sh",
        str(tmp_path / "train.py"),
    ]
    # argv[0] without a slash is a program looked up in PATH, even if a file has its name
    assert resolve_command_paths(["train.py"], tmp_path) == ["train.py"]


def test_resolve_in_definitions_and_submits(tmp_path: Path) -> None:
    (tmp_path / "s.sh").write_text("")
    defn = {
        "containerProperties": {"command": ["bash", "./s.sh"]},
        "nodeProperties": {"nodeRangeProperties": [{"container": {"command": ["sh", "./s.sh"]}}]},
    }
    out = resolve_definition_paths(defn, tmp_path)
    assert out["containerProperties"]["command"][1] == str(tmp_path / "s.sh")
    assert out["nodeProperties"]["nodeRangeProperties"][0]["container"]["command"][1] == str(
        tmp_path / "s.sh"
    )
    assert defn["containerProperties"]["command"][1] == "./s.sh"  # a copy
    job = {"containerOverrides": {"command": ["bash", "./s.sh"]}}
    assert resolve_submit_paths(job, tmp_path)["containerOverrides"]["command"][1] == str(
        tmp_path / "s.sh"
    )


# -- the shipped examples --------------------------------------------------------------------


def test_example_pipeline_loads() -> None:
    spec = load_jobspec(EXAMPLES / "pipeline.py")
    assert [d["jobDefinitionName"] for d in spec.job_definitions] == ["squares", "after-squares"]
    squares, after = spec.jobs
    assert squares["arrayProperties"] == {"size": 6}
    assert after["dependsOn"] == [{"jobId": "@squares"}]
    for defn in spec.job_definitions:
        script = Path(defn["containerProperties"]["command"][1])
        assert script.is_absolute() and script.is_file()


def test_example_json_files() -> None:
    defn = json.loads((EXAMPLES / "jobdef-hello.json").read_text())
    assert defn["type"] == "container"
    props = defn["containerProperties"]
    assert props["command"] == ["bash", "examples/hello.sh"]
    assert {r["type"]: r["value"] for r in props["resourceRequirements"]} == {
        "VCPU": "1",
        "MEMORY": "256",
    }
    assert props["environment"]
    resolved = resolve_definition_paths(defn, REPO)
    assert resolved["containerProperties"]["command"][1] == str(EXAMPLES / "hello.sh")
    submit = json.loads((EXAMPLES / "submit-hello.json").read_text())
    assert submit["jobDefinition"] == defn["jobDefinitionName"]
    assert {"jobName", "jobQueue", "jobDefinition"} <= set(submit)


def test_the_aws_cli_example_names_no_file() -> None:
    """The README registers it with ``aws batch register-job-definition``, which resolves no
    paths (``mnp register`` does): a relative script path would not exist in the job's
    working directory, so its command is whole in itself."""
    defn = json.loads((EXAMPLES / "jobdef-echo.json").read_text())
    command = defn["containerProperties"]["command"]
    assert command[:2] == ["sh", "-c"] and not any("examples/" in arg for arg in command)
    readme = (REPO / "README.md").read_text()
    assert "--cli-input-json file://examples/jobdef-echo.json" in readme
    assert "--cli-input-json file://examples/jobdef-hello.json" not in readme


def run_script(name: str, tmp_path: Path, **env: str) -> str:
    proc = subprocess.run(
        ["bash", str(EXAMPLES / name)],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_example_scripts_run(tmp_path: Path) -> None:
    out = run_script(
        "hello.sh",
        tmp_path,
        AWS_BATCH_JOB_ID="j-1",
        AWS_BATCH_CE_NAME="local",
        GREETING="hi",
        MNP_NODE_ID="local-2",
        MNP_NODE_ADDRESS="127.0.0.3",
    )
    assert out.splitlines()[0] == (
        "hi: job j-1 ran on node local-2 (127.0.0.3) in compute environment local"
    )
    out = run_script(
        "square.sh", tmp_path, AWS_BATCH_JOB_ARRAY_INDEX="4", AWS_BATCH_JOB_ARRAY_SIZE="6"
    )
    assert out.startswith("index 4 of 6: 4^2 = 16")
    out = run_script("after-array.sh", tmp_path, AFTER="squares", AWS_BATCH_JOB_ID="j-2")
    assert out.startswith("ran after array job squares finished (job j-2, node")
