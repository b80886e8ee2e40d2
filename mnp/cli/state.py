"""What every ``mnp`` command shares: the :class:`State` the group hands down, the error
reporting of the group (:class:`MnpGroup`), and the ``--json`` plumbing.

Every :class:`mnp.errors.MnpError` (and TimeoutError) a command raises becomes ``error:
<message>`` on stderr (one line per bad field, one per exception note) and exit status 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from mnp.client.client import Client, RequestInvalid
from mnp.client.jobspec import JobSpecError
from mnp.errors import InvalidInput, MnpError


@dataclass
class State:
    """What every command gets: where the head is, and one lazily created client."""

    url: str | None
    home: Path
    home_given: bool
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(url=self.url, home=self.home)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def error_lines(exc: BaseException) -> list[str]:
    """``error: <message>``, then one line per field error and per exception note."""
    if isinstance(exc, RequestInvalid | JobSpecError):
        headline = exc.message
    elif isinstance(exc, InvalidInput):
        headline = str(exc.errors[0]) if len(exc.errors) == 1 else "invalid input"
    else:
        headline = str(exc)
    lines = [f"error: {headline}"]
    if isinstance(exc, InvalidInput):
        lines += [f"  {e}" for e in exc.errors if str(e) != headline]
    lines += [f"  {note}" for note in getattr(exc, "__notes__", [])]
    return lines


class MnpGroup(click.Group):
    """The ``mnp`` group: an :class:`MnpError` or TimeoutError out of a command is reported
    with :func:`error_lines` and exits 1 (usage errors stay click's: exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MnpError, TimeoutError) as exc:
            for line in error_lines(exc):
                click.echo(line, err=True)
            raise click.exceptions.Exit(1) from None


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def read_json(source: str) -> Any:
    """A JSON document from a file name, or stdin for ``-``; bad JSON is invalid input."""
    try:
        text = click.get_text_stream("stdin").read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not valid JSON: {exc}") from exc


pass_state = click.make_pass_decorator(State)
json_option = click.option("--json", "as_json", is_flag=True, help="Print raw JSON.")
