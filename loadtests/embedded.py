"""An embedded reference cluster for load tests that are given no target file.

    python -m loadtests.embedded --dir DIR [--instances N] [--nats]

starts PostgreSQL (+ NATS JetStream) and N `reference-server` processes through
`harness.cluster`, writes `DIR/target.toml` (readable by its owner only: it holds the admin
token), prints `READY DIR/target.toml`, and runs until SIGTERM/SIGINT or until its stdin
closes, so that it never outlives the Locust master that started it.

`EmbeddedCluster` is that process seen from a (gevent-patched) Locust master.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.cluster import ReferenceCluster
from harness.targets import write_target_file

from .procs import child_env

# Load tests open many streams on one tenant; the default limit (1,000) is for production.
SETTINGS = {"log_level": "WARNING", "max_streams_per_tenant": 100_000}


async def _serve(directory: Path, instances: int, nats: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def parent_gone() -> None:
        await stdin.read()  # EOF: whoever started us has exited
        stop.set()

    watcher = asyncio.create_task(parent_gone())
    async with ReferenceCluster(instances=instances, nats=nats, settings=SETTINGS) as cluster:
        path = directory / "target.toml"
        write_target_file(path, [cluster.target("embedded")])
        print(f"READY {path}", flush=True)
        await stop.wait()
    watcher.cancel()


class EmbeddedCluster:
    """Starts `python -m loadtests.embedded` and waits for its target file (blocking calls:
    under gevent they yield to other greenlets)."""

    def __init__(self, directory: Path, instances: int = 1, nats: bool = False) -> None:
        self.directory = directory
        args = [
            sys.executable,
            "-m",
            "loadtests.embedded",
            "--dir",
            str(directory),
            "--instances",
            str(instances),
        ]
        if nats:
            args.append("--nats")
        self._args = args
        self._process: subprocess.Popen[str] | None = None
        self.target_path: Path | None = None

    def start(self, timeout: float = 120.0) -> Path:
        self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            self._args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self._process.stdout is not None
        line = ""
        with _deadline(timeout, self._process):
            line = self._process.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"embedded cluster failed to start (got {line!r})")
        self.target_path = Path(line.split(" ", 1)[1].strip())
        return self.target_path

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _deadline(seconds: float, process: subprocess.Popen[str]) -> Iterator[None]:
    """Kill `process` if the block is still running after `seconds` (unblocks readline)."""
    import threading

    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        yield None
    finally:
        timer.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.embedded", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="where to write target.toml")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--nats", action="store_true", help="NATS JetStream bus (multi-instance)")
    args = parser.parse_args(argv)
    if args.instances > 1:
        args.nats = True
    os.makedirs(args.dir, exist_ok=True)
    asyncio.run(_serve(args.dir, args.instances, args.nats))


if __name__ == "__main__":
    main()
