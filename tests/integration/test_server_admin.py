"""The management API, discovery, health and problem responses (openapi.yaml; SPEC.md §7)."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from harness.admin import ApiError, ManagementClient
from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration


async def test_duplicate_tenant_is_409(server: Server) -> None:
    async with ManagementClient(server.http_url, server.admin_token) as api:
        tenant = await api.create_tenant()
        with pytest.raises(ApiError) as err:
            await api.create_tenant(tenant.slug)
    assert err.value.status == 409
    assert err.value.problem["status"] == 409


@pytest.mark.parametrize("body", [None, {"slug": ""}, {"slug": "UPPER"}, {"slug": 5}, {"x": 1}])
async def test_bad_tenant_requests_are_400(server: Server, body: object) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            server.http_url + "/api/admin/tenants",
            data=b"[not json" if body is None else None,
            json=body if body is not None else None,
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )
        assert response.status == 400
        assert response.content_type == "application/problem+json"


async def test_admin_endpoints_need_the_admin_token(world: TenantWorld) -> None:
    api = ManagementClient(world.http_url, world.user.token)
    with pytest.raises(ApiError) as err:
        await api.create_tenant()
    await api.close()
    assert err.value.status == 403


async def test_tenant_endpoints_refuse_other_tenants(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    with pytest.raises(ApiError) as err:
        await world.api.create_workflow(other_world.slug, token=world.user.token)
    assert err.value.status == 403


async def test_workflow_shows_its_children(world: TenantWorld) -> None:
    root = await world.workflow()
    child = await world.workflow(parent=root)
    assert isinstance(world.api, ManagementClient)
    body = await world.api.get_workflow(world.slug, root)
    assert [c["id"] for c in body["children"]] == [child]
    assert body["status"] == "RUNNING"


async def test_parent_in_another_tenant_is_not_found(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    theirs = await other_world.workflow()
    with pytest.raises(ApiError) as err:
        await world.workflow(parent=theirs)
    assert err.value.status == 404


async def test_complete_rejects_non_terminal_status(world: TenantWorld) -> None:
    wf = await world.workflow()
    with pytest.raises(ApiError) as err:
        await world.api.complete_workflow(world.slug, wf, "RUNNING")
    assert err.value.status == 400


async def test_unknown_route_and_method_are_problem_json(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        missing = await http.get(server.http_url + "/nope")
        wrong = await http.delete(server.http_url + "/api/admin/tenants")
    assert (missing.status, missing.content_type) == (404, "application/problem+json")
    assert (wrong.status, wrong.content_type) == (405, "application/problem+json")


async def test_discovery_document_states_the_timings(server: Server) -> None:
    async with ManagementClient(server.http_url, server.admin_token) as api:
        doc = await api.discovery()
    assert doc["keepaliveIntervalSeconds"] == 1.0
    assert doc["grpc"]["address"] == server.grpc_address
    assert {"core", "consolidated", "resume", "lifecycle"} <= set(doc["profiles"])


async def test_health_endpoints(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        live = await http.get(server.http_url + "/health/live")
        ready = await http.get(server.http_url + "/health/ready")
        body = await ready.json()
    assert (live.status, ready.status) == (200, 200)
    assert body["checks"] == {"store": "up", "bus": "up", "accepting": "yes"}


async def test_tokens_are_stored_hashed(world: TenantWorld, pg_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch("SELECT token_hash FROM api_token")
    finally:
        await conn.close()
    stored = {bytes(r["token_hash"]) for r in rows}
    assert world.user.token.encode() not in stored
    assert all(len(h) == 32 for h in stored)


async def test_responses_carry_a_request_id(world: TenantWorld, server: Server) -> None:
    """Ours when the caller sends none or a bad one; the caller's when it is sane."""
    async with aiohttp.ClientSession() as http:
        ours = await http.get(server.http_url + "/health/live")
        theirs = await http.get(server.http_url + "/nope", headers={"X-Request-ID": "abc-123"})
        bogus = await http.get(server.http_url + "/health/live", headers={"X-Request-ID": "a b"})
    assert len(ours.headers["X-Request-ID"]) == 16
    assert theirs.headers["X-Request-ID"] == "abc-123"
    assert bogus.headers["X-Request-ID"] != "a b"
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream:
        assert "X-Request-ID" in stream.headers


async def test_stream_tokens_are_revoked_only_by_their_own_tenant(
    world: TenantWorld, other_world: TenantWorld
) -> None:
    assert isinstance(world.api, ManagementClient)
    wf = await world.workflow()
    issued = await world.api.issue_stream_token(world.slug, workflow=wf)
    statuses = {}
    for name, slug, token in (
        ("another tenant's user, its own path", other_world.slug, other_world.user.token),
        ("another tenant's user, this path", world.slug, other_world.user.token),
        ("this tenant's worker", world.slug, world.worker.token),
        ("the stream token itself", world.slug, issued.token),
    ):
        with pytest.raises(ApiError) as err:
            await world.api.revoke_stream_token(slug, issued.id, token=token)
        statuses[name] = err.value.status
    assert statuses == {
        "another tenant's user, its own path": 404,
        "another tenant's user, this path": 403,
        "this tenant's worker": 403,
        "the stream token itself": 403,
    }
    with pytest.raises(ApiError) as err:  # a user token is no stream token
        await world.api.revoke_stream_token(world.slug, world.user.id, token=world.user.token)
    assert err.value.status == 404
    await world.api.revoke_stream_token(world.slug, issued.id, token=world.user.token)
    await world.api.revoke_stream_token(world.slug, issued.id)  # idempotent, as the admin


async def test_a_stream_token_expires_no_later_than_its_minting_user_token(
    world: TenantWorld,
) -> None:
    assert isinstance(world.api, ManagementClient)
    wf = await world.workflow()
    minter = await world.api.create_token(world.slug, "user", ttl_seconds=60)
    issued = await world.api.issue_stream_token(
        world.slug, workflow=wf, ttl_seconds=900, minted_with=minter.token
    )
    assert issued.expires_at is not None and minter.expires_at is not None
    expiry = dt.datetime.fromisoformat
    assert expiry(issued.expires_at) <= expiry(minter.expires_at)
