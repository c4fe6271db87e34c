"""SPEC §3.2: credentials of StreamTaskData."""

from __future__ import annotations

import asyncio
import secrets

from conformance import requirement
from conformance.checks import expect, expect_all
from conformance.fixtures import Facts
from conformance.wire import eventually, new_id, rpc_status
from harness.publisher import Publisher, build_request
from harness.world import TenantWorld


async def _status_with_metadata(
    world: TenantWorld, workflow: str, metadata: list[tuple[str, str]]
) -> str:
    request = build_request(
        workflow_id=workflow, task_id=new_id(), event_type="token", payload="x", sequence=1
    )
    async with Publisher(world.grpc_address, None) as pub:
        return await rpc_status(pub.send_request(request, metadata=metadata))


async def _status_with_token(world: TenantWorld, workflow: str, token: str) -> str:
    return await _status_with_metadata(world, workflow, [("authorization", f"Bearer {token}")])


@requirement("grpc/3.2/1")
async def test_missing_credentials_are_unauthenticated(world: TenantWorld) -> None:
    wf = await world.workflow()
    expect(
        "status without authorization",
        await _status_with_metadata(world, wf, []),
        "UNAUTHENTICATED",
    )


@requirement("grpc/3.2/2")
async def test_malformed_credentials_are_unauthenticated(world: TenantWorld) -> None:
    wf = await world.workflow()
    token = world.worker.token
    probes = {
        "Token <worker>": f"Token {token}",
        "Bearer": "Bearer",
        "Bearer a b": "Bearer a b",
        "<worker> without scheme": token,
    }
    statuses: dict[str, object] = {
        name: await _status_with_metadata(world, wf, [("authorization", value)])
        for name, value in probes.items()
    }
    expect_all("status with a malformed authorization", statuses, "UNAUTHENTICATED")


@requirement("grpc/3.2/3")
async def test_unknown_token_is_unauthenticated(world: TenantWorld) -> None:
    wf = await world.workflow()
    statuses: dict[str, object] = {
        "fwt_<random>": await _status_with_token(world, wf, "fwt_" + secrets.token_urlsafe(32)),
        "<random>": await _status_with_token(world, wf, secrets.token_hex(24)),
    }
    expect_all("status with an unknown token", statuses, "UNAUTHENTICATED")


@requirement("grpc/3.2/4")
async def test_expired_worker_token_is_unauthenticated(world: TenantWorld) -> None:
    wf = await world.workflow()
    worker = await world.api.create_token(world.slug, "worker", ttl_seconds=1)
    await asyncio.sleep(1.5)  # nothing to await: the expiry is the server's clock
    expect(
        "status with an expired worker token",
        await _status_with_token(world, wf, worker.token),
        "UNAUTHENTICATED",
    )


@requirement("grpc/3.2/5")
async def test_revoked_worker_token_is_refused_on_its_next_call(
    world: TenantWorld, facts: Facts
) -> None:
    wf = await world.workflow()
    worker = await world.api.create_token(world.slug, "worker")
    expect("status before revocation", await _status_with_token(world, wf, worker.token), "OK")
    await world.api.revoke_token(worker.id)
    status = await eventually(
        lambda: _status_with_token(world, wf, worker.token),
        "UNAUTHENTICATED",
        facts.revocation_grace,
    )
    expect("status after revocation", status, "UNAUTHENTICATED")


@requirement("grpc/3.2/6")
async def test_user_token_cannot_publish(world: TenantWorld) -> None:
    wf = await world.workflow()
    expect(
        "status with a user token",
        await _status_with_token(world, wf, world.user.token),
        "PERMISSION_DENIED",
    )
