"""Deliberately broken variants of the reference server: the suite's proof that it catches bugs.

`python -m broken_servers <name> serve [flags]` runs the reference server with ONE defect
applied (the `broken_servers` package, outside the suite: a variant *is* a server).
`python -m conformance --variant <name>` tests one against the suite.

This module only names the defects and the requirements expected to catch each; importing it
does not import the server.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Defect:
    name: str
    summary: str
    catches: tuple[str, ...]  # MUST requirements that fail on this variant
    # A conformant variant: a correct behaviour the suite once misread; these must PASS.
    passes: tuple[str, ...] = ()


DEFECTS: dict[str, Defect] = {
    d.name: d
    for d in (
        Defect(
            "tenant-check-skipped",
            "SSE skips the tenant checks: a token of any tenant reads any workflow",
            ("sse/4.4/4", "sse/4.4/6"),
        ),
        Defect(
            "any-token-accepted",
            "unknown, expired and revoked tokens are accepted (as the admin's)",
            ("sse/4.1/4", "sse/4.1/5", "grpc/3.2/3"),
        ),
        Defect("no-keepalive", "no keep-alive comments on idle streams", ("sse/4.7/1",)),
        Defect("idle-timeout-ignored", "streams never end for idleness", ("sse/4.8/1",)),
        Defect(
            "consolidated-without-children",
            "consolidated streams carry the root workflow's events only",
            ("sse/4.9/1",),
        ),
        Defect(
            "payload-newlines-raw",
            "payloads go out in one data: line with their line breaks raw",
            ("sse/4.6/4", "sse/4.6/5"),
        ),
        Defect("wrong-content-type", "streams are served as text/plain", ("sse/4.5/1",)),
        Defect(
            "cross-tenant-publish",
            "gRPC accepts and delivers events for another tenant's workflow",
            ("grpc/3.4/2", "grpc/3.4/3"),
        ),
        Defect(
            "cursor-off-by-one",
            "resuming replays the event at the cursor again",
            ("sse/4.10/2", "sse/4.10/3"),
        ),
        Defect(
            "user-token-in-url",
            "any token is accepted in the access_token parameter",
            ("sse/4.2/1",),
        ),
        Defect(
            "stream-token-unscoped",
            "a stream token opens any workflow of its tenant",
            ("sse/4.2/3",),
        ),
        Defect(
            "no-end-event",
            "completing a workflow or task does not end its streams",
            ("sse/4.11/1",),
        ),
        Defect(
            "no-eviction",
            "per-subscriber buffers are unbounded: stalled clients stay",
            ("sse/4.14/1",),
        ),
        Defect(
            "replay-race",
            "events published while a resumed stream's replay is written are lost",
            ("sse/4.10/7",),
        ),
        Defect(
            "burst-reorder",
            "a publish is acknowledged before it reaches the bus: bursts overtake themselves",
            ("sse/4.6/8",),
        ),
        Defect(
            "expired-cursor-without-gap",
            "a cursor older than retention is replayed from what is left, without gap",
            ("sse/4.10/8",),
        ),
        Defect(
            "end-without-close",
            "the response ends 3 s after `end` instead of at once",
            ("sse/4.11/5",),
        ),
        # Defects no dedicated case targets: the monitor or the explorer catches them.
        Defect(
            "duplicate-at-seam",
            "the last replayed event is sent again where the live feed takes over",
            ("explore/9.1/1", "sse/4.10/2"),
        ),
        Defect(
            "revocation-ends-tenant",
            "revoking one token ends every open stream of its tenant",
            ("explore/9.1/1",),
        ),
        Defect(
            "keepalive-stops-after-events",
            "keep-alives stop once a stream has carried an event",
            ("sse/4.7/2",),
        ),
        Defect(
            "eviction-ends-body",
            "conformant: a lagging subscriber's response ends with the terminating chunk, the "
            "connection staying open (a suite counting only closed sockets misreads it)",
            (),
            passes=("sse/4.14/1",),
        ),
        Defect(
            "error-events-without-id",
            "error events are written without their id",
            ("sse/4.6/1", "sse/4.6/2"),
        ),
    )
}


def command(name: str) -> list[str]:
    """The program a cluster runs (before `serve ...`) for variant `name`."""
    if name not in DEFECTS:
        raise KeyError(f"unknown variant {name!r}")
    return [sys.executable, "-m", "broken_servers", name]
