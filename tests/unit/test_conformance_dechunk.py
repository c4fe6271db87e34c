"""The stalled subscriber's view of a chunked body: a terminating chunk is an end."""

from __future__ import annotations

import pytest

from conformance.wire import dechunk

BODY = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def test_a_complete_body_ends_with_its_terminating_chunk() -> None:
    assert dechunk(BODY) == (b"hello world", True)


@pytest.mark.parametrize("cut", range(len(BODY) - 5))
def test_a_partial_body_is_not_ended(cut: int) -> None:
    payload, complete = dechunk(BODY[:cut])
    assert not complete
    assert b"hello world".startswith(payload)


def test_a_zero_inside_a_payload_is_not_a_terminating_chunk() -> None:
    assert dechunk(b"3\r\n0\r\n\r\n") == (b"0\r\n", False)
