"""``mnp sbatch``: scripts and options → the RegisterJobDefinition and SubmitJob requests.

Golden files live in ``tests/unit/golden/sbatch/``: ``<case>.sh`` is the script, ``<case>.json``
what it becomes with the case's command line (warnings included), in a fixed submit
directory, environment and user. ``MNP_UPDATE_GOLDEN=1 pytest …`` rewrites them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from mnp.cli.main import cli
from mnp.cli.sbatch import parse_command_line, read_script
from mnp.slurm.options import (
    IGNORED,
    MNP_OPTIONS,
    SBATCH_OPTIONS,
    Ignored,
    Option,
    parse_tokens,
)
from mnp.slurm.sbatch import (
    NAME_RE,
    SUBMIT_MAX_BYTES,
    SbatchError,
    build_requests,
    check_script,
    default_job_name,
    parse_script,
    request_from,
)
from mnp.slurm.taskids import expand_ids, format_ids
from mnp.slurm.values import (
    inherited_environment,
    parse_array,
    parse_dependency,
    parse_memory,
    parse_time_limit,
    translate_output,
)
from tests.unit import goldens

JSON = dict[str, Any]
GOLDEN = Path(__file__).parent / "golden" / "sbatch"
SUBMIT_DIR = "/home/ada/proj dir"
ENVIRON = {
    "HOME": "/home/ada",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "FOO": "from-env",
    "HOSTILE": "a b;'c' \"d\" $e `f`\nline2",
    "SLURM_JOB_ID": "99",
    "MNP_HOME": "/home/ada/.mnp",
    "AWS_BATCH_JOB_ID": "x",
    "PWD": "/somewhere",
    "SHLVL": "2",
    "BASH_FUNC_module%%": "() { :; }",
}
ARRAY_IDS = {"222": [1, 3, 5, 7]}
"""Task ids of an earlier sparse array job, as the CLI finds them on the head."""


def plan(argv: list[str], script_text: str | None = None) -> JSON:
    """What ``mnp sbatch --test-only`` would print for ``argv``, plus the warnings."""
    cl = parse_command_line(argv)
    if script_text is None:
        text, name = read_script(cl) if cl.value("wrap") else ("", "")
        if not name:
            assert cl.script is not None
            name = cl.script
            text = (GOLDEN / Path(cl.script).name).read_text()
    else:
        text, name = script_text, cl.script or "job.sh"
    check_script(text, name)
    req, warnings = request_from(text, cl.parsed, ENVIRON)
    defn, sub = build_requests(
        req, script_text=text, script_name=name, script_args=cl.args, submit_dir=SUBMIT_DIR,
        environ=ENVIRON, user="ada", array_task_ids=ARRAY_IDS,
    )  # fmt: skip
    return {"argv": argv, "warnings": warnings, "registerJobDefinition": defn, "submitJob": sub}


CASES: dict[str, list[str]] = {
    "single_node": ["single_node.sh", "arg one", "two"],
    "mpi_multinode": ["mpi_multinode.sh"],
    "gpus_multinode": ["gpus_multinode.sh"],
    "array_limit": ["array_limit.sh"],
    "array_sparse": ["array_sparse.sh"],
    "array_single": ["array_single.sh"],
    "dependencies": ["dependencies.sh"],
    "dependency_any": ["dependency_any.sh"],
    "aftercorr": ["aftercorr.sh"],
    "output_patterns": ["output_patterns.sh"],
    "time_formats": ["time_formats.sh"],
    "overrides": ["-J", "from-cli", "--nodes=1", "--mem", "2G", "-pdefault", "-t", "UNLIMITED",
                  "--export=ALL", "overrides.sh"],
    "exports": ["exports.sh"],
    "export_all": ["export_all.sh"],
    "warnings": ["-Q", "warnings.sh"],
    "hostile": ["--chdir=rel dir/$x", "/home/ada/my 'odd' \"dir\";$x/hostile.sh", "a;b", "$HOME",
                "'q'", "`id`", "new\nline", ""],
    "wrap": ["-J", "wrapped", "--wrap", "echo 'hi there' ; exit 3", "--requeue"],
    "wrap_default": ["--wrap=true"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    goldens.check("sbatch", f"{case}.json", json.dumps(plan(CASES[case]), indent=2) + "\n")


def test_every_golden_script_has_a_case() -> None:
    scripts = {p.stem for p in GOLDEN.glob("*.sh")}
    assert scripts <= set(CASES), scripts - set(CASES)


# -- reading scripts ---------------------------------------------------------------------------


def test_directives_stop_at_the_first_command_and_respect_quotes_and_comments() -> None:
    text = (
        "#!/bin/bash\n"
        "#SBATCH -J 'a b' --output=\"x y\"  # trailing comment\n"
        "   \n"
        "## SBATCH -N 9 (a disabled directive)\n"
        "#SBATCHX not one\n"
        " #SBATCH -N 3 (indented: not a directive)\n"
        "#MNP --mpi mpich\n"
        "echo hi\n"
        "#SBATCH -N 5\n"
    )
    ds = parse_script(text)
    assert [(d.line, d.kind, d.args) for d in ds] == [
        (2, "SBATCH", ("-J", "a b", "--output=x y")),
        (7, "MNP", ("--mpi", "mpich")),
    ]


def test_directives_missing_their_values_are_errors_naming_the_line() -> None:
    text = "#!/bin/sh\n#SBATCH -J\n#SBATCH --requeue=no --time\n"
    with pytest.raises(SbatchError) as info:
        request_from(text, parse_command_line(["job.sh"]).parsed, ENVIRON)
    assert [str(e) for e in info.value.errors] == [
        "line 2: #SBATCH -J (needs a value)",
        "line 3: #SBATCH --requeue (takes no value)",
        "line 3: #SBATCH --time (needs a value)",
    ]


def test_unbalanced_quotes_name_the_line() -> None:
    with pytest.raises(SbatchError, match=r"line 2: #SBATCH: No closing quotation"):
        parse_script("#!/bin/sh\n#SBATCH -J 'oops\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("echo no shebang\n", "the first line must start with #!"),
        ("#!/bin/sh\r\necho dos\r\n", "DOS line breaks"),
        ("#!/bin/sh\necho \0\n", "NUL bytes"),
    ],
)
def test_sbatch_script_checks(text: str, message: str) -> None:
    with pytest.raises(SbatchError, match=message):
        check_script(text, "job.sh")


def test_option_forms_are_getopt_like() -> None:
    table = (*SBATCH_OPTIONS, *MNP_OPTIONS)
    tokens = ["-Jname", "-N", "2", "--ntasks=4", "--mem", "1G", "-Qt", "5", "--requeue",
              "--no-requeue", "script.sh", "-J", "arg"]  # fmt: skip
    parsed, i = parse_tokens(tokens, table, "command line", stop_at_positional=True)
    assert [(s.key, s.value, s.spelling) for s in parsed.settings] == [
        ("job_name", "name", "-J"), ("nodes", "2", "-N"), ("ntasks", "4", "--ntasks"),
        ("mem", "1G", "--mem"), ("quiet", "yes", "-Q"), ("time", "5", "-t"),
        ("requeue", "yes", "--requeue"), ("requeue", "no", "--no-requeue"),
    ]  # fmt: skip
    assert tokens[i:] == ["script.sh", "-J", "arg"]


def test_option_tables_do_not_clash() -> None:
    every: list[Option | Ignored] = [*SBATCH_OPTIONS, *MNP_OPTIONS, *IGNORED]
    names = [o.long for o in every]
    shorts = [o.short for o in every if o.short]
    assert len(set(names)) == len(names) and len(set(shorts)) == len(shorts)


def test_unknown_command_line_options_are_usage_errors_naming_each() -> None:
    with pytest.raises(click.UsageError, match=r"unknown option --frob, unknown option -Z"):
        parse_command_line(["--frob", "-Z", "job.sh"])
    with pytest.raises(click.UsageError, match=r"--requeue \(takes no value\)"):
        parse_command_line(["--requeue=yes", "job.sh"])
    with pytest.raises(click.UsageError, match=r"-t \(needs a value\)"):
        parse_command_line(["-t"])


def test_command_line_wins_per_option_and_script_args_are_kept() -> None:
    text = "#!/bin/sh\n#SBATCH -J script -t 5 -c 2\ntrue\n"
    cl = parse_command_line(["-J", "cli", "job.sh", "-t", "9"])
    req, _ = request_from(text, cl.parsed, ENVIRON)
    assert (req.job_name, req.time_seconds, req.cpus_per_task) == ("cli", 300, 2)
    assert cl.args == ("-t", "9")


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 300), ("5:30", 330), ("1:02:03", 3723), ("2-3", 183600), ("2-03:04", 183840),
     ("2-03:04:05", 183845), ("UNLIMITED", None), ("infinite", None)],
)  # fmt: skip
def test_time_limits(text: str, seconds: int | None) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize(
    ("text", "mib"),
    [("500", 500), ("500M", 500), ("4G", 4096), ("4g", 4096), ("1T", 1048576), ("1025K", 2),
     ("2GB", 2048)],
)  # fmt: skip
def test_memory_sizes(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize(
    ("text", "ids", "limit"),
    [
        ("0-15", list(range(16)), None),
        ("0-15:4", [0, 4, 8, 12], None),
        ("1,3,5,7", [1, 3, 5, 7], None),
        ("1-5%2", [1, 2, 3, 4, 5], 2),
        ("7,1-3,2", [1, 2, 3, 7], None),
        ("0-9999", list(range(10000)), None),
    ],
)
def test_array_specs(text: str, ids: list[int], limit: int | None) -> None:
    spec = parse_array(text)
    assert (list(spec.ids), spec.max_running) == (ids, limit)
    assert expand_ids(format_ids(spec.ids)) == ids


@pytest.mark.parametrize(
    ("ids", "text"),
    [([0, 1, 2, 3], "0-3"), ([1, 3, 5, 7], "1-7:2"), ([1, 2, 10, 20, 30, 31], "1,2,10-30:10,31"),
     ([4], "4"), ([1, 5], "1,5")],
)  # fmt: skip
def test_task_ids_are_written_compactly(ids: list[int], text: str) -> None:
    assert format_ids(ids) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "no task ids"), ("5-1", "N ≤ M"), ("0-9:0", "step of at least 1"), ("a-b", "not N"),
     ("0-10%0", "task limit"), ("0-10000", "at most 10000"), ("0-99999999", "N ≤ M")],
)  # fmt: skip
def test_bad_array_specs(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_array(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("afterok:1,afterany:2?after:3", "not both"),
        ("expand:1", "growing a running job"),
        ("afterburstbuffer:1", "burst buffers"),
        ("after:1+10", "a delay"),
        ("afterok", "needs at least one job id"),
        ("sometimes:1", "unknown dependency type"),
        ("afterok:1/2", "not a job id"),
        ("afterok:" + ":".join(str(i) for i in range(21)), "at most 20"),
    ],
)
def test_bad_dependencies(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dependency(text)


@pytest.mark.parametrize(
    ("text", "out"),
    [("a-%j-%A_%a-%x-%N-%u-%%.out", "a-%j-%A_%a-%x-%N-%u-%%.out"), ("%J.%s.%t.%n", "%j.batch.0.0"),
     ("x\\%j", "x%%j")],
)  # fmt: skip
def test_output_patterns(text: str, out: str) -> None:
    assert translate_output(text) == out


@pytest.mark.parametrize("text", ["%4a", "%b", "%q"])
def test_unsupported_output_patterns_are_errors(text: str) -> None:
    with pytest.raises(ValueError, match="unsupported pattern"):
        translate_output(text)


def test_export_all_leaves_out_the_heads_variables_and_shell_state() -> None:
    assert sorted(inherited_environment(ENVIRON)) == ["FOO", "HOME", "HOSTILE", "PATH"]


def test_default_job_names_use_the_api_alphabet() -> None:
    assert default_job_name("dir/my job.sbatch") == "my_job_sbatch"
    assert default_job_name("/x/.hidden") == "hidden"
    assert default_job_name("...") == "sbatch"
    assert NAME_RE.fullmatch(default_job_name("a" * 300))


def test_limits_match_the_head() -> None:
    from mnp.service.core import MNP_SUBMIT_MAX
    from mnp.service.validation import NAME_RE as HEAD_NAME_RE

    assert MNP_SUBMIT_MAX == SUBMIT_MAX_BYTES
    assert f"^{NAME_RE.pattern}$" == HEAD_NAME_RE


# -- errors: every one names the option, where it was given, and the rule ----------------------


@pytest.mark.parametrize(
    ("argv", "script", "messages"),
    [
        ([], "#SBATCH -N 0\n", ["-N (line 2): '0' must be a node count"]),
        ([], "#SBATCH -n 9 -N 2 --ntasks-per-node 4\n", ["-n (line 2): 9 tasks do not fit"]),
        ([], "#SBATCH --mem 1G --mem-per-cpu 1G\n", ["--mem (line 2): give --mem or --mem-per"]),
        ([], "#SBATCH -G 2 --gpus-per-node 1\n", ["--gpus-per-node (line 2): give one of -G"]),
        (["-t", "1:99"], "", ["-t (command line): time '1:99'"]),
        (["-a", "3-1"], "", ["-a (command line): '3-1' needs N ≤ M"]),
        (["-N", "2", "-a", "0-3"], "", ["-a (command line): multi-node jobs cannot be arrays"]),
        (["-d", "aftercorr:5"], "", ["-d (command line): aftercorr needs this job to be an array"]),
        (["-p", "a,b"], "", ["-p (command line): give exactly one partition"]),
        (["-o", "%b.out"], "", ["-o (command line): unsupported pattern %b"]),
        (["--export", "1BAD=x"], "", ["--export (command line): '1BAD=x': expected VAR=value"]),
        (["--export", "UNSET_HERE"], "", ["--export (command line): UNSET_HERE is not set here"]),
        (["--mpi", "lam"], "", ["--mpi (command line): must be one of"]),
        (["--mpi", "auto", "--every-node"], "", ["--mpi (command line): --mpi and --every-node",
                                                  "--every-node (command line): not supported"]),
        ([], "#MNP --every-node\n", ["--every-node (line 2): not supported for batch scripts"]),
        (["--mem", "lots", "-c", "x"], "", ["--mem (command line): 'lots' must be a whole number",
                                             "-c (command line): 'x' must be a whole number"]),
    ],
)  # fmt: skip
def test_bad_values_name_the_option_and_rule_all_at_once(
    argv: list[str], script: str, messages: list[str]
) -> None:
    with pytest.raises(SbatchError) as info:
        plan([*argv, "job.sh"], "#!/bin/sh\n" + script + "true\n")
    text = [str(e) for e in info.value.errors]
    for message in messages:
        assert any(t.startswith(message) for t in text), (message, text)
    assert len(text) == len(messages), text


def test_dependency_on_a_task_the_array_lacks() -> None:
    with pytest.raises(SbatchError, match=r"job 222 has no array task 4 \(its tasks: 1-7:2\)"):
        plan(["-d", "afterok:222_4", "job.sh"], "#!/bin/sh\ntrue\n")


def test_a_submission_over_the_heads_limit_says_what_makes_it_large() -> None:
    big = "#!/bin/sh\n" + "echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" * 18000
    with pytest.raises(
        SbatchError, match=r"over the head's 1024 KiB limit: .* the script 1037\.\d KiB"
    ):
        plan(["job.sh"], big)


# -- the command -------------------------------------------------------------------------------


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, JSON]] = []

    def register_job_definition(self, defn: JSON) -> JSON:
        self.calls.append(("register", defn))
        return {"jobDefinitionName": defn["jobDefinitionName"], "revision": 3}

    def submit(self, sub: JSON) -> str:
        self.calls.append(("submit", sub))
        return "job-1"

    def describe(self, job_id: str) -> JSON:
        return {"jobId": job_id, "container": {"environment": []}}

    def queues(self) -> list[JSON]:
        order = [{"order": 1, "computeEnvironment": "local"}]
        return [{"jobQueueName": q, "computeEnvironmentOrder": order} for q in ("default", "big")]

    def compute_environments(self) -> list[JSON]:
        return [{"computeEnvironmentName": "local", "type": "MANAGED",
                 "mnp": {"provider": "local", "nodes": 4, "vcpus": 16, "memoryMiB": 8192,
                         "gpus": 0}}]  # fmt: skip


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr("mnp.cli.state.State.client", lambda self: client)
    return client


def test_sbatch_registers_submits_and_prints_like_sbatch(
    fake: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "a dir; $x"
    d.mkdir()
    script = d / "my job.sh"
    script.write_text("#!/bin/sh\n#SBATCH --mail-type=ALL\necho hi\n")
    monkeypatch.chdir(d)
    r = CliRunner().invoke(cli, ["sbatch", str(script), "x y"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "Submitted batch job job-1\n"
    assert "mnp sbatch: warning: line 2: --mail-type ignored (mnp sends no mail)" in r.stderr
    (_, defn), (_, sub) = fake.calls
    assert defn["containerProperties"]["command"] == ["x y"]
    assert sub["jobDefinition"] == "sbatch-my_job_sh:3"
    assert sub["mnp"]["script"] == script.read_text()
    assert sub["mnp"]["submitDir"] == str(d)
    assert sub["mnp"]["stdout"] == f"{d}/slurm-%j.out"
    r = CliRunner().invoke(cli, ["sbatch", "--parsable", "-Q", str(script)])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "job-1\n", "")


def test_sbatch_reads_standard_input_and_wrap(fake: FakeClient) -> None:
    r = CliRunner().invoke(cli, ["sbatch", "--test-only"], input="#!/bin/sh\n#SBATCH -c 3\ntrue\n")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["submitJob"]["jobName"] == "sbatch"
    assert fake.calls == []
    r = CliRunner().invoke(cli, ["sbatch", "--wrap", "echo hi", "extra.sh"])
    assert r.exit_code == 2 and "--wrap takes no script" in r.stderr


def test_sbatch_errors_exit_1_listing_every_problem(fake: FakeClient, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["sbatch", "-t", "x", "-N", "y", str(tmp_path / "missing.sh")])
    assert r.exit_code == 1
    assert "missing.sh: cannot read: No such file or directory" in r.stderr
    script = tmp_path / "j.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    r = CliRunner().invoke(cli, ["sbatch", "-t", "x", "-N", "y", str(script)])
    assert r.exit_code == 1
    assert "-t (command line): time 'x'" in r.stderr and "-N (command line): 'y'" in r.stderr
    r = CliRunner().invoke(cli, ["sbatch", "--nope", str(script)])
    assert r.exit_code == 2 and "unknown option --nope" in r.stderr


def test_input_environment_sits_between_the_script_and_the_command_line() -> None:
    text = "#!/bin/sh\n#SBATCH -p cpu -t 5 -J script\ntrue\n"
    environ = {**ENVIRON, "SBATCH_PARTITION": "gpu", "SBATCH_TIMELIMIT": "10",
               "SBATCH_REQUEUE": "1", "SBATCH_ACCOUNT": "physics"}  # fmt: skip
    cl = parse_command_line(["-t", "7", "job.sh"])
    req, warnings = request_from(text, cl.parsed, environ)
    assert (req.partition, req.time_seconds, req.job_name, req.requeue) == ("gpu", 420, "script",
                                                                            True)  # fmt: skip
    assert warnings == [
        "environment SBATCH_ACCOUNT: --account ignored (mnp has no accounts, QOS or reservations)"
    ]
    with pytest.raises(SbatchError, match=r"--time \(environment SBATCH_TIMELIMIT\): time 'x'"):
        request_from(text, parse_command_line(["job.sh"]).parsed, {"SBATCH_TIMELIMIT": "x"})
