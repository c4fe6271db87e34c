"""The container artifacts: the compose file is valid, its target file is the same format as the
embedded run's, and the Dockerfile copies what exists. (No Docker engine here: nothing runs.)"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.targets import load_targets

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_file_validates() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.test.yml"), "config", "--quiet"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_compose_has_the_services_the_readme_promises() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.test.yml").read_text())["services"]
    assert {"postgres", "nats", "server-a", "server-b", "conformance", "locust-master",
            "locust-worker"} <= set(services)  # fmt: skip
    for node in ("nats", "nats-2", "nats-3"):  # a three-node JetStream cluster
        assert "-js" in services[node]["command"]
        assert "--routes" in services[node]["command"]
    server_env = services["server-a"]["environment"]
    assert server_env["TASKSTREAM_NATS_URL"].count("nats://") == 3
    assert server_env["TASKSTREAM_NATS_REPLICAS"] == "3"


def test_compose_target_uses_the_embedded_target_format() -> None:
    (target,) = load_targets(ROOT / "docker" / "compose-target.toml")
    assert len(target.http_urls) == 2
    assert "multi-instance" in target.profiles


def test_the_conformance_image_is_the_suite_without_the_server() -> None:
    """`docker build --target conformance`: the base install, `python -m conformance` as its
    entrypoint. (tests/integration/test_ci_recipes.py installs exactly what it copies.)"""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = dockerfile.split("AS conformance\n", 1)[1].split("\nFROM ", 1)[0]
    copied = {line.split()[1] for line in stage.splitlines() if line.startswith("COPY ")}
    assert {"harness", "conformance", "taskstream_proto"} <= copied
    assert not copied & {"reference_server", "broken_servers", "loadtests"}
    assert "RUN pip install . " in stage  # no extra
    assert 'ENTRYPOINT ["python", "-m", "conformance"]' in stage
    services = yaml.safe_load((ROOT / "docker-compose.test.yml").read_text())["services"]
    assert services["conformance"]["build"]["target"] == "conformance"


def test_dockerfile_copies_only_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
