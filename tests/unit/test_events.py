"""Seed phase 1: the domain event and its proto/JSON forms."""

import json

import pytest

from reference_server.events import StreamEventType, TaskStreamEvent, task_key, workflow_key


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, StreamEventType.TOKEN), (2, StreamEventType.PROGRESS), (3, StreamEventType.DATA),
     (4, StreamEventType.ERROR)],
)  # fmt: skip
def test_from_proto_maps_known_types(value: int, expected: StreamEventType) -> None:
    assert StreamEventType.from_proto(value) is expected


@pytest.mark.parametrize("value", [0, 5, 99, -1])
def test_from_proto_rejects_unspecified_and_unknown(value: int) -> None:
    assert StreamEventType.from_proto(value) is None


def _event(**changes: object) -> TaskStreamEvent:
    values: dict[str, object] = {
        "task_execution_id": "task-1",
        "workflow_execution_id": "wf-1",
        "sequence": 1,
        "event_type": StreamEventType.TOKEN,
        "payload": "hello",
        "timestamp_ms": 1234567890,
    }
    values.update(changes)
    return TaskStreamEvent(**values)  # type: ignore[arg-type]


def test_serialization_uses_camel_case_keys_and_type_name() -> None:
    raw = _event().to_json().decode()
    assert '"type":"TOKEN"' in raw
    assert '"taskExecutionId":"task-1"' in raw
    assert set(json.loads(raw)) >= {
        "taskExecutionId", "workflowExecutionId", "sequence", "type", "payload", "timestampMs"
    }  # fmt: skip


def test_json_round_trip_keeps_every_field() -> None:
    event = _event(payload="line\r\nbreak \u2028 ✓", published_at_ms=42)
    assert TaskStreamEvent.from_json(event.to_json()) == event


def test_stream_key_is_the_workflow_or_the_standalone_task() -> None:
    assert _event().stream_key == workflow_key("wf-1")
    assert _event(workflow_execution_id="").stream_key == task_key("task-1")


def test_sse_name_is_lower_case() -> None:
    assert [t.sse_name for t in StreamEventType] == ["token", "progress", "data", "error"]
