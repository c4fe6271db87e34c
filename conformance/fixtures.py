"""Fixtures of the cases, built on the harness plugin's `taskstream_target`/`taskstream_world`.

- `facts`: the target (`harness.targets.Target`, which models the whole target file) and the
  run's maximum wait;
- `world` / `other_world`: two fresh tenants (user and worker tokens) per case;
- `make_world`: more tenants when a case needs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from harness.targets import Instance, Target
from harness.world import TenantWorld

from .checks import informational, unimplemented

DEFAULT_MAX_WAIT = 30.0
WorldFactory = Callable[[], Awaitable[TenantWorld]]


@dataclass(frozen=True, slots=True)
class Facts:
    """The target under test, as the cases need it."""

    target: Target
    max_wait: float = DEFAULT_MAX_WAIT

    @property
    def instances(self) -> list[Instance]:
        return self.target.instances

    @property
    def max_payload_bytes(self) -> int:
        return self.target.max_payload_bytes

    @property
    def subscriber_buffer(self) -> int:
        return self.target.subscriber_buffer

    @property
    def max_batch_events(self) -> int:
        return self.target.max_batch_events

    @property
    def retention_seconds(self) -> float | None:
        """How long the target keeps events for resume (None: not declared)."""
        return self.target.retention_seconds

    @property
    def retention_events(self) -> int | None:
        """How many events per stream it keeps (None: not declared, or no count limit)."""
        return self.target.retention_events

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


@pytest.fixture(scope="session")
def facts(request: pytest.FixtureRequest, taskstream_target: Target) -> Facts:
    return Facts(
        target=taskstream_target,
        max_wait=float(request.config.getoption("--conformance-max-wait")),
    )


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
