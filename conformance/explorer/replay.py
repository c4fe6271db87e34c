"""Replaying a shrunk failure: the script the explorer prints calls `replay(file, name)` and
then the steps, as methods of the machine, exactly as Hypothesis ran them."""

from __future__ import annotations

import asyncio
import threading

from harness.targets import load_targets

from .machine import Explorer, Setup
from .model import Finding


def replay(target_file: str, target_name: str = "") -> Explorer:
    """A fresh machine on the target `target_name` (or the first) of `target_file`; a step
    that disagrees with the model raises `ModelViolation` naming the requirement."""
    targets = load_targets(target_file)
    target = next((t for t in targets if t.name == target_name), targets[0])
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="explorer-replay", daemon=True).start()

    def record(finding: Finding, steps: list[str]) -> None:
        print(f"reproduced after {len(steps)} steps: {finding}")

    notifies = target.provisioner.get("notifies_server", target.provisioner.get("kind") != "sql")
    setup = Setup(
        target=target,
        loop=loop,
        retention_seconds=target.retention_seconds,
        notifies_server=bool(notifies),
        subscriber_buffer=target.subscriber_buffer,
        long_run=True,
        record=record,
        started=lambda: None,
    )
    machine: type[Explorer] = type("Explorer", (Explorer,), {"setup": setup})
    return machine()
