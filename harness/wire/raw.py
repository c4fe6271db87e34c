"""A request sent byte for byte, for the requests no HTTP client would send (header values with
bytes that are not UTF-8): only the response head is read, then the connection is closed.

Header values are written as latin-1, so every byte 0x00 to 0xFF can be spelled as one character.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from harness.wire.http1 import Endpoint, ResponseHead, parse_head, request_bytes
from harness.wire.observe import Watch

__all__ = ["raw_head"]


async def raw_head(
    url: str, headers: Sequence[tuple[str, str]], *, method: str = "GET", timeout: float = 10
) -> ResponseHead:
    """The response head of `method url` sent with exactly these `headers` (no body)."""
    endpoint = Endpoint.parse(url)
    watch = Watch("http", method, url, headers, label="raw request")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            try:
                writer.write(request_bytes(method, endpoint, headers))
                await writer.drain()
                received = b""
                while (parsed := parse_head(received)) is None:
                    chunk = await reader.read(4096)
                    if not chunk:
                        raise ConnectionError(f"{url}: closed before the response head")
                    received += chunk
            finally:
                writer.close()
    except BaseException as exc:
        watch.end("timeout" if isinstance(exc, TimeoutError) else "reset")
        raise
    head = parsed[0]
    watch.response(head.status, head.headers)
    watch.end("client-close")
    return head
