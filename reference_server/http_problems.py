"""RFC 9457 problem responses: the one table from StreamingError codes to HTTP statuses."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import ErrorCode, StreamingError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
HTTP_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.BATCH_TOO_LARGE: 413,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.UNAVAILABLE: 503,
}
_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 413: "Too large"}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if code:
        body["code"] = code
    body.update(extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def from_error(error: StreamingError) -> web.Response:
    status = HTTP_STATUS[error.code]
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="task-streaming", error="invalid_token"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return problem(status, error.title, error.detail, code=error.code.value, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Visible ASCII without the characters that could confuse a log or header parser; `\w` would
# admit any Unicode letter, and `$` a trailing newline.
REQUEST_ID_MAX_LENGTH = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{REQUEST_ID_MAX_LENGTH}}}")
REQUEST_ID = web.RequestKey("request_id", str)


def request_id(request: web.Request) -> str:
    """The caller's `X-Request-ID` when it is sane, else one of ours; echoed on the response and
    put on the request's log lines, so a client's report can be matched to the server's logs."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        request[REQUEST_ID] = rid
    return rid


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response, streams included, carries the request id."""
    response.headers["X-Request-ID"] = request_id(request)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as problem+json; client mistakes are 4xx and logged without secrets."""
    try:
        return await handler(request)
    except StreamingError as error:
        response = from_error(error)
        log.info(
            "request refused",
            extra={"request_id": request_id(request), "method": request.method,
                   "path": request.path, "status": response.status, "reason": error.detail},
        )  # fmt: skip
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        title = _TITLES.get(exc.status, exc.reason)
        return problem(exc.status, title, exc.text or exc.reason, headers=headers)
    except Exception:
        log.exception(
            "unhandled error",
            extra={
                "request_id": request_id(request),
                "method": request.method,
                "path": request.path,
            },
        )
        return problem(500, "Internal server error", "the server failed; see its logs")
