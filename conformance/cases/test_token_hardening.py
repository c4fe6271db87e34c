"""SPEC §4.1 to 4.3, hardening: undecodable credentials, the admin token, user tokens in URLs
beside a header, and stream tokens that can be revoked and die with their minting user token."""

from __future__ import annotations

import asyncio

from conformance import requirement
from conformance.checks import Band, expect, expect_that, informational
from conformance.fixtures import Facts
from conformance.wire import auth_expired_then_closed, sse_answer
from harness.sse_client import SSEStream
from harness.wire.raw import raw_head
from harness.world import TenantWorld


@requirement("sse/4.1/9")
async def test_undecodable_credentials_are_401(world: TenantWorld) -> None:
    wf = await world.workflow()
    # Sent as latin-1: the three bytes 0xff 0xfe 0x80, which no UTF-8 decoder accepts.
    head = await raw_head(world.workflow_url(wf), [("Authorization", "Bearer fut_\xff\xfe\x80")])
    expect("status with non-UTF-8 bytes in Authorization", head.status, 401)


@requirement("sse/4.1/10")
async def test_admin_token_opens_no_stream(world: TenantWorld, facts: Facts) -> None:
    admin = facts.target.secret("admin_token")
    if not admin:
        informational("the target file gives no admin token to try")
    wf = await world.workflow()
    answer = await sse_answer(world.workflow_url(wf), token=admin)
    expect("status with the admin token", answer.status, 403)


@requirement("sse/4.2/6")
async def test_user_token_in_url_is_refused_beside_a_valid_header(world: TenantWorld) -> None:
    wf = await world.workflow()
    url = world.workflow_url(wf, query={"access_token": world.user.token})
    answer = await sse_answer(url, token=world.user.token)
    expect("status with a user token in the URL and in the header", answer.status, 401)


@requirement("sse/4.3/3")
async def test_revoking_a_stream_token_ends_its_streams(world: TenantWorld) -> None:
    wf = await world.workflow()
    issued = await world.api.issue_stream_token(world.slug, workflow=wf)
    expect_that("the issued stream token's id", bool(issued.id), "an id", issued.id or "(none)")
    url = world.workflow_url(wf, query={"access_token": issued.token})
    async with SSEStream.open(url) as stream:
        expect("status with the stream token", stream.status, 200)
        await world.api.revoke_token(issued.id)
        revoked = asyncio.get_running_loop().time()
        await auth_expired_then_closed(stream, revoked, Band(0.0, 5.0, 10.0))


@requirement("sse/4.3/4")
async def test_stream_token_dies_with_its_minting_user_token(world: TenantWorld) -> None:
    wf = await world.workflow()
    minter = await world.api.create_token(world.slug, "user")
    issued = await world.api.issue_stream_token(world.slug, workflow=wf, minted_with=minter.token)
    url = world.workflow_url(wf, query={"access_token": issued.token})
    async with SSEStream.open(url) as stream:
        expect("status with the stream token", stream.status, 200)
        await world.api.revoke_token(minter.id)
        revoked = asyncio.get_running_loop().time()
        await auth_expired_then_closed(stream, revoked, Band(0.0, 5.0, 10.0))
