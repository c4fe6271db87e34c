"""`python -m loadtests.workers`: what `reference-server serve --workers N` buys on this machine.

For each N (default 1 and 2) it starts `reference-server serve --workers N` with the embedded
NATS (N = 1 too, so both runs use the same bus), opens `--subscribers` SSE streams on one
workflow (the kernel spreads the connections over the workers), publishes `--events` events as
fast as the server takes them and reports delivered events/s and the server's CPU per delivered
event (the workers' CPU time, not NATS's or PostgreSQL's). Results: a table and `--json FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.world import TenantWorld

from .measure import Endpoint, fanout_server
from .procs import Child, cpu_seconds

_READY = re.compile(r"http=(\S+) grpc=(\S+)")


def _server_pids(supervisor: int) -> list[int]:
    """The supervisor and its server children (with N = 1 the server is the process itself)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    pids = [supervisor]
    for child in map(int, children):
        try:
            if b"reference_server.cli" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(child)
        except OSError:
            continue
    return pids


async def measure(workers: int, subscribers: int, events: int, data_dir: Path) -> dict[str, Any]:
    admin = "fat_" + secrets.token_urlsafe(24)
    server = Child(
        "reference_server.cli", "serve", "--workers", str(workers), "--nats-url", "embedded",
        "--ephemeral", "--data-dir", str(data_dir / f"w{workers}"), "--http-port", "0",
        "--grpc-port", "0", "--admin-token", admin, "--subscriber-buffer", str(events + 10),
        name=f"server --workers {workers}",
    )  # fmt: skip
    info = str(await server.start(timeout=120))
    match = _READY.search(info)
    assert match, info
    http_url, grpc_address = match[1], match[2]
    try:
        world = await TenantWorld.create(http_url, grpc_address, admin)
        wf = await world.workflow()
        ep = Endpoint(grpc=grpc_address, token=world.worker.token, streams=[(wf, "")],
                      sse_token=world.user.token)  # fmt: skip
        url = world.workflow_url(wf)
        pids = _server_pids(server.pid)
        before = sum(cpu_seconds(p) for p in pids)
        result = await fanout_server(ep, url, subscribers, events)
        cpu = sum(cpu_seconds(p) for p in pids) - before
        await world.close()
    finally:
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)  # graceful: it stops NATS and PostgreSQL
        await asyncio.wait_for(server.process.wait(), 60)
    delivered = int(result["received"]["events"])
    return {
        "workers": workers,
        "server_processes": len(pids),
        "subscribers": result["subscribers"],
        "events": events,
        "delivered": delivered,
        "delivered_per_s": result["deliveries_per_s"],
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_us_per_delivery": round(cpu / delivered * 1e6, 1) if delivered else None,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.workers", description=__doc__)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--subscribers", type=int, default=200, help="SSE streams (default 200)")
    p.add_argument("--events", type=int, default=500, help="events published (default 500)")
    p.add_argument("--data-dir", type=Path, default=Path(".taskstream-bench"))
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    rows = [asyncio.run(measure(n, args.subscribers, args.events, args.data_dir)) for n in counts]
    print(f"{'workers':>7}  {'delivered/s':>11}  {'server CPU µs/delivery':>22}  {'CPU s':>6}")
    for row in rows:
        per = row["server_cpu_us_per_delivery"]
        print(f"{row['workers']:>7}  {row['delivered_per_s']:>11,.0f}  {per!s:>22}  "
              f"{row['server_cpu_seconds']:>6}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
