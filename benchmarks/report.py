"""The pieces each benchmark's part of README.md is made of: a table row and its cells."""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.config import JSON, TARGETS

Row = tuple[str, str, str, str, str, str]
"""One line of the README's table: benchmark, result (median), baseline (same run), target,
met, other load."""


def verdict(met: object) -> str:
    return "yes" if met is True else "**no**" if met is False else "–"


def load(result: JSON) -> str:
    """The "other load" cell: the share of the machine used by anything else meanwhile."""
    other = result.get("median_other_pct", result.get("other_pct"))
    return "" if other is None else f"{other:.0f}%"


def target(results: JSON, key: str) -> float:
    """The target ``key`` the results were measured against (as recorded in them), else the
    current one."""
    return float(results.get("targets", {}).get(key, TARGETS[key]))


def cpu_row(result: JSON) -> Row:
    """``   CPU per job: client / head / agents / jobs`` and the median milliseconds of each."""
    per_job = result["median_cpu_ms_per_job"]
    return ("   CPU per job: " + " / ".join(per_job),
            " / ".join(f"{v:.1f}" for v in per_job.values()) + " ms", "", "", "", "")


def save_standalone(results: JSON, started: float, output: Path, table: str) -> None:
    """A standalone benchmark's end: its total time and a UTC timestamp added to ``results``,
    the JSON written to ``output``, the table printed."""
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(table, end="")
