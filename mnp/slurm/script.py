"""Batch scripts as sbatch reads them: the ``#SBATCH``/``#MNP`` lines before the first
command, and sbatch's sanity checks. Pure; no I/O."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from mnp.errors import FieldError, InvalidInput
from mnp.slurm.options import MNP_OPTIONS, SBATCH_OPTIONS, Parsed, parse_tokens


class SbatchError(InvalidInput):
    """The script or options cannot be submitted; ``errors`` names each option and rule."""


@dataclass(frozen=True, slots=True)
class Directive:
    line: int
    kind: str
    """``SBATCH`` or ``MNP``."""
    args: tuple[str, ...]


_DIRECTIVE = re.compile(r"#(SBATCH|MNP)(?:\s(.*))?\Z", re.DOTALL)


def parse_script(text: str) -> list[Directive]:
    """The ``#SBATCH``/``#MNP`` lines of a script, split as a shell would (quotes; ``#`` starts
    a comment), up to the first line that is neither blank nor a comment (Slurm's rule)."""
    out: list[Directive] = []
    errors: list[FieldError] = []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if n == 1 and stripped.startswith("#!"):
            continue
        if stripped and not stripped.startswith("#"):
            break
        m = _DIRECTIVE.match(line)
        if m is None:
            continue
        try:
            args = shlex.split(m.group(2) or "", comments=True)
        except ValueError as exc:
            errors.append(FieldError(f"line {n}", f"#{m.group(1)}: {exc}"))
            continue
        out.append(Directive(n, m.group(1), tuple(args)))
    if errors:
        raise SbatchError(errors)
    return out


def check_script(text: str, name: str) -> None:
    """sbatch's checks: a ``#!`` first line, no NUL bytes, no DOS line breaks."""
    problems = []
    if not text.startswith("#!"):
        problems.append("the first line must start with #! and an interpreter (as sbatch asks)")
    if "\0" in text:
        problems.append("contains NUL bytes (not a text script)")
    if "\r\n" in text:
        problems.append("contains DOS line breaks (\\r\\n); convert it with dos2unix")
    if problems:
        raise SbatchError([FieldError(name, p) for p in problems])


def read_script_settings(directives: Sequence[Directive]) -> Parsed:
    """Every directive's settings in order; unknown options and stray words become warnings.
    Raises :class:`SbatchError` naming each known option given without its value (or a flag
    given one)."""
    out = Parsed()
    errors: list[FieldError] = []
    for d in directives:
        table = SBATCH_OPTIONS if d.kind == "SBATCH" else MNP_OPTIONS
        origin = f"line {d.line}"
        parsed, _ = parse_tokens(d.args, table, origin, stop_at_positional=False)
        out.settings += parsed.settings
        out.warnings += parsed.warnings
        out.warnings += [f"{origin}: unknown #{d.kind} option {u} ignored" for u in parsed.unknown]
        out.warnings += [f"{origin}: {p!r} ignored (not an option)" for p in parsed.positional]
        errors += [FieldError(origin, f"#{d.kind} {m}") for m in parsed.malformed]
    if errors:
        raise SbatchError(errors)
    return out
