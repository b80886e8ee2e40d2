"""benchmarks/README.md regenerated from results keeps the sections written by hand."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.config import BENCH_DIR
from benchmarks.readme import kept_sections, readme, write_readme


def test_only_sections_the_generator_does_not_write_are_kept() -> None:
    made = "# t\n\nintro\n\n## Running\n\nnew text\n"
    old = "# t\n\nold intro\n\n## Running\n\nold text\n\n## By hand\n\nkept\n\n## Also\n\nmore\n"
    assert kept_sections(old, made) == ["\n## By hand\n\nkept\n", "\n## Also\n\nmore\n"]
    assert kept_sections("", made) == []


def test_regenerating_the_readme_loses_no_section(tmp_path: Path) -> None:
    results = json.loads((BENCH_DIR / "results.json").read_text())
    path = tmp_path / "README.md"
    path.write_text(readme(results) + "\n## Measured by hand\n\nfigures\n")
    write_readme(path, results)
    write_readme(path, results)  # again: nothing doubled
    text = path.read_text()
    assert text.endswith("\n## Measured by hand\n\nfigures\n")
    assert text.count("## Measured by hand") == 1 and text.count("## Running") == 1
