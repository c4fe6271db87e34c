"""SPEC §9.1: the model-based explorer, for the run's budget (`--explore-budget`)."""

from __future__ import annotations

import pytest

from conformance import findings, requirement
from conformance.checks import Mismatch, informational
from conformance.explorer import explore
from conformance.fixtures import Facts


@requirement("explore/9.1/1")
def test_random_sequences_agree_with_the_model(
    facts: Facts, request: pytest.FixtureRequest
) -> None:
    config = request.config
    budget = float(config.getoption("--conformance-explore-budget"))
    seed = int(config.getoption("--conformance-explore-seed"))
    if budget <= 0:
        informational("the explorer is off (--explore-budget 0)")
    outcome = explore(
        facts.target,
        budget=budget,
        seed=seed,
        retention_seconds=facts.retention_seconds,
        notifies_server=facts.provisioner_notifies_server,
        subscriber_buffer=facts.subscriber_buffer,
    )
    if outcome.error is not None:
        raise RuntimeError(f"the explorer broke (seed {seed}): {outcome.error}")
    finding = outcome.finding
    if finding is None:
        return
    script = outcome.script(
        str(config.getoption("--taskstream-target")),
        str(config.getoption("--taskstream-target-name") or facts.target.name),
    )
    what = f"explorer, seed {seed}, {len(outcome.steps)} steps: {finding.what}"
    findings.record(
        request.node, finding.requirement, f"{what}\n{script}", finding.expected, finding.actual
    )
    raise Mismatch(
        f"{finding.requirement}: {what}", finding.expected, f"{finding.actual}\n{script}"
    )
