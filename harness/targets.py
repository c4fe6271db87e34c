"""Targets: the implementations a test run talks to, described in a TOML file.

This module owns the file format: :class:`Target` models every field a target file may hold
and validates it on reading, and :func:`dump_target` is the only writer (the embedded clusters
of the conformance suite, the load tests and ``python -m harness cluster`` all write through
it).

```toml
[[target]]
name = "reference"
http = ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]  # several = multi-instance
grpc = ["127.0.0.1:50051", "127.0.0.1:50052"]
profiles = ["core", "consolidated", "multi-instance", "resume", "lifecycle"]
keepalive_interval = 15      # seconds, as configured on the target
idle_timeout = 300
max_streams_per_tenant = 8   # optional: concurrent streams per tenant on one instance
subscriber_buffer = 1024     # events buffered per subscriber before eviction
max_payload_bytes = 65536    # the payload limit
max_batch_events = 1000      # events in one batch (batch-ingest, http-ingest)
retention_events = 1000      # optional: events kept per stream for resume (none: no count limit)
retention_seconds = 3600     # optional: how long events are kept for resume

[target.provisioner]        # how the suite creates tenants, tokens and executions
kind = "admin-api"          # or "sql", or "python:my_module:MyProvisioner"
admin_token_env = "TASKSTREAM_ADMIN_TOKEN"   # or admin_token = "..."
# sql: database_url = "postgresql://..." (or database_url_env)
```
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

PROFILES: Final = frozenset({"core", "consolidated", "multi-instance", "resume", "lifecycle",
                             "standalone-tasks", "browser-auth", "limits", "batch-ingest",
                             "http-ingest"})  # fmt: skip
"""Every profile of SPEC.md §1.1: the one list of them."""

PROVISIONER_KINDS: Final = ("admin-api", "sql", "python:MODULE:CLASS")

# The optional numbers of a target, with their type; each must be positive.
_NUMBERS: Final[dict[str, type]] = {
    "keepalive_interval": float,
    "idle_timeout": float,
    "max_streams_per_tenant": int,
    "subscriber_buffer": int,
    "max_payload_bytes": int,
    "max_batch_events": int,
    "retention_events": int,
    "retention_seconds": float,
}
_KEYS: Final = frozenset({"name", "http", "grpc", "profiles", "provisioner", *_NUMBERS})


class TargetError(ValueError):
    """The target file is unusable; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One server of a target: its HTTP base URL and gRPC address."""

    http_url: str
    grpc_address: str


@dataclass(frozen=True, slots=True)
class Target:
    """One implementation under test, as its target file describes it."""

    name: str
    http_urls: list[str]
    grpc_addresses: list[str]
    profiles: frozenset[str] = PROFILES
    keepalive_interval: float = 15.0
    idle_timeout: float = 300.0
    provisioner: Mapping[str, Any] = field(default_factory=dict)
    max_streams_per_tenant: int | None = None  # None: not declared (the 429 case is skipped)
    subscriber_buffer: int = 1024  # sizes the burst that overflows a stalled subscriber
    max_payload_bytes: int = 64 * 1024  # SPEC.md's default payload limit
    max_batch_events: int = 1000  # events in one batch (batch-ingest, http-ingest); SPEC default
    retention_events: int | None = None  # events kept per stream for resume; None: no count limit
    retention_seconds: float | None = None  # how long events are kept; None: not declared

    @property
    def http_url(self) -> str:
        return self.http_urls[0]

    @property
    def grpc_address(self) -> str:
        return self.grpc_addresses[0]

    @property
    def instances(self) -> list[Instance]:
        pairs = zip(self.http_urls, self.grpc_addresses, strict=True)
        return [Instance(http, grpc) for http, grpc in pairs]

    def has(self, profile: str) -> bool:
        return profile in self.profiles

    def secret(self, name: str) -> str | None:
        """A provisioner value given inline (`name`) or through the environment (`name_env`)."""
        value = self.provisioner.get(name)
        if value is None and (env := self.provisioner.get(f"{name}_env")):
            value = os.environ.get(str(env))
        return None if value is None else str(value)


def load_targets(path: str | Path) -> list[Target]:
    """Every ``[[target]]`` of a file, validated; :class:`TargetError` says what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TargetError(f"{path}: {error}") from error
    entries = data.get("target")
    if not isinstance(entries, list) or not entries:
        raise TargetError(f"{path}: no [[target]] tables")
    targets = [_target(entry, f"{path}: target #{n + 1}") for n, entry in enumerate(entries)]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise TargetError(f"{path}: target names must be unique")
    return targets


