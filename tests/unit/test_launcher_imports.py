"""The node side must import without the head node's dependencies installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ["starlette", "uvicorn", "pydantic", "click", "rich", "boto3", "docker"]
REPO = Path(__file__).resolve().parents[2]


def test_launcher_imports_without_head_dependencies() -> None:
    # A None entry in sys.modules makes any import of that name raise ImportError.
    code = "; ".join(
        [
            "import sys",
            *(f"sys.modules[{name!r}] = None" for name in FORBIDDEN),
            "import launcher, launcher.agent, launcher.process",
            "import launcher.container, launcher.engine",
            "launcher.agent.parse_args(['--head', 'http://h', '--node-id', 'n',"
            " '--compute-environment', 'c', '--address', 'a', '--vcpus', '1',"
            " '--memory-mib', '1', '--root', '/tmp/x'])",
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}"
            " and sys.modules[m] is not None)",
            "assert not bad, bad",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
