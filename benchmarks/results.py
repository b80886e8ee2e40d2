"""``results.json``: merging a run into the file, and the runs it records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.config import JSON, say


def results_runs(results: JSON) -> list[JSON]:
    """The runs recorded in ``results`` (older files have only the top-level one)."""
    if results.get("runs"):
        return list(results["runs"])
    return [{"timestamp": results["timestamp"], "mode": results.get("mode"),
             "sizes": results.get("sizes"), "machine": results["machine"],
             "total_s": results.get("total_s", 0.0),
             "benchmarks": list(results.get("benchmarks", {}))}]


def merge_results(path: Path, new: JSON, order: Sequence[str]) -> JSON:
    """``new`` merged over the results already in ``path`` (same mode only): benchmarks not
    run this time keep their entries, and ``runs`` says which run produced which. Benchmarks
    come in ``order``, then any other names the file holds."""
    run = {k: new[k] for k in ("timestamp", "mode", "sizes", "machine", "total_s")}
    run["benchmarks"] = list(new["benchmarks"])
    old: JSON = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            say(f"cannot read {path} ({e}); not merging")
    if old.get("mode") != new["mode"] or not old.get("benchmarks"):
        return {**new, "runs": [run]}
    runs = []
    for r in results_runs(old):
        kept = [n for n in r["benchmarks"] if n not in new["benchmarks"]]
        if kept:
            runs.append({**r, "benchmarks": kept})
    merged = {**old["benchmarks"], **new["benchmarks"]}
    benchmarks = {n: merged[n] for n in dict.fromkeys([*order, *merged]) if n in merged}
    return {**new, "benchmarks": benchmarks, "runs": [*runs, run]}


def write_json(path: Path, results: JSON) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
