"""The load tests: headless Locust runs pass and write reports, a violated threshold fails the
run, and (slow) the bench's quick mode produces every measurement.

Locust is only ever run as a subprocess: importing it here would gevent-patch the test process.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.targets import Target, dump_target
from loadtests.report import summarize

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


def _locust(cwd: Path, *args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--only-summary", *args]  # fmt: skip
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as file:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(file)}


@pytest.mark.integration
def test_headless_llm_run_on_the_embedded_cluster_passes_and_writes_reports(
    tmp_path: Path,
) -> None:
    done = _locust(tmp_path, "--scenario", "llm", "-u", "4", "-r", "4", "-t", "5s",
                   "--csv", "llm", "--html", "llm.html",
                   "--deliver-timeout-ms", "10000", "--max-p99-ms", "2000",
                   "--min-events-per-s", "5")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    rows = _rows(tmp_path / "llm_stats.csv")
    delivered = rows[("SSE", "token")]
    assert int(delivered["Request Count"]) > 0
    assert int(delivered["Failure Count"]) == 0
    assert int(rows[("gRPC", "StreamTaskData")]["Request Count"]) > 0
    assert (tmp_path / "llm.html").stat().st_size > 0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("ingest", "row"),
    [("grpc", ("gRPC", "StreamTaskDataBatch x10")), ("http", ("HTTP", "task-data x10"))],
)
def test_batched_publishers_deliver_every_event(
    tmp_path: Path, ingest: str, row: tuple[str, str]
) -> None:
    done = _locust(tmp_path, "--scenario", "llm", "-u", "4", "-r", "4", "-t", "4s",
                   "--batch", "10", "--ingest", ingest, "--rate", "200", "--csv", "batch",
                   "--deliver-timeout-ms", "10000")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    rows = _rows(tmp_path / "batch_stats.csv")
    calls, delivered = rows[row], rows[("SSE", "token")]
    assert int(calls["Request Count"]) > 0 and int(calls["Failure Count"]) == 0
    # Every event of every acknowledged call arrives (a hole would be a `missing` failure).
    assert int(delivered["Failure Count"]) == 0
    assert int(delivered["Request Count"]) >= 10 * int(calls["Request Count"]) // 2


@pytest.mark.integration
def test_a_violated_threshold_fails_the_run(tmp_path: Path, taskstream_target: Target) -> None:
    target = tmp_path / "target.toml"
    target.write_text(dump_target(taskstream_target))
    done = _locust(tmp_path, "--scenario", "fanout", "-u", "3", "-r", "3", "-t", "3s",
                   "--taskstream-target", str(target), "--min-events-per-s", "1e9")  # fmt: skip
    assert done.returncode == 1, done.stderr[-4000:]
    assert "threshold FAIL delivered events/s" in done.stderr


def test_summary_judges_each_target_against_its_floor() -> None:
    results = {
        "floors": {
            "grpc_ack": {"peak": {"events_per_s": 1000.0}},
            "sse_writer": {"fanout": {"deliveries_per_s": 10_000.0}},
            "batch": {"peak_batch": {"events_per_s": 60_000.0, "cpu": {"server": 0.9}}},
        },
        "servers": {
            "memory": {
                "peak": {"events_per_s": 900.0, "cpu": {"server": 0.27}},
                "peak_batch": {"events_per_s": 40_000.0, "batch": 50, "cpu": {"server": 1.0}},
                "fanout": {"deliveries_per_s": 4000.0, "subscribers": 1000},
                "latency": [{"fraction": 0.5, "latency_ms": {"p99": 12.0}}],
                "idle": {"kib_per_connection": 31.0, "connections": 5000},
            },
            "nats": {
                "peak": {"events_per_s": 700.0},
                "peak_batch": {"events_per_s": 30_000.0, "batch": 50},
            },
        },
    }
    lines = summarize(results)
    verdicts = {line.metric: line.passed for line in lines}
    assert verdicts["end-to-end events/s, in-memory bus"] is True  # 0.9 >= 0.8
    assert verdicts["fan-out deliveries/s (1 → 1000), in-memory bus"] is False  # 0.4 < 0.5
    assert verdicts["end-to-end events/s, NATS JetStream"] is False  # 0.78 < 0.8
    assert verdicts["p99 publish → receipt at 50% of max, in-memory bus"] is True
    assert verdicts["RSS per idle SSE connection (5000 open), in-memory bus"] is False
    assert verdicts["batched end-to-end events/s (batch 50), in-memory bus"] is True  # 44x
    assert verdicts["server CPU per event, batch 50, in-memory bus"] is True  # 25 µs
    assert verdicts["  same, vs. in-memory batched end-to-end"] is False  # 0.75 < 0.8
    cpu = {line.metric: line.cpu_us for line in lines}
    assert cpu["end-to-end events/s, in-memory bus"] == pytest.approx(300.0)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_quick_measures_everything(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["meta"]["seconds"] < 120
    assert {"grpc_ack", "sse_writer", "batch", "nats"} <= set(results["floors"])
    assert {"peak", "peak_batch", "latency", "fanout", "idle", "stall"} <= set(
        results["servers"]["memory"]
    )
    assert {"peak", "peak_batch", "latency", "fanout"} <= set(results["servers"]["nats"])
    measured = [line for line in results["summary"] if line["target"]]
    assert all(line["value"] is not None for line in measured)
