"""The pytest plugin used as an outside project would: a throwaway test directory with no pytest
configuration (`pytester`), and the README's example pasted into it as it stands."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_harness_example() -> str:
    """The first Python block of the README's "Write tests with the harness" section."""
    section = README.read_text(encoding="utf-8").split("## Write tests with the harness", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README.md has no Python example under 'Write tests with the harness'"
    return match.group(1)


OUTSIDE_TEST = readme_harness_example()


def test_outside_project_against_the_embedded_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outside=OUTSIDE_TEST)
    result = pytester.runpytest_subprocess("--taskstream-instances", "1", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


async def test_outside_project_against_a_target_file(pytester: pytest.Pytester, server) -> None:  # type: ignore[no-untyped-def]
    """The same test pointed at a running server through a target file (the server runs in
    this test's event loop, so the outside run goes to a thread)."""
    pytester.makepyfile(test_outside=OUTSIDE_TEST)
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


def test_async_tests_without_our_fixtures_are_left_to_pytest_asyncio(
    pytester: pytest.Pytester,
) -> None:
    """Strict mode stays strict for everything else: the plugin marks only tests that use it."""
    pytester.makepyfile(test_other="async def test_other():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.parseoutcomes().get("passed", 0) == 0


def test_unknown_target_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(taskstream_target):\n    pass\n")
    target = pytester.makefile(".toml", target='[[target]]\nhttp = "http://x"\ngrpc = "x:1"\n')
    result = pytester.runpytest_subprocess(
        "--taskstream-target", str(target), "--taskstream-target-name", "nope"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*no target named 'nope'*"])