def _target(entry: Mapping[str, Any], where: str) -> Target:
    unknown = set(entry) - _KEYS
    if unknown:
        raise TargetError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")

    def strings(key: str) -> list[str]:
        value = entry.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise TargetError(f"{where}: '{key}' must be a URL or a list of them")
        return [v.rstrip("/") for v in value]

    http, grpc = strings("http"), strings("grpc")
    if len(http) != len(grpc):
        raise TargetError(f"{where}: 'http' and 'grpc' must list the same instances")
    profiles = entry.get("profiles", ["core"])
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise TargetError(f"{where}: 'profiles' must be a list of names")
    unknown = set(profiles) - PROFILES
    if unknown:
        raise TargetError(f"{where}: unknown profiles {sorted(unknown)}; known: {sorted(PROFILES)}")
    numbers: dict[str, Any] = {
        key: _number(entry[key], kind, f"{where}: '{key}'")
        for key, kind in _NUMBERS.items()
        if key in entry
    }
    return Target(
        name=str(entry.get("name", "target")),
        http_urls=http,
        grpc_addresses=grpc,
        profiles=frozenset(profiles),
        provisioner=_provisioner(entry.get("provisioner", {"kind": "admin-api"}), where),
        **numbers,
    )


def _number(value: object, kind: type, what: str) -> int | float:
    # bool is an int to Python, never a count or a duration in a target file.
    valid = isinstance(value, int | float) if kind is float else isinstance(value, int)
    if not valid or isinstance(value, bool):
        raise TargetError(f"{what} must be {'a number' if kind is float else 'an integer'}")
    assert isinstance(value, int | float)
    if value <= 0:
        raise TargetError(f"{what} must be positive, not {value}")
    return float(value) if kind is float else int(value)


def _provisioner(table: object, where: str) -> dict[str, Any]:
    if not isinstance(table, dict) or "kind" not in table:
        raise TargetError(f"{where}: [target.provisioner] needs a 'kind'")
    kind = table["kind"]
    python = isinstance(kind, str) and kind.startswith("python:") and kind.count(":") == 2
    if kind not in ("admin-api", "sql") and not python:
        raise TargetError(f"{where}: provisioner kind {kind!r} is not one of {PROVISIONER_KINDS}")
    for key, value in table.items():
        if not isinstance(value, str | bool | int | float):
            raise TargetError(f"{where}: provisioner '{key}' must be a string or a number")
    return dict(table)


def dump_target(target: Target) -> str:
    """The TOML form of a target (what :func:`load_targets` reads back)."""
    lines = [
        "[[target]]",
        f"name = {_toml(target.name)}",
        f"http = {_toml(list(target.http_urls))}",
        f"grpc = {_toml(list(target.grpc_addresses))}",
        f"profiles = {_toml(sorted(target.profiles))}",
    ]
    for item in fields(Target):
        value = getattr(target, item.name)
        if item.name in _NUMBERS and value is not None:
            lines.append(f"{item.name} = {_toml(value)}")
    lines += ["", "[target.provisioner]"]
    lines.extend(f"{key} = {_toml(value)}" for key, value in target.provisioner.items())
    return "\n".join(lines) + "\n"


def dump_targets(targets: Iterable[Target], comment: str | None = None) -> str:
    """A whole target file: an optional ``#`` comment, then every target."""
    head = "".join(f"# {line}\n" for line in comment.splitlines()) + "\n" if comment else ""
    return head + "\n".join(dump_target(target) for target in targets)


def write_target_file(path: Path, targets: Iterable[Target], comment: str | None = None) -> None:
    """Write a target file readable by its owner only: it may hold an admin token."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(dump_targets(targets, comment), encoding="utf-8")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, once DEL (which JSON leaves bare) is escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to a target file")
