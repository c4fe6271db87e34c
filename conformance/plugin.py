"""pytest plugin of the conformance suite (`-p conformance.plugin`).

- registers the `requirement(id)` marker and checks that each case names exactly one
  catalogued requirement (and that no requirement has two cases);
- selects by requirement id (`--conformance-ids`) or profile (`--conformance-profiles`), and
  makes `-k sse/4.5/1` match a case by its requirement id;
- skips a case whose profile the target does not declare (UNIMPLEMENTED) before any fixture
  provisions anything;
- maps outcomes to verdicts: pass → PASS; failure of a MUST → FAIL, of a SHOULD → NON-STRICT, of
  a MAY → INFORMATIONAL; `NonStrict` (right but late) → NON-STRICT; skips → UNIMPLEMENTED or
  INFORMATIONAL by their reason;
- writes `{requirement: {verdict, duration, detail, expected, actual, ...}}` as JSON
  (`--conformance-results`), also under pytest-xdist (verdicts travel in `user_properties`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from harness.targets import Target

from . import catalog, findings
from .checks import INFORMATIONAL_PREFIX, UNIMPLEMENTED_PREFIX, Mismatch, NonStrict, unimplemented
from .verdicts import FAILURE_VERDICT, Verdict
from .wire import describe

pytest_plugins = ["conformance.fixtures", "conformance.monitoring", "conformance.transcripts"]

REQUIREMENT = pytest.StashKey[catalog.Requirement]()
_PROPERTY = "conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "task-streaming conformance suite")
    group.addoption("--conformance-results", default=None, help="write verdicts (JSON) here")
    group.addoption(
        "--conformance-ids", default="", help="run only these requirement ids (comma-separated)"
    )
    group.addoption(
        "--conformance-profiles",
        default="",
        help="run only requirements of these profiles (comma-separated)",
    )
    group.addoption(
        "--conformance-max-wait",
        type=float,
        default=30.0,
        help="longest timing a case may wait for; longer ones are INFORMATIONAL (default 30 s)",
    )
    group.addoption(
        "--conformance-explore-budget",
        type=float,
        default=20.0,
        help="seconds the model-based explorer runs (explore/9.1/1; 0 = skip it)",
    )
    group.addoption("--conformance-explore-seed", type=int, default=0, help="the explorer's seed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requirement(id): the SPEC.md requirement a conformance case tests"
    )
    config.pluginmanager.register(Recorder(config), "conformance-recorder")


def _csv(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


@pytest.hookimpl(tryfirst=True)  # before -k deselection, which needs the requirement keywords
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    known = catalog.load()
    ids, profiles = (
        _csv(config.getoption("--conformance-ids")),
        _csv(config.getoption("--conformance-profiles")),
    )
    unknown = ids - known.keys()
    if unknown:
        raise pytest.UsageError(f"unknown requirement ids: {', '.join(sorted(unknown))}")
    owners: dict[str, str] = {}
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        marks = list(item.iter_markers("requirement"))
        if len(marks) != 1 or not marks[0].args:
            raise pytest.UsageError(f"{item.nodeid}: a case names exactly one requirement")
        rid = str(marks[0].args[0])
        if rid not in known:
            raise pytest.UsageError(f"{item.nodeid}: {rid} is not in the catalog (SPEC.md)")
        if rid in owners:
            raise pytest.UsageError(f"{rid} has two cases: {owners[rid]} and {item.nodeid}")
        owners[rid] = item.nodeid
        requirement = known[rid]
        item.stash[REQUIREMENT] = requirement
        item.extra_keyword_matches.add(rid)
        wanted = (not ids or rid in ids) and (not profiles or requirement.profile in profiles)
        (selected if wanted else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(autouse=True)
def _conformance_profile_gate(request: pytest.FixtureRequest, taskstream_target: Target) -> None:
    """UNIMPLEMENTED before any other fixture of the case provisions anything."""
    requirement = request.node.stash.get(REQUIREMENT, None)
    if requirement is not None and not taskstream_target.has(requirement.profile):
        unimplemented(f"profile {requirement.profile!r} is not declared by the target")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    requirement = item.stash.get(REQUIREMENT, None)
    if requirement is not None:
        result = _result(requirement, report, call)
        if result is not None:
            result["case"] = item.nodeid
            report.user_properties.append((_PROPERTY, json.dumps(result)))
    return report


def _result(
    requirement: catalog.Requirement, report: pytest.TestReport, call: pytest.CallInfo[None]
) -> dict[str, Any] | None:
    """The verdict decided by this phase, or None when a later phase decides."""
    base: dict[str, Any] = {
        "requirement": requirement.id,
        "level": requirement.level,
        "profile": requirement.profile,
        "title": requirement.title,
        "duration": round(report.duration, 3),
        "detail": "",
        "expected": None,
        "actual": None,
    }
    if report.when == "teardown":
        return None
    if report.passed:
        return {**base, "verdict": Verdict.PASS.value} if report.when == "call" else None
    if report.skipped:
        reason = _skip_reason(report)
        if reason.startswith(UNIMPLEMENTED_PREFIX):
            verdict, reason = Verdict.UNIMPLEMENTED, reason.removeprefix(UNIMPLEMENTED_PREFIX)
        else:
            verdict, reason = Verdict.INFORMATIONAL, reason.removeprefix(INFORMATIONAL_PREFIX)
        return {**base, "verdict": verdict.value, "detail": reason}
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, NonStrict):
        verdict = Verdict.NON_STRICT
    else:
        verdict = FAILURE_VERDICT[requirement.level]
    if isinstance(error, Mismatch | NonStrict):
        expected, actual, detail = error.expected, error.actual, str(error)
    else:
        expected, actual = requirement.asserts, describe(error)[:1000]
        detail = actual
    if report.when == "setup":
        detail = f"setup failed: {detail}"
    return {
        **base,
        "verdict": verdict.value,
        "detail": detail,
        "expected": expected,
        "actual": actual,
    }


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


class Recorder:
    """Collects the verdicts (on the xdist controller, or in a plain run) and writes them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: dict[str, dict[str, Any]] = {}
        self.findings: dict[str, dict[str, Any]] = {}  # one per JSON text: phases repeat them

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == _PROPERTY:
                result = json.loads(str(value))
                self.results[result["requirement"]] = result
            elif name == findings.PROPERTY:
                self.findings.setdefault(str(value), json.loads(str(value)))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the controller writes
        findings.merge(self.results, self.findings.values(), catalog.load())
        path = self.config.getoption("--conformance-results")
        if path:
            order = {rid: n for n, rid in enumerate(catalog.load())}
            ordered = dict(sorted(self.results.items(), key=lambda kv: order.get(kv[0], -1)))
            Path(path).write_text(json.dumps({"results": ordered}, indent=2))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput") or not self.results:
            return
        findings.merge(self.results, self.findings.values(), catalog.load())
        counts = Counter(r["verdict"] for r in self.results.values())
        line = "  ".join(f"{v.value} {counts.get(v.value, 0)}" for v in Verdict)
        terminalreporter.write_sep("-", f"conformance verdicts: {line}")
