"""A parameter sweep: one array job, each child training with its own hyperparameters.

    mnp submit examples/sweep.py --follow            # or: python examples/sweep.py

``PARAMS`` lists the combinations; child *i* takes ``PARAMS[i]`` (its index comes in
``AWS_BATCH_JOB_ARRAY_INDEX``), runs gradient descent with momentum on a small quadratic and
prints ``lr=… momentum=… loss=…``. At most ``MAX_RUNNING`` children run at once (Slurm's
``--array=…%N``). The child needs only the standard library: the job runs this file with
``train``.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

PARAMS = list(itertools.product((0.01, 0.05, 0.1), (0.0, 0.9)))
"""(learning rate, momentum) per array index."""
MAX_RUNNING = 3
STEPS = 50


def train() -> int:
    """One child: minimise f(x, y) = (x - 3)² + 10 (y + 1)² from (0, 0)."""
    lr, momentum = PARAMS[int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])]
    x = y = vx = vy = 0.0
    for _ in range(STEPS):
        vx = momentum * vx - lr * 2 * (x - 3)
        vy = momentum * vy - lr * 20 * (y + 1)
        x, y = x + vx, y + vy
    loss = (x - 3) ** 2 + 10 * (y + 1) ** 2
    print(f"lr={lr} momentum={momentum} loss={loss:.6g}")
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["train"]:
    sys.exit(train())  # a child, run as a job: the standard library only

from mnp import ArrayJob, submit  # noqa: E402 - the child above runs without mnp

JOBS = [
    ArrayJob(
        "sweep",
        [sys.executable, str(Path(__file__).resolve()), "train"],
        size=len(PARAMS),
        max_running=MAX_RUNNING,
    )
]

if __name__ == "__main__":
    submit(JOBS).wait()
