"""The command line of ``python benchmarks/run.py``: parse the flags, run the chosen
benchmarks, merge the results into the results file, and regenerate README.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import benchmarks
from benchmarks.config import BENCH_DIR, FULL, JSON, QUICK, TARGETS, Sizes, say
from benchmarks.machine import machine_info
from benchmarks.readme import write_readme
from benchmarks.results import merge_results, write_json
from benchmarks.suite import BENCHMARKS


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so every finally (and every head's stop) runs


def _parser() -> argparse.ArgumentParser:
    doc = benchmarks.__doc__
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--array-runs", type=int, default=None,
                        help="runs of the array benchmark (default: 3 full, 1 quick)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()),
                        help="where head homes are created")
    parser.add_argument("--keep", action="store_true", help="keep each head's home")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default results.json, or results-quick.json); "
                        "merged into when it holds results of the same mode")
    parser.add_argument("--readme", action="store_true",
                        help="only regenerate README.md from results.json, run nothing")
    return parser


def _run(chosen: list[str], sizes: Sizes, quick: bool, scratch: Path, keep: bool) -> JSON:
    """Run the ``chosen`` benchmarks in turn: the results of this run (without ``runs``)."""
    started = time.perf_counter()
    results: JSON = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "sizes": asdict(sizes),
        "machine": machine_info(),
        "targets": TARGETS,
        "benchmarks": {},
    }
    for name in chosen:
        say(f"== {name}")
        results["benchmarks"][name] = BENCHMARKS[name].run(sizes, scratch, keep)
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.readme:
        results_file = BENCH_DIR / "results.json"
        write_readme(BENCH_DIR / "README.md", json.loads(results_file.read_text()))
        say(f"wrote {BENCH_DIR / 'README.md'} from {results_file}")
        return 0
    sizes = QUICK if args.quick else FULL
    if args.array_runs is not None:
        sizes = Sizes(**{**asdict(sizes), "array_runs": args.array_runs})
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    args.scratch.mkdir(parents=True, exist_ok=True)

    results = _run(chosen, sizes, args.quick, args.scratch, args.keep)
    output = args.output or BENCH_DIR / ("results-quick.json" if args.quick else "results.json")
    merged = merge_results(output, results, list(BENCHMARKS))
    write_json(output, merged)
    say(f"wrote {output}")
    if not args.quick and args.output is None:
        write_readme(BENCH_DIR / "README.md", merged)
        say(f"wrote {BENCH_DIR / 'README.md'}")
    summary = {n: {k: v for k, v in r.items() if not isinstance(v, list | dict)}
               for n, r in results["benchmarks"].items()}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0
