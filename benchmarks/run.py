#!/usr/bin/env python
"""Entry point of the mnp benchmarks: ``python benchmarks/run.py [--quick] [--only …]``
(``--help`` lists the flags). What they measure and how the package is laid out: the
docstring of ``benchmarks/__init__.py``."""

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Run as a script, Python puts this directory first on sys.path; the repository root takes its
# place, so ``benchmarks`` and ``mnp`` import as packages from this checkout without
# installing it (and no benchmark module can shadow a package of the same name).
if sys.path and Path(sys.path[0] or ".").resolve() == BENCH_DIR:
    sys.path[0] = str(REPO)
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
