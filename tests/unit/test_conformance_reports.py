"""Wire transcripts and the reports that carry them: bounded, redacted, rendered, and placed
where a failure is read (JUnit `<system-out>`, the HTML report's failures section)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from conformance import catalog, findings
from conformance.report_html import report_html
from conformance.reports import TargetRun, junit_xml
from conformance.transcripts import MAX_FRAMES, redact_body, render, transcript
from harness.wire.observe import Exchange, Frame

SECRET = "fut_0g2X3fFjsQBYYIaDIANPId6feiC0xoPLa1us4BHU9ZE"


def sse_exchange(started: float, frames: int = 2) -> Exchange:
    exchange = Exchange(
        protocol="sse",
        method="GET",
        url="http://127.0.0.1:8080/api/tenants/t-1/stream/workflows/w-1",
        request_headers=[("Authorization", "Bearer <redacted>")],
        started=started,
        status=200,
        response_headers=[("Content-Type", "text/event-stream")],
    )
    exchange.frames = [
        Frame(at=0.5 + n, kind="event", event="token", id=str(n + 1), data=f"t{n}")
        for n in range(frames)
    ]
    exchange.frames.append(Frame(at=frames + 1.0, kind="comment", data=" keep-alive"))
    exchange.ended_at, exchange.end = frames + 2.0, "eof"
    return exchange


def token_exchange(started: float) -> Exchange:
    return Exchange(
        protocol="http",
        method="POST",
        url="http://127.0.0.1:8080/api/admin/tenants/t-1/tokens",
        request_headers=[("Authorization", "Bearer <redacted>")],
        started=started,
        status=201,
        body=f'{{"id": "1", "token": "{SECRET}", "kind": "user"}}',
        ended_at=0.01,
        end="eof",
    )


def grpc_exchange(started: float) -> Exchange:
    return Exchange(
        protocol="grpc",
        method="/flovyn.v1.TaskExecution/StreamTaskData",
        url="127.0.0.1:50051",
        request_headers=[("authorization", "Bearer <redacted>")],
        started=started,
        request_summary='type: TOKEN payload: "hi"',
        grpc_code="INVALID_ARGUMENT",
        grpc_details="type must be 1..4",
        grpc_trailing=[("x-reason", "type")],
        ended_at=0.003,
    )


def test_a_transcript_is_relative_to_the_first_request_and_bounded() -> None:
    entries = transcript([token_exchange(100.0), sse_exchange(100.25, frames=MAX_FRAMES + 5)])
    assert [e["at"] for e in entries] == [0.0, 0.25]
    sse = entries[1]
    assert len(sse["frames"]) == MAX_FRAMES and sse["frames_omitted"] == 6
    first = {"at": 0.5, "kind": "event", "data": "t0", "event": "token", "id": "1"}
    assert sse["frames"][0] == first


def test_successful_provisioning_by_fixtures_takes_one_line() -> None:
    failed_setup = token_exchange(1.2)
    failed_setup.status = 403
    entries = transcript([token_exchange(1.0), failed_setup, sse_exchange(1.5)], setup=2)
    assert [e["phase"] for e in entries] == ["setup", "setup", "case"]
    lines = render(entries).splitlines()
    assert lines[0] == (
        "#1 +0.000s setup: HTTP POST http://127.0.0.1:8080/api/admin/tenants/t-1/tokens → 201"
    )
    assert lines[1].startswith("#2 +0.200s HTTP POST") and lines[3] == "   < 403"


def test_issued_tokens_never_reach_a_transcript() -> None:
    entries = transcript([token_exchange(1.0)])
    assert SECRET not in repr(entries)
    assert '"token": "<redacted>"' in entries[0]["body"]
    assert SECRET not in (redact_body(f"plain text {SECRET} end") or "")
    assert redact_body("not json, no token") == "not json, no token"


def test_rendering_shows_request_response_frames_and_grpc_status() -> None:
    text = render(transcript([sse_exchange(0.0), grpc_exchange(0.5)]))
    assert "#1 +0.000s SSE GET http://127.0.0.1:8080/api/tenants/t-1/stream/workflows/w-1" in text
    assert "   > Authorization: Bearer <redacted>" in text
    assert "   < 200" in text and "   < Content-Type: text/event-stream" in text
    assert '   +0.500s event: token  id: 1  data: "t0"' in text
    assert "   +3.000s : keep-alive" in text
    assert "   ended (eof) at 4.000s" in text
    assert "#2 +0.500s gRPC /flovyn.v1.TaskExecution/StreamTaskData → 127.0.0.1:50051" in text
    assert "   < INVALID_ARGUMENT: type must be 1..4 after 0.003s" in text
    assert "   < trailing x-reason: type" in text


def _result(rid: str, verdict: str, **extra: Any) -> dict[str, Any]:
    req = catalog.load()[rid]
    return {
        "requirement": rid, "level": req.level, "profile": req.profile, "title": req.title,
        "duration": 0.1, "detail": "", "expected": None, "actual": None, "verdict": verdict,
        "case": f"cases::{rid}", **extra,
    }  # fmt: skip


def _runs() -> list[TargetRun]:
    wire = transcript([sse_exchange(0.0), grpc_exchange(0.2)])
    results = {
        "sse/4.5/1": _result("sse/4.5/1", "PASS"),
        "sse/4.6/4": _result(
            "sse/4.6/4", "FAIL", expected="'a\\nb'", actual="'a'", detail="split", transcript=wire
        ),
        "sse/4.7/1": _result(
            "sse/4.7/1", "NON-STRICT", expected="≤ 2.75 s", actual="3.1 s", transcript=wire
        ),
    }
    return [TargetRun("mine", results, 3.0, ["core"]), TargetRun("other", {}, 1.0, ["core"])]


def test_junit_carries_the_transcript_of_failures_and_non_strict_cases() -> None:
    suite = ET.fromstring(junit_xml(_runs()[0], catalog.load()))
    outs = {
        case.get("name", "").split()[0]: case.findtext("system-out") or ""
        for case in suite.iter("testcase")
    }
    assert outs["sse/4.5/1"] == ""
    for rid in ("sse/4.6/4", "sse/4.7/1"):
        assert "Wire transcript (credentials redacted):" in outs[rid]
        assert "SSE GET http://127.0.0.1:8080/api/tenants/t-1/stream/workflows/w-1" in outs[rid]


def test_the_html_report_puts_failures_with_transcripts_before_the_matrix() -> None:
    page = report_html(_runs(), catalog.load())
    fail = page.index('id="case-mine-sse/4.6/4"')
    non_strict = page.index('id="case-mine-sse/4.7/1"')
    assert page.index('id="summary"') < fail < non_strict < page.index('id="matrix"')
    block = page[fail:non_strict]
    assert "&#x27;a\\nb&#x27;" in block and "&#x27;a&#x27;" in block  # expected, actual
    assert "event: token  id: 1  data: &quot;t0&quot;" in block
    assert 'href="#case-mine-sse/4.6/4"' in page  # the matrix cell links to the failure


def test_a_finding_brings_the_transcript_of_the_case_that_saw_it() -> None:
    """The invariant monitor's findings lower another requirement's verdict: the report shows
    the exchanges of the case where the violation was seen."""
    wire = transcript([sse_exchange(0.0)])
    results = {"sse/4.6/2": _result("sse/4.6/2", "PASS")}
    finding = {
        "requirement": "sse/4.6/2", "case": "cases::other", "detail": "monitor: ids",
        "expected": "distinct", "actual": "'999' twice", "transcript": wire,
    }  # fmt: skip
    findings.merge(results, [finding], catalog.load())
    assert results["sse/4.6/2"]["verdict"] == "FAIL"
    assert results["sse/4.6/2"]["transcript"] == wire
