"""Reusable test harness for task streaming: services, clients, pytest plugin.

``harness.TestHarness`` (asyncio) and ``harness.SyncTestHarness`` are the one-object entry
points; they are imported on first use, so that ``import harness.wire...`` in a Locust worker
does not pull in the asyncio clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .testharness import TestHarness
    from .testharness_sync import SyncTestHarness

__all__ = ["SyncTestHarness", "TestHarness"]


def __getattr__(name: str) -> Any:
    if name == "TestHarness":
        from .testharness import TestHarness

        return TestHarness
    if name == "SyncTestHarness":
        from .testharness_sync import SyncTestHarness

        return SyncTestHarness
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
