"""SPEC §4.1 to 4.3: credentials of SSE streams, tokens in URLs, credentials ending mid-stream."""

from __future__ import annotations

import asyncio
import secrets

from conformance import requirement
from conformance.checks import Band, expect, expect_all, expect_that
from conformance.fixtures import Facts
from conformance.wire import auth_expired_then_closed, eventually, new_id, sse_answer
from harness.sse_client import SSEStream
from harness.world import TenantWorld


@requirement("sse/4.1/1")
async def test_user_token_of_the_tenant_opens_a_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    answer = await sse_answer(world.workflow_url(wf), token=world.user.token)
    expect("status with the tenant's user token", answer.status, 200)


@requirement("sse/4.1/2")
async def test_missing_credentials_are_401(world: TenantWorld) -> None:
    wf = await world.workflow()
    expect("status without credentials", (await sse_answer(world.workflow_url(wf))).status, 401)


@requirement("sse/4.1/3")
async def test_malformed_credentials_are_401(world: TenantWorld) -> None:
    wf = await world.workflow()
    probes = {
        "Basic": "Basic Zm9vOmJhcg==",
        "Bearer": "Bearer",
        "Bearer a b": "Bearer a b",
        "<user token> without scheme": world.user.token,
    }
    statuses: dict[str, object] = {}
    for name, value in probes.items():
        answer = await sse_answer(world.workflow_url(wf), headers={"Authorization": value})
        statuses[name] = answer.status
    expect_all("status with a malformed Authorization header", statuses, 401)


@requirement("sse/4.1/4")
async def test_unknown_token_is_401(world: TenantWorld) -> None:
    wf = await world.workflow()
    statuses: dict[str, object] = {}
    for token in ("fut_" + secrets.token_urlsafe(32), secrets.token_hex(24)):
        statuses[token[:8] + "…"] = (await sse_answer(world.workflow_url(wf), token=token)).status
    expect_all("status with an unknown token", statuses, 401)


@requirement("sse/4.1/5")
async def test_expired_token_is_401(world: TenantWorld) -> None:
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user", ttl_seconds=1)
    await asyncio.sleep(1.5)  # nothing to await: the expiry is the server's clock
    answer = await sse_answer(world.workflow_url(wf), token=user.token)
    expect("status with an expired token", answer.status, 401)


@requirement("sse/4.1/6")
async def test_revoked_token_is_401_on_its_next_request(world: TenantWorld, facts: Facts) -> None:
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user")
    before = await sse_answer(world.workflow_url(wf), token=user.token)
    await world.api.revoke_token(user.id)

    async def status() -> int:
        return (await sse_answer(world.workflow_url(wf), token=user.token)).status

    after = await eventually(status, 401, facts.revocation_grace)
    expect("statuses before and after revocation", (before.status, after), (200, 401))


@requirement("sse/4.1/7")
async def test_worker_token_is_403(world: TenantWorld) -> None:
    wf = await world.workflow()
    answer = await sse_answer(world.workflow_url(wf), token=world.worker.token)
    expect("status with a worker token", answer.status, 403)


@requirement("sse/4.1/8")
async def test_every_401_carries_www_authenticate_bearer(world: TenantWorld) -> None:
    wf = await world.workflow()
    url = world.workflow_url(wf)
    probes = {
        "no credentials": await sse_answer(url),
        "malformed header": await sse_answer(url, headers={"Authorization": "Basic Zm9vOmJhcg=="}),
        "unknown token": await sse_answer(url, token="fut_" + secrets.token_urlsafe(32)),
        "user token in URL": await sse_answer(
            world.workflow_url(wf, query={"access_token": world.user.token})
        ),
    }
    schemes: dict[str, object] = {
        name: (answer.header("WWW-Authenticate") or "(absent)").split(" ")[0].lower()
        for name, answer in probes.items()
        if answer.status == 401
    }
    expect_that(
        "401 responses to inspect",
        bool(schemes),
        "at least one 401",
        {name: a.status for name, a in probes.items()},
    )
    expect_all("WWW-Authenticate scheme of each 401", schemes, "bearer")


@requirement("sse/4.2/1")
async def test_long_lived_token_in_the_url_is_refused(world: TenantWorld) -> None:
    wf = await world.workflow()
    statuses: dict[str, object] = {}
    for kind, token in (("user", world.user.token), ("worker", world.worker.token)):
        url = world.workflow_url(wf, query={"access_token": token})
        statuses[f"{kind} token in access_token"] = (await sse_answer(url)).status
    expect_all("status with a long-lived token in the URL", statuses, 401)


@requirement("sse/4.2/2")
async def test_stream_token_in_the_url_opens_its_workflow(world: TenantWorld) -> None:
    wf = await world.workflow()
    token = await world.api.stream_token(world.slug, workflow=wf)
    url = world.workflow_url(wf, query={"access_token": token})
    async with SSEStream.open(url) as stream, world.publisher() as pub:
        expect("status with a stream token in the URL", stream.status, 200)
        await pub.token("for the browser", workflow_id=wf, task_id=new_id())
        event = await stream.next_event()
    expect("event received", event.data, "for the browser")


@requirement("sse/4.2/3")
async def test_stream_token_of_another_scope_is_403(world: TenantWorld) -> None:
    scoped, other = await world.workflow(), await world.workflow()
    token = await world.api.stream_token(world.slug, workflow=scoped)
    answer = await sse_answer(world.workflow_url(other, query={"access_token": token}))
    expect("status of another workflow with a scoped stream token", answer.status, 403)


@requirement("sse/4.2/4")
async def test_workflow_stream_token_opens_its_consolidated_stream(
    world: TenantWorld, facts: Facts
) -> None:
    facts.require_profile("consolidated")
    wf = await world.workflow()
    token = await world.api.stream_token(world.slug, workflow=wf)
    url = world.workflow_url(wf, consolidated=True, query={"access_token": token})
    expect("status of the consolidated stream", (await sse_answer(url)).status, 200)


@requirement("sse/4.2/5")
async def test_stream_token_is_accepted_in_the_header(world: TenantWorld) -> None:
    wf = await world.workflow()
    token = await world.api.stream_token(world.slug, workflow=wf)
    answer = await sse_answer(world.workflow_url(wf), token=token)
    expect("status with a stream token in the header", answer.status, 200)


@requirement("sse/4.3/1")
async def test_revoking_an_open_streams_token_ends_it(world: TenantWorld) -> None:
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user")
    async with await world.subscribe(wf, token=user.token) as stream:
        await world.api.revoke_token(user.id)
        revoked = asyncio.get_running_loop().time()
        await auth_expired_then_closed(stream, revoked, Band(0.0, 5.0, 10.0))


@requirement("sse/4.3/2")
async def test_token_expiring_mid_stream_ends_the_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user", ttl_seconds=2)
    expiry = asyncio.get_running_loop().time() + 2
    async with await world.subscribe(wf, token=user.token) as stream:
        expect("status while the token is valid", stream.status, 200)
        await auth_expired_then_closed(stream, expiry, Band(-0.5, 5.0, 10.0))
