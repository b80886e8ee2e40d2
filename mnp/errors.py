"""The error hierarchy every layer uses (HTTP maps these to status codes)."""

from __future__ import annotations

from dataclasses import dataclass


class MnpError(Exception):
    """Base of every error mnp raises on purpose."""

    transient = False
    http_status = 500
    code = "ServerException"


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidInput(MnpError):
    """The request or definition is wrong; retrying it unchanged cannot help.

    ``errors`` lists every problem found, each naming its field.
    """

    http_status = 400
    code = "ClientException"

    def __init__(self, errors: list[FieldError] | str) -> None:
        if isinstance(errors, str):
            errors = [FieldError("", errors)]
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class NotFound(MnpError):
    """A named object (job, queue, definition, environment, node) does not exist."""

    http_status = 404
    code = "ClientException"


class Conflict(MnpError):
    """The request is valid but clashes with the current state (e.g. a name already taken)."""

    http_status = 409
    code = "ClientException"


class TransientError(MnpError):
    """Something that may work if tried again (a node unreachable, the store busy)."""

    transient = True
    http_status = 503


class ProviderError(MnpError):
    """A provider failed to launch or stop nodes; carries the request id and the cause."""

    def __init__(
        self, message: str, request_id: str | None = None, transient: bool = False
    ) -> None:
        super().__init__(f"{message} (request {request_id})" if request_id else message)
        self.request_id = request_id
        self.transient = transient


class StorageError(TransientError):
    """The head could not save a change (disk full, I/O error): the transaction was rolled
    back and the head's memory rebuilt from the store, so nothing changed; retrying later
    (once the store can be written again) is safe."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            f"the head node could not save the change ({type(cause).__name__}: {cause}); "
            "nothing was changed, retry later"
        )


class AccessDenied(MnpError):
    """The caller is known but may not do this (another user's job, an admin-only operation);
    the message says who may not do what to which. Native API: 403; AWS wire: 403
    ``AccessDeniedException``."""

    http_status = 403
    code = "AccessDeniedException"
