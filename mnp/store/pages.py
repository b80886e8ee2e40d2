"""Listing ``nextToken``: where the next page starts, signed for the query that gave it.

A token carries the last row's place in the listing's order (:data:`~mnp.store.queries.
PageKey`) and a MAC over that place and the query's fingerprint, made with a secret the store
keeps (:meth:`mnp.store.sqlite.Store.page_secret`). So a token is opaque to use, a forged or
edited one is refused, and so is one a different query gave out (its page would start at a
place that means nothing in this order). Tokens outlive a restart of the head, as the store
does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from mnp.store.queries import PageKey

MAC_BYTES = 16


def _mac(secret: bytes, fingerprint: str, payload: bytes) -> bytes:
    message = fingerprint.encode() + b"\0" + payload
    return hmac.new(secret, message, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, fingerprint: str, key: PageKey) -> str:
    """The token of the page that starts past ``key`` in the query ``fingerprint``."""
    payload = json.dumps(list(key), separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, fingerprint, payload))}"


def verify(secret: bytes, fingerprint: str, token: str) -> PageKey | None:
    """The place ``token`` starts at, or None when this store did not give it out for this
    query (forged, edited, or another query's)."""
    body, dot, tag = token.partition(".")
    if not dot:
        return None
    try:
        payload, mac = _unb64(body), _unb64(tag)
    except ValueError:
        return None
    if not hmac.compare_digest(mac, _mac(secret, fingerprint, payload)):
        return None
    try:
        first, rowid = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if not (first is None or type(first) is int) or type(rowid) is not int:
        return None
    return first, rowid
