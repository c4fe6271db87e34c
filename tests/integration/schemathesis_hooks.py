"""Schemathesis hooks for the openapi fuzz test: how to put an `application/x-ndjson` body (the
HTTP ingest route) on the wire, which schemathesis cannot guess."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode("utf-8", "surrogatepass")}
