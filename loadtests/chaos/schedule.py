"""The fault schedule: drawn from a seed, so a run can be repeated exactly.

Faults never overlap: each one is injected, lasts `duration` seconds (the process is down or
paused), is undone, and the system gets `settle` seconds before the next. Kinds come in rounds
that contain every kind once, in a seeded order, so even a short run sees each kind."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("instance-kill", "nats-kill", "instance-pause", "postgres-stop")
# (shortest, longest) seconds a fault of each kind lasts.
DURATIONS = {
    "instance-kill": (0.5, 2.0),  # SIGKILL, then a restart on the same ports
    "nats-kill": (1.0, 4.0),  # SIGKILL one node, then restart it with its store
    "instance-pause": (1.0, 3.0),  # SIGSTOP, then SIGCONT
    "postgres-stop": (2.0, 5.0),  # fast shutdown, then start on the same data dir
}
SETTLE = (5.0, 8.0)  # seconds between the end of one fault and the next
WARMUP = 5.0  # seconds of load before the first fault


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the load started
    kind: str
    target: int  # instance or NATS node index (0 for PostgreSQL)
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw(seed: int, seconds: float, *, instances: int, nats_nodes: int) -> list[Fault]:
    """Faults that fit in `seconds` of load (each one undone before the end, plus a settle)."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if k != "nats-kill" or nats_nodes > 1]
    faults: list[Fault] = []
    at, round_ = WARMUP, list[str]()
    while True:
        if not round_:
            round_ = rng.sample(kinds, len(kinds))
        kind = round_.pop()
        low, high = DURATIONS[kind]
        duration = round(rng.uniform(low, high), 2)
        count = nats_nodes if kind == "nats-kill" else instances
        target = 0 if kind == "postgres-stop" else rng.randrange(count)
        settle = rng.uniform(*SETTLE)
        if at + duration + settle > seconds:
            return faults
        faults.append(Fault(round(at, 2), kind, target, duration))
        at += duration + settle
