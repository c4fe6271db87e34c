"""Targets: the implementations a test run talks to, described in a TOML file.

```toml
[[target]]
name = "reference"
http = ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]  # several = multi-instance
grpc = ["127.0.0.1:50051", "127.0.0.1:50052"]
profiles = ["core", "consolidated", "multi-instance", "resume", "lifecycle"]
keepalive_interval = 15      # seconds, as configured on the target
idle_timeout = 300

[target.provisioner]        # how the suite creates tenants, tokens and executions
kind = "admin-api"          # or "sql", or "python:my_module:MyProvisioner"
admin_token_env = "TASKSTREAM_ADMIN_TOKEN"   # or admin_token = "..."
# sql: database_url = "postgresql://..." (or database_url_env)
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES = frozenset({"core", "consolidated", "multi-instance", "resume", "lifecycle",
                      "standalone-tasks", "browser-auth", "limits", "batch-ingest",
                      "http-ingest"})  # fmt: skip


class TargetError(ValueError):
    """The target file is unusable; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    http_urls: list[str]
    grpc_addresses: list[str]
    profiles: frozenset[str] = PROFILES
    keepalive_interval: float = 15.0
    idle_timeout: float = 300.0
    provisioner: Mapping[str, Any] = field(default_factory=dict)
    max_streams_per_tenant: int | None = None

    @property
    def http_url(self) -> str:
        return self.http_urls[0]

    @property
    def grpc_address(self) -> str:
        return self.grpc_addresses[0]

    def has(self, profile: str) -> bool:
        return profile in self.profiles

    def secret(self, name: str) -> str | None:
        """A provisioner value given inline (`name`) or through the environment (`name_env`)."""
        value = self.provisioner.get(name)
        if value is None and (env := self.provisioner.get(f"{name}_env")):
            value = os.environ.get(str(env))
        return None if value is None else str(value)


def load_targets(path: str | Path) -> list[Target]:
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
    profiles = frozenset(entry.get("profiles", ["core"]))
    unknown = profiles - PROFILES
    if unknown:
        raise TargetError(f"{where}: unknown profiles {sorted(unknown)}; known: {sorted(PROFILES)}")
    provisioner = entry.get("provisioner", {"kind": "admin-api"})
    if not isinstance(provisioner, dict) or "kind" not in provisioner:
        raise TargetError(f"{where}: [target.provisioner] needs a 'kind'")
    return Target(
        name=str(entry.get("name", "target")),
        http_urls=http,
        grpc_addresses=grpc,
        profiles=profiles,
        keepalive_interval=float(entry.get("keepalive_interval", 15.0)),
        idle_timeout=float(entry.get("idle_timeout", 300.0)),
        provisioner=provisioner,
        max_streams_per_tenant=entry.get("max_streams_per_tenant"),
    )


def dump_target(target: Target) -> str:
    """The TOML form of a target (what `load_targets` reads back)."""

    def value(v: object) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, frozenset | set):
            return value(sorted(v))
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines = [
        "[[target]]",
        f"name = {value(target.name)}",
        f"http = {value(list(target.http_urls))}",
        f"grpc = {value(list(target.grpc_addresses))}",
        f"profiles = {value(target.profiles)}",
        f"keepalive_interval = {target.keepalive_interval}",
        f"idle_timeout = {target.idle_timeout}",
    ]
    if target.max_streams_per_tenant is not None:
        lines.append(f"max_streams_per_tenant = {target.max_streams_per_tenant}")
    lines.append("")
    lines.append("[target.provisioner]")
    lines.extend(f"{k} = {value(v)}" for k, v in target.provisioner.items())
    return "\n".join(lines) + "\n"
