"""A model-based explorer of task-streaming servers (Hypothesis stateful testing).

Random sequences of operations (workflows and children, streams opened, closed and resumed on
any instance, single publishes and concurrent bursts, completions, revocations) are run against
a target over the wire, and every observation is checked against a model of SPEC.md: what each
open stream must receive, in order, exactly once, and when it must end. A failure shrinks to a
short sequence, printed as a script (`Outcome.script`) that `replay` runs again.
"""

from __future__ import annotations

from .model import Finding
from .replay import replay
from .run import DEFAULT_BUDGET, Outcome, explore

__all__ = ["DEFAULT_BUDGET", "Finding", "Outcome", "explore", "replay"]
