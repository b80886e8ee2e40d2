"""The AWS front door's gate: Signature Version 4 verification (the throttling is in
:mod:`mnp.api.aws.frontdoor`).

:func:`verify` is pure: it rebuilds the canonical request exactly as botocore's
``SigV4Auth.canonical_request`` does and compares signatures. The parts that are easy to get
wrong, all taken from botocore:

- the path is signed as sent, *percent-encoded again* (``quote(path, safe="/~")`` after
  removing dot segments and empty segments), so a rest-json tag path
  ``/v1/tags/arn%3Aaws%3A…`` is signed as ``/v1/tags/arn%253Aaws%253A…``;
- the query string is signed as sent, its ``key=value`` pairs sorted (botocore puts query
  parameters in the URL already encoded); a form re-encoded by the specification's rules is
  also accepted, for signers that encode differently;
- header values are whitespace-collapsed, repeated headers joined with ``,``;
- the payload hash is ``x-amz-content-sha256`` when the header is present (checked against
  the body when it is a hash), else SHA-256 of the body.

Refusals (:class:`AuthError`) carry AWS's status, code and message, so botocore raises
``ClientError`` with the same codes real AWS gives; :mod:`mnp.api.aws.frontdoor` sends them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, unquote_plus

from mnp.api.aws.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_SKEW = timedelta(minutes=15)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
BATCH = "batch"
LOGS = "logs"

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
CredentialLookup = Callable[[str], Credentials | None] | Mapping[str, Credentials]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed a request, and the scope they signed it for."""

    access_key_id: str
    profile: str
    region: str
    service: str


@dataclass(frozen=True, slots=True)
class AuthError:
    """A refusal in AWS's terms: HTTP status, error code (``__type``) and message."""

    status: int
    code: str
    message: str


MISSING = AuthError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
UNRECOGNIZED = AuthError(
    403, "UnrecognizedClientException", "The security token included in the request is invalid."
)
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def _incomplete(message: str) -> AuthError:
    return AuthError(400, "IncompleteSignatureException", message)


def _invalid(message: str) -> AuthError:
    return AuthError(403, "InvalidSignatureException", message)


# --- canonical request (botocore's SigV4Auth, read the other way round) --------------------
def remove_dot_segments(path: str) -> str:
    """botocore.utils.remove_dot_segments: RFC 3986 5.2.4, and empty segments dropped."""
    if not path:
        return "/"
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def _canonical_uri(raw_path: str) -> str:
    return quote(remove_dot_segments(raw_path), safe="/~")


canonical_uri = functools.lru_cache(maxsize=256)(_canonical_uri)
"""Cached: a client sends the same few paths (``/v1/submitjob``) again and again."""
_CACHED_LEN = 512
"""Longer paths and queries are not cached (the caches hold a few short ones, not any size)."""


def canonical_queries(query: str) -> list[str]:
    """Canonical forms of a raw query string, the one botocore signs first.

    botocore signs the pairs as sent, sorted. Signers that encode by the specification's
    rules are covered by re-encoding each key and value, with ``+`` read literally and then
    as a space (``requests``-style form encoding, as ``AWSRequest(params=…)`` sends).
    """
    pairs = [p.partition("=") for p in query.split("&") if p] if query else []
    forms: list[str] = []
    for decode in (None, unquote, unquote_plus):
        items = sorted(
            (k, v) if decode is None else (_encode(decode(k)), _encode(decode(v)))
            for k, _, v in pairs
        )
        form = "&".join(f"{k}={v}" for k, v in items)
        if form not in forms:
            forms.append(form)
    return forms


@functools.lru_cache(maxsize=256)
def _query_forms(query: str) -> tuple[str, ...]:
    """:func:`canonical_queries`, cached: most requests send none or the same few."""
    return tuple(canonical_queries(query))


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def header_map(headers: Headers) -> dict[str, list[str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower().strip(), []).append(value)
    return out


def canonical_headers(headers: dict[str, list[str]], signed: Sequence[str]) -> str:
    return "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in headers.get(name, []))}\n"
        for name in signed
    )


@functools.lru_cache(maxsize=64)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key of one day, region and service (four HMACs; cached, as the SDKs do: a client
    signs every request of a day with the same one)."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


# --- verification ------------------------------------------------------------------------
_PARAM = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,]*?)\s*(?:,|$)")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _lookup(credentials: CredentialLookup, key_id: str) -> Credentials | None:
    if isinstance(credentials, Mapping):
        return credentials.get(key_id)
    return credentials(key_id)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime(AMZ_DATE_FORMAT)


