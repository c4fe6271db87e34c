"""The conformance catalog: SPEC.md ⇄ catalog.toml ⇄ cases, one to one (plain unit tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conformance import catalog
from conformance.checks import Band, Mismatch, NonStrict
from conformance.reports import TargetRun, junit_xml, matrix_markdown
from conformance.variants import DEFECTS
from harness.targets import PROFILES

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"
BLOCK = """### 4.5 Headers

#### sse/4.5/1 — MUST — core — Content-Type is text/event-stream

**Purpose:** why.

**Procedure:** how,
over two lines.

**Asserts:** what.
"""


def test_catalog_toml_is_generated_from_spec_md() -> None:
    parsed = catalog.parse_spec(SPEC.read_text(encoding="utf-8"))
    assert catalog.CATALOG_PATH.read_text(encoding="utf-8") == catalog.render_toml(parsed), (
        "catalog.toml is stale: python -m conformance.catalog --write"
    )


def test_requirements_have_unique_ids_known_profiles_and_prose() -> None:
    requirements = list(catalog.load().values())
    assert len({r.id for r in requirements}) == len(requirements) >= 80
    for req in requirements:
        assert req.profile in PROFILES, req.id
        assert req.level in catalog.LEVELS, req.id
        assert req.purpose and req.procedure and req.asserts, req.id


def test_every_requirement_has_exactly_one_case_and_every_case_one_requirement() -> None:
    cases = catalog.case_requirements()
    assert len(cases) >= 80
    assert catalog.coverage_problems(catalog.load().keys(), cases) == []


def test_coverage_problems_name_each_mismatch() -> None:
    cases = {"m::test_a": ["x/1.1/1"], "m::test_b": ["x/1.1/1", "x/1.1/2"], "m::test_c": []}
    problems = catalog.coverage_problems(["x/1.1/1", "x/1.1/3"], cases)
    assert "m::test_b names 2 requirements (exactly one expected)" in problems
    assert "m::test_c names 0 requirements (exactly one expected)" in problems
    assert "m::test_b names x/1.1/2, which SPEC.md does not list" in problems
    assert "x/1.1/1 has 2 cases: m::test_a, m::test_b" in problems
    assert "x/1.1/3 has no case" in problems


def test_a_requirement_block_parses_into_its_fields() -> None:
    (req,) = catalog.parse_spec(BLOCK)
    assert (req.id, req.level, req.profile, req.title) == (
        "sse/4.5/1", "MUST", "core", "Content-Type is text/event-stream"
    )  # fmt: skip
    assert (req.purpose, req.procedure, req.asserts) == ("why.", "how, over two lines.", "what.")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BLOCK + BLOCK.split("\n", 2)[2], "listed twice"),
        (BLOCK.replace("sse/4.5/1", "sse/4.6/1"), "sits in section 4.5"),
        (BLOCK.replace("**Asserts:** what.", ""), "lacks ['Asserts']"),
        (BLOCK.replace("— MUST —", "— MUSTN'T —"), "malformed requirement heading"),
        (BLOCK.replace("sse/4.5/1", "sse-4.5-1"), "is not <area>/<section>/<n>"),
    ],
)
def test_malformed_spec_is_refused(text: str, message: str) -> None:
    with pytest.raises(catalog.CatalogError, match=message.replace("[", r"\[")):
        catalog.parse_spec(text)


def test_variants_are_caught_by_catalogued_must_requirements() -> None:
    known = catalog.load()
    for defect in DEFECTS.values():
        # A conformant variant (a behaviour the suite once misread) names what it must pass.
        assert bool(defect.catches) != bool(defect.passes), defect.name
        for rid in defect.catches:
            assert known[rid].level == "MUST", (defect.name, rid)
        for rid in defect.passes:
            assert rid in known, (defect.name, rid)


def test_the_suite_never_imports_the_reference_server() -> None:
    """The suite talks over the wire only (the broken servers live in `broken_servers/`)."""
    root = catalog.CATALOG_PATH.parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if any(n.split(".")[0] == "reference_server" for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_timing_band_verdicts() -> None:
    band = Band(low=1.0, high=2.0, late=4.0)
    band.check("on time", 1.5)
    with pytest.raises(NonStrict):
        band.check("late", 3.0)
    with pytest.raises(Mismatch, match="too late"):
        band.check("very late", 4.5)
    with pytest.raises(Mismatch, match="too early"):
        band.check("early", 0.5)


def test_junit_carries_expected_and_actual_and_the_matrix_every_requirement() -> None:
    known = catalog.load()
    rid = next(iter(known))
    result = {"verdict": "FAIL", "level": "MUST", "profile": "core", "duration": 0.1,
              "detail": "boom", "expected": "401", "actual": "200", "case": "c"}  # fmt: skip
    run = TargetRun("team-server", {rid: result}, 1.0)
    xml = junit_xml(run, known).decode()
    assert 'failures="1"' in xml and "Expected: 401&#10;Actual: 200" in xml
    matrix = matrix_markdown([run], known)
    assert f"| `{rid}` |" in matrix and "| FAIL |" in matrix
    assert matrix.count("\n| `") == len(known)
