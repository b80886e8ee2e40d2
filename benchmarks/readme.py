"""README.md, assembled from the benchmarks' own pieces (:mod:`benchmarks.suite`) around the
parts that concern them all: how heads are started, how to run, the runs, the targets."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from benchmarks.aws_clients import AWS_SUBMIT_LIMIT
from benchmarks.bringup import BRINGUP_HEAD_NODES, BRINGUP_VCPUS
from benchmarks.config import FULL, JSON, MEMORY_MIB, NODES, QUICK, TARGETS, VCPUS, Sizes
from benchmarks.mnp_launch import MNP_NODES, MNP_VCPUS
from benchmarks.report import target
from benchmarks.results import results_runs
from benchmarks.suite import BENCHMARKS, NUMBERS


def runs_text(results: JSON) -> str:
    """One paragraph per run that produced some of the benchmarks in ``results``."""
    out = []
    for run in results_runs(results):
        m = run["machine"]
        names = [n for n in run["benchmarks"] if n in results["benchmarks"]]
        if not names:
            continue
        which = ", ".join(f"{NUMBERS.get(n, '?')}. {n}" for n in names)
        dirty = m.get("git_dirty_paths", -1)
        tree = " (plus the working tree)" if dirty != 0 else ""
        out.append(textwrap.fill(
            f"- {which}: {run['timestamp']}: {m['nproc']} CPUs ({m['cpu'] or 'unknown CPU'}), "
            f"{m['memory_mib']:,} MiB, Python {m['python']}, commit "
            f"`{m['git_commit'] or '?'}`{tree}; total {run['total_s']:.0f} s.",
            width=92, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False))
    return "\n".join(out)


def table(results: JSON) -> str:
    """The table: the rows of each benchmark in ``results``, in the benchmarks' order."""
    b = results["benchmarks"]
    lines = ["| benchmark | result (median) | baseline (same run) | target | met | other load |",
             "|---|---|---|---|---|---|"]
    for name, bench in BENCHMARKS.items():
        if name in b:
            lines += ["| " + " | ".join(r) + " |" for r in bench.rows(b[name], results)]
    return "\n".join(lines)


def _intro() -> str:
    head5 = f"--nodes {MNP_NODES} --vcpus {MNP_VCPUS}"
    head6 = f"--nodes {BRINGUP_HEAD_NODES} --vcpus {BRINGUP_VCPUS}"
    return f"""# mnp benchmarks

`python benchmarks/run.py` runs eight benchmarks against real head nodes, each started as
`python -m mnp --home <tmp> up --nodes {NODES} --vcpus {VCPUS} --memory-mib {MEMORY_MIB}`
({NODES} local node agents, {NODES * VCPUS} one-vCPU job slots; benchmark 5 uses
`{head5}`, benchmark 6 `{head6}`) and driven through `mnp.client.client.Client`
from one thread (benchmark 7 also through boto3, from several threads and processes).
Each benchmark starts a fresh head node, waits for its nodes to be ACTIVE, measures, and
stops it (SIGTERM by PID; leftover agents are killed by PID, also on failure).
Each one measures its own baseline in the same run.

"""


def _running(q: Sizes) -> str:
    return f"""
## Running

    python benchmarks/run.py           # full sizes (about 10-15 min on 2 cores);
                                       # rewrites results.json and this README
    python benchmarks/run.py --quick   # {q.jobs} jobs, {q.array_size:,} children,
                                       # {q.latency_samples} samples, {q.fill_jobs:,} finished jobs,
                                       # {q.mnp_samples} MNP / {q.bringup_samples} bring-up samples,
                                       # {q.aws_submits} boto3 submits × {q.aws_runs} run;
                                       # writes results-quick.json only
    python benchmarks/run.py --only mnp,bringup   # a subset: merged into results.json
                                       # (other entries kept), README regenerated
    python benchmarks/run.py --readme  # only regenerate this README from results.json

`--keep` leaves each head's home (store, logs) under the scratch directory (`--scratch`,
default the system temp dir) for inspection; `--array-runs N` changes the array runs. A
rewritten README keeps the sections below that no benchmark of `run.py` writes (they were
written by hand, from the issue-by-issue benchmarks: `python -m benchmarks.hq_compare`,
`python -m benchmarks.paired --baseline REV`, `python -m benchmarks.submitstore`, …).

"""


