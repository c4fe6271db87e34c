"""SSE authentication, check order and tenant isolation (seed 10.2-10.5; SPEC.md §4.1, §4.4)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from harness.sse_client import SSEStream
from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration


async def _status(url: str, token: str | None = None, **kw: object) -> tuple[int, dict[str, str]]:
    async with SSEStream.open(url, token=token, **kw) as stream:  # type: ignore[arg-type]
        headers = dict(stream.headers)
        if stream.status != 200:
            problem = await stream.problem()
            assert headers["Content-Type"].startswith("application/problem+json")
            assert problem["status"] == stream.status
        return stream.status, headers


async def test_missing_token_is_401_with_www_authenticate(world: TenantWorld) -> None:
    wf = await world.workflow()
    status, headers = await _status(world.workflow_url(wf))
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["fut_unknown", "garbage with spaces"])
async def test_unknown_or_malformed_token_is_401(world: TenantWorld, token: str) -> None:
    wf = await world.workflow()
    status, _ = await _status(world.workflow_url(wf), headers={"Authorization": f"Bearer {token}"})
    assert status == 401


async def test_non_bearer_scheme_is_401(world: TenantWorld) -> None:
    wf = await world.workflow()
    status, _ = await _status(
        world.workflow_url(wf), headers={"Authorization": "Basic Zm9vOmJhcg=="}
    )
    assert status == 401


async def test_check_order_401_before_400(world: TenantWorld) -> None:
    assert (await _status(world.workflow_url("not-a-uuid")))[0] == 401


async def test_invalid_id_is_400(world: TenantWorld) -> None:
    for path in ("workflows/not-a-uuid", "workflows/123/consolidated", "tasks/zz"):
        assert (await _status(world.url(path), world.user.token))[0] == 400


async def test_unknown_workflow_is_404(world: TenantWorld) -> None:
    status, _ = await _status(world.workflow_url(str(uuid.uuid4())), world.user.token)
    assert status == 404


async def test_token_of_another_tenant_is_403_before_404(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    url = world.workflow_url(str(uuid.uuid4()))
    assert (await _status(url, other_world.user.token))[0] == 403


async def test_workflow_of_another_tenant_is_403(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    theirs = await other_world.workflow()
    for consolidated in (False, True):
        url = world.workflow_url(theirs, consolidated=consolidated)
        assert (await _status(url, world.user.token))[0] == 403


async def test_worker_token_cannot_open_streams(world: TenantWorld) -> None:
    wf = await world.workflow()
    assert (await _status(world.workflow_url(wf), world.worker.token))[0] == 403


async def test_user_token_in_the_url_is_refused(world: TenantWorld) -> None:
    wf = await world.workflow()
    url = world.workflow_url(wf, query={"access_token": world.user.token})
    assert (await _status(url))[0] == 401


async def test_stream_token_in_the_url_opens_its_workflow_only(world: TenantWorld) -> None:
    wf, other = await world.workflow(), await world.workflow()
    token = await world.api.stream_token(world.slug, workflow=wf)
    assert (await _status(world.workflow_url(wf, query={"access_token": token})))[0] == 200
    consolidated = world.workflow_url(wf, consolidated=True, query={"access_token": token})
    assert (await _status(consolidated))[0] == 200
    assert (await _status(world.workflow_url(other, query={"access_token": token})))[0] == 403
    assert (await _status(world.workflow_url(wf), token))[0] == 200  # in the header too


async def test_stream_token_ttl_is_capped(world: TenantWorld) -> None:
    wf = await world.workflow()
    with pytest.raises(Exception, match="400"):
        await world.api.stream_token(world.slug, workflow=wf, ttl_seconds=901)


async def test_cross_tenant_publish_is_denied_and_reaches_nobody(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    import grpc

    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, other_world.publisher() as intruder:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await intruder.token("intrusion", workflow_id=wf, task_id=str(uuid.uuid4()))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await stream.assert_no_event(within=0.5)


async def test_revoking_a_token_ends_its_open_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user")
    async with await world.subscribe(wf, token=user.token) as stream:
        await world.api.revoke_token(user.id)
        event = await stream.next_event(timeout=5)
        await stream.wait_closed(5)
    assert event.event == "auth-expired"
    assert (await _status(world.workflow_url(wf), user.token))[0] == 401


async def test_revocation_on_another_instance_ends_the_stream(
    make_server, world: TenantWorld, server: Server
) -> None:  # type: ignore[no-untyped-def]
    """Two servers on one database: revocation through A reaches a stream on B (store poll)."""
    b: Server = await make_server()
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user")
    async with await world.subscribe(wf, token=user.token, base=b.http_url) as stream:
        await world.api.revoke_token(user.id)
        assert (await stream.next_event(timeout=5)).event == "auth-expired"


async def test_token_expiring_mid_stream_ends_it(world: TenantWorld) -> None:
    wf = await world.workflow()
    user = await world.api.create_token(world.slug, "user", ttl_seconds=2)
    async with await world.subscribe(wf, token=user.token) as stream:
        event = await stream.next_event(timeout=5)
        await stream.wait_closed(2)
    assert event.event == "auth-expired"


async def test_per_tenant_stream_limit_answers_429(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = await make_server(max_streams_per_tenant=2)
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    wf = await world.workflow()
    held = [await world.subscribe(wf), await world.subscribe(wf)]
    status, headers = await _status(world.workflow_url(wf), world.user.token)
    for s in held:
        await s.close()
    await asyncio.sleep(0.2)
    status_after, _ = await _status(world.workflow_url(wf), world.user.token)
    await world.close()
    assert status == 429
    assert int(headers["Retry-After"]) > 0
    assert status_after == 200
