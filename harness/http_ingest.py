"""HTTP ingest client: events as NDJSON to `POST /api/tenants/{tenant}/task-data` (SPEC §3.7).

async with HttpIngest(http_url, "acme", worker_token) as ingest:
    answer = await ingest.post([ingest_line("token", "hi", workflow_id=wf, task_id=task)])
    assert answer.status == 200 and answer.body["accepted"] == 1
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .closing import AsyncClosing
from .wire.aio import request

NDJSON = "application/x-ndjson"


def task_data_url(http_url: str, tenant: str) -> str:
    return f"{http_url.rstrip('/')}/api/tenants/{tenant}/task-data"


def ingest_line(
    event_type: int | str,
    payload: str,
    *,
    workflow_id: str = "",
    task_id: str = "",
    sequence: int = 0,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One `StreamTaskDataRequest` in the proto3 JSON mapping (`type` upper-cased if a name)."""
    return {
        "taskExecutionId": task_id,
        "workflowExecutionId": workflow_id,
        "sequence": sequence,
        "type": event_type.upper() if isinstance(event_type, str) else event_type,
        "payload": payload,
        "timestampMs": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
    }


def ndjson(lines: Iterable[Mapping[str, Any] | str]) -> bytes:
    """The body: one JSON object per line (a `str` is sent verbatim, for malformed lines)."""
    return b"".join(
        (line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))).encode()
        + b"\n"
        for line in lines
    )


@dataclass(frozen=True, slots=True)
class IngestAnswer:
    status: int
    content_type: str
    headers: Mapping[str, str]
    body: Any  # the JSON answer (or problem), None when not JSON


class HttpIngest(AsyncClosing):
    """One aiohttp session posting NDJSON batches for one tenant (observable like every request
    the harness makes, see `harness.wire.observe`)."""

    def __init__(self, http_url: str, tenant: str, token: str | None) -> None:
        self.url = task_data_url(http_url, tenant)
        self.token = token
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self._session.close()

    async def post(
        self,
        lines: Iterable[Mapping[str, Any] | str] | bytes,
        *,
        token: str | None = None,
        content_type: str = NDJSON,
    ) -> IngestAnswer:
        body = lines if isinstance(lines, bytes) else ndjson(lines)
        token = self.token if token is None else token
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        reply = await request(
            self._session, "POST", self.url, headers=headers, data=body, label="task-data"
        )
        try:
            parsed = json.loads(reply.text) if reply.text else None
        except ValueError:
            parsed = None
        return IngestAnswer(reply.status, reply.content_type, reply.headers, parsed)
