"""Proof that the conformance suite catches bugs: each deliberately broken variant of the
reference server fails at least one MUST requirement, and the correct server fails none.

Each run is `python -m conformance --variant NAME` restricted to the requirements expected to
catch the variant (one instance, sharing this session's PostgreSQL). Three variants run by
default; the rest, and the full suite on the two-instance cluster, are `slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.explorer import DEFAULT_BUDGET
from conformance.variants import DEFECTS

pytestmark = pytest.mark.integration

FAST = ("payload-newlines-raw", "cross-tenant-publish", "wrong-content-type", "end-without-close")


def run_conformance(
    report: Path, *args: str, timeout: float = 110
) -> tuple[int, dict[str, dict[str, Any]], str]:
    """(exit status, {requirement: result} of the single target, output)."""
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "--report", str(report), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    index_path = report / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    assert len(index) == 1, output[-3000:]
    return done.returncode, next(iter(index.values())), output


def _variant_is_caught(name: str, report: Path, pg_url: str) -> None:
    ids = ",".join(DEFECTS[name].catches)
    code, results, output = run_conformance(
        report, "--variant", name, "--id", ids, "--instances", "1", "-n", "0",
        "--database-url", pg_url,
    )  # fmt: skip
    failed = [rid for rid, v in results.items() if (v["verdict"], v["level"]) == ("FAIL", "MUST")]
    assert failed, f"{name} was not caught:\n{output[-3000:]}"
    assert code == 1, output[-3000:]


@pytest.mark.parametrize("name", FAST)
def test_variant_fails_a_must_requirement(name: str, tmp_path: Path, pg_url: str) -> None:
    _variant_is_caught(name, tmp_path, pg_url)


CONFORMANT = sorted(name for name, defect in DEFECTS.items() if not defect.catches)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(DEFECTS) - set(FAST) - set(CONFORMANT)))
def test_every_other_variant_fails_a_must_requirement(
    name: str, tmp_path: Path, pg_url: str
) -> None:
    _variant_is_caught(name, tmp_path, pg_url)


@pytest.mark.parametrize("name", CONFORMANT)
def test_a_conformant_variant_passes(name: str, tmp_path: Path, pg_url: str) -> None:
    """A correct behaviour the suite once misread (a stalled stream ended with the terminating
    chunk while the connection stays open) passes the requirements it touches."""
    ids = ",".join(DEFECTS[name].passes)
    code, results, output = run_conformance(
        tmp_path, "--variant", name, "--id", ids, "--instances", "1", "-n", "0",
        "--database-url", pg_url,
    )  # fmt: skip
    assert {v["verdict"] for v in results.values()} == {"PASS"}, output[-3000:]
    assert code == 0


def test_the_reference_server_passes_what_catches_the_fast_variants(
    tmp_path: Path, pg_url: str
) -> None:
    ids = ",".join(sorted({r for name in FAST for r in DEFECTS[name].catches}))
    code, results, output = run_conformance(
        tmp_path, "--id", ids, "--instances", "1", "-n", "0", "--database-url", pg_url
    )
    assert {v["verdict"] for v in results.values()} == {"PASS"}, output[-3000:]
    assert code == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_reference_cluster_passes_every_requirement(tmp_path: Path) -> None:
    """The complete run of the issue's definition of done: two instances over NATS JetStream."""
    code, results, output = run_conformance(tmp_path, timeout=580)
    verdicts = {r: v["verdict"] for r, v in results.items()}
    assert [r for r, v in verdicts.items() if v != "PASS"] == [], output[-5000:]
    assert code == 0
    for name in ("junit-reference.xml", "matrix.md", "report.html"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_reference_passes_the_explorer_at_ten_times_its_budget(
    tmp_path: Path, pg_url: str
) -> None:
    """The explorer's default budget finds the variants above; ten times it finds nothing in
    the reference server (two instances over NATS JetStream)."""
    budget = str(10 * DEFAULT_BUDGET)
    code, results, output = run_conformance(
        tmp_path, "--id", "explore/9.1/1", "--explore-budget", budget, "-n", "0",
        "--database-url", pg_url, timeout=580,
    )  # fmt: skip
    assert results["explore/9.1/1"]["verdict"] == "PASS", output[-5000:]
    assert code == 0
