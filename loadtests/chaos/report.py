"""The chaos run's outputs: a text table, a JSON document and a PNG timeline."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .checker import Verdict
from .load import Record

COLOURS = {
    "instance-kill": "tab:red",
    "nats-kill": "tab:purple",
    "instance-pause": "tab:orange",
    "postgres-stop": "tab:blue",
}


def table(verdict: Verdict) -> str:
    head = ("stream", "subs", "acked", "delivered", "lost", "dup", "reordered", "gaps")
    rows = [head] + [
        (
            r.stream[:12],
            r.subscribers,
            r.acked,
            r.delivered,
            r.lost,
            r.duplicated,
            r.reordered,
            r.gaps,
        )
        for r in [*verdict.streams, verdict.total]
    ]
    lines = _aligned(rows)
    lines.append("")
    lines.append(
        f"publishes: {verdict.publish_attempts} attempted, {verdict.publish_errors} failed "
        f"({verdict.publish_errors_in_faults} during or just after a fault)"
    )
    lines.append("")
    rec: list[tuple[Any, ...]] = [("recovery (s)", "faults", "p50", "p99", "max", "unrecovered")]
    for kind, s in verdict.recovery.items():
        rec.append((kind, s["n"], _num(s["p50"]), _num(s["p99"]), _num(s["max"]), s["unrecovered"]))
    lines.extend(_aligned(rec))
    if verdict.examples:
        lines += ["", "examples:", *(f"  {e}" for e in verdict.examples)]
    lines += ["", "PASS: no acknowledged event lost, duplicated or reordered" if verdict.ok
              else "FAIL: acknowledged events lost, duplicated or reordered"]  # fmt: skip
    return "\n".join(lines)


def _num(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _aligned(rows: list[tuple[Any, ...]]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
           strict=True))) for row in cells]  # fmt: skip
    out.insert(1, "-" * len(out[0]))
    return out


def document(verdict: Verdict, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": meta,
        "ok": verdict.ok,
        "total": asdict(verdict.total),
        "streams": [asdict(s) for s in verdict.streams],
        "publish": {
            "attempted": verdict.publish_attempts,
            "failed": verdict.publish_errors,
            "failed_during_faults": verdict.publish_errors_in_faults,
        },
        "recovery": verdict.recovery,
        "faults": verdict.per_fault,
        "examples": verdict.examples,
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


def plot(record: Record, verdict: Verdict, path: Path, title: str) -> str | None:
    """Faults as bands, deliveries per second as a line, recovery times as points; returns why
    no plot was drawn (matplotlib missing), else None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[dev]'); no plot written"
    end = max((d[0] for ds in record.deliveries.values() for d in ds), default=1.0)
    buckets = [0] * (int(end) + 1)
    for deliveries in record.deliveries.values():
        for when, *_ in deliveries:
            buckets[int(when)] += 1
    acked = [0] * (int(end) + 1)
    for _, when in record.acked.values():
        if int(when) < len(acked):
            acked[int(when)] += 1
    fig, ax = plt.subplots(figsize=(12, 4.5))
    seconds = list(range(len(buckets)))
    ax.plot(seconds, buckets, color="tab:green", linewidth=1, label="delivered/s (all subscribers)")
    ax.plot(seconds, acked, color="tab:gray", linewidth=1, label="acknowledged/s")
    seen: set[str] = set()
    for fault in verdict.per_fault:
        kind = fault["kind"]
        ax.axvspan(
            fault["at"],
            fault["until"],
            color=COLOURS.get(kind, "grey"),
            alpha=0.25,
            label=None if kind in seen else kind,
        )
        seen.add(kind)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("events per second")
    twin = ax.twinx()
    points = [(f["at"], f["recovery"], f["kind"]) for f in verdict.per_fault if f["recovery"]]
    for at, recovery, kind in points:
        twin.plot([at], [recovery], "o", color=COLOURS.get(kind, "black"), markersize=4)
    twin.plot([], [], "o", color="black", markersize=4, label="time to recover (s), per fault")
    twin.set_ylabel("time to recover (s)")
    twin.set_ylim(bottom=0)
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=8, loc="lower left", ncol=3)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
