"""The one spelling of an id and the syntax of a bearer token: pure functions, checked at the
edges an attacker would try."""

from __future__ import annotations

import uuid

import pytest

from reference_server.auth import bearer_token
from reference_server.errors import InvalidArgument, Unauthenticated
from reference_server.grpc_service import Undecodable, lenient
from reference_server.ids import parse_uuid
from taskstream_proto import task_streaming_pb2 as pb

CANONICAL = "0b5f7a3e-9c1d-4e2f-8a6b-1c2d3e4f5a6b"


def test_the_canonical_spelling_parses() -> None:
    assert parse_uuid(CANONICAL, "id") == uuid.UUID(CANONICAL)


@pytest.mark.parametrize(
    "spelling",
    [CANONICAL.upper(), CANONICAL.replace("-", ""), f"urn:uuid:{CANONICAL}", f"{{{CANONICAL}}}",
     CANONICAL + "\n", " " + CANONICAL, CANONICAL[:-1] + "g", CANONICAL[:-1], "", "not-a-uuid",
     "\uff10" + CANONICAL[1:]],  # last: a full-width digit zero
)  # fmt: skip
def test_every_other_spelling_is_refused(spelling: str) -> None:
    with pytest.raises(InvalidArgument, match="canonical"):
        parse_uuid(spelling, "id")


def test_a_bearer_token_is_returned() -> None:
    assert bearer_token("Bearer fut_abc-DEF_123.~+/=") == "fut_abc-DEF_123.~+/="
    assert bearer_token(None) is None


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic Zm9v", "Bearer a b", "Bearer fut_\udcff\udcfe",
     "Bearer fut_é", "Bearer fut_\x00", "Bearer =abc"],
)  # fmt: skip
def test_malformed_or_undecodable_credentials_are_unauthenticated(header: str) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_the_lenient_deserializer_never_raises() -> None:
    parse = lenient(pb.StreamTaskDataRequest)
    good = pb.StreamTaskDataRequest(payload="x").SerializeToString()
    assert isinstance(parse(good), pb.StreamTaskDataRequest)
    for raw in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x2a\x02\xff\xfe"):
        assert isinstance(parse(raw), Undecodable)