def _last_run(results: JSON) -> str:
    runs = results["benchmarks"].get("array", {}).get("n_runs")
    return f"""## Last full run

{runs_text(results)}

Array: median of {runs} run(s). Raw figures: `results.json` (`runs` says which run produced
which benchmark). "CPU per job" splits the CPU time used during the measurement
by process: the benchmark client, the head node, the 4 agents, and the job processes.

"other load" is the share of the machine's CPU used by processes outside the benchmark
(neither this script, the head, its agents nor their jobs) during the measurement; the
benchmark waits (up to 60 s) for the machine to be under 25% busy before each measurement,
but anything above a few percent means the run shared the machine and its figures are
pessimistic.

{table(results)}

"""


def _targets(results: JSON) -> str:
    aws_x = TARGETS["aws_submits_per_s"] / AWS_SUBMIT_LIMIT
    ratio, slack = target(results, "mnp_ratio_to_raw_mpiexec"), target(results, "mnp_slack_s")
    return f"""\
Targets: throughput ≥ {TARGETS['throughput_jobs_per_s']:.0f} jobs/s; array submit call
< {TARGETS['array_submit_s'] * 1000:.0f} ms; submit → RUNNING median
< {TARGETS['latency_median_ms']:.0f} ms; MNP launch median ≤ {ratio:g} × raw
mpiexec median + {slack:g} s; SubmitJob through boto3 \
≥ {TARGETS['aws_submits_per_s']:.0f} /s
({aws_x:g} × AWS Batch's {AWS_SUBMIT_LIMIT:.0f}/s per account).
"""


def readme(results: JSON) -> str:
    """README.md for ``results``: every benchmark's paragraph (at the full sizes), and a table
    row for each benchmark the results hold."""
    paragraphs = "".join(bench.prose(FULL, results) for bench in BENCHMARKS.values())
    return (
        _intro() + paragraphs + _running(QUICK) + _last_run(results) + _targets(results)
        + _fsync() + _elastic() + _sshhosts() + _ec2()
    )


def _fsync() -> str:
    """The store's fsync policy's cost (``benchmarks/fsync_cost.py``), when it was measured."""
    from benchmarks.fsync_cost import RESULTS, table

    if not RESULTS.exists():
        return ""
    results = json.loads(RESULTS.read_text())
    return (
        "\n## The store's fsync policy\n\n"
        "`python benchmarks/fsync_cost.py` (measured "
        f"{results.get('timestamp', '?')}, {results['rounds']} rounds of "
        f"{results['commits_per_run']:,} commits alternating the settings; medians): the "
        "head's write path (`Store.save_jobs` in one transaction) with `synchronous=NORMAL` "
        "(the head's setting: survives a crash of the head, may lose the last commits on "
        "power loss) and `FULL` (survives power loss). Results: `results-fsync.json`.\n\n"
        + table(results)
    )


def _elastic() -> str:
    """Elastic scale-out and scale-in (``benchmarks/elastic.py``), when it was measured."""
    from benchmarks.elastic import RESULTS, table

    if not RESULTS.exists():
        return ""
    r = json.loads(RESULTS.read_text())
    return (
        "\n## Elastic compute environments\n\n"
        f"`python benchmarks/elastic.py` (measured {r.get('timestamp', '?')}, "
        f"{r['rounds']} rounds, medians; total {r.get('total_s', 0):.0f} s): an AWS-shaped "
        f"MANAGED environment (`minvCpus` 0, `maxvCpus` {r['jobs']}, local provider, "
        f"namespace nodes as root) on a fresh head gets {r['jobs']} one-vCPU "
        f"`sleep {r['sleep_s']:g}` jobs, held RUNNABLE while it is DISABLED, then enabled; "
        "times from the jobs' histories. Provider calls: one head-log line per call of the "
        "local provider. Scale-in with `MNP_SCALE_IN_AFTER_SECONDS="
        f"{r['scale_in_after_s']:g}`: the last job's end until every node is STOPPED "
        "(client-observed). Baseline: the same jobs on a head whose fixed default "
        f"environment of {r['nodes']} nodes is already up. Results: `results-elastic.json`."
        "\n\n" + table(r)
    )


