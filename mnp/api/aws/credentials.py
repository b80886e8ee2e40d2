"""Access keys for the AWS front door, kept on the head node.

Where keys come from, all accepted at once:

- ``<home>/credentials``: INI as ``~/.aws/credentials`` writes it, any number of profiles,
  each with ``aws_access_key_id`` and ``aws_secret_access_key``;
- the head node's environment: ``MNP_AWS_ACCESS_KEY_ID`` / ``MNP_AWS_SECRET_ACCESS_KEY``.

:func:`ensure_credentials` runs when the head node starts: if neither source has a key it
writes a new random ``[default]`` profile (mode 0600), so the front door never needs a
manual step. :class:`CredentialStore` re-reads the file when it changes, so keys can be
added or revoked without a restart.
"""

from __future__ import annotations

import configparser
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mnp.config import head_home
from mnp.errors import MnpError

FILE_NAME = "credentials"
ENV_KEY_ID = "MNP_AWS_ACCESS_KEY_ID"
ENV_SECRET = "MNP_AWS_SECRET_ACCESS_KEY"
ENV_PROFILE = "env"
"""The profile name reported for the key taken from the environment."""
KEY_ID_PREFIX = "MNP"
_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


_UNREAD = object()


class CredentialsError(MnpError):
    """The credentials file exists but cannot be used."""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    profile: str = "default"

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials({self.access_key_id!r}, profile={self.profile!r})"


def credentials_path(home: Path) -> Path:
    return home / FILE_NAME


def generate(profile: str = "default") -> Credentials:
    """A new random key: a 20-character id ``MNP…`` and a 40-character secret, as AWS's."""
    key_id = KEY_ID_PREFIX + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(17))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return Credentials(key_id, secret, profile)


def parse(text: str, source: str = FILE_NAME) -> list[Credentials]:
    """Every complete profile in an INI text, in file order; incomplete ones are skipped.

    A ``[profile NAME]`` header (the ``~/.aws/config`` spelling) counts as ``NAME``.
    """
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\0none", strict=False
    )
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        raise CredentialsError(f"{source}: not a credentials file: {e}") from None
    out: list[Credentials] = []
    for section in parser.sections():
        key_id = parser.get(section, "aws_access_key_id", fallback="").strip()
        secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
        if key_id and secret:
            name = section.removeprefix("profile ").strip()
            out.append(Credentials(key_id, secret, name))
    return out


def read_file(path: Path) -> list[Credentials]:
    """The profiles in ``path``; an absent file has none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return parse(text, str(path))


def render(creds: list[Credentials]) -> str:
    return "".join(
        f"[{c.profile}]\naws_access_key_id = {c.access_key_id}\n"
        f"aws_secret_access_key = {c.secret_access_key}\n\n"
        for c in creds
    )


def write_file(path: Path, creds: list[Credentials]) -> None:
    """Write (replace) ``path`` atomically, readable by its owner only (its folder, the
    head's home, 0711: see :mod:`mnp.config`)."""
    head_home(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, render(creds).encode())
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def from_environment(environ: Mapping[str, str] | None = None) -> Credentials | None:
    env = os.environ if environ is None else environ
    key_id, secret = env.get(ENV_KEY_ID, "").strip(), env.get(ENV_SECRET, "").strip()
    return Credentials(key_id, secret, ENV_PROFILE) if key_id and secret else None


def pick(creds: list[Credentials], profile: str | None = None) -> Credentials | None:
    """The named profile; without a name ``default``, else the first."""
    if profile is not None:
        return next((c for c in creds if c.profile == profile), None)
    return next((c for c in creds if c.profile == "default"), creds[0] if creds else None)


def ensure_credentials(home: Path, environ: Mapping[str, str] | None = None) -> Credentials:
    """The key clients should use, creating ``<home>/credentials`` if there is none at all.

    Returns the file's ``default`` profile (else its first), else the environment's key.
    When neither exists a random key is written to a new file (mode 0600). Raises
    :class:`CredentialsError` if the file exists but is not INI.
    """
    path = credentials_path(home)
    found = pick(read_file(path))
    if found is not None:
        return found
    env = from_environment(environ)
    if env is not None:
        return env
    if path.exists() and path.read_text().strip():
        raise CredentialsError(
            f"{path}: no profile has both aws_access_key_id and aws_secret_access_key"
        )
    creds = generate()
    write_file(path, [creds])
    return creds


class CredentialStore:
    """Looks keys up by id: the file (re-read when its mtime or size changes), then env.

    Not thread-safe; the head node calls it from its event loop. If the file later becomes
    unreadable or malformed, the last good contents stay in force.
    """

    def __init__(self, home: Path, environ: Mapping[str, str] | None = None) -> None:
        self.path = credentials_path(home)
        self._file = str(self.path)
        self._env = from_environment(environ)
        self._stamp: object = _UNREAD
        self._by_id: dict[str, Credentials] = {}
        self._refresh()

    def _refresh(self) -> None:
        try:
            st = os.stat(self._file)  # on every request: without pathlib's layers
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        try:
            creds = read_file(self.path)
        except (CredentialsError, OSError):
            return
        self._stamp = stamp
        by_id: dict[str, Credentials] = {}
        for c in creds:
            by_id.setdefault(c.access_key_id, c)
        self._by_id = by_id

    def lookup(self, access_key_id: str) -> Credentials | None:
        self._refresh()
        found = self._by_id.get(access_key_id)
        if found is None and self._env is not None and self._env.access_key_id == access_key_id:
            found = self._env
        return found

    def __call__(self, access_key_id: str) -> Credentials | None:
        return self.lookup(access_key_id)
