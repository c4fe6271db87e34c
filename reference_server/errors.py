"""One root exception with a transport-neutral code; the HTTP and gRPC layers each map it once."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission-denied"
    INVALID_ARGUMENT = "invalid-argument"
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    BATCH_TOO_LARGE = "batch-too-large"


class StreamingError(Exception):
    """Root of every error the server reports to a client; `detail` is safe to show them."""

    code: ErrorCode = ErrorCode.INVALID_ARGUMENT
    title: str = "Bad request"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class Unauthenticated(StreamingError):
    code = ErrorCode.UNAUTHENTICATED
    title = "Unauthenticated"


class PermissionDenied(StreamingError):
    code = ErrorCode.PERMISSION_DENIED
    title = "Forbidden"


class InvalidArgument(StreamingError):
    code = ErrorCode.INVALID_ARGUMENT
    title = "Invalid argument"


class NotFound(StreamingError):
    code = ErrorCode.NOT_FOUND
    title = "Not found"


class Conflict(StreamingError):
    code = ErrorCode.CONFLICT
    title = "Conflict"


class TooManyStreams(StreamingError):
    code = ErrorCode.RESOURCE_EXHAUSTED
    title = "Too many streams"


class BatchTooLarge(StreamingError):
    """A batch over the events or bytes limit: refused whole, nothing of it delivered."""

    code = ErrorCode.BATCH_TOO_LARGE
    title = "Batch too large"


class Unavailable(StreamingError):
    """A dependency (the store, the broker) is down; the client may retry."""

    code = ErrorCode.UNAVAILABLE
    title = "Service unavailable"


class BusError(Exception):
    """A publish or subscribe the bus could not carry out; never shown to clients verbatim."""
