"""The embedded reference cluster a run tests when no target file is given, and target files.

    with embedded_cluster(instances=2) as cluster:
        write_embedded_targets(path, [target_entry(cluster, "reference", "admin-api")])

PostgreSQL and NATS JetStream come from `harness.services` (explicit URL > environment > wheel >
container). The servers run with short timings so that timing requirements are measured in
seconds; the target file states them, like any team's target file would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.cluster import ReferenceCluster
from harness.targets import Target, write_target_file

# Short timings, a low stream limit (the 429 case opens that many), a small per-subscriber
# buffer (the eviction case overflows it) and a short retention (so that sse/4.10/8 resumes from
# a cursor that has really expired, in both buses). The cluster's target file declares them (the
# retention as its servers announce it), and the cases read them from there.
RETENTION_SECONDS = 8.0
EMBEDDED_SETTINGS: dict[str, Any] = {
    "keepalive_interval": 2.0,
    "idle_timeout": 6.0,
    "max_streams_per_tenant": 8,
    "subscriber_buffer": 16,
    "replay_max_age": RETENTION_SECONDS,
    "nats_max_age": RETENTION_SECONDS,
}
PROVISIONERS = ("admin-api", "sql")


@contextmanager
def embedded_cluster(
    *,
    instances: int = 2,
    database_url: str | None = None,
    command: Sequence[str] | None = None,
) -> Iterator[ReferenceCluster]:
    """Start PostgreSQL, NATS JetStream (with several instances) and the servers; stop them all
    on exit. The processes are not tied to an event loop, so each step runs its own."""
    cluster = ReferenceCluster(
        instances=instances,
        nats=instances > 1,
        database_url=database_url,
        settings=EMBEDDED_SETTINGS,
        command=command,
    )
    try:
        asyncio.run(cluster.start())
        yield cluster
    finally:
        asyncio.run(cluster.stop())


def target_entry(cluster: ReferenceCluster, name: str, provisioner: str) -> Target:
    """The cluster as the target `name`, provisioned through `provisioner`."""
    base = cluster.target(name)
    if provisioner != "sql":
        return base
    assert cluster.postgres is not None
    # SQL writes are invisible to a running server: no `end` on completion (SPEC.md §4.11).
    return replace(
        base,
        profiles=base.profiles - {"lifecycle"},
        provisioner={"kind": "sql", "database_url": cluster.postgres.url},
    )


def write_embedded_targets(path: Path, targets: Sequence[Target]) -> None:
    write_target_file(
        path, targets, "Written by `python -m conformance` for the embedded reference cluster."
    )
