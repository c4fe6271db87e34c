"""`python -m loadtests.bench`: peak throughput, latency percentiles and memory of the reference
server (in-memory bus and NATS JetStream), each as a ratio to floors measured in the same run.

    python -m loadtests.bench --quick --out bench.json      # CI smoke, < 2 min
    python -m loadtests.bench --out bench.json              # full run, < 15 min

Floors: a bare grpc.aio server that only acknowledges StreamTaskData, a bare aiohttp SSE writer,
a bare batched server (acks StreamTaskDataBatch and writes its frames), and nats-py publish →
subscribe. Every system is run with unary calls and with batches (`--batch`, 50 events per
call); every row gives the server's CPU time per event. Load generators run in their own processes
(`loadtests.loadgen`) so that the server under test keeps its core. Everything is started first
and the peak runs alternate between systems (`--repeats` rounds, median kept), so that a machine
that gets busier or quieter during the run shifts floors and servers alike. `--target FILE`
benches another implementation instead of the reference server (RSS only with `--server-pid`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from . import measure, report
from .measure import Result
from .procs import Child
from .sse_count import raise_nofile
from .systems import FULL, QUICK, SECTIONS, Sizes, System, start_systems


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- measuring ------------------------------------------------------------------------------------


def _median(runs: list[Result], key: str) -> Result:
    ordered = sorted(runs, key=lambda run: float(run[key]))
    return {**ordered[len(ordered) // 2], f"all_{key}": [round(float(r[key]), 1) for r in runs]}


@contextlib.asynccontextmanager
async def profiled(pid: int | None, directory: Path | None, name: str) -> AsyncIterator[None]:
    """py-spy flame graph of the server while the block runs (with `--profile DIR`)."""
    spy = shutil.which("py-spy")
    if directory is None or pid is None or spy is None:
        yield
        return
    process = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--nonblocking",
        "--output",
        str(directory / f"{name}.svg"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(2)  # SIGINT: py-spy writes the graph and exits
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 30)


async def measure_all(
    floors: list[System],
    servers: list[System],
    nats_url: str | None,
    sizes: Sizes,
    profile: Path | None,
) -> None:
    e2e = [s for s in floors + servers if s.e2e is not None]
    fans = [s for s in floors + servers if s.fanout is not None or s.sse_floor_url]
    peaks: dict[str, list[Result]] = {s.name: [] for s in e2e}
    for round_ in range(sizes.repeats):
        for system in e2e:
            assert system.e2e is not None
            _log(f"{system.label}: end-to-end peak (round {round_ + 1}/{sizes.repeats})")
            async with profiled(
                system.pid if system in servers else None,
                profile,
                f"{system.name}-peak-{round_ + 1}",
            ):
                peaks[system.name].append(
                    await measure.peak_rate(system.e2e, sizes.window, sizes.concurrency)
                )
    for system in e2e:
        assert system.e2e is not None
        system.results["peak"] = _median(peaks[system.name], "events_per_s")
    await _batched_peaks([s for s in floors + servers if s.batch_e2e is not None], sizes)
    for system in e2e:
        system.results["latency"] = await _latencies(system, sizes)
    if nats_url is not None:
        _log("floor: nats-py publish → subscribe")
        runs = [await _nats_floor(nats_url, sizes.window) for _ in range(sizes.repeats)]
        floors.append(
            System("nats", "floor: nats-py", results={"peak": _median(runs, "per_second")})
        )
    fanouts: dict[str, list[Result]] = {s.name: [] for s in fans}
    for round_ in range(sizes.repeats):
        for system in fans:
            _log(
                f"{system.label}: fan-out to {sizes.fanout_subscribers} "
                f"(round {round_ + 1}/{sizes.repeats})"
            )
            async with profiled(
                system.pid if system in servers else None,
                profile,
                f"{system.name}-fanout-{round_ + 1}",
            ):
                fanouts[system.name].append(await _fanout(system, sizes))
    for system in fans:
        system.results["fanout"] = _median(fanouts[system.name], "deliveries_per_s")
    for system in floors + servers:
        if system.idle_urls and system.pid is not None:
            _log(f"{system.label}: {sizes.idle_connections} idle connections")
            system.results["idle"] = await measure.idle_rss(
                system.pid, system.idle_urls, system.idle_token, sizes.idle_connections
            )
    for system in servers:
        if system.pid is not None and system.fanout is not None and system.name == "memory":
            _log(f"{system.label}: stalled subscriber under full load")
            system.results["stall"] = await measure.stalled_subscriber(
                system.fanout, sizes.stall_seconds
            )


async def _batched_peaks(systems: list[System], sizes: Sizes) -> None:
    """Peak runs with StreamTaskDataBatch calls of `sizes.batch` events, rounds alternating
    between the batched floor and the servers like the unary runs."""
    runs: dict[str, list[Result]] = {s.name: [] for s in systems}
    for round_ in range(sizes.repeats):
        for system in systems:
            assert system.batch_e2e is not None
            _log(f"{system.label}: batched peak, {sizes.batch} per call "
                 f"(round {round_ + 1}/{sizes.repeats})")  # fmt: skip
            runs[system.name].append(
                await measure.peak_rate(
                    system.batch_e2e, sizes.window, sizes.batch_concurrency, sizes.batch
                )
            )
    for system in systems:
        system.results["peak_batch"] = _median(runs[system.name], "events_per_s") | {
            "batch": sizes.batch
        }


async def _latencies(system: System, sizes: Sizes) -> list[Result]:
    assert system.e2e is not None
    runs = []
    for fraction in report.LOAD_FRACTIONS:
        rate = max(1.0, fraction * float(system.results["peak"]["events_per_s"]))
        _log(f"{system.label}: latency at {fraction:.0%} of max ({rate:,.0f}/s)")
        run = await measure.latency_at(system.e2e, rate, sizes.latency_window)
        runs.append({"fraction": fraction, **run})
    return runs


async def _fanout(system: System, sizes: Sizes) -> Result:
    if system.sse_floor_url is not None:
        assert system.pid is not None
        return await measure.fanout_floor(
            system.sse_floor_url, system.pid, sizes.fanout_subscribers, sizes.fanout_events
        )
    assert system.fanout is not None
    return await measure.fanout_server(
        system.fanout,
        system.fanout.sse_urls[0],
        sizes.fanout_subscribers,
        sizes.fanout_events,
        sizes.concurrency,
    )


async def _nats_floor(url: str, window: float) -> Result:
    subject = f"bench.floor.{uuid.uuid4().hex[:8]}"
    # Bounded so that the subscriber (the slower side) drains it in about `window` seconds.
    config = {
        "url": url,
        "subject": subject,
        "duration": window,
        "events": int(30_000 * window),
        "max_seconds": 600,
    }
    async with (
        Child.loadgen("nats-subscribe", config) as sub,
        Child.loadgen("nats-publish", config) as pub,
    ):
        await sub.start()
        await pub.start()
        await sub.send("reset")
        await pub.send("go")
        sent = await pub.result(timeout=window + 60)
        await sub.send(f"wait {sent['sent']}")
        received = await sub.result()
    return {"per_second": received["per_second"], "published": sent, "received": received}


# -- main -----------------------------------------------------------------------------------------


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if opts.quick else FULL
    overrides = {f.name: getattr(opts, f.name, None) for f in fields(Sizes)}
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    # Children (servers, generators) inherit the limit: 5,000 connections need 5,000+ files.
    nofile = raise_nofile(sizes.idle_connections * 2 + 1024)
    started = time.monotonic()
    meta = {
        "quick": opts.quick,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nofile": nofile,
        "sizes": asdict(sizes),
    }
    async with contextlib.AsyncExitStack() as stack:
        _log("starting floors and servers")
        floors, servers, nats_url = await start_systems(stack, opts, sizes)
        await measure_all(floors, servers, nats_url, sizes, opts.profile)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_end"] = os.getloadavg()
    return {
        "meta": meta,
        "floors": {s.name: s.results for s in floors},
        "servers": {s.name: s.results for s in servers},
    }


_SIZE_FLAGS: list[tuple[str, type, str]] = [
    ("window", float, "seconds of each peak-rate run (quick 3, full 15)"),
    ("latency_window", float, "seconds of each fixed-rate latency run (quick 2, full 10)"),
    ("repeats", int, "rounds of the peak and fan-out runs, median kept (quick 1, full 3)"),
    ("concurrency", int, "calls in flight in peak-rate runs (32)"),
    ("batch", int, "events per call in the batched peak runs (50)"),
    ("batch_concurrency", int, "batch calls in flight in the batched peak runs (8)"),
    ("streams", int, "workflows, one subscriber each, in end-to-end runs (16)"),
    ("fanout_subscribers", int, "subscribers of the fan-out workflow (1000)"),
    ("fanout_events", int, "events published in a fan-out run (quick 80, full 200)"),
    ("idle_connections", int, "idle SSE connections for RSS (quick 2000, full 5000)"),
    ("stall_seconds", float, "seconds of full load with a stalled subscriber (quick 3, full 10)"),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="CI smoke (< 2 min): shorter runs, smaller counts")
    add("--out", type=Path, default=Path("bench-results.json"), help="JSON results")
    add("--plot", type=Path, default=None, help="PNG plot (default: --out with .png)")
    add(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="what to measure (default: all)",
    )
    add("--nats-url", default=None, help="an existing NATS server (default: embedded)")
    add("--target", help="bench this target file's implementation instead of the reference")
    add("--target-name", help="which [[target]] of the file (default: the first)")
    add("--server-pid", type=int, help="the target's server process, for RSS measurements")
    add("--profile", type=Path, help="write py-spy flame graphs of the servers to this directory")
    add(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        help="the reference servers' event loop (default: the server's default)",
    )
    add(
        "--loop-trial",
        choices=["asyncio", "uvloop"],
        help="also bench the in-memory server on this event loop, in the same rounds",
    )
    add(
        "--fail-on-miss",
        action="store_true",
        help="exit 1 when a target is missed (on a busy machine, expect flakes)",
    )
    for name, kind, text in _SIZE_FLAGS:
        add(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None, help=text)
    opts = parser.parse_args(argv)
    if opts.profile is not None:
        opts.profile.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(opts))
    lines = report.summarize(results)
    report.write_json(results, lines, opts.out)
    plot_path = opts.plot or opts.out.with_suffix(".png")
    why_not = report.plot(results, plot_path)
    print(report.table(lines))
    meta = results["meta"]
    print(
        f"\n{meta['seconds']} s; load average {meta['loadavg_start'][0]:.2f} → "
        f"{meta['loadavg_end'][0]:.2f} on {meta['cpus']} CPUs; JSON: {opts.out}; "
        f"plot: {why_not or plot_path}"
    )
    missed = [line.metric for line in lines if line.passed is False]
    if missed:
        print("missed: " + "; ".join(missed))
    return 1 if missed and opts.fail_on_miss else 0


if __name__ == "__main__":
    raise SystemExit(main())