def _sshhosts() -> str:
    """SSH hosts brought up in parallel and one at a time (``benchmarks/sshhosts.py``), when
    it was measured."""
    from benchmarks.sshhosts import RESULTS, table

    if not RESULTS.exists():
        return ""
    r = json.loads(RESULTS.read_text())
    n = r["hosts"]
    return (
        "\n## Bring-up of SSH hosts\n\n"
        f"`python benchmarks/sshhosts.py` (measured {r.get('timestamp', '?')}, "
        f"{r['rounds']} rounds of each setting, medians; {r['cpus']} CPUs; total "
        f"{r.get('total_s', 0):.0f} s): per round a fresh head with no nodes of its own and an "
        f"UNMANAGED environment; {n} hosts, each a network namespace running a real OpenSSH "
        "`sshd`, reached through a ProxyCommand (the SSH integration tests' "
        f"`tests/integration/sshhosts.py`), are added with {n} `addHost` calls at once (host "
        "key pinned, vCPUs and memory detected); `listHosts` polled every "
        f"{r['poll_s'] * 1000:.0f} ms until all are ACTIVE (probe, agent install, reverse "
        "tunnel and agent start over ssh, then the agent's join), client-observed from "
        "before the first call. Parallel: the head's `host_bringup_threads` "
        f"(`MNP_HOST_BRINGUP_THREADS`) {n}; baseline in the same run: 1, one host at a time. "
        "The test hosts share this machine's `~/.mnp-node`, so the agent's files (an "
        "18 MiB bundle) a host installs are already there for the hosts probed after it: "
        "only the first host (serial) or the hosts probed together at the start (parallel) "
        "copy them, and none when an SSH test running meanwhile left them there (the last "
        "row). Results: "
        "`results-sshhosts.json`.\n\n" + table(r)
    )


def _ec2() -> str:
    """EC2 scale-out against moto and the instance chooser (``benchmarks/ec2.py``), when it
    was measured."""
    from benchmarks.ec2 import BASELINE_THREADS, RESULTS, table

    if not RESULTS.exists():
        return ""
    r = json.loads(RESULTS.read_text())
    s, ch = r["scale_out"], r["chooser"]
    return (
        "\n## EC2 compute environments (moto)\n\n"
        f"`python benchmarks/ec2.py` (measured {r.get('timestamp', '?')}, {s['rounds']} rounds "
        f"of each strategy, medians; {r['cpus']} CPUs; total {r.get('total_s', 0):.0f} s): per "
        "round a fresh moto state (`/moto-api/reset`; VPC, subnet, security group, instance "
        "profile) and a fresh head (`mnp up --nodes 0 --lost-after 600`, `MNP_EC2=1`, boto3 "
        "pointed at a local `moto_server` by `AWS_ENDPOINT_URL_EC2`); a MANAGED EC2 "
        f"environment of `{s['instance_type']}` ({s['instance_vcpus']} vCPUs, `maxvCpus` far "
        f"above the demand) gets one array job of {s['jobs']:,} children of "
        f"{s['job_vcpus']} vCPUs and {s['job_memory_mib']:,} MiB each: "
        f"{s['jobs_per_instance']} per instance, so "
        f"{s['target_instances']} instances. Instances never boot (no simulator, no agent "
        "joins): the time is from the submit call to the head's log line `launched <node> as "
        "<instance>` of the last instance (one per RunInstances answered, the line's own "
        "timestamp); the requests are every request moto received from the head meanwhile, "
        "by `Action`, from moto's request recorder (reset just before the submit, read once "
        "the last line is there; the DescribeInstances is the provider's look-up by tag "
        "before it launches); moto was then checked to hold exactly "
        f"{s['target_instances']} instances of that type and the head to have launched no "
        f"more. Baseline in the same round (fresh moto state): {s['target_instances']} bare "
        "boto3 `run_instances` calls with the head's first instance's arguments (type, "
        f"subnet, group, profile, tags, user data), {BASELINE_THREADS} at a time from one "
        "client (the EC2 provider's `launch_threads`), and one at a time; ratio mnp ÷ bare "
        f"({BASELINE_THREADS} at a time). The chooser (`mnp.ec2.choose.choose`, the head's "
        f"price table) over moto's whole catalogue ({ch['catalogue_types']:,} types from "
        f"DescribeInstanceTypes, {ch['x86_64_types']} of them x86_64: an environment's types "
        f"share one architecture), {ch['jobs']:,} jobs of {len(ch['shapes'])} shapes (1, 2, 4 "
        "or 8 vCPUs × 1,024 or 6,144 MiB), `maxvCpus` unbounded; median of "
        f"{ch['calls']} calls. Results: `results-ec2.json`.\n\n" + table(r)
    )


def write_readme(path: Path, results: JSON) -> None:
    """Write :func:`readme` to ``path``, keeping the sections of the file there that it does
    not write (those kept by hand: the issue-by-issue measurements), after it, in order."""
    made = readme(results)
    kept = kept_sections(path.read_text() if path.exists() else "", made)
    path.write_text(made + "".join(kept))


def kept_sections(old: str, made: str) -> list[str]:
    """The ``## `` sections of ``old`` whose heading ``made`` does not have, each whole (its
    text up to the next ``## `` heading)."""
    headings = {line for line in made.splitlines() if line.startswith("## ")}
    sections: list[str] = []
    for part in old.split("\n## ")[1:]:
        section = "\n## " + part
        if section.splitlines()[1] not in headings:
            sections.append(section)
    return sections
