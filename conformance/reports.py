"""What a run produces: the terminal summary, and with `--report DIR` a JSON index, JUnit XML
per target (expected/actual in each failure), and a Markdown and an HTML matrix
(requirements by targets)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Requirement
from .report_html import report_html
from .transcripts import render
from .verdicts import Verdict

_SHOWN = (Verdict.FAIL, Verdict.NON_STRICT, Verdict.INFORMATIONAL)


@dataclass(slots=True)
class TargetRun:
    """The verdicts of one target: `{requirement id: result}` as the plugin wrote them."""

    name: str
    results: dict[str, dict[str, Any]]
    wall_seconds: float
    profiles: list[str] = field(default_factory=list)
    error: str | None = None  # the run itself broke (pytest usage or internal error)

    def counts(self) -> Counter[str]:
        return Counter(r["verdict"] for r in self.results.values())

    @property
    def failed(self) -> bool:
        return self.error is not None or self.counts()[Verdict.FAIL] > 0


def summary(runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]) -> str:
    """Counts per verdict for each target, then every non-PASS verdict with its reason."""
    width = max(13, *(len(r.name) for r in runs))
    header = "verdict".ljust(15) + "".join(r.name.rjust(width + 2) for r in runs)
    lines = [header, "-" * len(header)]
    for verdict in Verdict:
        lines.append(
            verdict.value.ljust(15)
            + "".join(str(r.counts()[verdict]).rjust(width + 2) for r in runs)
        )
    lines.append("total".ljust(15) + "".join(str(len(r.results)).rjust(width + 2) for r in runs))
    lines.append(
        "wall time".ljust(15) + "".join(f"{r.wall_seconds:.1f}s".rjust(width + 2) for r in runs)
    )
    for run in runs:
        if run.error:
            lines += ["", f"{run.name}: the run broke: {run.error}"]
        for verdict in _SHOWN:
            for rid, result in run.results.items():
                if result["verdict"] != verdict:
                    continue
                req = catalog.get(rid)
                title = req.title if req else result.get("title", "")
                lines += [
                    "",
                    f"{verdict.value}  {run.name}  {rid}  {result['level']} "
                    f"{result['profile']} — {title}",
                ]
                if result.get("expected") is not None:
                    lines.append(f"    expected: {result['expected']}")
                    lines.append(f"    actual:   {result['actual']}")
                elif result.get("detail"):
                    lines.append(f"    {result['detail']}")
    return "\n".join(lines)


def write_reports(
    directory: Path, runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    index = {run.name: run.results for run in runs}
    written = [directory / "index.json"]
    written[0].write_text(json.dumps(index, indent=2, ensure_ascii=False), encoding="utf-8")
    for run in runs:
        path = directory / f"junit-{_safe(run.name)}.xml"
        path.write_bytes(junit_xml(run, catalog))
        written.append(path)
    (directory / "matrix.md").write_text(matrix_markdown(runs, catalog), encoding="utf-8")
    (directory / "report.html").write_text(report_html(runs, catalog), encoding="utf-8")
    return [*written, directory / "matrix.md", directory / "report.html"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def junit_xml(run: TargetRun, catalog: Mapping[str, Requirement]) -> bytes:
    """JUnit XML: FAIL → <failure> with Expected/Actual; UNIMPLEMENTED and INFORMATIONAL →
    <skipped>; NON-STRICT passes with a property and the reason in <system-out>."""
    counts = run.counts()
    suite = ET.Element(
        "testsuite",
        {
            "name": f"conformance {run.name}",
            "tests": str(len(run.results)),
            "failures": str(counts[Verdict.FAIL]),
            "skipped": str(counts[Verdict.UNIMPLEMENTED] + counts[Verdict.INFORMATIONAL]),
            "errors": "1" if run.error else "0",
            "time": f"{run.wall_seconds:.3f}",
        },
    )
    for rid, result in run.results.items():
        req = catalog.get(rid)
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"conformance.{rid.split('/')[0]}.{rid.split('/')[1]}",
                "name": f"{rid} {result['level']} {req.title if req else result.get('title', '')}",
                "time": f"{result.get('duration', 0.0):.3f}",
            },
        )
        properties = ET.SubElement(case, "properties")
        for key in ("verdict", "level", "profile", "case"):
            ET.SubElement(properties, "property", {"name": key, "value": str(result.get(key))})
        verdict = result["verdict"]
        expected = result.get("expected") or (req.asserts if req else "")
        message = f"Expected: {expected}\nActual: {result.get('actual') or result.get('detail')}"
        if verdict == Verdict.FAIL:
            failure = ET.SubElement(case, "failure", {"message": message, "type": verdict})
            failure.text = result.get("detail", "")
            if result.get("transcript"):
                ET.SubElement(case, "system-out").text = _wire(result)
        elif verdict in (Verdict.UNIMPLEMENTED, Verdict.INFORMATIONAL):
            message = f"{verdict}: {result.get('detail', '')}"
            if result.get("expected") is not None:  # a MAY that does not hold
                message += f"\nExpected: {result['expected']}\nActual: {result['actual']}"
            ET.SubElement(case, "skipped", {"message": message})
        elif verdict == Verdict.NON_STRICT:
            out = f"NON-STRICT\n{message}"
            ET.SubElement(case, "system-out").text = (
                f"{out}\n\n{_wire(result)}" if result.get("transcript") else out
            )
    if run.error:
        error = ET.SubElement(ET.SubElement(suite, "testcase", {"name": "run"}), "error")
        error.set("message", run.error)
    ET.indent(suite)
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def _wire(result: Mapping[str, Any]) -> str:
    return "Wire transcript (credentials redacted):\n" + render(result["transcript"])


def _matrix_rows(
    runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]
) -> list[tuple[Requirement, list[dict[str, Any] | None]]]:
    return [(req, [run.results.get(rid) for run in runs]) for rid, req in catalog.items()]


def matrix_markdown(runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]) -> str:
    names = [r.name for r in runs]
    lines = [
        "# Conformance matrix",
        "",
        "| requirement | level | profile | title | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for req, results in _matrix_rows(runs, catalog):
        cells = [r["verdict"] if r else "—" for r in results]
        title = req.title.replace("|", "\\|")
        lines.append(
            f"| `{req.id}` | {req.level} | {req.profile} | {title} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Counts:", ""]
    for run in runs:
        counts = run.counts()
        lines.append(
            f"- **{run.name}**: "
            + ", ".join(f"{v.value} {counts[v]}" for v in Verdict)
            + f" ({run.wall_seconds:.1f} s)"
        )
    return "\n".join(lines) + "\n"
