"""One-shot HTTP requests over aiohttp, reported to the observation hooks.

Every plain (non-streaming) request of the harness goes through :func:`request`: the management
client, metrics scrapes and the conformance helpers. Streams have their own adapter
(:class:`harness.sse_client.SSEStream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from harness.wire.observe import Watch

__all__ = ["Reply", "request"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole response: status, headers, media type (without parameters) and body text."""

    status: int
    headers: CIMultiDictProxy[str]
    content_type: str
    text: str


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    label: str | None = None,
) -> Reply:
    """Send one request and read the whole answer, whatever its status."""
    sent = dict(headers or {})
    if json is not None:
        sent.setdefault("Content-Type", "application/json")
    watch = Watch("http", method, url, sent.items(), label=label)
    try:
        async with session.request(method, url, json=json, headers=headers) as response:
            text = await response.text()
            reply = Reply(response.status, response.headers, response.content_type, text)
            chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            watch.end("client-close")
        else:
            watch.end("timeout" if isinstance(exc, TimeoutError) else "reset")
        raise
    watch.response(reply.status, reply.headers.items(), text)
    watch.end("terminating-chunk" if chunked else "eof")
    return reply
