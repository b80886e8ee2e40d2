"""Slurm's leniency in ``mnp sbatch`` (issue 14): getopt prefixes and Slurm's synonyms, any job
name, the node count from ``-n`` and the partition's node size, Slurm's refusals at submit,
arrays up to the head's maximum, exported bash functions, and output directories made at job
start."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launcher.attempt import open_outputs
from mnp.cli.main import cli
from mnp.cli.sbatch import parse_command_line
from mnp.config import MAX_ARRAY_SIZE_ENV, max_array_setting
from mnp.errors import InvalidInput
from mnp.slurm.options import IGNORED, SBATCH_OPTIONS, parse_tokens
from mnp.slurm.request import (
    Partition,
    SbatchRequest,
    aws_job_name,
    fit_problems,
    partition_from,
    placed,
)
from mnp.slurm.sbatch import JOB_NAME_VAR, build_requests, request_from
from mnp.spec.protocol import Assignment
from tests.unit.helpers_core import Head

JSON = dict[str, Any]
SCRIPT = "#!/bin/bash\ntrue\n"
FUNCTION = '() {  eval $($LMOD_CMD bash "$@")\n}'


def request(argv: list[str], script: str = SCRIPT) -> tuple[SbatchRequest, list[str]]:
    return request_from(script, parse_command_line([*argv, "job.sh"]).parsed, {})


def submission(argv: list[str], environ: dict[str, str] | None = None) -> JSON:
    cl = parse_command_line([*argv, "job.sh"])
    req, _ = request_from(SCRIPT, cl.parsed, environ or {})
    _, sub = build_requests(req, script_text=SCRIPT, script_name="job.sh", submit_dir="/w",
                            environ=environ or {}, user="ada")  # fmt: skip
    return sub


def environment(sub: JSON) -> dict[str, str]:
    pairs = (sub.get("containerOverrides") or {}).get("environment") or []
    return {kv["name"]: kv["value"] for kv in pairs}


# -- options ---------------------------------------------------------------------------------


def test_long_options_may_be_any_unambiguous_prefix_as_getopt_reads_them() -> None:
    req, _ = request(["--err", "e.txt", "--tasks-per", "2", "--chd=/d", "--job", "x"])
    assert (req.error, req.ntasks_per_node, req.chdir, req.job_name) == ("e.txt", 2, "/d", "x")
    exact, _ = request(["--mem", "1G"])  # also a prefix of --mem-per-cpu: the exact name wins
    assert exact.mem_mib == 1024


def test_an_ambiguous_prefix_is_an_error_in_getopts_words() -> None:
    parsed, _ = parse_tokens(["--t", "5"], SBATCH_OPTIONS, "command line", stop_at_positional=True)
    (message,) = parsed.malformed
    assert message.startswith("option '--t' is ambiguous; possibilities: '--tasks-per-node' ")
    assert "'--test-only'" in message and "'--time'" in message
    assert not parsed.settings and not parsed.positional, "its value is not taken as the script"


def test_slurms_synonyms_mean_the_same() -> None:
    a, _ = request(["--tasks-per-node", "2", "-N", "2"])
    b, _ = request(["--ntasks-per-node=2", "--nodes=2"])
    assert a == b and a.tasks_per_node == 2 and a.nodes == 2
    c, _ = request(["-c", "3", "--mem-per-cpu", "100", "--workdir", "/d"])
    assert (c.cpus_per_task, c.mem_per_cpu_mib, c.chdir) == (3, 100, "/d")


def test_a_node_range_takes_its_minimum() -> None:
    req, warnings = request(["-N", "2-4"])
    assert req.nodes == 2 and req.nodes_given
    assert any("exactly 2 nodes" in w for w in warnings)


def test_signal_is_passed_to_srun_checked() -> None:
    cl = parse_command_line(["--signal=R:USR2@90", "job.sh"])
    req, warnings = request_from(SCRIPT, cl.parsed, {})
    assert req.signal == "R:USR2@90" and not warnings
    with pytest.raises(Exception, match="signal"):
        request_from(SCRIPT, parse_command_line(["--signal=USR2@x;rm", "job.sh"]).parsed, {})


@pytest.mark.parametrize("option", ["--exclusive", "--constraint=avx",
                                    "--qos=high", "--account=proj", "--mail-type=END",
                                    "--gpus-per-task=1", "--mincpus=4"])  # fmt: skip
def test_options_that_do_not_apply_warn_and_never_exit_2(option: str) -> None:
    cl = parse_command_line([option, "job.sh"])
    assert not cl.parsed.unknown and not cl.parsed.malformed and cl.script == "job.sh"
    _, warnings = request_from(SCRIPT, cl.parsed, {})
    assert any(option.partition("=")[0] in w and "ignored" in w for w in warnings), warnings


def test_every_ignored_option_has_a_reason() -> None:
    assert all(o.why for o in IGNORED)


# -- job names -------------------------------------------------------------------------------


NAMES = [("run.v2", "run_v2"), ("my job", "my_job"), ("été", "t_"), (".hidden", "hidden"),
         ("...", "sbatch"), ("ok-name_1", "ok-name_1")]  # fmt: skip


@pytest.mark.parametrize(("given", "aws"), NAMES)
def test_any_job_name_is_taken_and_mapped_for_the_aws_view(given: str, aws: str) -> None:
    assert aws_job_name(given) == aws
    sub = submission(["-J", given])
    assert sub["jobName"] == aws and sub["jobDefinition"] == f"sbatch-{aws}"
    env = environment(sub)
    assert env.get(JOB_NAME_VAR) == (None if given == aws else given)


def test_a_long_name_is_cut_to_128_characters() -> None:
    assert len(aws_job_name("é" + "x" * 300)) == 128


# -- the partition ---------------------------------------------------------------------------

SIXTEEN = Partition("p", vcpus=16, memory_mib=8192, gpus=0, max_nodes=4)


def test_the_node_count_follows_from_ntasks_and_the_node_size() -> None:
    req, _ = request(["-n", "40"])
    assert placed(req, SIXTEEN).nodes == 3
    four_cpus, _ = request(["-n", "8", "-c", "4"])
    assert placed(four_cpus, SIXTEEN).nodes == 2
    given, _ = request(["-n", "4", "-N", "1"])
    assert placed(given, SIXTEEN) == given
    assert placed(req, Partition("p")) == req, "an unknown node size changes nothing"


@pytest.mark.parametrize(("argv", "limit"), [
    (["-N", "1", "-n", "40"], "40 CPUs per node (40 tasks × 1 CPUs), but partition p's nodes "
                              "have 16"),
    (["--mem", "9G"], "9216 MiB of memory per node, but partition p's nodes have 8192 MiB"),
    (["-N", "5"], "5 nodes, but partition p has at most 4"),
    (["-n", "80"], "5 nodes, but partition p has at most 4"),
    (["--gpus-per-node", "1"], "1 GPUs per node, but partition p's nodes have 0"),
])  # fmt: skip
def test_a_job_that_can_never_fit_names_the_limit(argv: list[str], limit: str) -> None:
    req, _ = request(argv)
    assert fit_problems(placed(req, SIXTEEN), SIXTEEN) == [limit]


def test_jobs_that_fit_or_an_unknown_partition_have_no_problems() -> None:
    req, _ = request(["-N", "4", "--tasks-per-node", "16", "--mem", "8G"])
    assert fit_problems(req, SIXTEEN) == []
    big, _ = request(["-N", "90", "-n", "9000"])
    assert fit_problems(big, Partition("p")) == []


def test_the_partition_is_read_from_its_environments() -> None:
    queue = {
        "jobQueueName": "p",
        "computeEnvironmentOrder": [
            {"order": 1, "computeEnvironment": "a"},
            {"order": 2, "computeEnvironment": "b"},
        ],
    }
    fixed = {
        "computeEnvironmentName": "a",
        "type": "MANAGED",
        "mnp": {"provider": "local", "nodes": 2, "vcpus": 4, "memoryMiB": 1024, "gpus": 0},
    }
    elastic = {
        "computeEnvironmentName": "b",
        "type": "MANAGED",
        "computeResources": {"maxvCpus": 48},
        "mnp": {"provider": "local", "nodes": 3, "vcpus": 16, "memoryMiB": 512, "gpus": 1},
    }
    hosts = {"computeEnvironmentName": "b", "type": "UNMANAGED", "mnp": {"provider": "local"}}
    assert partition_from(queue, [fixed, elastic]) == Partition("p", 16, 1024, 1, 3)
    assert partition_from(queue, [fixed, hosts]) == Partition("p")
    assert partition_from(queue, [fixed]) == Partition("p"), "a missing environment: unknown"


# -- the command: Slurm's refusals at submit --------------------------------------------------


class PartitionClient:
    def __init__(self) -> None:
        self.submitted: list[JSON] = []

    def queues(self) -> list[JSON]:
        return [
            {
                "jobQueueName": "batch",
                "jobQueueArn": "arn:q/batch",
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "local"}],
            }
        ]

    def compute_environments(self) -> list[JSON]:
        return [
            {
                "computeEnvironmentName": "local",
                "type": "MANAGED",
                "mnp": {"provider": "local", "nodes": 4, "vcpus": 16, "memoryMiB": 8192},
            }
        ]

    def register_job_definition(self, defn: JSON) -> JSON:
        self.definition = defn
        return {"jobDefinitionName": defn["jobDefinitionName"], "revision": 1}

    def submit(self, sub: JSON) -> str:
        self.submitted.append(sub)
        return "job-1"

    def describe(self, job_id: str) -> JSON:
        return {"jobId": job_id}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PartitionClient:
    c = PartitionClient()
    monkeypatch.setattr("mnp.cli.state.State.client", lambda self: c)
    monkeypatch.chdir(tmp_path)
    return c


def test_an_unknown_partition_is_refused_in_slurms_words(client: PartitionClient) -> None:
    r = CliRunner().invoke(cli, ["sbatch", "-p", "nosuch", "--wrap", "true"])
    assert r.exit_code == 1 and r.stdout == "" and not client.submitted
    assert r.stderr == ("sbatch: error: invalid partition specified: nosuch\n"
                        "sbatch: error: Batch job submission failed: Invalid partition name "
                        "specified\n")  # fmt: skip


def test_a_job_that_can_never_fit_is_refused_at_submit(client: PartitionClient) -> None:
    r = CliRunner().invoke(cli, ["sbatch", "-p", "batch", "-N", "1", "-n", "17", "--wrap", "true"])
    assert r.exit_code == 1 and not client.submitted
    assert r.stderr.splitlines() == [
        "sbatch: error: 17 CPUs per node (17 tasks × 1 CPUs), but partition batch's nodes have 16",
        "sbatch: error: Batch job submission failed: Requested node configuration is not available",
    ]


def test_ntasks_spreads_over_the_partitions_nodes(client: PartitionClient) -> None:
    r = CliRunner().invoke(cli, ["sbatch", "-p", "arn:q/batch", "-n", "40", "--wrap", "true"])
    assert r.exit_code == 0, r.output
    assert client.definition["nodeProperties"]["numNodes"] == 3
    assert client.submitted[0]["mnp"]["ntasks"] == 40


# -- arrays ----------------------------------------------------------------------------------


def test_arrays_past_10000_tasks_and_indices_are_read() -> None:
    req, _ = request(["--array", "0-19999"])
    assert req.array is not None and len(req.array.ids) == 20_000
    sparse = submission(["--array", "15000,20000-20002%2"])
    assert sparse["arrayProperties"] == {"size": 4}
    assert environment(sparse)["MNP_SLURM_ARRAY_TASK_IDS"] == "15000,20000-20002"


def test_the_heads_array_maximum_is_10000_unless_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MAX_ARRAY_SIZE_ENV, raising=False)
    assert max_array_setting() == 10_000
    monkeypatch.setenv(MAX_ARRAY_SIZE_ENV, "50000")
    assert max_array_setting() == 50_000
    monkeypatch.setenv(MAX_ARRAY_SIZE_ENV, "1")
    with pytest.raises(ValueError, match=r"MNP_MAX_ARRAY_SIZE='1' \(max_array_size\)"):
        max_array_setting()
    monkeypatch.delenv(MAX_ARRAY_SIZE_ENV)
    head = Head.open(tmp_path / "home")
    try:
        head.basic(("n1",))
        with pytest.raises(InvalidInput) as err:
            head.submit("big", arrayProperties={"size": 10_001})
        (e,) = err.value.errors
        assert (e.path, e.message.split(" (")[0]) == (
            "arrayProperties.size",
            "must be at most 10000",
        )
        head.state.config = dataclasses.replace(head.state.config, max_array_size=20_000)
        assert head.submit("big", arrayProperties={"size": 20_000})
    finally:
        head.close()


# -- the environment -------------------------------------------------------------------------


def test_exported_bash_functions_reach_the_job_with_export_all() -> None:
    environ = {"PATH": "/bin", "BASH_FUNC_module%%": FUNCTION, "BASH_FUNC_ml()": FUNCTION}
    env = environment(submission([], environ))
    assert env["BASH_FUNC_module%%"] == FUNCTION and env["BASH_FUNC_ml()"] == FUNCTION
    assert environment(submission(["--export=ALL,X=1"], environ))["BASH_FUNC_module%%"]
    assert "BASH_FUNC_module%%" not in environment(submission(["--export=NONE"], environ))
    assert "BASH_FUNC_module%%" not in environment(submission(["--export=PATH"], environ))


# -- output directories at job start ---------------------------------------------------------


def test_missing_output_directories_are_made_at_job_start(tmp_path: Path) -> None:
    out, err = tmp_path / "logs" / "a" / "o.txt", tmp_path / "errs" / "e.txt"
    job = Assignment("j/1", "j", 1, ["true"], {}, None, 1.0)
    job = dataclasses.replace(job, stdout_path=str(out), stderr_path=str(err))
    for fd in open_outputs(job, tmp_path):
        os.close(fd)
    assert out.is_file() and err.is_file()


# -- mnp queue / mnp ce ----------------------------------------------------------------------


class AdminClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, JSON]] = []

    def call(self, operation: str, body: JSON) -> JSON:
        self.calls.append((operation, body))
        return {}


@pytest.mark.parametrize(("argv", "call"), [
    (["queue", "create", "par", "--ce", "a", "--ce", "b", "--priority", "7"],
     ("createJobQueue", {"jobQueueName": "par", "priority": 7, "state": "ENABLED",
                         "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "a"},
                                                     {"order": 2, "computeEnvironment": "b"}]})),
    (["queue", "update", "par", "--state", "disabled"],
     ("updateJobQueue", {"jobQueue": "par", "state": "DISABLED"})),
    (["queue", "delete", "par"], ("deleteJobQueue", {"jobQueue": "par"})),
    (["ce", "create", "big", "--nodes", "2", "--vcpus", "16", "--memory-mib", "8192"],
     ("createComputeEnvironment", {"computeEnvironmentName": "big", "type": "MANAGED",
                                   "state": "ENABLED",
                                   "mnp": {"nodes": 2, "vcpus": 16, "memoryMiB": 8192}})),
    (["ce", "create", "el", "--max-vcpus", "64"],
     ("createComputeEnvironment", {"computeEnvironmentName": "el", "type": "MANAGED",
                                   "state": "ENABLED", "computeResources": {
                                       "type": "EC2", "subnets": [], "minvCpus": 0,
                                       "maxvCpus": 64}})),
    (["ce", "update", "big", "--nodes", "3"],
     ("updateComputeEnvironment", {"computeEnvironment": "big", "mnp": {"nodes": 3}})),
    (["ce", "delete", "big"], ("deleteComputeEnvironment", {"computeEnvironment": "big"})),
])  # fmt: skip
def test_admin_verbs_call_the_native_api(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                         call: tuple[str, JSON]) -> None:  # fmt: skip
    client = AdminClient()
    monkeypatch.setattr("mnp.cli.state.State.client", lambda self: client)
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 0, r.output
    assert client.calls == [call]


@pytest.mark.parametrize("argv", [["ce", "create", "x", "--nodes", "1", "--max-vcpus", "4"],
                                  ["ce", "create", "x"], ["queue", "update", "q"],
                                  ["queue", "create", "q"]])  # fmt: skip
def test_admin_verbs_refuse_what_cannot_be_meant(monkeypatch: pytest.MonkeyPatch,
                                                 argv: list[str]) -> None:  # fmt: skip
    client = AdminClient()
    monkeypatch.setattr("mnp.cli.state.State.client", lambda self: client)
    assert CliRunner().invoke(cli, argv).exit_code == 2 and not client.calls
