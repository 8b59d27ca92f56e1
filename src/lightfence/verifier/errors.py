"""Service errors. Each carries the HTTP status it maps to and a message saying what to fix."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    keep_writes = False
    """True: the write transaction commits what it did before the refusal (its alert, say)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(ServiceError):
    status = 422


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Forbidden(ServiceError):
    status = 403


class Unauthorized(ServiceError):
    status = 401


class Unavailable(ServiceError):
    """The service runs but lacks what this request needs (e.g. a signing key)."""

    status = 503


class NestedTooDeep(ServiceError):
    """A JSON body nested deeper, or with longer numbers, than any valid request has."""

    status = 400


class RateLimited(ServiceError):
    """A token spent its write budget; `retry_after_s` says when the next write fits."""

    status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
