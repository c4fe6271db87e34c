"""The pytest plugin used as an outside project would: a throwaway test directory, `pytester`."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

OUTSIDE_TEST = """
async def test_event_arrives(taskstream_world, taskstream_publisher):
    wf = await taskstream_world.workflow()
    task = await taskstream_world.task(wf)
    async with await taskstream_world.subscribe(wf) as stream:
        assert await taskstream_publisher.token("hi", workflow_id=wf, task_id=task)
        event = await stream.next_event()
    assert (event.event, event.data) == ("token", "hi")
"""


def test_outside_project_against_the_embedded_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outside=OUTSIDE_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess("--taskstream-instances", "1", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


async def test_outside_project_against_a_target_file(pytester: pytest.Pytester, server) -> None:  # type: ignore[no-untyped-def]
    """The same test pointed at a running server through a target file (the server runs in
    this test's event loop, so the outside run goes to a thread)."""
    pytester.makepyfile(test_outside=OUTSIDE_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    target = pytester.makefile(
        ".toml",
        target=f"""
[[target]]
name = "in-process"
http = ["{server.http_url}"]
grpc = ["{server.grpc_address}"]
profiles = ["core"]

[target.provisioner]
kind = "admin-api"
admin_token = "{server.admin_token}"
""",
    )
    result = await asyncio.to_thread(
        pytester.runpytest_subprocess, "--taskstream-target", str(target)
    )
    result.assert_outcomes(passed=1)


def test_unknown_target_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(taskstream_target):\n    pass\n")
    target = pytester.makefile(".toml", target='[[target]]\nhttp = "http://x"\ngrpc = "x:1"\n')
    result = pytester.runpytest_subprocess(
        "--taskstream-target", str(target), "--taskstream-target-name", "nope"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*no target named 'nope'*"])
