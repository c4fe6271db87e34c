"""Execution and token ids on the wire: one spelling of a UUID, parsed in one place.

Ids become bus keys, cache keys and retention buffers, so two spellings of one UUID would be two
streams: `ABC…`, `abc…` without hyphens and `urn:uuid:abc…` would be acknowledged and never
delivered, each with its own buffer. Only the canonical form (RFC 9562 §4: lower-case hex,
8-4-4-4-12 with hyphens) is accepted, on gRPC and HTTP alike; everything else is refused before
anything is keyed.
"""

from __future__ import annotations

import re
import uuid

from .errors import InvalidArgument

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse_uuid(raw: str, name: str) -> uuid.UUID:
    """The UUID `raw` spells canonically; `InvalidArgument` naming `name` for any other text."""
    if not _CANONICAL.fullmatch(raw):
        raise InvalidArgument(f"{name} must be a UUID in canonical form (lower-case, hyphenated)")
    return uuid.UUID(raw)


def is_canonical(raw: str) -> bool:
    return _CANONICAL.fullmatch(raw) is not None
