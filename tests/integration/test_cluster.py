"""The harness's reference cluster: real processes that can be killed, restarted, paused."""

from __future__ import annotations

import aiohttp
import pytest

from harness.cluster import ReferenceCluster

pytestmark = pytest.mark.integration


async def _live(url: str, timeout: float = 2.0) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{url}/health/live", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def test_instances_can_be_killed_restarted_paused_and_resumed() -> None:
    async with ReferenceCluster(instances=2) as cluster:
        a, b = cluster.instances
        assert await _live(a.http_url) and await _live(b.http_url)

        a.kill()
        assert not a.running
        assert not await _live(a.http_url)
        await a.start()  # same ports as before
        assert await _live(a.http_url)

        b.pause()
        assert not await _live(b.http_url, timeout=0.5)
        b.resume()
        assert await _live(b.http_url)

        assert await b.stop() == 0  # SIGTERM: graceful
        assert "READY" not in b.log_tail()  # READY goes to stdout; the log is stderr
        extra = await cluster.add_instance()
        assert await _live(extra.http_url)


async def test_target_describes_the_cluster() -> None:
    async with ReferenceCluster(instances=2, settings={"idle_timeout": 9}) as cluster:
        target = cluster.target()
    assert target.http_urls == [i.http_url for i in cluster.instances]
    assert "multi-instance" in target.profiles
    assert target.idle_timeout == 9
    assert target.provisioner["kind"] == "admin-api"


async def test_a_failing_start_reports_the_server_log() -> None:
    cluster = ReferenceCluster(instances=1, nats=False, settings={"nats_mode": "kafka"})
    with pytest.raises(RuntimeError, match="nats-mode"):
        await cluster.start()
    await cluster.stop()
