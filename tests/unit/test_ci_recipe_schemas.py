"""The CI recipes a team copies (conformance/ci/) are valid for their CI systems: each file is
checked against the schema GitHub Actions workflows and GitLab CI files must follow, as
check-jsonschema vendors them (no network). actionlint's Python wrapper would need to download
its binary at install time, which this project's machines cannot; tests/integration/
test_ci_recipes.py runs the recipes' steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {
    "github-actions.yml": "vendor.github-workflows",
    "gitlab-ci.yml": "vendor.gitlab-ci",
}

pytest.importorskip("check_jsonschema", reason="check-jsonschema comes with the dev extra")


def validate(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("name", "schema"), RECIPES.items())
def test_recipe_follows_its_ci_schema(name: str, schema: str) -> None:
    done = validate(ROOT / "conformance" / "ci" / name, schema)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("github-actions.yml", "    runs-on: ubuntu-latest\n", ""),  # a job needs a runner
        ("gitlab-ci.yml", "    when: always\n", "    when: sometimes\n"),
    ],
)
def test_the_schema_check_catches_a_broken_recipe(
    name: str, good: str, bad: str, tmp_path: Path
) -> None:
    text = (ROOT / "conformance" / "ci" / name).read_text()
    assert good in text
    broken = tmp_path / name
    broken.write_text(text.replace(good, bad))
    done = validate(broken, RECIPES[name])
    assert done.returncode != 0 and "Schema validation errors" in done.stdout
