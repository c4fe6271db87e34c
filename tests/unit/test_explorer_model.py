"""The explorer's model: what a stream must, may and must not receive."""

from __future__ import annotations

from conformance.explorer.model import (
    Expectation,
    Received,
    Sent,
    check_stream,
    live_expectation,
    resume_expectation,
)


def sent(*times: tuple[float, float], workflow: str = "w") -> dict[str, Sent]:
    return {f"e{n}": Sent(f"e{n}", workflow, 0, s, a) for n, (s, a) in enumerate(times)}


def got(*payloads: str) -> list[Received]:
    return [Received(p, str(n), float(n)) for n, p in enumerate(payloads)]


EVENTS = sent((1, 2), (3, 4), (5, 6))


def test_in_order_and_complete_passes() -> None:
    expectation = Expectation("r", must={"e0", "e1", "e2"})
    assert check_stream(got("e0", "e1", "e2"), EVENTS, {"w"}, expectation, complete=True) is None


def test_order_missing_duplicate_and_foreign_events_are_findings() -> None:
    expectation = Expectation("r", must={"e0", "e1", "e2"})
    cases = {
        ("e1", "e0", "e2"): "order of events",
        ("e0", "e2"): "events the stream must carry",
        ("e0", "e0", "e1", "e2"): "an event delivered twice",
    }
    for payloads, what in cases.items():
        finding = check_stream(got(*payloads), EVENTS, {"w"}, expectation, complete=True)
        assert finding is not None and finding.what == what, payloads
    finding = check_stream(got("e0"), EVENTS, {"other"}, expectation, complete=False)
    assert finding is not None and finding.requirement == "sse/4.6/7"


def test_concurrent_events_may_come_in_either_order() -> None:
    overlapping = sent((1, 5), (2, 6))
    expectation = Expectation("r", must={"e0", "e1"})
    assert check_stream(got("e1", "e0"), overlapping, {"w"}, expectation, complete=True) is None


def test_live_and_resume_expectations() -> None:
    live = live_expectation(EVENTS.values(), {"w"}, requested_at=2.5, headers_at=2.8, rid="r")
    assert live.must == {"e1", "e2"} and live.forbidden == {"e0"}
    resumed = resume_expectation(EVENTS.values(), {"w"}, EVENTS["e1"], 4.5, {"e1"}, "r")
    assert resumed.must == {"e2"} and resumed.forbidden == {"e0", "e1"}
