"""Provision a scenario's fixture on a target, in a process of its own.

    python -m loadtests.provision --target FILE [--target-name NAME] --scenario llm --workflows 50

prints the fixture as one JSON line. Locust runs it as a subprocess (`provision_fixture`): the
harness provisioners are asyncio code, and a gevent-patched process is no place for an event
loop.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Sequence

from harness.targets import Target, TargetError, load_targets

from .procs import child_env
from .scenarios import SCENARIOS, Fixture, provision


def pick_target(path: str, name: str | None) -> Target:
    targets = load_targets(path)
    for target in targets:
        if name is None or target.name == name:
            return target
    raise TargetError(f"{path}: no target named {name!r}")


def provision_fixture(
    target_path: str,
    target_name: str | None,
    scenario: str,
    workflows: int,
    timeout: float = 300.0,
) -> Fixture:
    """Run `python -m loadtests.provision` and parse its fixture."""
    args = [
        sys.executable,
        "-m",
        "loadtests.provision",
        "--target",
        target_path,
        "--scenario",
        scenario,
        "--workflows",
        str(workflows),
    ]
    if target_name:
        args += ["--target-name", target_name]
    done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        args, capture_output=True, text=True, timeout=timeout, env=child_env(), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"provisioning failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return Fixture.from_json(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.provision", description=__doc__)
    parser.add_argument("--target", required=True, help="target file (TOML)")
    parser.add_argument("--target-name", default=None)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--workflows", type=int, default=1)
    args = parser.parse_args(argv)
    target = pick_target(args.target, args.target_name)
    fixture = asyncio.run(provision(target, SCENARIOS[args.scenario], args.workflows))
    print(fixture.to_json(), flush=True)


if __name__ == "__main__":
    main()
