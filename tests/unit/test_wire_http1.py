"""HTTP/1.1 client framing: request bytes, the response head, the body's framing."""

from __future__ import annotations

import pytest

from harness.wire.http1 import (
    BodyDecoder,
    Endpoint,
    HeadError,
    parse_head,
    request_bytes,
    sse_headers,
)


def test_endpoint_and_request_bytes() -> None:
    endpoint = Endpoint.parse("http://127.0.0.1:8080/api/x?lastEventId=3")
    assert (endpoint.host, endpoint.port, endpoint.target) == (
        "127.0.0.1",
        8080,
        "/api/x?lastEventId=3",
    )
    headers = sse_headers("sk_1", "5", {"Accept": "*/*", "X-A": "b"})
    assert request_bytes("GET", endpoint, headers.items()) == (
        b"GET /api/x?lastEventId=3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n"
        b"Cache-Control: no-cache\r\nX-A: b\r\nAuthorization: Bearer sk_1\r\n"
        b"Last-Event-ID: 5\r\n\r\n"
    )
    assert Endpoint.parse("https://[::1]/").authority == "[::1]:443"
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.parse("ftp://h/")


def test_head_is_parsed_once_complete() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n"
    )
    assert parse_head(raw[:20]) is None
    parsed = parse_head(raw)
    assert parsed is not None
    head, rest = parsed
    assert head.status == 200 and head.reason == "OK" and rest == b"5\r\n"
    assert head.chunked and head.media_type == "text/event-stream"
    assert head.header("content-type") == "text/event-stream; charset=utf-8"


@pytest.mark.parametrize(
    "raw",
    [b"HTTX/1.1 200 OK\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad\r\n\r\n"],
)
def test_a_malformed_head_is_an_error(raw: bytes) -> None:
    with pytest.raises(HeadError):
        parse_head(raw)


def test_an_endless_head_is_an_error() -> None:
    with pytest.raises(HeadError, match="within 100 bytes"):
        parse_head(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 30, limit=100)


def _body(raw: bytes) -> BodyDecoder:
    parsed = parse_head(raw)
    assert parsed is not None
    return BodyDecoder(parsed[0])


def test_content_length_body_is_done_at_its_length() -> None:
    body = _body(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\n")
    assert body.feed(b"ab") == b"ab" and not body.done and body.end() == "reset"
    assert body.feed(b"cdEXTRA") == b"cd" and body.done and body.end() == "eof"


def test_chunked_body_ends_with_its_terminating_chunk() -> None:
    body = _body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert body.feed(b"2\r\nhi\r\n") == b"hi" and body.end() == "reset"  # cut short
    assert body.feed(b"0\r\n\r\n") == b"" and body.done and body.end() == "terminating-chunk"


def test_close_delimited_body_never_completes() -> None:
    body = _body(b"HTTP/1.0 200 OK\r\n\r\n")
    assert body.feed(b"data: x\n\n") == b"data: x\n\n" and not body.done
    assert body.end() == "eof"