def _signed_at(headers: dict[str, list[str]]) -> tuple[str, datetime] | AuthError | None:
    """(x-amz-date form, time) from X-Amz-Date, else from Date; None if neither is there."""
    if "x-amz-date" in headers:
        text = headers["x-amz-date"][0].strip()
        try:
            return text, _basic_format(text)
        except ValueError:
            return _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{text}'.")
    if "date" in headers:
        text = headers["date"][0].strip()
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return _incomplete(f"Date must be in RFC 1123 format. Got '{text}'.")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return _stamp(when), when
    return None


_BASIC = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


@functools.lru_cache(maxsize=64)
def _basic_format(text: str) -> datetime:
    """``text`` in :data:`AMZ_DATE_FORMAT` (``20261201T203000Z``) as a UTC time; ValueError
    otherwise (what ``strptime`` accepts, without its per-call format parsing). Cached: a
    client's requests of one second carry the same text."""
    m = _BASIC.fullmatch(text)
    if m is None:
        raise ValueError(text)
    y, mo, d, h, mi, sec = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 …`` header."""

    header: str
    key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def verify(
    method: str,
    raw_path: str,
    query: str,
    headers: Headers,
    body: bytes,
    credentials: CredentialLookup,
    now: datetime,
    *,
    service: str = BATCH,
) -> Identity | AuthError:
    """Check one request's ``Authorization`` header; the signer's identity or a refusal.

    ``raw_path`` and ``query`` are as sent on the wire (still percent-encoded); ``now`` is
    timezone-aware. Checked in this order: present (403 MissingAuthenticationToken), well
    formed (400 IncompleteSignature), scope and signed headers (403 InvalidSignature), key
    known (403 UnrecognizedClient), date within 15 minutes of ``now`` (403
    InvalidSignature "Signature expired"), payload hash, signature (403 InvalidSignature).
    """
    hdrs = header_map(headers)
    auth = _parse_authorization(hdrs, query)
    if isinstance(auth, AuthError):
        return auth
    refused = _check_scope(auth, service)
    if refused is not None:
        return refused
    when = _check_date(hdrs, auth)
    if isinstance(when, AuthError):
        return when
    amz_date, signed_at = when
    creds = _lookup(credentials, auth.key_id)
    if creds is None:
        return UNRECOGNIZED
    refused = _check_skew(amz_date, signed_at, now)
    if refused is not None:
        return refused
    payload = _payload_hash(hdrs, body)
    if isinstance(payload, AuthError):
        return payload
    return _check_signature(method, raw_path, query, hdrs, auth, creds, amz_date, payload)


_SIGNATURE = "Signature="
_SIGNED = "0" * 64
"""What stands for the signature in the text :func:`_parse_signed` caches."""


def _parse_authorization(hdrs: dict[str, list[str]], query: str) -> _Authorization | AuthError:
    """The header's algorithm, parameters and five-part credential scope, or why not.

    A well-formed header is parsed once per client and scope: everything but its signature
    (which changes with every request) is the same from one request to the next."""
    auth = (hdrs.get("authorization") or [""])[0].strip()
    at = auth.find(_SIGNATURE)
    if at > 0 and len(auth) <= _CACHED_LEN * 2 and auth.count(_SIGNATURE) == 1:
        end = auth.find(",", at)
        signature = (auth[at + len(_SIGNATURE) : end] if end >= 0 else auth[at + len(_SIGNATURE) :])
        signature = signature.strip()
        if len(signature) == 64 and _HEX64.fullmatch(signature):
            rest = auth[end:] if end >= 0 else ""
            parsed = _parse_signed(auth[: at + len(_SIGNATURE)] + _SIGNED + rest)
            if isinstance(parsed, _Authorization):
                p = parsed
                return _Authorization(auth, p.key_id, p.date, p.region, p.service,
                                      p.terminator, p.signed, signature.lower())  # fmt: skip
    return _parse_header(auth, query)


@functools.lru_cache(maxsize=64)
def _parse_signed(auth: str) -> _Authorization | AuthError:
    return _parse_header(auth, "")


def _parse_header(auth: str, query: str) -> _Authorization | AuthError:
    if not auth:
        if "X-Amz-Signature=" in query or "X-Amz-Credential=" in query:
            return _incomplete(
                "Query-string (presigned) authentication is not supported here; "
                "sign the Authorization header."
            )
        return MISSING
    algorithm, _, rest = auth.partition(" ")
    if algorithm != ALGORITHM:
        return _incomplete(f"Unsupported authorization type: '{algorithm}'. Authorization={auth}")
    params = {k: v for k, v in _PARAM.findall(rest)}
    absent = [p for p in ("Credential", "Signature", "SignedHeaders") if not params.get(p)]
    if absent:
        needs = " ".join(f"Authorization header requires '{p}' parameter." for p in absent)
        return _incomplete(f"{needs} Authorization={auth}")
    scope_parts = params["Credential"].split("/")
    if len(scope_parts) != 5:
        return _incomplete(
            f"Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{params['Credential']}'"
        )
    key_id, scope_date, region, scope_service, terminator = scope_parts
    signed = tuple(h.strip().lower() for h in params["SignedHeaders"].split(";"))
    return _Authorization(
        auth, key_id, scope_date, region, scope_service, terminator, signed,
        params["Signature"].lower(),
    )  # fmt: skip


def _check_scope(auth: _Authorization, service: str) -> AuthError | None:
    """The scope names this service, a region and the terminator; Host is signed."""
    if auth.terminator != TERMINATOR:
        return _invalid(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{auth.terminator}'."
        )
    if auth.service != service:
        return _invalid(f"Credential should be scoped to correct service: '{service}'. ")
    if not auth.region:
        return _invalid("Credential should be scoped to a valid region. ")
    if "host" not in auth.signed:
        return _invalid("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    return None


def _check_date(
    hdrs: dict[str, list[str]], auth: _Authorization
) -> tuple[str, datetime] | AuthError:
    """The signing time (x-amz-date form, time): present, signed, and the scope's day."""
    when = _signed_at(hdrs)
    if when is None:
        return _incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
            f"header. Authorization={auth.header}"
        )
    if isinstance(when, AuthError):
        return when
    amz_date = when[0]
    date_header = "x-amz-date" if "x-amz-date" in hdrs else "date"
    if date_header not in auth.signed:
        return _invalid(f"'{date_header}' must be a 'SignedHeader' in the AWS Authorization.")
    if auth.date != amz_date[:8]:
        return _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    return when


