"""Running the explorer within a time budget, and printing a failure as a replayable script.

    outcome = explore(target, budget=30, seed=1)
    if outcome.finding: print(outcome.script)

Hypothesis generates sequences from `seed` until `budget` seconds have passed; a failure is
shrunk (for up to `shrink_budget` more seconds) and the shortest failing sequence seen is
kept, with its steps written as Python that replays it against a target file.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as with_seed
from hypothesis.stateful import run_state_machine_as_test

from harness.targets import Target

from .machine import Explorer, Setup
from .model import Finding, ModelViolation

DEFAULT_BUDGET = 20.0
LONG_RUN = 60.0  # from this budget on, rules that wait (token expiry, retention) run too
STEPS = 20


class BudgetSpent(BaseException):
    """Time is up: stops Hypothesis at once (a BaseException is not a failing example)."""


@dataclass(slots=True)
class Outcome:
    seed: int
    budget: float
    seconds: float = 0.0
    sequences: int = 0
    finding: Finding | None = None
    steps: list[str] = field(default_factory=list)
    error: str | None = None  # the run itself broke (not a finding)

    def script(self, target_file: str = "targets.toml", target_name: str = "") -> str:
        """The shortest failing sequence as a Python script that replays it."""
        lines = [
            f"# Explorer finding (seed {self.seed}): {self.finding}",
            "# Replay: python this_file.py (against the target file and name below)",
            "from conformance.explorer import replay",
            "",
            f"state = replay({target_file!r}, {target_name!r})",
            *self.steps,
            "state.teardown()",
        ]
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class _Budget:
    outcome: Outcome
    deadline: float
    shrink_deadline: float
    spent: bool = False

    def started(self) -> None:
        now = time.monotonic()
        if now > (self.shrink_deadline if self.outcome.finding else self.deadline):
            self.spent = True
            raise BudgetSpent
        self.outcome.sequences += 1

    def record(self, finding: Finding, steps: list[str]) -> None:
        best = self.outcome
        if best.finding is None or len(steps) < len(best.steps):
            best.finding, best.steps = finding, steps


def explore(
    target: Target,
    *,
    budget: float = DEFAULT_BUDGET,
    seed: int = 0,
    retention_seconds: float | None = None,
    notifies_server: bool = True,
    subscriber_buffer: int = 1024,
    shrink_budget: float | None = None,
) -> Outcome:
    """Explore `target` for `budget` seconds from `seed`; the outcome names any finding."""
    outcome = Outcome(seed, budget)
    started = time.monotonic()
    clock = _Budget(outcome, started + budget, started + budget + (shrink_budget or budget))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="explorer-loop", daemon=True)
    thread.start()
    setup = Setup(
        target=target,
        loop=loop,
        retention_seconds=retention_seconds,
        notifies_server=notifies_server,
        subscriber_buffer=subscriber_buffer,
        long_run=budget >= LONG_RUN,
        record=clock.record,
        started=clock.started,
    )
    machine = type("Explorer", (Explorer,), {"setup": setup})
    with_seed(seed)(machine)
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=10_000,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                derandomize=False,
                phases=(Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck),
                print_blob=False,
                report_multiple_bugs=False,
            ),
        )
    except BudgetSpent:
        pass
    except ModelViolation as violation:
        if outcome.finding is None:
            outcome.finding = violation.finding
    except Exception as error:
        # Stopping mid-run makes Hypothesis see a sequence end early ("flaky"): not an error;
        # anything else is the run breaking, said as such.
        if not clock.spent:
            outcome.error = f"{type(error).__name__}: {error}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    outcome.seconds = time.monotonic() - started
    return outcome
