"""`python -m broken_servers <name> serve [flags]`: the reference server with one defect."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from conformance.variants import DEFECTS


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in DEFECTS:
        print(
            f"usage: python -m broken_servers {{{','.join(DEFECTS)}}} serve [flags]",
            file=sys.stderr,
        )
        return 2
    from reference_server import cli

    from .defects import extension

    return cli.main(args[1:], extension=extension(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())
