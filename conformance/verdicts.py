"""The five verdicts, and how a failed case's level maps to one."""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    NON_STRICT = "NON-STRICT"  # a SHOULD missed, or a MUST right but late (within tolerance)
    UNIMPLEMENTED = "UNIMPLEMENTED"  # the target does not declare the profile
    INFORMATIONAL = "INFORMATIONAL"  # a MAY missed, or not measurable here (with a reason)
    FAIL = "FAIL"  # a MUST missed: the run fails


# A case that fails: its verdict by the requirement's level.
FAILURE_VERDICT = {"MUST": Verdict.FAIL, "SHOULD": Verdict.NON_STRICT, "MAY": Verdict.INFORMATIONAL}
