"""Monte Carlo estimate of π: an array of estimators, then a reduce job that depends on it.

    mnp submit examples/monte_carlo.py --follow      # or: python examples/monte_carlo.py

Each child of ``estimate`` (``PARTS`` of them) throws ``SAMPLES`` random points at the unit
square, seeded by its ``AWS_BATCH_JOB_ARRAY_INDEX``, and writes how many fell inside the
quarter circle to ``part-<i>.json`` in a shared directory. ``reduce`` starts once every child
SUCCEEDED, adds the parts up and prints ``pi ≈ …``.

The shared directory is ``$MNP_SHARED/monte_carlo`` when ``MNP_SHARED`` is set, else a fresh
one under the temporary directory (local nodes share this machine's filesystem; on real
clusters point ``MNP_SHARED`` at the shared filesystem). The steps need only the standard
library: each job runs this file with the step's name.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from pathlib import Path

PARTS = 4
SAMPLES = 200_000


def estimate() -> int:
    """One array child: count the points inside the quarter circle."""
    index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])
    work = Path(os.environ["WORK"])
    rng = random.Random(index)
    inside = sum(1 for _ in range(SAMPLES) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    part = {"index": index, "inside": inside, "samples": SAMPLES}
    (work / f"part-{index}.json").write_text(json.dumps(part))
    print(f"part {index}: {inside} of {SAMPLES} inside")
    return 0


def reduce() -> int:
    """After the array: add every part up and print the estimate."""
    work = Path(os.environ["WORK"])
    parts = [json.loads((work / f"part-{i}.json").read_text()) for i in range(PARTS)]
    inside = sum(p["inside"] for p in parts)
    samples = sum(p["samples"] for p in parts)
    estimate = 4.0 * inside / samples
    (work / "pi.json").write_text(json.dumps({"pi": estimate, "samples": samples}))
    print(f"pi ≈ {estimate:.5f} from {samples} samples in {len(parts)} parts")
    return 0


STEPS = {"estimate": estimate, "reduce": reduce}

if __name__ == "__main__" and sys.argv[1:] and sys.argv[1] in STEPS:
    sys.exit(STEPS[sys.argv[1]]())  # a step, run as a job: the standard library only

from mnp import ArrayJob, Job, submit  # noqa: E402 - the steps above run without mnp

SHARED = os.environ.get("MNP_SHARED")
WORK = Path(SHARED, "monte_carlo") if SHARED else Path(tempfile.mkdtemp(prefix="mnp-pi-"))
WORK.mkdir(parents=True, exist_ok=True)
ENV = {"WORK": str(WORK)}
THIS = str(Path(__file__).resolve())

estimators = ArrayJob(
    "pi-estimate", [sys.executable, THIS, "estimate"], size=PARTS, environment=ENV
)
JOBS = [
    estimators,
    Job("pi-reduce", [sys.executable, THIS, "reduce"], environment=ENV, depends_on=[estimators]),
]

if __name__ == "__main__":
    print(f"shared directory: {WORK}")
    submit(JOBS).wait()
