"""SPEC §3.3: the INVALID_ARGUMENT matrix of StreamTaskData."""

from __future__ import annotations

from conformance import requirement
from conformance.checks import expect, expect_all, expect_that
from conformance.fixtures import Facts
from conformance.wire import new_id, rpc_status
from harness.world import TenantWorld

NOT_UUIDS = ("not-a-uuid", "123")


def _not_uuids() -> tuple[str, ...]:
    return (*NOT_UUIDS, new_id() + "0")


@requirement("grpc/3.3/1")
async def test_event_type_outside_range_is_invalid_argument(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        statuses: dict[str, object] = {
            f"type={kind}": await rpc_status(pub.send(kind, "x", workflow_id=wf, task_id=new_id()))
            for kind in (0, 5, 99, -1)
        }
    expect_all("status of an unknown event type", statuses, "INVALID_ARGUMENT")


@requirement("grpc/3.3/2")
async def test_workflow_id_not_uuid_is_invalid_argument(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        statuses: dict[str, object] = {
            f"workflow={bad!r}": await rpc_status(
                pub.send("token", "x", workflow_id=bad, task_id=new_id())
            )
            for bad in _not_uuids()
        }
    expect_all("status of a malformed workflow id", statuses, "INVALID_ARGUMENT")


@requirement("grpc/3.3/3")
async def test_task_id_not_uuid_is_invalid_argument(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with world.publisher() as pub:
        statuses: dict[str, object] = {
            f"task={bad!r}": await rpc_status(pub.send("token", "x", workflow_id=wf, task_id=bad))
            for bad in ("nope", *_not_uuids()[1:])
        }
    expect_all("status of a malformed task id", statuses, "INVALID_ARGUMENT")


@requirement("grpc/3.3/4")
async def test_both_ids_empty_is_invalid_argument(world: TenantWorld) -> None:
    async with world.publisher() as pub:
        status = await rpc_status(pub.send("token", "x", workflow_id="", task_id=""))
    expect("status with both ids empty", status, "INVALID_ARGUMENT")


def _payload_of(size: int) -> str:
    """`size` UTF-8 bytes: two-byte characters, then ASCII to make up the rest."""
    return "é" * (size // 4) + "a" * (size - 2 * (size // 4))


@requirement("grpc/3.3/5")
async def test_payload_at_the_limit_is_accepted_intact(world: TenantWorld, facts: Facts) -> None:
    payload = _payload_of(facts.max_payload_bytes)
    assert len(payload.encode()) == facts.max_payload_bytes
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        status = await rpc_status(pub.data(payload, workflow_id=wf, task_id=new_id()))
        expect(f"status of a {facts.max_payload_bytes}-byte payload", status, "OK")
        event = await stream.next_event()
    expect_that(
        "delivered payload",
        event.data == payload,
        f"the payload unchanged ({len(payload)} characters)",
        f"{len(event.data)} characters, first change at {_first_difference(event.data, payload)}",
    )


def _first_difference(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


@requirement("grpc/3.3/6")
async def test_payload_over_the_limit_is_invalid_argument(world: TenantWorld, facts: Facts) -> None:
    payload = "é" * (facts.max_payload_bytes // 2) + "a"  # one byte over, half as many chars
    wf = await world.workflow()
    async with world.publisher() as pub:
        status = await rpc_status(pub.data(payload, workflow_id=wf, task_id=new_id()))
    expect(
        f"status of a {len(payload.encode())}-byte payload ({len(payload)} characters)",
        status,
        "INVALID_ARGUMENT",
    )
