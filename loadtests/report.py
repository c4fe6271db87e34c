"""Bench results → ratios to the floors, target verdicts, a text table and a PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]

LOAD_FRACTIONS = (0.25, 0.50, 0.75)
P99_LIMIT_MS = 50.0
IDLE_LIMIT_KIB = 30.0
STALL_GROWTH_LIMIT_KIB = 64 * 1024


@dataclass(frozen=True, slots=True)
class Line:
    """One reported number: its value, the floor it is compared with, and the verdict."""

    metric: str
    value: float | None
    unit: str
    floor: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: informational, or not measured
    # The same ratio computed from server CPU time per event: floor cost / server cost. Steadier
    # than `ratio` when other work on the machine takes CPU from whichever run it lands on.
    cpu_ratio: float | None = None
    # Server CPU time per event (or per delivery, for fan-out) in the run behind `value`.
    cpu_us: float | None = None


def _get(data: Any, *path: str | int) -> Any:
    node: Any = data
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _cost(run: Any, key: str) -> float | None:
    """Server CPU seconds per event (or delivery) of a run."""
    cpu, rate = _get(run, "cpu", "server"), _get(run, key)
    return float(cpu) / float(rate) if cpu and rate else None


def _micros(run: Any, key: str) -> float | None:
    cost = _cost(run, key)
    return None if cost is None else cost * 1e6


def _ratio(value: float | None, floor: float | None) -> float | None:
    return value / floor if value is not None and floor else None


def _latency_at(section: Results | None, fraction: float) -> Results | None:
    for run in (section or {}).get("latency", []):
        if abs(run.get("fraction", -1) - fraction) < 1e-9:
            found: Results = run
            return found
    return None


SERVER_LABELS = {
    "memory": "in-memory bus",
    "nats": "NATS JetStream",
    "memory_loop": "in-memory bus, other event loop",
    "target": "target",
}


def summarize(results: Results) -> list[Line]:
    """The numbers the issue asks for, each with its floor, ratio and target verdict.

    Targets apply to the single-instance in-memory server (or `--target`); the NATS server is
    held to ≥ 0.8 x the in-memory end-to-end rate."""
    floors, servers = results.get("floors", {}), results.get("servers", {})
    ack = _get(floors, "grpc_ack", "peak", "events_per_s")
    sse = _get(floors, "sse_writer", "fanout", "deliveries_per_s")
    lines: list[Line] = []
    for name, section in servers.items():
        label = SERVER_LABELS.get(name, name)
        checked = name not in ("nats", "memory_loop")
        e2e = _get(section, "peak", "events_per_s")
        if name == "nats" and "memory" in servers:
            memory = _get(servers, "memory", "peak", "events_per_s")
            ratio = _ratio(e2e, memory)
            lines.append(
                Line(
                    f"end-to-end events/s, {label}",
                    e2e,
                    "ev/s",
                    memory,
                    ratio,
                    "≥ 0.8 x in-memory end-to-end",
                    _at_least(ratio, 0.8),
                    _ratio(
                        _cost(servers["memory"]["peak"], "events_per_s"),
                        _cost(section.get("peak"), "events_per_s"),
                    ),
                    _micros(section.get("peak"), "events_per_s"),
                )
            )
            nats_floor = _get(floors, "nats", "peak", "per_second")
            lines.append(
                Line(
                    "  same, vs. nats-py publish → subscribe floor",
                    e2e,
                    "ev/s",
                    nats_floor,
                    _ratio(e2e, nats_floor),
                )
            )
        else:
            ratio = _ratio(e2e, ack)
            lines.append(
                Line(
                    f"end-to-end events/s, {label}",
                    e2e,
                    "ev/s",
                    ack,
                    ratio,
                    "≥ 0.8 x gRPC ack floor" if checked else "",
                    _at_least(ratio, 0.8) if checked else None,
                    _ratio(
                        _cost(_get(floors, "grpc_ack", "peak"), "events_per_s"),
                        _cost(section.get("peak"), "events_per_s"),
                    ),
                    _micros(section.get("peak"), "events_per_s"),
                )
            )
        lines.extend(_batch_lines(name, section, results, label))
        fan = _get(section, "fanout", "deliveries_per_s")
        if fan is not None:
            ratio = _ratio(fan, sse)
            subscribers = _get(section, "fanout", "subscribers")
            lines.append(
                Line(
                    f"fan-out deliveries/s (1 → {subscribers}), {label}",
                    fan,
                    "del/s",
                    sse,
                    ratio,
                    "≥ 0.5 x SSE writer floor" if checked else "",
                    _at_least(ratio, 0.5) if checked else None,
                    _ratio(
                        _cost(_get(floors, "sse_writer", "fanout"), "deliveries_per_s"),
                        _cost(section.get("fanout"), "deliveries_per_s"),
                    ),
                    _micros(section.get("fanout"), "deliveries_per_s"),
                )
            )
        lines.extend(_latency_lines(section, floors.get("grpc_ack"), label, checked))
        idle = _get(section, "idle", "kib_per_connection")
        if idle is not None:
            floor_idle = _get(floors, "sse_writer", "idle", "kib_per_connection")
            count = _get(section, "idle", "connections")
            lines.append(
                Line(
                    f"RSS per idle SSE connection ({count} open), {label}",
                    idle,
                    "KiB",
                    floor_idle,
                    _ratio(idle, floor_idle),
                    f"≤ {IDLE_LIMIT_KIB:g} KiB",
                    idle <= IDLE_LIMIT_KIB,
                )
            )
        stall = _get(section, "stall")
        if stall is not None:
            growth = stall["rss_growth_kib"]
            bounded = bool(stall["stalled_evicted"]) and growth <= STALL_GROWTH_LIMIT_KIB
            lines.append(
                Line(
                    f"RSS growth, stalled subscriber under full load, {label}",
                    growth,
                    "KiB",
                    target="evicted; growth ≤ 64 MiB",
                    passed=bounded,
                )
            )
    return lines + _loop_trial_lines(servers)


def _loop_trial_lines(servers: Results) -> list[Line]:
    """`--loop-trial`: the in-memory server on the other event loop against the default one,
    same rounds (adopt it only at ≥ 1.1 x, see README)."""
    trial, base = servers.get("memory_loop"), servers.get("memory")
    if trial is None or base is None:
        return []
    lines = []
    for section, key, what in (
        ("peak", "events_per_s", "end-to-end events/s"),
        ("peak_batch", "events_per_s", "batched end-to-end events/s"),
        ("fanout", "deliveries_per_s", "fan-out deliveries/s"),
    ):
        value, floor = _get(trial, section, key), _get(base, section, key)
        lines.append(
            Line(
                f"event-loop trial: {what}, vs. the default loop",
                value,
                "/s",
                floor,
                _ratio(value, floor),
                cpu_ratio=_ratio(_cost(base.get(section), key), _cost(trial.get(section), key)),
                cpu_us=_micros(trial.get(section), key),
            )
        )
    return lines


BATCH_SPEEDUP = 5.0
BATCH_CPU_LIMIT_US = 40.0


def _batch_lines(name: str, section: Results, results: Results, label: str) -> list[Line]:
    """Batched peak rows: the speed-up over the same server's unary run, the ratio to the bare
    batched floor, CPU per event; NATS against the in-memory batched run."""
    run = section.get("peak_batch")
    value = _get(run, "events_per_s")
    if value is None:
        return []
    batch = _get(run, "batch")
    unary = _get(section, "peak", "events_per_s")
    floor_run = _get(results, "floors", "batch", "peak_batch")
    checked = name not in ("nats", "memory_loop")
    speedup = _ratio(value, unary)
    cpu_us = _micros(run, "events_per_s")
    lines = [
        Line(
            f"batched end-to-end events/s (batch {batch}), {label}",
            value,
            "ev/s",
            unary,
            speedup,
            f"≥ {BATCH_SPEEDUP:g} x unary end-to-end" if checked else "",
            _at_least(speedup, BATCH_SPEEDUP) if checked else None,
            _ratio(_cost(section.get("peak"), "events_per_s"), _cost(run, "events_per_s")),
            cpu_us,
        ),
        Line(
            "  same, vs. bare batched floor",
            value,
            "ev/s",
            _get(floor_run, "events_per_s"),
            _ratio(value, _get(floor_run, "events_per_s")),
            cpu_ratio=_ratio(_cost(floor_run, "events_per_s"), _cost(run, "events_per_s")),
            cpu_us=cpu_us,
        ),
    ]
    if checked:
        lines.append(
            Line(
                f"server CPU per event, batch {batch}, {label}",
                cpu_us,
                "µs",
                _micros(floor_run, "events_per_s"),
                _ratio(cpu_us, _micros(floor_run, "events_per_s")),
                f"≤ {BATCH_CPU_LIMIT_US:g} µs",
                None if cpu_us is None else cpu_us <= BATCH_CPU_LIMIT_US,
            )
        )
    memory = _get(results, "servers", "memory", "peak_batch")
    if name == "nats" and memory is not None:
        ratio = _ratio(value, _get(memory, "events_per_s"))
        lines.append(
            Line(
                "  same, vs. in-memory batched end-to-end",
                value,
                "ev/s",
                _get(memory, "events_per_s"),
                ratio,
                "≥ 0.8 x in-memory batched",
                _at_least(ratio, 0.8),
                _ratio(_cost(memory, "events_per_s"), _cost(run, "events_per_s")),
                cpu_us,
            )
        )
    return lines


def _latency_lines(
    section: Results, ack_floor: Results | None, label: str, checked: bool
) -> list[Line]:
    """p50/p95/p99 at each load fraction; the floor is the bare ack's call round trip at the
    same fraction of its own maximum."""
    lines = []
    for fraction in LOAD_FRACTIONS:
        run, floor_run = _latency_at(section, fraction), _latency_at(ack_floor, fraction)
        for q in ("p50", "p95", "p99"):
            value = _get(run, "latency_ms", q)
            floor = _get(floor_run, "latency_ms", q)
            judged = checked and fraction == 0.5 and q == "p99"
            lines.append(
                Line(
                    f"{q} publish → receipt at {fraction:.0%} of max, {label}",
                    value,
                    "ms",
                    floor,
                    _ratio(value, floor),
                    f"< {P99_LIMIT_MS:g} ms" if judged else "",
                    (value is not None and value < P99_LIMIT_MS) if judged else None,
                )
            )
    return lines


def _at_least(ratio: float | None, limit: float) -> bool | None:
    return None if ratio is None else ratio >= limit


def table(lines: list[Line]) -> str:
    def num(value: float | None, digits: int = 1) -> str:
        if value is None:
            return "-"
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:,.0f}"

    rows = [
        ("metric", "value", "unit", "floor", "ratio", "cpu ratio", "cpu µs/ev", "target", "verdict")
    ]
    for line in lines:
        verdict = {True: "PASS", False: "MISS", None: ""}[line.passed]
        rows.append(
            (
                line.metric,
                num(line.value),
                line.unit,
                num(line.floor),
                num(line.ratio, 2),
                num(line.cpu_ratio, 2),
                num(line.cpu_us),
                line.target,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    aligned = [
        "  ".join(
            cell.ljust(w) if i in (0, 2, 7) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join([aligned[0], "-" * len(aligned[0]), *aligned[1:]])


def write_json(results: Results, lines: list[Line], path: Path) -> None:
    document = {**results, "summary": [asdict(line) for line in lines]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def plot(results: Results, path: Path) -> str | None:
    """Latency percentiles against offered load, one panel per system; returns why not drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[dev]'); no plot written"
    panels = [("bare gRPC ack (floor, call round trip)", _get(results, "floors", "grpc_ack"))]
    for name, section in results.get("servers", {}).items():
        label = SERVER_LABELS.get(name, name)
        panels.append((f"reference, {label}" if name != "target" else label, section))
    panels = [(title, section) for title, section in panels if section and section.get("latency")]
    if not panels:
        return "no latency measurements to plot"
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True
    )
    for ax, (title, section) in zip(axes[0], panels, strict=True):
        runs = sorted(section["latency"], key=lambda run: run["offered_per_s"])
        x = [run["offered_per_s"] for run in runs]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-.")):
            ax.plot(x, [run["latency_ms"].get(q) for run in runs], style, label=q)
        ax.axhline(P99_LIMIT_MS, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("offered load (events/s)")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    meta = results.get("meta", {})
    fig.suptitle(
        f"publish → receipt latency at 25/50/75% of measured max "
        f"({'quick' if meta.get('quick') else 'full'} run, {meta.get('cpus')} CPUs)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
