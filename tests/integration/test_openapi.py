"""openapi.yaml: valid OpenAPI 3.1, in sync with the routes, and honoured by the server
(schemathesis: no 5xx, responses match the schema)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from harness.cluster import ServerProcess
from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration
SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"


def _spec() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(SPEC.read_text())
    return loaded


def test_spec_is_valid_openapi_3_1() -> None:
    validate(_spec())


def test_every_route_is_in_the_spec_and_every_spec_path_is_a_route(server: Server) -> None:
    routes = {
        (route.method.lower(), re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical))
        for route in server.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    paths = _spec()["paths"]
    assert isinstance(paths, dict)
    documented = {(method, path) for path, ops in paths.items() for method in ops}
    assert routes - documented == set(), "routes missing from openapi.yaml"
    assert documented - routes == set(), "openapi.yaml names routes the server does not have"


async def test_schemathesis_finds_no_server_error_or_schema_mismatch(
    pg_url: str, tmp_path: Path
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency"
    admin = "fat_" + secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSTREAM_")}
    env.update(TASKSTREAM_DATABASE_URL=pg_url, TASKSTREAM_ADMIN_TOKEN=admin,
               TASKSTREAM_IDLE_TIMEOUT="0.3", TASKSTREAM_KEEPALIVE_INTERVAL="0.2",
               SCHEMATHESIS_HOOKS="tests.integration.schemathesis_hooks")  # fmt: skip
    server = ServerProcess("schemathesis", env, tmp_path)
    await server.start()
    try:
        world = await TenantWorld.create(server.http_url, server.grpc_address, admin)
        await world.close()
        args = [
            st, "run", str(SPEC), "--url", server.http_url,
            "-H", f"Authorization: Bearer {admin}",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--max-examples", "10", "--seed", "1", "--workers", "1",
            "--request-timeout", "5", "--max-time", "45", "--phases", "examples,coverage,fuzzing",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
        )
        output, _ = await proc.communicate()
    finally:
        await server.stop()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:] + "\n--- server log\n" + server.log_tail(60)
