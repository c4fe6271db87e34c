"""Conformance suite for task-streaming servers: requirement-tagged cases, verdicts, reports.

Run it with `python -m conformance` (see conformance/README.md). Each case names exactly one
requirement of SPEC.md:

    @requirement("sse/4.5/1")
    async def test_content_type_is_event_stream(world: TenantWorld) -> None: ...
"""

from __future__ import annotations

import pytest

__all__ = ["requirement"]


def requirement(requirement_id: str) -> pytest.MarkDecorator:
    """Mark a case as the test of one requirement of the catalog (SPEC.md)."""
    return pytest.mark.requirement(requirement_id)
