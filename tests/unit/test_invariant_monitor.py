"""The invariant monitor on hand-made exchanges: each rule fires on its violation only."""

from __future__ import annotations

from harness.wire.monitor import Monitor
from harness.wire.observe import Exchange, Frame

HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]


def stream(frames: list[Frame], *, ended_at: float, end: str = "eof") -> list[str]:
    monitor = Monitor(keepalive_interval=2.0)
    exchange = Exchange("sse", "GET", "http://h/api/tenants/t/stream/workflows/w", [], 0.0)
    monitor.on_start(exchange)
    exchange.status, exchange.response_headers = 200, list(HEADERS)
    monitor.on_response(exchange)
    for frame in frames:
        exchange.frames.append(frame)
        monitor.on_frame(exchange, frame)
    exchange.ended_at, exchange.end = ended_at, end  # type: ignore[assignment]
    monitor.on_end(exchange)
    return [v.requirement for v in monitor.finish()]


def event(at: float, kind: str = "token", id: str | None = "1") -> Frame:
    return Frame(at, "event", kind, id, "x")


def comment(at: float) -> Frame:
    return Frame(at, "comment", data="keep-alive")


def test_a_correct_stream_has_no_violation() -> None:
    frames = [event(0.1, id="1"), comment(2.1), event(3.0, id="2"), comment(5.0)]
    frames += [event(5.5, "end", None)]
    assert stream(frames, ended_at=5.6) == []


def test_silence_after_events_breaks_the_keepalive_cadence() -> None:
    assert stream([event(0.1), comment(2.0), event(2.5, id="2")], ended_at=8.0) == ["sse/4.7/1"]


def test_an_event_without_id_and_a_repeated_id() -> None:
    assert stream([event(0.1, id=None), event(0.2), event(0.3)], ended_at=0.5) == [
        "sse/4.6/2",
        "sse/4.6/2",
    ]


def test_a_late_end_of_the_response_after_end() -> None:
    frames = [event(0.1), event(0.2, "end", None)]
    assert stream(frames, ended_at=3.2, end="terminating-chunk") == ["sse/4.11/5"]


def test_anything_after_end() -> None:
    frames = [event(0.1, "end", None), event(0.2, id="2")]
    assert stream(frames, ended_at=0.3) == ["sse/4.11/1"]


def test_gap_after_events() -> None:
    assert stream([event(0.1), event(0.2, "gap", None)], ended_at=0.3) == ["sse/4.10/5"]


def test_error_responses_need_problem_json_and_www_authenticate() -> None:
    monitor = Monitor()
    exchange = Exchange("sse", "GET", "http://h/api/tenants/t/stream/workflows/w", [], 0.0)
    monitor.on_start(exchange)
    exchange.status, exchange.response_headers = 401, [("Content-Type", "text/plain")]
    exchange.body = "no"
    monitor.on_response(exchange)
    assert [v.requirement for v in monitor.finish()] == ["sse/4.4/7", "sse/4.1/8"]
    assert "401" in monitor.finish()[0].transcript