def _check_skew(amz_date: str, signed_at: datetime, now: datetime) -> AuthError | None:
    if signed_at < now - MAX_SKEW:
        return _invalid(
            f"Signature expired: {amz_date} is now earlier than {_stamp(now - MAX_SKEW)} "
            f"({_stamp(now)} - 15 min.)"
        )
    if signed_at > now + MAX_SKEW:
        return _invalid(
            f"Signature not yet current: {amz_date} is still later than "
            f"{_stamp(now + MAX_SKEW)} ({_stamp(now)} + 15 min.)"
        )
    return None


def _payload_hash(hdrs: dict[str, list[str]], body: bytes) -> str | AuthError:
    """``x-amz-content-sha256`` (checked against the body when it is a hash), else the body's."""
    body_hash = hashlib.sha256(body).hexdigest()
    payload = (hdrs.get("x-amz-content-sha256") or [""])[0].strip()
    if payload and _HEX64.fullmatch(payload) and payload.lower() != body_hash:
        return _invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return payload or body_hash


def _check_signature(
    method: str,
    raw_path: str,
    query: str,
    hdrs: dict[str, list[str]],
    auth: _Authorization,
    creds: Credentials,
    amz_date: str,
    payload: str,
) -> Identity | AuthError:
    """Recompute the signature over each canonical query form; a mismatch shows botocore's."""
    key = signing_key(creds.secret_access_key, auth.date, auth.region, auth.service)
    uri = canonical_uri(raw_path) if len(raw_path) <= _CACHED_LEN else _canonical_uri(raw_path)
    head = f"{method.upper()}\n{uri}\n"
    tail = f"\n{canonical_headers(hdrs, auth.signed)}\n{';'.join(auth.signed)}\n{payload}"
    first_request = first_sts = ""
    for cq in _query_forms(query) if len(query) <= _CACHED_LEN else canonical_queries(query):
        request = head + cq + tail
        sts = string_to_sign(amz_date, auth.scope, request)
        expected = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, auth.signature):
            return Identity(auth.key_id, creds.profile, auth.region, auth.service)
        first_request, first_sts = first_request or request, first_sts or sts
    return _invalid(
        f"{MISMATCH}\n\nThe Canonical String for this request should have been\n"
        f"'{first_request}'\n\nThe String-to-Sign should have been\n'{first_sts}'\n"
    )
