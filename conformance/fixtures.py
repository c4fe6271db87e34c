"""Fixtures of the cases, built on the harness plugin's `taskstream_target`/`taskstream_world`.

- `facts`: the target plus what the suite reads from the target file beyond `harness.Target`
  (`max_payload_bytes`, `max_batch_events`, `subscriber_buffer`) and the run's maximum wait;
- `world` / `other_world`: two fresh tenants (user and worker tokens) per case;
- `make_world`: more tenants when a case needs them.
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.targets import Target
from harness.world import TenantWorld

from .checks import informational, unimplemented

DEFAULT_MAX_WAIT = 30.0
WorldFactory = Callable[[], Awaitable[TenantWorld]]


@dataclass(frozen=True, slots=True)
class Instance:
    http_url: str
    grpc_address: str


@dataclass(frozen=True, slots=True)
class Facts:
    """The target under test, as the cases need it."""

    target: Target
    max_payload_bytes: int = 64 * 1024
    max_batch_events: int = 1000
    subscriber_buffer: int = 1024
    max_wait: float = DEFAULT_MAX_WAIT
    retention_seconds: float | None = None  # how long the target keeps events for resume
    retention_events: int | None = None  # how many events per stream it keeps

    @property
    def instances(self) -> list[Instance]:
        pairs = zip(self.target.http_urls, self.target.grpc_addresses, strict=True)
        return [Instance(http, grpc) for http, grpc in pairs]

    @property
    def keepalive_interval(self) -> float:
        return self.target.keepalive_interval

    @property
    def idle_timeout(self) -> float:
        return self.target.idle_timeout

    @property
    def max_streams_per_tenant(self) -> int | None:
        return self.target.max_streams_per_tenant

    @property
    def provisioner_kind(self) -> str:
        return str(self.target.provisioner.get("kind", "admin-api"))

    @property
    def provisioner_notifies_server(self) -> bool:
        """Whether creating executions and completing them goes through the server (so it can
        react at once), rather than straight into its store (`sql`). A target may say so with
        `notifies_server` in its provisioner table."""
        declared = self.target.provisioner.get("notifies_server")
        if isinstance(declared, bool):
            return declared
        return self.provisioner_kind != "sql"

    @property
    def revocation_grace(self) -> float:
        """How long a revocation may take to reach the server: none through the server; up to
        the 5 s SPEC.md §4.3 gives open streams when the provisioner writes the store directly."""
        return 0.0 if self.provisioner_notifies_server else 5.0

    def require_profile(self, profile: str) -> None:
        """For cases that need a second profile besides their requirement's own."""
        if not self.target.has(profile):
            unimplemented(f"needs profile {profile!r} too, which the target does not declare")

    def require_notifying_provisioner(self) -> None:
        if not self.provisioner_notifies_server:
            informational(
                f"the {self.provisioner_kind!r} provisioner writes the store directly, so the "
                "server is not told of new executions or completions"
            )

    def second_instance(self) -> tuple[Instance, Instance]:
        instances = self.instances
        if len(instances) < 2:
            informational("the target lists one instance; multi-instance cases need two")
        return instances[0], instances[1]

    def require_wait(self, seconds: float, what: str) -> None:
        if seconds > self.max_wait:
            informational(
                f"{what} would take {seconds:.0f} s, over the maximum wait of {self.max_wait:.0f} s"
                " (declare shorter timings on a test deployment, or raise --max-wait)"
            )


def target_table(path: str | None, name: str | None) -> dict[str, Any]:
    """The raw `[[target]]` table of `name` (or the first) in a target file; {} without a file."""
    if not path:
        return {}
    entries = tomllib.loads(Path(path).read_text()).get("target", [])
    for entry in entries:
        if name is None or entry.get("name", "target") == name:
            return dict(entry)
    return {}


@pytest.fixture(scope="session")
def facts(request: pytest.FixtureRequest, taskstream_target: Target) -> Facts:
    config = request.config
    table = target_table(
        config.getoption("--taskstream-target"), config.getoption("--taskstream-target-name")
    )
    return Facts(
        target=taskstream_target,
        max_payload_bytes=int(table.get("max_payload_bytes", 64 * 1024)),
        max_batch_events=int(table.get("max_batch_events", 1000)),
        subscriber_buffer=int(table.get("subscriber_buffer", 1024)),
        max_wait=float(config.getoption("--conformance-max-wait")),
        retention_seconds=_optional(table, "retention_seconds", float),
        retention_events=_optional(table, "retention_events", int),
    )


def _optional(table: dict[str, Any], key: str, kind: type[Any]) -> Any:
    """An optional number of the target table (read here, whether or not `Target` has it)."""
    value = table.get(key)
    return None if value is None else kind(value)


@pytest.fixture
def target(taskstream_target: Target) -> Target:
    return taskstream_target


@pytest.fixture
def world(taskstream_world: TenantWorld) -> TenantWorld:
    """A fresh tenant with a user and a worker token."""
    return taskstream_world


@pytest.fixture
async def make_world(taskstream_target: Target) -> AsyncIterator[WorldFactory]:
    """More fresh tenants; all closed after the case."""
    made: list[TenantWorld] = []

    async def make() -> TenantWorld:
        world = await TenantWorld.for_target(taskstream_target)
        made.append(world)
        return world

    yield make
    for world in made:
        await world.close()


@pytest.fixture
async def other_world(make_world: WorldFactory) -> TenantWorld:
    """A second fresh tenant, for isolation cases."""
    return await make_world()
