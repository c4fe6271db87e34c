"""The domain event a worker streams, and its wire forms (proto in, JSON on the bus)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Self


class StreamEventType(enum.Enum):
    """Kinds of task event; values are the proto enum numbers."""

    TOKEN = 1
    PROGRESS = 2
    DATA = 3
    ERROR = 4

    @classmethod
    def from_proto(cls, value: int) -> StreamEventType | None:
        """Map a proto enum number; None for UNSPECIFIED (0) and unknown numbers."""
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def sse_name(self) -> str:
        """The SSE `event:` field: lower-case type name."""
        return self.name.lower()


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


@dataclass(frozen=True, slots=True)
class TaskStreamEvent:
    """One event of a task, as published on the bus.

    `workflow_execution_id` is empty for a standalone task. `published_at_ms` is the server's
    clock when it accepted the event (for publish→delivery latency; the worker's clock is in
    `timestamp_ms`).
    """

    task_execution_id: str
    workflow_execution_id: str
    sequence: int
    event_type: StreamEventType
    payload: str
    timestamp_ms: int
    published_at_ms: int = 0

    @property
    def stream_key(self) -> str:
        """The bus stream the event belongs to: its workflow's, or its task's when standalone."""
        if self.workflow_execution_id:
            return workflow_key(self.workflow_execution_id)
        return task_key(self.task_execution_id)

    def to_dict(self) -> dict[str, Any]:
        """camelCase JSON form, with `"type": "TOKEN"`."""
        return {
            "taskExecutionId": self.task_execution_id,
            "workflowExecutionId": self.workflow_execution_id,
            "sequence": self.sequence,
            "type": self.event_type.name,
            "payload": self.payload,
            "timestampMs": self.timestamp_ms,
            "publishedAtMs": self.published_at_ms,
        }

    def to_json(self) -> bytes:
        return _COMPACT.encode(self.to_dict()).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        event_type = StreamEventType[data["type"]]
        return cls(
            task_execution_id=str(data["taskExecutionId"]),
            workflow_execution_id=str(data.get("workflowExecutionId") or ""),
            sequence=int(data["sequence"]),
            event_type=event_type,
            payload=str(data["payload"]),
            timestamp_ms=int(data["timestampMs"]),
            published_at_ms=int(data.get("publishedAtMs") or 0),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        return cls.from_dict(json.loads(raw))


def workflow_key(workflow_execution_id: str) -> str:
    return f"workflow.{workflow_execution_id}"


def task_key(task_execution_id: str) -> str:
    return f"task.{task_execution_id}"
