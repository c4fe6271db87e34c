"""SPEC §4.4: the order of checks, tenant isolation on the read path, problem+json."""

from __future__ import annotations

import json

from conformance import requirement
from conformance.checks import expect, expect_all
from conformance.fixtures import Facts
from conformance.wire import new_id, sse_answer
from harness.world import TenantWorld


def _bad_ids() -> tuple[str, ...]:
    return ("not-a-uuid", "123", new_id() + "0")


@requirement("sse/4.4/1")
async def test_401_comes_before_400(world: TenantWorld) -> None:
    answer = await sse_answer(world.url("workflows/not-a-uuid"))
    expect("status without credentials for a malformed id", answer.status, 401)


@requirement("sse/4.4/2")
async def test_id_that_is_not_a_uuid_is_400(world: TenantWorld, facts: Facts) -> None:
    paths = ["workflows/{}"]
    if facts.target.has("consolidated"):
        paths.append("workflows/{}/consolidated")
    if facts.target.has("standalone-tasks"):
        paths.append("tasks/{}")
    statuses: dict[str, object] = {}
    for path in paths:
        for bad in _bad_ids():
            answer = await sse_answer(world.url(path.format(bad)), token=world.user.token)
            statuses[path.format(bad)] = answer.status
    expect_all("status for a malformed id", statuses, 400)


@requirement("sse/4.4/3")
async def test_400_comes_before_the_tenant_check(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    answer = await sse_answer(world.url("workflows/not-a-uuid"), token=other_world.user.token)
    expect("status for a malformed id with another tenant's token", answer.status, 400)


@requirement("sse/4.4/4")
async def test_token_of_another_tenant_is_403_before_404(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    existing = await world.workflow()
    statuses: dict[str, object] = {}
    for name, wf in (("unknown workflow", new_id()), ("existing workflow", existing)):
        answer = await sse_answer(world.workflow_url(wf), token=other_world.user.token)
        statuses[name] = answer.status
    expect_all("status on tenant A's path with tenant B's token", statuses, 403)


@requirement("sse/4.4/5")
async def test_unknown_workflow_is_404(world: TenantWorld) -> None:
    answer = await sse_answer(world.workflow_url(new_id()), token=world.user.token)
    expect("status of an unknown workflow", answer.status, 404)


@requirement("sse/4.4/6")
async def test_another_tenants_workflow_is_403(
    world: TenantWorld, other_world: TenantWorld, facts: Facts
) -> None:
    theirs = await other_world.workflow()
    statuses: dict[str, object] = {
        "plain": (await sse_answer(world.workflow_url(theirs), token=world.user.token)).status
    }
    if facts.target.has("consolidated"):
        url = world.workflow_url(theirs, consolidated=True)
        statuses["consolidated"] = (await sse_answer(url, token=world.user.token)).status
    expect_all("status of another tenant's workflow on one's own path", statuses, 403)


@requirement("sse/4.4/7")
async def test_errors_are_problem_json(world: TenantWorld, other_world: TenantWorld) -> None:
    wf = await world.workflow()
    theirs = await other_world.workflow()
    token = world.user.token
    probes = {
        "401": await sse_answer(world.workflow_url(wf)),
        "400": await sse_answer(world.url("workflows/not-a-uuid"), token=token),
        "403": await sse_answer(world.workflow_url(theirs), token=token),
        "404": await sse_answer(world.workflow_url(new_id()), token=token),
    }
    problems: dict[str, object] = {}
    for name, answer in probes.items():
        problems[name] = _problem_defect(answer.status, answer.content_type, answer.body)
    expect_all("problem+json defects per error response", problems, None)


def _problem_defect(status: int, media_type: str, body: str | None) -> str | None:
    """What makes an error response not RFC 9457 problem+json (None when it is)."""
    if status < 400:
        return f"status {status} is not an error"
    if media_type != "application/problem+json":
        return f"media type {media_type!r}"
    try:
        value = json.loads(body or "")
    except ValueError:
        return f"body is not JSON: {(body or '')[:80]!r}"
    if not isinstance(value, dict):
        return "body is not a JSON object"
    if "status" in value and value["status"] != status:
        return f"member status {value['status']!r} differs from the HTTP status {status}"
    return None
