"""How cases state outcomes: mismatches with expected/actual, right-but-late, and skips that
carry a verdict (UNIMPLEMENTED, INFORMATIONAL).

    expect("status without credentials", answer.status, 401)
    Band(low=1.5, high=2.75, late=4.5).check("first keep-alive after", seconds)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import NoReturn

import pytest

UNIMPLEMENTED_PREFIX = "UNIMPLEMENTED: "
INFORMATIONAL_PREFIX = "INFORMATIONAL: "


def show(value: object) -> str:
    """A value as reports print it: repr, shortened."""
    text = value if isinstance(value, str) and value.startswith("<") else repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


class Mismatch(AssertionError):
    """An assert of the requirement did not hold; `expected`/`actual` go to the reports."""

    def __init__(self, what: str, expected: object, actual: object) -> None:
        self.what = what
        self.expected = expected if isinstance(expected, str) else show(expected)
        self.actual = actual if isinstance(actual, str) else show(actual)
        super().__init__(f"{what}: expected {self.expected}, got {self.actual}")


class NonStrict(Exception):
    """The behaviour is right but not strictly so (late within the tolerance band): verdict
    NON-STRICT whatever the requirement's level."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: expected {expected}, got {actual}")


def expect(what: str, actual: object, expected: object) -> None:
    """Equality, reported as expected/actual."""
    if actual != expected:
        raise Mismatch(what, expected, actual)


def expect_in(what: str, actual: object, allowed: Collection[object]) -> None:
    if actual not in allowed:
        raise Mismatch(what, f"one of {sorted(map(show, allowed))}", actual)


def expect_that(what: str, condition: bool, expected: str, actual: object) -> None:
    """A condition with a description of what was expected and what was seen."""
    if not condition:
        raise Mismatch(what, expected, actual)


def expect_all(what: str, results: dict[str, object], expected: object) -> None:
    """Every value of `results` (one per probe) equals `expected`; the report lists the probes
    that differ."""
    wrong = {probe: value for probe, value in results.items() if value != expected}
    if wrong:
        raise Mismatch(
            what,
            f"{show(expected)} for every probe",
            "; ".join(f"{probe} -> {show(value)}" for probe, value in wrong.items()),
        )


def unimplemented(reason: str) -> NoReturn:
    """Skip with verdict UNIMPLEMENTED (a profile the target does not declare)."""
    pytest.skip(UNIMPLEMENTED_PREFIX + reason)


def informational(reason: str) -> NoReturn:
    """Skip with verdict INFORMATIONAL (cannot be measured here; the reason says why)."""
    pytest.skip(INFORMATIONAL_PREFIX + reason)


@dataclass(frozen=True, slots=True)
class Band:
    """A timing tolerance band, in seconds: [low, high] is right, (high, late] is right but
    late (NON-STRICT); below `low` or above `late` is wrong."""

    low: float
    high: float
    late: float

    def check(self, what: str, seconds: float) -> None:
        expected = f"{self.low:.2f}..{self.high:.2f} s"
        actual = f"{seconds:.2f} s"
        if seconds < self.low:
            raise Mismatch(f"{what} (too early)", expected, actual)
        if seconds <= self.high:
            return
        if seconds <= self.late:
            raise NonStrict(f"{what} (late, within tolerance {self.late:.2f} s)", expected, actual)
        raise Mismatch(f"{what} (too late)", expected, actual)

    def check_within(self, what: str, seconds: float | None) -> None:
        """As `check` for something that must merely happen by `high`; None = never seen."""
        if seconds is None:
            raise Mismatch(what, f"within {self.high:.2f} s", f"nothing within {self.late:.2f} s")
        self.check(what, seconds)
