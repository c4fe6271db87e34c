"""Apply a fault schedule to an embedded `ReferenceCluster`, noting when each fault really began
and ended (a fault waits until the system is whole again: every instance ready, every NATS node
healthy and caught up, so no fault ever stacks on the last one's damage)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from harness.cluster import ReferenceCluster
from harness.services import wait_until

from .load import Record
from .schedule import Fault

log = logging.getLogger(__name__)
HEAL_TIMEOUT = 60.0


class FaultInjector:
    def __init__(self, cluster: ReferenceCluster, record: Record, stream_name: str) -> None:
        self.cluster, self.record = cluster, record
        self._stream_name = stream_name
        self.applied: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []

    async def run(self, faults: list[Fault], stop: asyncio.Event) -> None:
        for fault in faults:
            await self._healed()
            delay = fault.at - self.record.now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
            if stop.is_set():
                return
            try:
                await self._apply(fault)
            except Exception as error:  # keep going: the report shows the fault that failed
                log.exception("fault %s on %d failed", fault.kind, fault.target)
                self.failed.append({**fault.to_dict(), "error": repr(error)})

    async def _apply(self, fault: Fault) -> None:
        entry: dict[str, Any] = {"kind": fault.kind, "target": fault.target}
        if fault.kind == "nats-kill":
            entry["leader"] = await self._stream_leader() == fault.target
        entry["at"] = round(self.record.now(), 3)
        log.info("fault %s on %d for %.1fs", fault.kind, fault.target, fault.duration)
        if fault.kind == "instance-kill":
            instance = self.cluster.instances[fault.target]
            instance.kill()
            await asyncio.sleep(fault.duration)
            await instance.start()
        elif fault.kind == "nats-kill":
            nodes = self.cluster.nats_cluster
            assert nodes is not None
            nodes.nodes[fault.target].kill()
            await asyncio.sleep(fault.duration)
            await nodes.nodes[fault.target].start()
        elif fault.kind == "instance-pause":
            instance = self.cluster.instances[fault.target]
            instance.pause()
            await asyncio.sleep(fault.duration)
            instance.resume()
        elif fault.kind == "postgres-stop":
            postgres: Any = self.cluster.postgres
            await postgres.pause()
            await asyncio.sleep(fault.duration)
            await postgres.resume()
        else:  # pragma: no cover - schedule.KINDS is the list
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        entry["until"] = round(self.record.now(), 3)
        self.applied.append(entry)

    async def _healed(self) -> None:
        nodes = self.cluster.nats_cluster
        instances = self.cluster.instances

        async def whole() -> bool:
            checks = [_ready(i.http_url) for i in instances]
            if nodes is not None:
                checks.append(nodes.ready())
            return all(await asyncio.gather(*checks))

        try:
            await wait_until(whole, HEAL_TIMEOUT, "the cluster after a fault", interval=0.25)
        except TimeoutError:
            log.warning("the cluster is not whole %.0fs after a fault; going on", HEAL_TIMEOUT)

    async def _stream_leader(self) -> int | None:
        nodes = self.cluster.nats_cluster
        return None if nodes is None else await nodes.stream_leader(self._stream_name)


async def _ready(base: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/health/ready", timeout=aiohttp.ClientTimeout(total=1)) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
