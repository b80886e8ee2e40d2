"""Two trees' heads side by side: a commit (``--baseline REV``, its files exported with
``git archive``) against this working tree, run by run, alternating which goes first.

``python -m benchmarks.paired [--baseline REV] [--rounds 5] [--jobs 2000] [--submits 1000]
[--out FILE]``

Each round, for each tree, on a fresh head of that tree (``python -m mnp up`` with the tree
first on ``PYTHONPATH``, so its agents are the tree's too), driven by this tree's client:

- *singles*: ``--jobs`` trivial ``true`` jobs submitted one by one on 4 nodes × 4 vCPUs (after
  50 warm-up jobs, done and not counted); jobs/s from the first submit until ``getStatus``
  counts them all terminal, and the CPU per job of the client, the head, the agents and
  their fences, and the jobs (the agents' reaped children), from ``/proc``
  (:func:`benchmarks.hq_compare.run_mnp`, as beside HyperQueue);
- *submit*: the head's CPU per SubmitJob on a head of one node kept busy by 4 long jobs (the
  rest stay RUNNABLE: the submit and its scheduling passes, not the run), ``--submits`` calls
  natively and as many through boto3 on the AWS wire (after 50 warm-up calls;
  :func:`benchmarks.hq_compare.submit_cost`).

Medians per tree, and the median of the per-round ratios (this tree ÷ the baseline), which is
what compares on a machine whose speed moves from minute to minute. Writes the results as
JSON (``--out``; default ``benchmarks/results-paired.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.config import BENCH_DIR, JSON, REPO, say
from benchmarks.hq_compare import ROLES, run_mnp, submit_cost
from benchmarks.machine import machine_info
from benchmarks.stats import median
from mnp.config import NODE_NETWORK_ENV

RESULTS = BENCH_DIR / "results-paired.json"
WARM_UP = 50


def export(rev: str, into: Path) -> Path:
    """The files of commit ``rev`` under ``into`` (``git archive``, no history)."""
    archive = into / "tree.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), rev], cwd=REPO,
                   check=True)  # fmt: skip
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


def singles(tree: Path, scratch: Path, jobs: int) -> JSON:
    return run_mnp("singles", jobs, scratch, repo=tree, warm_up=WARM_UP)


def submit(tree: Path, scratch: Path, n: int) -> JSON:
    return submit_cost(scratch, n, repo=tree, warm_up=WARM_UP)


FIGURES: dict[str, Callable[[JSON], float]] = {
    "singles jobs/s": lambda r: r["singles"]["jobs_per_s"],
    "singles CPU ms/job": lambda r: r["singles"]["cpu_ms_per_job_total"],
    **{f"singles {role} ms/job": (lambda r, role=role: r["singles"]["cpu_ms_per_job"][role])
       for role in ROLES},
    "SubmitJob head ms, native": lambda r: r["submit"]["native"]["head_cpu_ms_per_submit"],
    "SubmitJob head ms, AWS": lambda r: r["submit"]["aws"]["head_cpu_ms_per_submit"],
}
"""What the table shows, each read off one round's results of one tree."""


def summary(rounds: list[JSON]) -> JSON:
    out: JSON = {}
    for name, read in FIGURES.items():
        base = [read(r["baseline"]) for r in rounds]
        this = [read(r["this"]) for r in rounds]
        ratios = [t / b for t, b in zip(this, base, strict=True) if b]
        out[name] = {"baseline": median(base), "this": median(this),
                     "baseline_range": [min(base), max(base)],
                     "this_range": [min(this), max(this)],
                     "paired_ratio": round(median(ratios), 3) if ratios else None}  # fmt: skip
    return out


def table(results: JSON) -> str:
    lines = [f"| figure | {results['baseline']} | this tree | paired ratio (median) |",
             "|---|---|---|---|"]  # fmt: skip
    for name, f in results["summary"].items():
        lines.append(
            f"| {name} | {f['baseline']:g} ({f['baseline_range'][0]:g}–{f['baseline_range'][1]:g})"
            f" | {f['this']:g} ({f['this_range'][0]:g}–{f['this_range'][1]:g})"
            f" | {f['paired_ratio']} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="HEAD", help="the commit to compare against")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--submits", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault(NODE_NETWORK_ENV, "loopback")  # as hq_compare: no namespaces
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    rounds: list[JSON] = []
    with tempfile.TemporaryDirectory(prefix="mnp-paired-") as tmp:
        scratch = Path(tmp)
        trees = {"baseline": export(rev, scratch), "this": REPO}
        for r in range(args.rounds):
            order = ["baseline", "this"] if r % 2 == 0 else ["this", "baseline"]
            result: JSON = {}
            for which in order:
                result[which] = {"singles": singles(trees[which], scratch, args.jobs),
                                 "submit": submit(trees[which], scratch, args.submits)}
                say(f"round {r + 1}/{args.rounds} {which}: {json.dumps(result[which])}")
            rounds.append(result)
    results = {"machine": machine_info(), "baseline": rev, "rounds": rounds,
               "jobs": args.jobs, "submits": args.submits,
               "measured_at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
               "summary": summary(rounds)}  # fmt: skip
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
