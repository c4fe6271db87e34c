"""One frozen Settings, read once from CLI flags and `TASKSTREAM_*` environment variables."""

from __future__ import annotations

import argparse
import collections
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "TASKSTREAM_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to run; the harness builds one directly."""

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    database_url: str | None = None
    data_dir: Path = Path(".taskstream")
    ephemeral: bool = False
    nats_url: str | None = None
    nats_mode: str = "jetstream"  # or "core": the seed's live-only pub/sub
    nats_stream_name: str = "FLOVYN_STREAMS"
    nats_max_age: float = 3600.0
    nats_max_bytes: int = 256 * 1024 * 1024
    nats_replicas: int = 1  # 3 on a three-node cluster: a PubAck then means a quorum stored it
    nats_storage: str = "memory"  # or "file": survives a broker restart
    nats_heartbeat: float = 5.0  # a consumer silent for two of these is recreated
    publish_ack: str = "accepted"  # or "stored": acknowledged only once the bus stored it
    admin_token: str | None = None
    keepalive_interval: float = 15.0
    idle_timeout: float = 300.0
    max_payload_bytes: int = 64 * 1024
    max_batch_events: int = 1000
    max_batch_bytes: int = 4 * 1024 * 1024
    max_streams_per_tenant: int = 1000
    subscriber_buffer: int = 1024
    replay_max_events: int = 1000
    replay_max_age: float = 3600.0
    auth_recheck_interval: float = 1.0
    ownership_cache_size: int = 100_000
    token_cache_ttl: float = 30.0
    shutdown_grace: float = 3.0
    request_head_timeout: float = 10.0
    max_unauthenticated_connections: int = 1000
    bootstrap: bool = False
    workers: int = 1  # processes sharing the ports (SO_REUSEPORT); more than 1 needs NATS
    reuse_port: bool = False  # bind with SO_REUSEPORT (what each worker of --workers does)
    exit_with_stdin: bool = False  # stop when stdin closes: a worker ends with its supervisor
    metrics_dir: str | None = None  # PROMETHEUS_MULTIPROC_DIR: /metrics sums every worker
    log_level: str = "INFO"
    event_loop: str = "asyncio"  # or "uvloop"
    log_json: bool = False
    instance_id: str = field(default_factory=lambda: os.urandom(4).hex())

    @property
    def nats_enabled(self) -> bool:
        return bool(self.nats_url)

    def with_changes(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


_FLAGS: dict[str, tuple[type, str]] = {
    "http_host": (str, "HTTP listen address"),
    "http_port": (int, "HTTP port (0 = pick a free one)"),
    "grpc_host": (str, "gRPC listen address"),
    "grpc_port": (int, "gRPC port (0 = pick a free one)"),
    "database_url": (str, "PostgreSQL URL; none = embedded PostgreSQL in --data-dir"),
    "data_dir": (Path, "directory for the embedded PostgreSQL"),
    "nats_url": (
        str,
        "NATS URL, or several comma-separated (one per cluster node); none = in-memory bus; "
        "'embedded' = start nats-server -js",
    ),
    "nats_mode": (str, "'jetstream' (resumable, default) or 'core' (live-only)"),
    "nats_stream_name": (str, "JetStream stream holding the events"),
    "nats_max_age": (float, "seconds JetStream retains events for resume"),
    "nats_max_bytes": (int, "bytes JetStream retains for resume"),
    "nats_replicas": (int, "JetStream stream replicas, 1-5 (3 on a three-node cluster)"),
    "nats_storage": (str, "'memory' (default) or 'file' (survives broker restarts)"),
    "nats_heartbeat": (float, "seconds between JetStream consumer heartbeats"),
    "publish_ack": (
        str,
        "'accepted' (default: acknowledged even if the bus is down) or 'stored' "
        "(acknowledged once the bus stored it, else UNAVAILABLE)",
    ),
    "admin_token": (str, "admin token; none = generated and printed once"),
    "keepalive_interval": (float, "seconds between SSE keep-alive comments"),
    "idle_timeout": (float, "seconds without an event before a stream ends"),
    "max_payload_bytes": (int, "largest accepted payload, in UTF-8 bytes"),
    "max_batch_events": (int, "most events in one batch (gRPC batch or stream message, HTTP)"),
    "max_batch_bytes": (int, "largest batch, in bytes of its encoded events or HTTP body"),
    "max_streams_per_tenant": (int, "concurrent SSE streams per tenant and instance"),
    "subscriber_buffer": (int, "events buffered per subscriber before it is evicted"),
    "replay_max_events": (int, "events retained per stream for resume"),
    "replay_max_age": (float, "seconds events are retained for resume"),
    "request_head_timeout": (float, "seconds a client has to send a complete request head"),
    "max_unauthenticated_connections": (
        int,
        "open HTTP connections on which no request has authenticated yet; more are closed",
    ),
    "log_level": (str, "DEBUG, INFO, WARNING or ERROR"),
    "workers": (int, "processes sharing the HTTP and gRPC ports; more than 1 needs NATS"),
    "event_loop": (str, "'asyncio' or 'uvloop' (needs the uvloop package)"),
}
_BOOL_FLAGS = {
    "ephemeral": "embedded PostgreSQL in a temp dir, removed at exit",
    "bootstrap": "create a demo tenant, tokens and workflow and print commands",
    "log_json": "log one JSON object per line",
    "reuse_port": "bind the ports with SO_REUSEPORT (several processes on the same ports)",
    "exit_with_stdin": "stop when standard input closes (a worker ends with its supervisor)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, (_kind, help_text) in _FLAGS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=None, help=f"{help_text} [{env_name(name)}]")
    # `--nats` is a short alias: `--nats embedded`.
    parser.add_argument("--nats", dest="nats_url", default=None, help=argparse.SUPPRESS)
    for name, help_text in _BOOL_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=name,
            action="store_true",
            default=None,
            help=f"{help_text} [{env_name(name)}]",
        )


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def from_sources(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Flags win over `TASKSTREAM_*` variables, which win over defaults. `DATABASE_URL` and
    `NATS_URL` are honoured too, as in the seed."""
    values: dict[str, Any] = {}
    aliases = {"database_url": "DATABASE_URL", "nats_url": "NATS_URL"}
    for name, (kind, _help) in _FLAGS.items():
        raw = getattr(args, name, None)
        if raw is None:
            raw = environ.get(env_name(name)) or environ.get(aliases.get(name, ""), None)
        if raw is not None and raw != "":
            try:
                values[name] = kind(raw)
            except ValueError as exc:
                raise SystemExit(f"invalid value for --{name.replace('_', '-')}: {raw!r}") from exc
    for name in _BOOL_FLAGS:
        flag = getattr(args, name, None)
        if flag:
            values[name] = True
        elif env_name(name) in environ:
            values[name] = environ[env_name(name)].lower() in {"1", "true", "yes", "on"}
    # prometheus_client reads this variable itself at import; the server only needs to know.
    values["metrics_dir"] = environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Refuse settings that cannot work, at start rather than at the first request."""
    problems: list[str] = []
    if settings.nats_mode not in {"jetstream", "core"}:
        problems.append("--nats-mode must be 'jetstream' or 'core'")
    if settings.nats_storage not in {"memory", "file"}:
        problems.append("--nats-storage must be 'memory' or 'file'")
    if settings.publish_ack not in {"accepted", "stored"}:
        problems.append("--publish-ack must be 'accepted' or 'stored'")
    if not 1 <= settings.nats_replicas <= 5:
        problems.append("--nats-replicas must be between 1 and 5")
    if settings.nats_heartbeat < 0.1:
        problems.append("--nats-heartbeat must be at least 0.1")
    if settings.event_loop not in {"asyncio", "uvloop"}:
        problems.append("--event-loop must be 'asyncio' or 'uvloop'")
    elif settings.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        problems.append("--event-loop uvloop needs the uvloop package (pip install uvloop)")
    for name in ("keepalive_interval", "idle_timeout", "replay_max_age", "request_head_timeout"):
        if getattr(settings, name) <= 0:
            problems.append(f"--{name.replace('_', '-')} must be positive")
    for name in (
        "max_payload_bytes",
        "max_batch_events",
        "max_batch_bytes",
        "max_streams_per_tenant",
        "subscriber_buffer",
        "max_unauthenticated_connections",
    ):
        if getattr(settings, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if settings.workers < 1:
        problems.append("--workers must be at least 1")
    if settings.workers > 1 and settings.nats_mode == "core":
        problems.append("--workers needs the JetStream bus (--nats-mode jetstream)")
    if settings.admin_token is not None:
        weakness = admin_token_weakness(settings.admin_token)
        if weakness:
            problems.append(f"--admin-token {weakness}")
    if problems:
        raise SystemExit("; ".join(problems))


ADMIN_TOKEN_MIN_LENGTH = 32
ADMIN_TOKEN_MIN_BITS = 96


def admin_token_weakness(token: str) -> str | None:
    """Why `token` is too weak to guard every tenant, or None.

    The admin token is chosen by an operator, so length alone proves little (`"a" * 32`). Its
    strength is estimated from its own characters: length times the Shannon entropy of their
    frequencies, which a repeat or a short alphabet cannot fake. Random tokens pass easily (64 hex
    digits: ~250 bits; `fat_` + 43 URL-safe characters: ~220 bits)."""
    if len(token) < ADMIN_TOKEN_MIN_LENGTH:
        return f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters"
    if any(not ("!" <= ch <= "~") for ch in token):
        return "must be visible ASCII"
    counts = collections.Counter(token)
    per_char = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    if per_char * len(token) < ADMIN_TOKEN_MIN_BITS:
        return (
            f"is too predictable (about {per_char * len(token):.0f} bits; at least"
            f" {ADMIN_TOKEN_MIN_BITS} needed): use a random one, e.g. `openssl rand -hex 32`"
        )
    return None


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="reference-server serve")
    add_arguments(parser)
    return from_sources(parser.parse_args(argv), os.environ if environ is None else environ)
