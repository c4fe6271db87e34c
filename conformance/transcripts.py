"""Wire transcripts: what each case sent and received, for the reports of its failures.

Every case runs inside `harness.wire.observe.observing(Recorder())` (the autouse fixture
below, set up before the case's other fixtures, so provisioning calls are in it too). When the
case's verdict is FAIL or NON-STRICT, its transcript joins the verdict in the results: a list of
exchanges (HTTP request line and headers, response status and headers, SSE frames and comments
with their arrival times relative to the request, gRPC method, status, details and trailing
metadata). Credentials were already redacted by the observation hooks when each exchange was
built; nothing here sees a token.

A transcript is bounded (`MAX_EXCHANGES`, `MAX_FRAMES`, `MAX_TEXT`) so that a case that opened
fifty streams or read ten thousand keep-alives still gives a report a browser opens at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import pytest

from harness.wire.observe import REDACTED, Exchange, Frame, Recorder, observing

from . import findings
from .verdicts import Verdict

MAX_EXCHANGES = 40
MAX_FRAMES = 60
MAX_TEXT = 2000
_RECORDER = pytest.StashKey[Recorder]()
_KIND = {"http": "HTTP", "sse": "SSE", "grpc": "gRPC"}
_SETUP_COUNT = pytest.StashKey[int]()  # exchanges made by the case's fixtures (provisioning)
_WITH_TRANSCRIPT = {Verdict.FAIL.value, Verdict.NON_STRICT.value}
_PROPERTY = "conformance"  # the user property conformance.plugin writes each verdict into
# The observation hooks redact headers and URLs; response bodies of the management API carry
# the tokens it issues ({"token": "fut_…"}), and a report is an artifact anyone may read.
_SECRET_KEYS = frozenset({"token", "access_token", "accessToken", "adminToken", "admin_token"})
_TOKEN_TEXT = re.compile(r"\b(f[uwsa]t_)[A-Za-z0-9_\-]{8,}")


@pytest.fixture(autouse=True)
def _conformance_transcript(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    """Record every exchange of the case (pytest-asyncio runs the case and its async fixtures
    in a copy of this context, so they all report to this recorder)."""
    recorder = Recorder()
    request.node.stash[_RECORDER] = recorder
    with observing(recorder):
        yield recorder


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: sees the verdict the plugin added
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    recorder = item.stash.get(_RECORDER, None)
    if recorder is None:
        return report
    if call.when == "setup":
        item.stash[_SETUP_COUNT] = len(recorder.exchanges)
    for n, (name, value) in enumerate(report.user_properties):
        if name not in (_PROPERTY, findings.PROPERTY):
            continue
        result = json.loads(str(value))
        # A finding (the invariant monitor's, or the explorer's) always means a failure.
        if "transcript" in result or not (
            name == findings.PROPERTY or result.get("verdict") in _WITH_TRANSCRIPT
        ):
            continue
        result["transcript"] = transcript(
            recorder.exchanges, setup=item.stash.get(_SETUP_COUNT, len(recorder.exchanges))
        )
        report.user_properties[n] = (name, json.dumps(result))
    return report


def transcript(exchanges: Sequence[Exchange], setup: int = 0) -> list[dict[str, Any]]:
    """The exchanges as JSON-ready dicts, times in seconds from the first request; the first
    `setup` of them were made by the case's fixtures (`"phase": "setup"`), the rest by the case."""
    if not exchanges:
        return []
    origin = exchanges[0].started
    kept = list(exchanges[:MAX_EXCHANGES])
    entries = [
        {"phase": "setup" if n < setup else "case", **_exchange(e, origin)}
        for n, e in enumerate(kept)
    ]
    if len(exchanges) > len(kept):
        entries.append({"omitted": len(exchanges) - len(kept)})
    return entries


def _exchange(exchange: Exchange, origin: float) -> dict[str, Any]:
    frames = [_frame(f) for f in exchange.frames[:MAX_FRAMES]]
    return {
        "protocol": exchange.protocol,
        "label": exchange.label,
        "at": round(exchange.started - origin, 4),
        "method": exchange.method,
        "url": exchange.url,
        "request_headers": [list(h) for h in exchange.request_headers],
        "request": _cut(exchange.request_summary),
        "status": exchange.status,
        "response_headers": [list(h) for h in exchange.response_headers],
        "body": _cut(redact_body(exchange.body)),
        "frames": frames,
        "frames_omitted": max(0, len(exchange.frames) - len(frames)),
        "ended_at": None if exchange.ended_at is None else round(exchange.ended_at, 4),
        "end": exchange.end,
        "grpc_code": exchange.grpc_code,
        "grpc_details": _cut(exchange.grpc_details),
        "grpc_trailing": [list(h) for h in exchange.grpc_trailing],
    }


def _frame(frame: Frame) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": round(frame.at, 4), "kind": frame.kind, "data": _cut(frame.data)}
    if frame.kind == "event":
        entry.update(event=frame.event, id=frame.id)
        if frame.retry is not None:
            entry["retry"] = frame.retry
    return entry


