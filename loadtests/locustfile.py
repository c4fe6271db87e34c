"""Locust load tests of live task streaming (gRPC publish → SSE receipt). See README.md here.

    locust -f loadtests/locustfile.py --headless -u 100 -r 20 -t 1m --scenario llm \\
        --max-p99-ms 250 --max-failure-ratio 0.01 --csv out/llm --html out/llm.html

Without `--taskstream-target FILE` the master starts an embedded reference cluster (PostgreSQL,
optional NATS, `--taskstream-instances` servers) and stops it when Locust quits. The master
provisions the scenario's tenant, tokens and workflows with the target's provisioner and hands
them to the workers with the spawn message, so workers need no target of their own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# gRPC's core must cooperate with gevent before the first channel exists.
importlib.import_module("grpc.experimental.gevent").init_gevent()

if __package__ in (None, ""):  # `locust -f loadtests/locustfile.py` imports this file bare
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import events  # noqa: E402 - after the path fix above
from locust.argument_parser import LocustArgumentParser  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

from loadtests.embedded import EmbeddedCluster  # noqa: E402
from loadtests.provision import provision_fixture  # noqa: E402
from loadtests.scenarios import SCENARIOS, Fixture  # noqa: E402
from loadtests.slots import SLOTS  # noqa: E402
from loadtests.thresholds import Thresholds, evaluate  # noqa: E402
from loadtests.users import RUN, GrpcPublisher, HttpIngestPublisher, SSESubscriber  # noqa: E402

__all__ = ["GrpcPublisher", "HttpIngestPublisher", "SSESubscriber"]

log = logging.getLogger("taskstream")
_embedded: EmbeddedCluster | None = None
_Handler = TypeVar("_Handler", bound=Callable[..., None])


def _listener(hook: Any) -> Callable[[_Handler], _Handler]:
    """`@events.x.add_listener`, typed (Locust's event hooks are not)."""

    def register(handler: _Handler) -> _Handler:
        hook.add_listener(handler)
        return handler

    return register


@_listener(events.init_command_line_parser)
def _arguments(parser: LocustArgumentParser, **_: Any) -> None:
    add = parser.add_argument  # (argument groups do not take `include_in_web_ui`)
    add(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="llm",
        include_in_web_ui=True,
        help="llm | fanout | consolidated | churn (default llm)",
    )
    add("--taskstream-target", default="", help="target file (TOML); none = embedded cluster")
    add("--taskstream-target-name", default="", help="which [[target]] (default: the first)")
    add(
        "--taskstream-instances",
        type=int,
        default=1,
        help="embedded cluster: server instances (> 1 uses NATS JetStream)",
    )
    add("--taskstream-nats", action="store_true", help="embedded cluster: NATS JetStream bus")
    add(
        "--workflows",
        type=int,
        default=0,
        help="llm/churn: workflows to stream (default: half the users)",
    )
    add(
        "--publishers",
        type=int,
        default=0,
        help="fanout/consolidated: publisher users (default 1 / 2)",
    )
    add(
        "--rate",
        type=float,
        default=0.0,
        include_in_web_ui=True,
        help="events/s per publisher (default: the scenario's, llm 50)",
    )
    add(
        "--batch",
        type=int,
        default=1,
        include_in_web_ui=True,
        help="events per publish call: > 1 sends StreamTaskDataBatch calls (default 1: unary)",
    )
    add(
        "--ingest",
        choices=["grpc", "http"],
        default="grpc",
        help="how publishers send: gRPC (default) or HTTP NDJSON ingest (give it to workers too)",
    )
    add(
        "--deliver-timeout-ms",
        type=float,
        default=2000.0,
        help="a later event counts as a failure (default 2000)",
    )
    add("--max-p95-ms", type=float, default=None, help="fail the run above this delivery p95")
    add("--max-p99-ms", type=float, default=None, help="fail the run above this delivery p99")
    add(
        "--max-failure-ratio",
        type=float,
        default=0.0,
        help="fail the run above this share of failed requests (default 0)",
    )
    add(
        "--min-events-per-s",
        type=float,
        default=None,
        help="fail the run below this many delivered events/s",
    )
    # Set by the master, copied to workers with each spawn message.
    add("--taskstream-fixture", default="", help=argparse.SUPPRESS, include_in_web_ui=False)


def _configure(options: argparse.Namespace) -> None:
    """This process's view of the run (the master's options reach workers at spawn)."""
    RUN.scenario = SCENARIOS[options.scenario]
    RUN.rate = options.rate or RUN.scenario.rate
    RUN.deliver_timeout = options.deliver_timeout_ms / 1000
    RUN.batch = max(1, options.batch)
    if options.taskstream_fixture:
        RUN.fixture = Fixture.from_json(options.taskstream_fixture)


@_listener(events.init)
def _on_init(environment: Environment, **_: Any) -> None:
    """Master or local: the target (embedded or from the file), then the fixture. Done here
    rather than in `test_start` so that provisioning does not eat into `--run-time`."""
    SLOTS.install(environment)
    options = environment.parsed_options
    if options is None:
        return
    publisher: type[GrpcPublisher] = GrpcPublisher
    if options.ingest == "http":  # on workers too: they spawn the classes the master names
        publisher = HttpIngestPublisher
        environment.user_classes[:] = [
            HttpIngestPublisher if cls is GrpcPublisher else cls for cls in environment.user_classes
        ]
    if isinstance(environment.runner, WorkerRunner):
        return
    scenario = SCENARIOS[options.scenario]
    users = options.num_users or 0
    publishers = options.publishers or scenario.publishers
    if publishers is None:  # one publisher per subscriber
        publisher.weight, publisher.fixed_count, SSESubscriber.weight = 1, 0, 1
    else:
        publisher.fixed_count = publishers
    target = options.taskstream_target
    if not target:
        global _embedded
        directory = Path(tempfile.mkdtemp(prefix="taskstream-locust-"))
        _embedded = EmbeddedCluster(
            directory, options.taskstream_instances, options.taskstream_nats
        )
        log.info("starting an embedded reference cluster (no --taskstream-target)")
        target = str(_embedded.start())
    workflows = options.workflows or max(1, math.ceil(users / 2) if users else 50)
    try:
        fixture = provision_fixture(
            target, options.taskstream_target_name or None, scenario.name, workflows
        )
    except Exception as error:
        _stop_embedded()
        raise SystemExit(f"cannot provision the {scenario.name} scenario: {error}") from error
    log.info(
        "scenario %s: %s; %d workflow(s) on %s",
        scenario.name,
        scenario.summary,
        len(fixture.subscriptions),
        ", ".join(fixture.http_urls),
    )
    options.taskstream_fixture = fixture.to_json()
    _configure(options)


@_listener(events.test_start)
def _on_test_start(environment: Environment, **_: Any) -> None:
    SLOTS.reset()
    if environment.parsed_options is not None:
        _configure(environment.parsed_options)


@_listener(events.quitting)
def _on_quitting(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    if options is None or runner is None:
        return
    if isinstance(runner, WorkerRunner):
        environment.process_exit_code = 1 if runner.exceptions else 0  # the master judges
        return
    limits = Thresholds(
        options.max_p95_ms, options.max_p99_ms, options.max_failure_ratio, options.min_events_per_s
    )
    checks = evaluate(environment.stats, limits)
    for check in checks:
        log.info("threshold %s", check)
    failed = [c for c in checks if not c.passed]
    if runner.exceptions:
        log.error("%d kind(s) of exception in user code: see the log", len(runner.exceptions))
    environment.process_exit_code = 1 if failed or runner.exceptions else 0
    _stop_embedded()


def _stop_embedded() -> None:
    global _embedded
    if _embedded is not None:
        _embedded.stop()
        shutil.rmtree(_embedded.directory, ignore_errors=True)  # its target file holds a token
        _embedded = None
