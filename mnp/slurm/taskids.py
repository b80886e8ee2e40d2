"""Array task ids in Slurm's syntax: ``0-15``, ``1-9:2,20`` ⇄ the sorted ids. Pure; standard
library only, so the head node reads them too (``MNP_SLURM_ARRAY_TASK_IDS``, what
``mnp sbatch --array`` sends when the ids are not ``0..n-1``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

ARRAY_MAX_SIZE = 10_000
"""AWS Batch's largest array; a Slurm array may list at most this many task ids."""
ARRAY_MAX_ID = 9_999_999
_ARRAY_ITEM = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")


def expand_ids(text: str, max_size: int = ARRAY_MAX_SIZE) -> list[int]:
    """The sorted, distinct ids of ``a``, ``a-b`` and ``a-b:step`` items separated by commas.
    Raises ValueError naming each bad item, or when there are more than ``max_size`` ids
    (checked before expanding)."""
    problems: list[str] = []
    ranges: list[range] = []
    for item in text.split(","):
        m = _ARRAY_ITEM.fullmatch(item.strip())
        if m is None:
            problems.append(f"{item!r} is not N, N-M or N-M:STEP")
            continue
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        step = int(m.group(3)) if m.group(3) is not None else 1
        if last < first or step < 1 or last > ARRAY_MAX_ID:
            problems.append(f"{item!r} needs N ≤ M ≤ {ARRAY_MAX_ID} and a step of at least 1")
            continue
        ranges.append(range(first, last + 1, step))
    if problems:
        raise ValueError("; ".join(problems))
    if sum(len(r) for r in ranges) > max_size * 2:
        raise ValueError(f"at most {max_size} tasks")
    ids = sorted({i for r in ranges for i in r})
    if len(ids) > max_size:
        raise ValueError(f"{len(ids)} tasks; at most {max_size}")
    return ids


def format_ids(ids: Sequence[int]) -> str:
    """Sorted distinct ``ids`` in compact array syntax (runs of 3 or more with one step as
    ``a-b`` or ``a-b:s``); :func:`expand_ids` reads it back."""
    out: list[str] = []
    i = 0
    while i < len(ids):
        j = i + 1
        step = ids[j] - ids[i] if j < len(ids) else 0
        while j + 1 < len(ids) and ids[j + 1] - ids[j] == step:
            j += 1
        if j - i >= 2:
            out.append(f"{ids[i]}-{ids[j]}" + (f":{step}" if step != 1 else ""))
            i = j + 1
        else:
            out.append(str(ids[i]))
            i += 1
    return ",".join(out)
