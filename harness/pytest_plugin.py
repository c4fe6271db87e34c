"""pytest plugin `taskstream` (installed with this package): fixtures for testing streaming.

With no option the fixtures start an embedded reference cluster (PostgreSQL, NATS JetStream and
two server instances) once per test process; `--taskstream-target FILE` points them at any
implementation described in a target file (see `harness.targets`).

    async def test_event_arrives(taskstream_world):
        wf = await taskstream_world.workflow()
        async with await taskstream_world.subscribe(wf) as stream, \\
                taskstream_world.publisher() as pub:
            await pub.token("hi", workflow_id=wf, task_id=await taskstream_world.task(wf))
            assert (await stream.next_event()).data == "hi"

No pytest configuration is needed: an `async def` test that asks for a `taskstream_*` fixture
runs in pytest-asyncio even in its default strict mode (see `pytest_pycollect_makeitem`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .cluster import ReferenceCluster
from .extras import missing_server_extra
from .publisher import Publisher
from .services import ServiceUnavailable
from .targets import Target, load_targets
from .world import TenantWorld

# Timings of the embedded cluster: short enough for tests, stated in the target.
CLUSTER_SETTINGS = {"keepalive_interval": 2.0, "idle_timeout": 60.0, "auth_recheck_interval": 0.5}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskstream", "task-streaming harness")
    group.addoption(
        "--taskstream-target",
        default=os.environ.get("TASKSTREAM_TARGET"),
        help="target file (TOML) to test instead of the embedded reference cluster "
        "[env TASKSTREAM_TARGET]",
    )
    group.addoption(
        "--taskstream-target-name",
        default=None,
        help="which [[target]] of the file (default: first)",
    )
    group.addoption(
        "--taskstream-instances",
        type=int,
        default=2,
        help="server instances of the embedded cluster (default 2)",
    )


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark `async def` tests that use this plugin's fixtures with `asyncio`, so that they run
    in a project with no pytest configuration (pytest-asyncio's strict mode runs only marked
    tests). Collection itself is left to pytest: this returns None after marking the function,
    which pytest-asyncio's wrapper then sees. Tests with a marker of their own (`asyncio` with
    another loop scope, `anyio`) are left alone, and so are all tests that use none of ours."""
    if not isinstance(collector, pytest.Module | pytest.Class):
        return
    if not (inspect.iscoroutinefunction(obj) and collector.funcnamefilter(name)):
        return
    marks = {mark.name for mark in getattr(obj, "pytestmark", [])}
    if marks & {"asyncio", "anyio"} or collector.get_closest_marker("asyncio") is not None:
        return
    if any(param.startswith("taskstream_") for param in inspect.signature(obj).parameters):
        pytest.mark.asyncio(obj)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def taskstream_cluster(request: pytest.FixtureRequest) -> AsyncIterator[ReferenceCluster]:
    """The embedded reference cluster (fault injection: `.instances[i].kill()`, `.nats`...)."""
    if request.config.getoption("--taskstream-target"):
        pytest.skip("a target file was given: the embedded cluster is not started")
    missing = missing_server_extra()
    if missing is not None:
        pytest.skip(missing)
    instances = request.config.getoption("--taskstream-instances")
    cluster = ReferenceCluster(instances=instances, nats=instances > 1, settings=CLUSTER_SETTINGS)
    try:
        await cluster.start()
    except ServiceUnavailable as error:
        await cluster.stop()
        pytest.skip(f"cannot start the embedded cluster: {error}")
    yield cluster
    await cluster.stop()


@pytest.fixture(scope="session")
def taskstream_target(request: pytest.FixtureRequest) -> Target:
    """The implementation under test: from the target file, or the embedded cluster."""
    path = request.config.getoption("--taskstream-target")
    if not path:
        cluster: ReferenceCluster = request.getfixturevalue("taskstream_cluster")
        return cluster.target()
    targets = load_targets(path)
    name = request.config.getoption("--taskstream-target-name")
    if name is None:
        return targets[0]
    for target in targets:
        if target.name == name:
            return target
    raise pytest.UsageError(f"no target named {name!r} in {path}")


@pytest_asyncio.fixture
async def taskstream_world(taskstream_target: Target) -> AsyncIterator[TenantWorld]:
    """A fresh tenant with user and worker tokens on the target; closed after the test."""
    world = await TenantWorld.for_target(taskstream_target)
    yield world
    await world.close()


@pytest_asyncio.fixture
async def taskstream_publisher(taskstream_world: TenantWorld) -> AsyncIterator[Publisher]:
    """A gRPC publisher with the world's worker token, on the target's first instance."""
    async with taskstream_world.publisher() as publisher:
        yield publisher
