"""`python -m conformance`: run the suite against targets, print a summary, write reports.

With no `--target`, an embedded reference cluster (PostgreSQL, NATS JetStream, two server
instances) is started and tested. Each target runs in its own pytest process (pytest-xdist
workers when available) with the conformance plugin; verdicts come back as JSON.

Exit status: 0 when no MUST failed, 1 when one did, 2 when the run itself broke.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness.extras import missing_server_extra
from harness.targets import PROFILES, Target, TargetError, load_targets

from . import catalog, variants
from .embedded import PROVISIONERS, embedded_cluster, target_entry, write_embedded_targets
from .reports import TargetRun, summary, write_reports

PACKAGE_DIR = Path(__file__).resolve().parent
CASES_DIR = PACKAGE_DIR / "cases"
_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
python_files = test_*.py
timeout = {timeout}
addopts = --strict-markers -p no:cacheprovider
filterwarnings =
    ignore::DeprecationWarning
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Run the task-streaming conformance suite (SPEC.md) against a server.",
        epilog="Arguments after `--` go to pytest unchanged.",
    )
    parser.add_argument(
        "--target", type=Path, help="target file (TOML); default: the embedded reference cluster"
    )
    parser.add_argument(
        "--target-name",
        action="append",
        default=[],
        metavar="NAME",
        help="test only this [[target]] of the file (repeatable)",
    )
    parser.add_argument(
        "--profile",
        default="",
        metavar="LIST",
        help="run only requirements of these profiles, e.g. core,resume",
    )
    parser.add_argument(
        "--id",
        dest="ids",
        default="",
        metavar="LIST",
        help="run only these requirement ids, e.g. sse/4.7/1,sse/4.8/1",
    )
    parser.add_argument(
        "-k",
        dest="keyword",
        default=None,
        metavar="EXPR",
        help="pytest -k expression over case names and requirement ids",
    )
    parser.add_argument(
        "--list",
        "--dry-run",
        dest="list",
        action="store_true",
        help="list the requirements that would run; run nothing",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write index.json, junit-<target>.xml, matrix.md, report.html",
    )
    parser.add_argument(
        "-n",
        "--workers",
        default="auto",
        metavar="N",
        help="parallel pytest-xdist workers per target (default auto; 0 = none)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest timing to wait for; longer ones are INFORMATIONAL",
    )
    parser.add_argument(
        "--explore-budget",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="seconds the model-based explorer runs (explore/9.1/1; default 20, 0 = off)",
    )
    parser.add_argument(
        "--explore-seed", type=int, default=0, metavar="N", help="the explorer's seed (default 0)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    embedded = parser.add_argument_group("embedded reference cluster (no --target)")
    embedded.add_argument(
        "--instances",
        type=int,
        default=2,
        help="server instances (default 2; more than one uses NATS)",
    )
    embedded.add_argument(
        "--provisioner",
        default="admin-api",
        metavar="LIST",
        help="admin-api, sql, or admin-api,sql for a matrix of both",
    )
    embedded.add_argument(
        "--database-url", default=None, help="PostgreSQL to use instead of an embedded one"
    )
    embedded.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="test a deliberately broken reference server (suite self-test)",
    )
    embedded.add_argument(
        "--list-variants",
        action="store_true",
        help="list the broken variants and the requirements that catch them",
    )
    parser.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        known = catalog.load()
    except catalog.CatalogError as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
    problems = catalog.coverage_problems(known.keys(), catalog.case_requirements())
    if problems:
        print(
            "conformance: the suite does not match its catalog:",
            *problems,
            sep="\n  ",
            file=sys.stderr,
        )
        return 2
    if args.list_variants:
        for defect in variants.DEFECTS.values():
            verdict = (
                f"caught by {', '.join(defect.catches)}"
                if defect.catches
                else f"passes {', '.join(defect.passes)}"
            )
            print(f"{defect.name:32} {verdict}\n    {defect.summary}")
        return 0
    try:
        _validate(args)
        targets = load_targets(args.target) if args.target else []
    except (ValueError, TargetError) as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
    if args.target_name:
        targets = [t for t in targets if t.name in args.target_name]
    if args.list:
        print(listing(known, targets, _csv(args.profile), _csv(args.ids)))
        return 0
    if not args.target and (missing := missing_server_extra()) is not None:
        print(f"conformance: {missing}", file=sys.stderr)
        return 2
    runs = _run_file(args, targets) if args.target else _run_embedded(args)
    print()
    print(summary(runs, known))
    if args.report:
        for path in write_reports(args.report, runs, known):
            print(f"wrote {path}")
    if any(run.error for run in runs):
        return 2
    return 1 if any(run.failed for run in runs) else 0


def _csv(value: str) -> set[str]:
    return {v.strip() for v in value.split(",") if v.strip()}


def _validate(args: argparse.Namespace) -> None:
    unknown = _csv(args.profile) - PROFILES
    if unknown:
        raise ValueError(f"unknown profiles {sorted(unknown)}; known: {sorted(PROFILES)}")
    kinds = _csv(args.provisioner)
    if not kinds or kinds - set(PROVISIONERS):
        raise ValueError(f"--provisioner takes {', '.join(PROVISIONERS)} (comma-separated)")
    if args.variant is not None and args.variant not in variants.DEFECTS:
        raise ValueError(f"unknown variant {args.variant!r}; see --list-variants")
    if args.target and (args.variant or args.database_url):
        raise ValueError("--variant and --database-url apply to the embedded cluster only")
    if args.instances < 1:
        raise ValueError("--instances must be at least 1")


def listing(
    known: dict[str, catalog.Requirement], targets: list[Target], profiles: set[str], ids: set[str]
) -> str:
    """The dry run: one line per selected requirement (and, per target, whether it would run)."""
    lines = []
    for req in known.values():
        if (profiles and req.profile not in profiles) or (ids and req.id not in ids):
            continue
        columns = "".join(
            f"  {t.name}={'run' if t.has(req.profile) else 'UNIMPLEMENTED'}" for t in targets
        )
        lines.append(f"{req.id:14} {req.level:6} {req.profile:16} {req.title}{columns}")
    lines.append(f"{len(lines)} requirements")
    return "\n".join(lines)


def _run_file(args: argparse.Namespace, targets: list[Target]) -> list[TargetRun]:
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        return [
            run_target(args, args.target, t.name, sorted(t.profiles), Path(tmp)) for t in targets
        ]


def _run_embedded(args: argparse.Namespace) -> list[TargetRun]:
    command = variants.command(args.variant) if args.variant else None
    kinds = [k for k in PROVISIONERS if k in _csv(args.provisioner)]
    label = f" (variant {args.variant})" if args.variant else ""
    print(
        f"conformance: starting the embedded reference cluster{label}: PostgreSQL"
        f"{', NATS JetStream' if args.instances > 1 else ''}, {args.instances} instance(s)",
        flush=True,
    )
    started = time.monotonic()
    with (
        embedded_cluster(
            instances=args.instances, database_url=args.database_url, command=command
        ) as cluster,
        tempfile.TemporaryDirectory(prefix="conformance-") as tmp,
    ):
        print(f"conformance: cluster up in {time.monotonic() - started:.1f}s", flush=True)
        name = args.variant or "reference"
        targets = [
            target_entry(cluster, name if k == "admin-api" else f"{name}-sql", k) for k in kinds
        ]
        target_file = Path(tmp) / "targets.toml"
        write_embedded_targets(target_file, targets)
        return [
            run_target(args, target_file, t.name, sorted(t.profiles), Path(tmp)) for t in targets
        ]


def run_target(
    args: argparse.Namespace, target_file: Path, name: str, profiles: list[str], tmp: Path
) -> TargetRun:
    """One pytest process over the cases for the target `name` of `target_file`."""
    results_path = tmp / f"results-{len(list(tmp.glob('results-*')))}.json"
    ini = tmp / "pytest.ini"
    # The longest timing case waits about twice --max-wait at its late bound.
    # The explorer may shrink a failure for as long again as its budget.
    longest = max(3 * args.max_wait + 30, 2 * args.explore_budget + 60)
    ini.write_text(_INI.format(timeout=int(max(120, longest))))
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(CASES_DIR),
        "-c",
        str(ini),
        "--rootdir",
        str(PACKAGE_DIR),
        "--noconftest",
        "-p",
        "conformance.plugin",
        "--taskstream-target",
        str(target_file),
        "--taskstream-target-name",
        name,
        "--conformance-results",
        str(results_path),
        "--conformance-max-wait",
        str(args.max_wait),
        "--conformance-explore-budget",
        str(args.explore_budget),
        "--conformance-explore-seed",
        str(args.explore_seed),
        "-rN",
        "-v" if args.verbose else "-q",
        "--tb=short" if args.verbose else "--tb=line",
    ]
    if args.workers != "0" and importlib.util.find_spec("xdist") is not None:
        command += ["-n", args.workers]
    if args.keyword:
        command += ["-k", args.keyword]
    if args.ids:
        command += ["--conformance-ids", args.ids]
    if args.profile:
        command += ["--conformance-profiles", args.profile]
    command += args.pytest_args
    print(f"\n== target {name}: profiles {', '.join(profiles)}", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    code = subprocess.run(command, env=env, check=False).returncode  # noqa: S603
    wall = time.monotonic() - started
    results = _read_results(results_path)
    error = None
    if code not in (0, 1, 5):
        error = f"pytest exited with status {code}"
    elif code == 5 or not results:
        error = "no case was selected"
    return TargetRun(name, results, wall, profiles, error)


def _read_results(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    results: dict[str, dict[str, object]] = data.get("results", {})
    return results
