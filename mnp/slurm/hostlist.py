"""Slurm hostlists: ``local-[1-3],gpu7`` ⇄ ``["local-1", "local-2", "local-3", "gpu7"]``.

Pure functions, no I/O. :func:`compress` writes what Slurm puts in ``SLURM_JOB_NODELIST`` and
squeue's NODELIST column; :func:`expand` reads what ``scontrol show hostnames`` reads, so
``expand(compress(names))`` is ``names`` deduplicated and ordered as :func:`compress` orders.

A name's *number* is its last run of digits; what precedes it is its prefix, what follows its
suffix (``rack1-node07-ib`` → ``rack1-node``, ``07``, ``-ib``). Names with the same prefix and
suffix share one bracket. A range keeps the width of its numbers as written, as Slurm does:
``node09,node10`` → ``node[09-10]`` (both two digits wide), ``node9,node10`` → ``node[9-10]``,
but ``node1,node02`` → ``node[1,02]``: ``02`` is zero-padded and ``1`` is not.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")
_RESERVED = frozenset("[],")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
MAX_EXPANDED = 1_000_000
""":func:`expand` refuses lists longer than this (a typo like ``n[1-999999999]``)."""


def _split(name: str) -> tuple[str, str, str] | None:
    """``(prefix, digits, suffix)`` of a numbered name, None for a name without digits."""
    m = _NUMBERED.match(name)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _fits(digits: str, width: int) -> bool:
    """Whether ``digits`` is written as numbers in a range of ``width`` are written."""
    return digits == str(int(digits)).zfill(width)


def _ranges(numbers: list[str]) -> list[str]:
    """Sorted, deduplicated numbers joined into runs: ``["1","2","3","5"]`` → ``1-3, 5``."""
    ordered = sorted(set(numbers), key=lambda d: (int(d), len(d)))
    runs: list[list[str]] = []
    for d in ordered:
        if runs:
            run = runs[-1]
            width = len(run[0])
            if int(d) == int(run[-1]) + 1 and _fits(d, width):
                run.append(d)
                continue
        runs.append([d])
    return [run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]


def compress(names: Iterable[str]) -> str:
    """The Slurm hostlist expression of ``names`` (``""`` for none).

    Duplicates are dropped. Groups (same prefix and suffix; unnumbered names each their own)
    appear in the order of their first name; numbers within a group ascend. A group of one
    name is written plainly (``node5``), otherwise in brackets (``node[1-3,5]``).
    Raises ValueError for an empty name or one containing ``[``, ``]`` or ``,``.
    """
    groups: dict[tuple[str, str] | str, list[str]] = {}
    for name in names:
        if not name or _RESERVED & set(name):
            raise ValueError(f"host name {name!r} cannot be written in a hostlist")
        parts = _split(name)
        if parts is None:
            groups.setdefault(name, [])
        else:
            prefix, digits, suffix = parts
            groups.setdefault((prefix, suffix), []).append(digits)
    out: list[str] = []
    for key, numbers in groups.items():
        if isinstance(key, str):
            out.append(key)
            continue
        prefix, suffix = key
        ranges = _ranges(numbers)
        inner = ranges[0] if len(ranges) == 1 and "-" not in ranges[0] else f"[{','.join(ranges)}]"
        out.append(f"{prefix}{inner}{suffix}")
    return ",".join(out)


def _top_level(text: str) -> list[str]:
    """``text`` split at commas outside brackets; ValueError for unbalanced brackets."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"hostlist {text!r}: nested '['")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"hostlist {text!r}: ']' without '['")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"hostlist {text!r}: '[' without ']'")
    items.append(text[start:])
    return items


def _bracket(text: str, body: str) -> list[str]:
    """The numbers a bracket's body names, in order: ``1-3,07`` → ``1 2 3 07``."""
    out: list[str] = []
    for part in body.split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            raise ValueError(f"hostlist {text!r}: bad range {part!r} (expected N or N-M)")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise ValueError(f"hostlist {text!r}: range {part!r} runs backwards")
        if int(hi) - int(lo) >= MAX_EXPANDED:
            raise ValueError(f"hostlist {text!r}: range {part!r} is too long")
        width = len(lo)
        out.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return out


def _expand_item(text: str, item: str) -> list[str]:
    """One comma-free item; several brackets multiply (``r[1-2]n[1-2]`` → 4 names)."""
    pieces: list[list[str]] = []
    rest = item
    while "[" in rest:
        head, _, tail = rest.partition("[")
        body, _, rest = tail.partition("]")
        pieces += [[head], _bracket(text, body)]
    pieces.append([rest])
    return ["".join(combo) for combo in itertools.product(*pieces)]


def expand(text: str) -> list[str]:
    """Every host a hostlist expression names, in the order written (duplicates kept, as
    ``scontrol show hostnames`` keeps them). Whitespace around items is ignored; ``""`` is no
    host. Raises ValueError (quoting the text) for unbalanced brackets, bad or backward ranges,
    empty items, or more than :data:`MAX_EXPANDED` names."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    for item in _top_level(text):
        item = item.strip()
        if not item:
            raise ValueError(f"hostlist {text!r}: empty item")
        out += _expand_item(text, item)
        if len(out) > MAX_EXPANDED:
            raise ValueError(f"hostlist {text!r} names more than {MAX_EXPANDED} hosts")
    return out
