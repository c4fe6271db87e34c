"""Child processes of the bench: floors and load generators, driven over stdin/stdout lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.closing import AsyncClosing

_ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment of children: this project importable, gRPC quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    return env


class Child(AsyncClosing):
    """`python -m <module> <args>`: wait for its `READY` line, send commands, read `RESULT`.

    `async with` kills it on the way out whatever happened, so no child outlives the bench."""

    def __init__(self, module: str, *args: str, name: str | None = None) -> None:
        self.argv = [sys.executable, "-m", module, *args]
        self.name = name or module
        self.process: asyncio.subprocess.Process | None = None
        self.ready_info: Any = None
        self._stderr: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None

    @classmethod
    def loadgen(cls, role: str, config: dict[str, Any]) -> Child:
        return cls("loadtests.loadgen", role, json.dumps(config), name=f"loadgen {role}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 120.0) -> Any:
        """Start and wait for `READY <info>`; returns the info (JSON when it parses)."""
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
            limit=1 << 24,
        )
        self._stderr_task = asyncio.create_task(self._collect_stderr())
        line = await self._line_starting("READY", timeout)
        raw = line[len("READY") :].strip()
        try:
            self.ready_info = json.loads(raw)
        except json.JSONDecodeError:
            self.ready_info = raw
        return self.ready_info

    async def send(self, command: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def result(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for `RESULT {json}`."""
        line = await self._line_starting("RESULT", timeout)
        value: dict[str, Any] = json.loads(line[len("RESULT") :])
        return value

    async def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        await self.send("stop")
        return await self.result(timeout)

    async def _line_starting(self, prefix: str, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.process.stdout.readline()
                    if not raw:
                        await self.process.wait()
                        raise RuntimeError(
                            f"{self.name} exited ({self.process.returncode}) before {prefix}:\n"
                            + self.stderr_tail()
                        )
                    line = raw.decode(errors="replace").strip()
                    if line.startswith(prefix):
                        return line
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no {prefix} within {timeout}s\n{self.stderr_tail()}"
            ) from None

    async def _collect_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())
            del self._stderr[:-50]

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr[-20:])

    async def close(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._stderr_task, 1)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
