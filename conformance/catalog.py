"""The requirement catalog: parsed from SPEC.md, shipped as `catalog.toml`.

SPEC.md is the human source. Each requirement is a block whose heading line is machine-read:

    #### sse/4.7/1 — MUST — core — Keep-alive comments arrive every keepalive_interval

followed by `**Purpose:**`, `**Procedure:**` and `**Asserts:**` paragraphs. SPEC.md is not part of
the installed package, so `catalog.toml` (package data) is generated from it:

    python -m conformance.catalog --write   # regenerate after editing SPEC.md
    python -m conformance.catalog --check   # fail when catalog.toml is stale (CI, unit test)
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

LEVELS = ("MUST", "SHOULD", "MAY")
CATALOG_PATH = Path(__file__).with_name("catalog.toml")
CASES_DIR = Path(__file__).with_name("cases")
SPEC_PATH = Path(__file__).resolve().parent.parent / "SPEC.md"  # in a source checkout

_HEADING = re.compile(r"^#### (\S+) — (MUST|SHOULD|MAY) — ([a-z-]+) — (.+)$")
_SECTION = re.compile(r"^### (\d+\.\d+) ")
_ID = re.compile(r"^(?P<area>[a-z]+)/(?P<section>\d+\.\d+)/(?P<n>\d+)$")
_FIELDS = ("Purpose", "Procedure", "Asserts")
_FIELD = re.compile(r"^\*\*(Purpose|Procedure|Asserts):\*\*\s*(.*)$")


class CatalogError(ValueError):
    """SPEC.md or catalog.toml is malformed; the message names the line or requirement."""


@dataclass(frozen=True, slots=True)
class Requirement:
    id: str
    level: str  # MUST | SHOULD | MAY
    profile: str
    title: str
    purpose: str
    procedure: str
    asserts: str

    @property
    def area(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def section(self) -> str:
        return self.id.split("/")[1]

    def sort_key(self) -> tuple[int, int, int]:
        major, minor = self.section.split(".")
        return int(major), int(minor), int(self.id.rsplit("/", 1)[1])


def parse_spec(text: str) -> list[Requirement]:
    """Every requirement block of SPEC.md, in document order, validated."""
    found: list[Requirement] = []
    section: str | None = None
    heading: tuple[str, str, str, str] | None = None
    fields: dict[str, list[str]] = {}
    current: str | None = None

    def flush(lineno: int) -> None:
        if heading is None:
            return
        missing = [f for f in _FIELDS if not " ".join(fields.get(f, [])).strip()]
        if missing:
            raise CatalogError(f"SPEC.md: {heading[0]} (before line {lineno}) lacks {missing}")
        prose = {f: " ".join(" ".join(fields[f]).split()) for f in _FIELDS}
        found.append(Requirement(*heading, prose["Purpose"], prose["Procedure"], prose["Asserts"]))

    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        if line.startswith("#"):
            flush(lineno)
            heading, fields, current = None, {}, None
            if match := _SECTION.match(line):
                section = match.group(1)
            elif match := _HEADING.match(line):
                rid, level, profile, title = match.groups()
                _check_id(rid, section, lineno)
                heading = (rid, level, profile, title.strip())
            elif line.startswith("#### "):
                raise CatalogError(f"SPEC.md:{lineno}: malformed requirement heading: {line!r}")
            continue
        if heading is None:
            continue
        if match := _FIELD.match(line):
            current = match.group(1)
            if current in fields:
                raise CatalogError(f"SPEC.md:{lineno}: {heading[0]} repeats **{current}:**")
            fields[current] = [match.group(2)]
        elif current is not None:
            fields[current].append(line)
    flush(len(lines) + 1)
    _check_unique(r.id for r in found)
    return found


def _check_id(rid: str, section: str | None, lineno: int) -> None:
    match = _ID.match(rid)
    if match is None:
        raise CatalogError(f"SPEC.md:{lineno}: id {rid!r} is not <area>/<section>/<n>")
    if match.group("section") != section:
        raise CatalogError(f"SPEC.md:{lineno}: {rid} sits in section {section}, not its own")


def _check_unique(ids: Iterable[str]) -> None:
    seen: set[str] = set()
    for rid in ids:
        if rid in seen:
            raise CatalogError(f"requirement {rid} is listed twice")
        seen.add(rid)


def render_toml(requirements: Sequence[Requirement]) -> str:
    """catalog.toml text. JSON string literals are valid TOML basic strings."""
    out = [
        "# Generated from SPEC.md by `python -m conformance.catalog --write`; do not edit.",
        "",
    ]
    for req in requirements:
        out.append("[[requirement]]")
        out.extend(f"{key} = {json.dumps(value)}" for key, value in asdict(req).items())
        out.append("")
    return "\n".join(out)


def load(path: Path = CATALOG_PATH) -> dict[str, Requirement]:
    """The shipped catalog, by requirement id (document order)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CatalogError(f"{path}: {error}") from error
    requirements = [Requirement(**entry) for entry in data.get("requirement", [])]
    _check_unique(r.id for r in requirements)
    for req in requirements:
        if req.level not in LEVELS:
            raise CatalogError(f"{path}: {req.id} has level {req.level!r}")
    return {r.id: r for r in requirements}


def case_requirements(cases_dir: Path = CASES_DIR) -> dict[str, list[str]]:
    """`{case: [requirement ids]}` for every test function of the cases, read statically (no
    import): a case is `module::function`, its ids those of its `@requirement(...)` markers."""
    found: dict[str, list[str]] = {}
    for path in sorted(cases_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("test")
            ):
                found[f"{path.stem}::{node.name}"] = [
                    d.args[0].value
                    for d in node.decorator_list
                    if isinstance(d, ast.Call)
                    and getattr(d.func, "id", None) == "requirement"
                    and d.args
                    and isinstance(d.args[0], ast.Constant)
                    and isinstance(d.args[0].value, str)
                ]
    return found


def coverage_problems(requirements: Iterable[str], cases: dict[str, list[str]]) -> list[str]:
    """Why the catalog and the cases do not map one to one (empty when they do)."""
    problems: list[str] = []
    owners: dict[str, list[str]] = {}
    for case, ids in cases.items():
        if len(ids) != 1:
            problems.append(f"{case} names {len(ids)} requirements (exactly one expected)")
        for rid in ids:
            owners.setdefault(rid, []).append(case)
    known = set(requirements)
    for rid, owner in sorted(owners.items()):
        if rid not in known:
            problems.append(f"{', '.join(owner)} names {rid}, which SPEC.md does not list")
        elif len(owner) > 1:
            problems.append(f"{rid} has {len(owner)} cases: {', '.join(owner)}")
    problems.extend(f"{rid} has no case" for rid in sorted(known - set(owners)))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.catalog", description=__doc__)
    parser.add_argument("--spec", type=Path, default=SPEC_PATH, help="SPEC.md to read")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="regenerate catalog.toml")
    action.add_argument("--check", action="store_true", help="fail when catalog.toml is stale")
    args = parser.parse_args(argv)
    try:
        text = render_toml(parse_spec(args.spec.read_text(encoding="utf-8")))
    except (OSError, CatalogError) as error:
        print(error, file=sys.stderr)
        return 2
    if args.write:
        CATALOG_PATH.write_text(text, encoding="utf-8")
        return 0
    current = CATALOG_PATH.read_text(encoding="utf-8") if CATALOG_PATH.exists() else ""
    if current != text:
        print(
            f"{CATALOG_PATH} is stale: run python -m conformance.catalog --write", file=sys.stderr
        )
        return 1
    problems = coverage_problems(load().keys(), case_requirements())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
