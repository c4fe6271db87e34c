"""Identifiers in requests: one parser for every UUID a client sends (path, body, gRPC field)."""

from __future__ import annotations

import uuid

from .errors import InvalidArgument


def parse_uuid(raw: str, name: str) -> uuid.UUID:
    """`raw` as a UUID in its 32- or 36-character form; anything else (braces, URNs, garbage) is
    INVALID_ARGUMENT naming the field (SPEC.md §3.3, §4.4)."""
    if len(raw) in (32, 36):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    raise InvalidArgument(f"{name} must be a UUID")
