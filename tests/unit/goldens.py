"""Golden-file comparison for the pure builders' tests."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parent / "golden"


def check(folder: str, name: str, text: str) -> None:
    """``text`` equals ``golden/<folder>/<name>`` byte for byte; a unified diff otherwise.

    ``MNP_UPDATE_GOLDEN=1`` rewrites the file instead (after an intended change).
    """
    path = ROOT / folder / name if folder else ROOT / name
    if os.environ.get("MNP_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; MNP_UPDATE_GOLDEN=1 creates it")
    expected = path.read_bytes().decode()
    if text != expected:
        shown = f"golden/{folder}/{name}" if folder else f"golden/{name}"
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=shown,
                tofile="actual",
            )
        )
        pytest.fail(f"{name} differs from its golden file (MNP_UPDATE_GOLDEN=1 rewrites):\n{diff}")
