"""The invariant monitor around every case (`harness.wire.monitor`): each violation it saw
becomes a finding of the requirement it breaks, naming the case and the exchange."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.targets import Target
from harness.wire.monitor import Monitor
from harness.wire.observe import observing

from . import findings


@pytest.fixture(autouse=True)
def _conformance_monitor(
    request: pytest.FixtureRequest, taskstream_target: Target
) -> Iterator[None]:
    monitor = Monitor(keepalive_interval=taskstream_target.keepalive_interval)
    with observing(monitor):
        yield
    for violation in monitor.finish():
        findings.record(
            request.node,
            violation.requirement,
            f"monitor: {violation.what}\n{violation.transcript}",
            violation.expected,
            violation.actual,
        )