def redact_body(body: str | None) -> str | None:
    """A response body with issued credentials replaced: values of token-named JSON keys, and
    anything shaped like this project's tokens (`fut_…`, `fwt_…`, `fst_…`) in other text."""
    if not body:
        return body
    try:
        parsed = json.loads(body)
    except ValueError:
        return _TOKEN_TEXT.sub(lambda m: m.group(1) + REDACTED, body)
    return _TOKEN_TEXT.sub(lambda m: m.group(1) + REDACTED, json.dumps(_redact_json(parsed)))


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if k in _SECRET_KEYS and isinstance(v, str) else _redact_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return f"{text[:MAX_TEXT]}… ({len(text) - MAX_TEXT} more characters)"


def render(entries: Sequence[dict[str, Any]]) -> str:
    """The transcript as text, one block per exchange (JUnit `<system-out>`, the HTML report).
    Provisioning by the case's fixtures that succeeded takes one line each, so the case's own
    exchanges are what the eye finds first:

        #1 +0.000s setup: HTTP POST http://127.0.0.1:8080/api/admin/tenants → 201

    #2 +0.031s SSE GET http://127.0.0.1:8080/api/tenants/t-1/stream/workflows/…
       > Authorization: Bearer <redacted>
       < 200 after 0.004s
       < Content-Type: text/event-stream
       +0.020s event: token  id: 1  data: "hi"
       +2.003s : keep-alive
       ended (eof) at 6.010s
    """
    lines: list[str] = []
    for n, entry in enumerate(entries, 1):
        if "omitted" in entry:
            lines.append(f"… {entry['omitted']} more exchanges not shown")
            continue
        if entry.get("phase") == "setup" and _succeeded(entry):
            lines.append(_render_setup(n, entry))
            continue
        lines.extend(_render_exchange(n, entry))
    return "\n".join(lines)


def _succeeded(e: dict[str, Any]) -> bool:
    if e["protocol"] == "grpc":
        return e.get("grpc_code") == "OK"
    return e.get("status") is not None and int(e["status"]) < 400


def _render_setup(n: int, e: dict[str, Any]) -> str:
    kind = _KIND.get(e["protocol"], e["protocol"])
    outcome = e["grpc_code"] if e["protocol"] == "grpc" else e["status"]
    return f"#{n} +{e['at']:.3f}s setup: {kind} {e['method']} {e['url']} → {outcome}"


def _render_exchange(n: int, e: dict[str, Any]) -> list[str]:
    kind = _KIND.get(e["protocol"], e["protocol"])
    label = f" [{e['label']}]" if e.get("label") else ""
    if e["protocol"] == "grpc":
        lines = [f"#{n} +{e['at']:.3f}s {kind} {e['method']} → {e['url']}{label}"]
        lines += [f"   > {k}: {v}" for k, v in e["request_headers"]]
        if e.get("request"):
            lines.append(f"   > {e['request']}")
        if e.get("grpc_code") is not None:
            details = f": {e['grpc_details']}" if e.get("grpc_details") else ""
            lines.append(f"   < {e['grpc_code']}{details}{_after(e)}")
        lines += [f"   < trailing {k}: {v}" for k, v in e["grpc_trailing"]]
        return lines
    lines = [f"#{n} +{e['at']:.3f}s {kind} {e['method']} {e['url']}{label}"]
    lines += [f"   > {k}: {v}" for k, v in e["request_headers"]]
    if e.get("status") is not None:
        lines.append(f"   < {e['status']}")
        lines += [f"   < {k}: {v}" for k, v in e["response_headers"]]
    if e.get("body"):
        lines += [f"   | {line}" for line in str(e["body"]).splitlines() or [""]]
    for frame in e["frames"]:
        lines.append(f"   +{frame['at']:.3f}s {_render_frame(frame)}")
    if e.get("frames_omitted"):
        lines.append(f"   … {e['frames_omitted']} more frames not shown")
    if e.get("ended_at") is not None:
        lines.append(f"   ended ({e.get('end') or 'done'}) at {e['ended_at']:.3f}s")
    elif e["protocol"] == "sse":
        lines.append("   (still open when the case ended)")
    return lines


def _render_frame(frame: dict[str, Any]) -> str:
    if frame["kind"] == "comment":
        return f":{frame['data'] or ''}"
    parts = [f"event: {frame.get('event') or 'message'}"]
    if frame.get("id") is not None:
        parts.append(f"id: {frame['id']}")
    if frame.get("retry") is not None:
        parts.append(f"retry: {frame['retry']}")
    parts.append("data: " + ("(none)" if frame["data"] is None else json.dumps(frame["data"])))
    return "  ".join(parts)


def _after(e: dict[str, Any]) -> str:
    return "" if e.get("ended_at") is None else f" after {e['ended_at']:.3f}s"
