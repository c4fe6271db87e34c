"""The chunked decoder, fed in every possible split."""

from __future__ import annotations

import pytest

from harness.wire.chunked import ChunkedDecoder, ChunkedError

BODY = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nNEXT"


def test_whole_body() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(BODY) == b"hello world!"
    assert decoder.done and decoder.rest == b"NEXT"


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_any_split_gives_the_same_payload(cut: int) -> None:
    decoder = ChunkedDecoder()
    out = decoder.feed(BODY[:cut]) + decoder.feed(BODY[cut:])
    assert out == b"hello world!" and decoder.done


def test_byte_by_byte() -> None:
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(BODY[i : i + 1]) for i in range(len(BODY)))
    assert out == b"hello world!" and decoder.rest == b"NEXT"


def test_unfinished_body_is_not_done() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhel") == b"hel"
    assert not decoder.done


@pytest.mark.parametrize("body", [b"zz\r\n", b"5\r\nhello!!\r\n", b"\r\n", b"9" * 5000])
def test_bad_coding_is_an_error(body: bytes) -> None:
    with pytest.raises(ChunkedError):
        ChunkedDecoder().feed(body)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_sse_frames_split_across_chunks_are_reassembled(step: int) -> None:
    parts = [b"id: 1\n", b"event: token\r\ndata: hi\n\n"]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
    assert out == b"".join(parts)
    assert decoder.done
