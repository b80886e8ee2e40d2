"""What the harness's jobs run: ``python -I -S job.py LEDGER MODE [SECONDS]``.

Each run appends to ``LEDGER`` (O_APPEND, one ``write`` a line, so lines of concurrent runs
never interleave) ``<job id> <attempt> start <CLOCK_MONOTONIC> <pid>``, for a ``sleep`` run an
``alive`` line every 0.2 s (so a run killed without an ``end`` line still shows how long it
ran at least), and ``<job id> <attempt> end <CLOCK_MONOTONIC> <pid> <exit code>``. MODE ``ok``
exits 0, ``fail`` exits 1, ``sleep`` sleeps SECONDS and exits 0. Standard library only, no
site: it starts in a few milliseconds.
"""

import os
import sys
import time

TICK_SECONDS = 0.2


def line(fd: int, job: str, attempt: str, what: str, extra: str = "") -> None:
    now = time.clock_gettime(time.CLOCK_MONOTONIC)
    os.write(fd, f"{job} {attempt} {what} {now:.6f} {os.getpid()} {extra}\n".encode())


def main() -> int:
    ledger, mode = sys.argv[1], sys.argv[2]
    job = os.environ["AWS_BATCH_JOB_ID"]
    attempt = os.environ.get("AWS_BATCH_JOB_ATTEMPT", "?")
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    line(fd, job, attempt, "start")
    if mode == "sleep":
        deadline = time.monotonic() + float(sys.argv[3])
        while time.monotonic() < deadline:
            time.sleep(min(TICK_SECONDS, max(0.0, deadline - time.monotonic())))
            line(fd, job, attempt, "alive")
    code = 1 if mode == "fail" else 0
    line(fd, job, attempt, "end", str(code))
    return code


if __name__ == "__main__":
    sys.exit(main())
