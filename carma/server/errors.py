"""Every error the service answers is `{"error": {"code", "message"}}` with a stable code;
the status follows from what went wrong, never a traceback."""

from __future__ import annotations

from carma.domain import (
    CarmaError,
    ConflictError,
    EmbedderMismatch,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
    LogLost,
    StorageError,
)

#: CARMA's errors, most specific first: (type, HTTP status, code).
STATUS_OF: tuple[tuple[type[CarmaError], int, str], ...] = (
    (FragmentNotFound, 404, "not_found"),
    (FragmentGone, 404, "gone"),
    (ConflictError, 409, "conflict"),
    (EmbedderMismatch, 400, "invalid_input"),
    (InvalidInput, 400, "invalid_input"),
    (StorageError, 503, "storage_unavailable"),
    (LogLost, 503, "storage_unavailable"),
)


class ApiError(Exception):
    """An answer of the service's own (a key refused, a body too large, a namespace the key
    does not hold...)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def status_of(exc: CarmaError) -> tuple[int, str]:
    for kind, status, code in STATUS_OF:
        if isinstance(exc, kind):
            return status, code
    return 500, "store_error"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def not_found(key: str) -> ApiError:
    """What an id outside the key's namespaces gets: exactly what an unknown id gets."""
    return ApiError(404, "not_found", str(FragmentNotFound(key)))
