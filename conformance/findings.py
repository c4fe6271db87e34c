"""Findings: a failure of one requirement seen while another case ran (by the invariant
monitor or the explorer). They travel to the controller like verdicts (`user_properties`) and
are merged into the results at the end, so every report format shows them under the
requirement they break, naming the case and the transcript where they were seen."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from . import catalog
from .verdicts import FAILURE_VERDICT, Verdict

PROPERTY = "conformance-finding"
_RANK = {v.value: n for n, v in enumerate(Verdict)}  # later in Verdict = worse


def record(item: pytest.Item, requirement: str, detail: str, expected: str, actual: str) -> None:
    """Report that `requirement` failed while `item` ran."""
    finding = {
        "requirement": requirement,
        "case": item.nodeid,
        "detail": detail,
        "expected": expected,
        "actual": actual,
    }
    item.user_properties.append((PROPERTY, json.dumps(finding)))


def merge(
    results: dict[str, dict[str, Any]],
    findings: Iterable[Mapping[str, Any]],
    known: Mapping[str, catalog.Requirement],
) -> None:
    """Lower each requirement's verdict to what its findings say (FAIL for a MUST, ...)."""
    for finding in findings:
        rid = str(finding["requirement"])
        requirement = known.get(rid)
        if requirement is None:
            continue
        verdict = FAILURE_VERDICT[requirement.level].value
        result = results.setdefault(
            rid,
            {
                "requirement": rid,
                "level": requirement.level,
                "profile": requirement.profile,
                "title": requirement.title,
                "duration": 0.0,
                "verdict": Verdict.PASS.value,
                "case": finding["case"],
                "detail": "",
                "expected": None,
                "actual": None,
            },
        )
        seen = f"seen in {finding['case']}: {finding['detail']}"
        if _RANK[verdict] > _RANK.get(str(result["verdict"]), 0):
            result.update(
                verdict=verdict,
                detail=seen,
                expected=finding["expected"],
                actual=finding["actual"],
                transcript=finding.get("transcript"),  # the case's, when it was recorded
            )
        elif seen not in str(result["detail"]):
            result["detail"] = f"{result['detail']}; {seen}".strip("; ")
