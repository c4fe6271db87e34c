"""The HTML report as a team debugging its server reads it: the suite runs against a deliberately
broken server (`payload-newlines-raw`: payload line breaks written raw, so a payload forges
events), and headless Chromium opens `report.html`. The failure, its expected and actual values
and its wire transcript must be on screen as the page opens: no scrolling, no hovering."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

VARIANT = "payload-newlines-raw"
FAILING = "sse/4.6/5"  # a payload cannot forge fields or events
PASSING = "sse/4.6/3"
VIEWPORT = {"width": 1280, "height": 800}
_TOKEN = re.compile(r"f[uwsa]t_[A-Za-z0-9_\-]{8,}")


def run_suite(report: Path, pg_url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "--variant", VARIANT,
         "--id", f"{FAILING},{PASSING}", "--instances", "1", "-n", "0",
         "--database-url", pg_url, "--report", str(report)],
        capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout + done.stderr)[-3000:]
    index: dict[str, Any] = json.loads((report / "index.json").read_text())
    return index[VARIANT]


async def in_viewport(page: Any, selector: str, *, whole: bool) -> bool:
    """The element is displayed and on the first screen: entirely (`whole`), or its top part
    (three lines of text at least) for a box that scrolls inside itself."""
    element = page.locator(selector).first
    if not await element.is_visible():
        return False
    box = await element.bounding_box()
    bottom = box["y"] + (box["height"] if whole else min(box["height"], 48))
    return bool(box["y"] >= 0 and bottom <= VIEWPORT["height"] and box["x"] >= 0)


async def test_a_failure_shows_expected_actual_and_transcript_on_the_first_screen(
    chromium: Any, tmp_path: Path, pg_url: str
) -> None:
    results = await asyncio.to_thread(run_suite, tmp_path, pg_url)
    assert (results[FAILING]["verdict"], results[PASSING]["verdict"]) == ("FAIL", "PASS")
    page = await chromium.new_page(viewport=VIEWPORT)
    await page.goto((tmp_path / "report.html").as_uri())

    # The first case on the page is a FAIL, laid out in full on the first screen. (The monitor
    # also reports what this case's stream broke besides FAILING: duplicate ids, a frame after
    # `end`; every one of them comes from the same exchanges.)
    first = page.locator("article.case").first
    rid = str(await first.get_attribute("id")).removeprefix(f"case-{VARIANT}-")
    assert results[rid]["verdict"] == "FAIL"
    case = f'article[id="case-{VARIANT}-{rid}"]'
    assert await page.locator(f'article[id="case-{VARIANT}-{FAILING}"]').count() == 1
    assert await page.locator(f'article[id="case-{VARIANT}-{PASSING}"]').count() == 0
    for part in (f"{case} h3", f"{case} pre.expected", f"{case} pre.actual"):
        assert await in_viewport(page, part, whole=True), f"{part} is not on the first screen"
    assert await in_viewport(page, f"{case} pre.transcript", whole=False)

    expected = await page.inner_text(f"{case} pre.expected")
    actual = await page.inner_text(f"{case} pre.actual")
    assert (expected, actual) == (results[rid]["expected"], results[rid]["actual"])
    transcript = await page.inner_text(f"{case} pre.transcript")
    assert re.search(r"SSE GET http://127[.]0[.]0[.]1:\d+/api/tenants/\S+/stream/", transcript)
    assert re.search(r'\+\d+\.\d{3}s event: error  id: 999  data: "forged"', transcript)
    assert "gRPC /flovyn.v1.TaskExecution/StreamTaskData" in transcript
    assert "Bearer <redacted>" in transcript
    assert not _TOKEN.search(await page.content()), "a credential reached the report"

    # The filters: hiding FAIL hides every failure; a profile filter hides the other profiles.
    await page.uncheck('#filters input[value="FAIL"]')
    assert not await page.locator(case).is_visible()
    assert await page.locator("article.case:visible").count() == 0
    assert await page.inner_text("#failure-count") == "0"
    await page.check('#filters input[value="FAIL"]')
    await page.select_option("#f-profile", "consolidated")
    assert not await page.locator(case).is_visible()
    await page.select_option("#f-profile", "core")
    assert await page.locator(case).is_visible()
    await page.close()
