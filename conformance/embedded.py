"""The embedded reference cluster a run tests when no target file is given, and target files.

    with embedded_cluster(instances=2) as cluster:
        write_target_file(path, [target_entry(cluster, "reference", "admin-api")])

PostgreSQL and NATS JetStream come from `harness.services` (explicit URL > environment > wheel >
container). The servers run with short timings so that timing requirements are measured in
seconds; the target file states them, like any team's target file would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.cluster import ReferenceCluster

# Short timings, a low stream limit (the 429 case opens that many), a small per-subscriber
# buffer (the eviction case overflows it) and a short retention (so that sse/4.10/8 resumes from
# a cursor that has really expired, in both buses). The cases read them from the target file.
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


def target_entry(cluster: ReferenceCluster, name: str, provisioner: str) -> dict[str, Any]:
    """One `[[target]]` table for the cluster, provisioned through `provisioner`."""
    base = cluster.target(name)
    profiles = set(base.profiles)
    if provisioner == "sql":
        assert cluster.postgres is not None
        # SQL writes are invisible to a running server: no `end` on completion (SPEC.md §4.11).
        profiles.discard("lifecycle")
        table: dict[str, Any] = {"kind": "sql", "database_url": cluster.postgres.url}
    else:
        table = {"kind": "admin-api", "admin_token": cluster.admin_token}
    return {
        "name": name,
        "http": list(base.http_urls),
        "grpc": list(base.grpc_addresses),
        "profiles": sorted(profiles),
        "keepalive_interval": EMBEDDED_SETTINGS["keepalive_interval"],
        "idle_timeout": EMBEDDED_SETTINGS["idle_timeout"],
        "max_streams_per_tenant": EMBEDDED_SETTINGS["max_streams_per_tenant"],
        "subscriber_buffer": EMBEDDED_SETTINGS["subscriber_buffer"],
        "retention_seconds": RETENTION_SECONDS,
        "provisioner": table,
    }


def render_targets(entries: Sequence[Mapping[str, Any]]) -> str:
    """A target file (TOML) for flat entries with one `provisioner` sub-table."""
    lines = ["# Written by `python -m conformance` for the embedded reference cluster.", ""]
    for entry in entries:
        lines.append("[[target]]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in entry.items() if k != "provisioner")
        lines.append("")
        lines.append("[target.provisioner]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in entry["provisioner"].items())
        lines.append("")
    return "\n".join(lines)


def write_target_file(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
    path.write_text(render_targets(entries), encoding="utf-8")
    path.chmod(0o600)  # it holds the admin token


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")
