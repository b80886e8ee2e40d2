"""This machine, read from ``/proc`` and git: processes, CPU ticks, disk usage, what ran the
benchmarks; and the process-spawn baseline."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path

from benchmarks.config import JSON, REPO


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM, …)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def tree_usage(root: Path) -> tuple[int, int, int]:
    """(directories, files, bytes) under ``root``."""
    dirs = files = size = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirs += len(dirnames)
        files += len(filenames)
        for name in filenames:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(_dirpath, name)).st_size
    return dirs, files, size


def machine_jiffies() -> tuple[int, int]:
    """(all, idle) clock ticks of every CPU since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4]


def process_jiffies(pid: int) -> tuple[int, int] | None:
    """(own utime + stime, reaped children's), in clock ticks; None if the process is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def spawn_rate(n: int) -> float:
    """Baseline: ``subprocess.run(["true"])`` per second, in this process."""
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], check=True)
    return n / (time.perf_counter() - t0)


def speed_gauge(n: int = 2_000_000) -> float:
    """Seconds a fixed pure-Python loop takes here, the fastest of 3: how fast this machine
    is just now (its speed moves within the hour; compare sets by it, or by paired ratios)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        x = 0
        for i in range(n):
            x += i
        best = min(best, time.perf_counter() - t0)
    return round(best, 4)


def machine_info() -> JSON:
    """The ``machine`` entry of a run: CPUs, memory, Python, and the commit measured (with the
    number of paths the working tree changes, -1 if git could not tell)."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
    dirty = -1
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                                capture_output=True, text=True, check=False).stdout
        dirty = len(status.splitlines())
    return {
        "nproc": os.cpu_count(),
        "git_dirty_paths": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "memory_mib": mem_kib // 1024,
        "git_commit": commit,
    }
