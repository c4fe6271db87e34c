"""The chaos run, one minute of it: three servers on a three-node NATS cluster (R3, file)
through every kind of fault, and no acknowledged event lost, duplicated or reordered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_a_one_minute_chaos_run_loses_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.chaos", "--minutes", "1", "--seed", "3",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=140, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    result = json.loads((tmp_path / "chaos.json").read_text())
    assert result["ok"] and result["meta"]["missing_after_drain"] == 0
    assert result["meta"]["failed_faults"] == []
    total = result["total"]
    assert total["acked"] > 1000 and (total["lost"], total["duplicated"], total["reordered"]) == (
        0, 0, 0,
    )  # fmt: skip
    kinds = {fault["kind"] for fault in result["faults"]}
    assert kinds == {"instance-kill", "nats-kill", "instance-pause", "postgres-stop"}
    assert all(fault["recovery"] is not None for fault in result["faults"]), result["faults"]
    assert (tmp_path / "chaos.png").stat().st_size > 10_000
    assert "PASS" in (tmp_path / "chaos.txt").read_text()
