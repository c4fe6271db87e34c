"""The HTML report (`report.html`): one self-contained page, no network, no build step.

It opens on what a team debugging its server needs first: a summary per target, then every
failure (FAIL, then NON-STRICT) laid out in full, each with the requirement, expected and actual
values and the wire transcript of the case, so nothing needs a hover or a click to be read. The
comparison matrix (requirements by targets) follows. Filters by verdict, profile and target apply
to both; they are a few lines of inline script over `data-` attributes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .catalog import Requirement
from .transcripts import render
from .verdicts import Verdict

if TYPE_CHECKING:
    from .reports import TargetRun  # reports.py writes this page

COLOURS = {
    Verdict.PASS: "#c8ecc8",
    Verdict.NON_STRICT: "#fbe7a8",
    Verdict.UNIMPLEMENTED: "#e4e4e4",
    Verdict.INFORMATIONAL: "#cfe3f7",
    Verdict.FAIL: "#f6b9b9",
}
_DEBUG_FIRST = (Verdict.FAIL, Verdict.NON_STRICT)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:12px 18px;color:#1b1b1b;font-size:14px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:14px 0 6px}
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px;
vertical-align:top;text-align:left}
.badge{display:inline-block;padding:0 6px;border-radius:3px;font-weight:600;font-size:12px}
#filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin:8px 0;font-size:13px}
.case{border:1px solid #d99;border-left:6px solid #c44;border-radius:4px;padding:6px 10px;
margin:0 0 10px}.case.NON-STRICT{border-color:#dc6;border-left-color:#d9a400}
.case h3{font-size:14px;margin:0 0 4px}.meta{color:#555;font-weight:normal}
.ea{display:grid;grid-template-columns:1fr 1fr;gap:8px}
pre{margin:2px 0 6px;padding:4px 6px;background:#f6f6f6;border:1px solid #ddd;
white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:9em;overflow:auto}
pre.transcript{max-height:42vh;background:#fbfbf4}
.label{font-size:12px;font-weight:600;color:#444}
td.reason{font-size:12px;color:#444;max-width:40em}.hidden{display:none}
"""

_SCRIPT = """
(function(){
  const boxes=[...document.querySelectorAll('#filters input[name=verdict]')];
  const profile=document.getElementById('f-profile'), target=document.getElementById('f-target');
  function apply(){
    const verdicts=new Set(boxes.filter(b=>b.checked).map(b=>b.value));
    const p=profile.value, t=target.value;
    document.querySelectorAll('.case').forEach(c=>{
      const show=verdicts.has(c.dataset.verdict)&&(!p||c.dataset.profile===p)
        &&(!t||c.dataset.target===t);
      c.classList.toggle('hidden',!show);
    });
    document.querySelectorAll('[data-col]').forEach(c=>
      c.classList.toggle('hidden',!!t&&c.dataset.col!==t));
    document.querySelectorAll('#matrix tbody tr').forEach(r=>{
      const cells=[...r.querySelectorAll('td[data-verdict]')]
        .filter(c=>!t||c.dataset.col===t);
      const show=(!p||r.dataset.profile===p)&&cells.some(c=>verdicts.has(c.dataset.verdict));
      r.classList.toggle('hidden',!show);
    });
    const shown=document.querySelectorAll('.case:not(.hidden)').length;
    document.getElementById('failure-count').textContent=shown;
  }
  [...boxes,profile,target].forEach(e=>e.addEventListener('change',apply));
  apply();
})();
"""


def report_html(runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]) -> str:
    """The whole page: summary, filters, failures with transcripts, comparison matrix."""
    profiles = sorted({req.profile for req in catalog.values()})
    failures = _failures(runs, catalog)
    body = [
        "<h1>Conformance report</h1>",
        _summary(runs),
        _filters(runs, profiles),
        f'<h2>Failures first (<span id="failure-count">{len(failures)}</span>)</h2>',
        *(failures or ["<p>No FAIL or NON-STRICT verdict.</p>"]),
        _matrix(runs, catalog),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Conformance report</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _badge(verdict: str) -> str:
    colour = next((c for v, c in COLOURS.items() if v.value == verdict), "#fff")
    return f'<span class="badge" style="background:{colour}">{html.escape(verdict)}</span>'


def _summary(runs: Sequence[TargetRun]) -> str:
    head = "".join(f"<th>{_badge(v.value)}</th>" for v in Verdict)
    rows = []
    for run in runs:
        counts = run.counts()
        error = ""
        if run.error:
            error = f' <b style="color:#b00">run error: {html.escape(run.error)}</b>'
        cells = "".join(f"<td>{counts[v]}</td>" for v in Verdict)
        rows.append(
            f"<tr><th>{html.escape(run.name)}</th>{cells}<td>{len(run.results)}</td>"
            f"<td>{run.wall_seconds:.1f} s{error}</td></tr>"
        )
    return (
        f'<table id="summary"><thead><tr><th>target</th>{head}<th>total</th><th>wall time</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _filters(runs: Sequence[TargetRun], profiles: Sequence[str]) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" name="verdict" value="{v.value}" checked> {v.value}</label>'
        for v in Verdict
    )
    profile_options = "".join(
        f'<option value="{html.escape(p)}">{html.escape(p)}</option>' for p in profiles
    )
    target_options = "".join(
        f'<option value="{html.escape(r.name)}">{html.escape(r.name)}</option>' for r in runs
    )
    return (
        f'<div id="filters"><span>verdict: {boxes}</span>'
        f'<label>profile <select id="f-profile"><option value="">all</option>{profile_options}'
        f'</select></label><label>target <select id="f-target"><option value="">all</option>'
        f"{target_options}</select></label></div>"
    )


def _failures(runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]) -> list[str]:
    order = {rid: n for n, rid in enumerate(catalog)}
    found: list[tuple[int, int, int, str]] = []
    for t, run in enumerate(runs):
        for rid, result in run.results.items():
            if result["verdict"] in {v.value for v in _DEBUG_FIRST}:
                rank = [v.value for v in _DEBUG_FIRST].index(result["verdict"])
                found.append((rank, t, order.get(rid, len(order)), _case(run, rid, result)))
    return [block for *_, block in sorted(found)]


def _case(run: TargetRun, rid: str, result: dict[str, Any]) -> str:
    esc = html.escape
    verdict = str(result["verdict"])
    expected = result.get("expected") if result.get("expected") is not None else ""
    actual = result.get("actual") if result.get("actual") is not None else result.get("detail", "")
    detail = result.get("detail") or ""
    transcript = result.get("transcript")
    wire = render(transcript) if transcript else "(no exchange was recorded for this case)"
    extra = (
        f'<div class="label">Detail</div><pre>{esc(detail)}</pre>'
        if detail and detail not in (str(actual), str(expected))
        else ""
    )
    return (
        f'<article class="case {esc(verdict)}" data-verdict="{esc(verdict)}" '
        f'data-profile="{esc(str(result.get("profile")))}" data-target="{esc(run.name)}" '
        f'id="case-{esc(run.name)}-{esc(rid)}">'
        f"<h3>{_badge(verdict)} <code>{esc(rid)}</code> {esc(str(result.get('title', '')))} "
        f'<span class="meta">· {esc(str(result.get("level")))} · {esc(str(result.get("profile")))}'
        f" · target {esc(run.name)} · {result.get('duration', 0):.2f} s</span></h3>"
        f'<div class="ea"><div><div class="label">Expected</div><pre class="expected">'
        f'{esc(str(expected))}</pre></div><div><div class="label">Actual</div>'
        f'<pre class="actual">{esc(str(actual))}</pre></div></div>{extra}'
        f'<div class="label">Wire transcript</div><pre class="transcript">{esc(wire)}</pre>'
        "</article>"
    )


def _matrix(runs: Sequence[TargetRun], catalog: Mapping[str, Requirement]) -> str:
    esc = html.escape
    head = "".join(f'<th data-col="{esc(r.name)}">{esc(r.name)}</th>' for r in runs)
    rows = []
    for rid, req in catalog.items():
        cells = []
        for run in runs:
            result = run.results.get(rid)
            if result is None:
                cells.append(f'<td data-col="{esc(run.name)}">—</td>')
                continue
            verdict = str(result["verdict"])
            reason = "" if verdict == Verdict.PASS.value else str(result.get("detail") or "")
            link = (
                f'<a href="#case-{esc(run.name)}-{esc(rid)}">{_badge(verdict)}</a>'
                if verdict in {v.value for v in _DEBUG_FIRST}
                else _badge(verdict)
            )
            cells.append(
                f'<td data-col="{esc(run.name)}" data-verdict="{esc(verdict)}">{link}'
                f'<div class="reason">{esc(reason[:300])}</div></td>'
            )
        rows.append(
            f'<tr data-profile="{esc(req.profile)}"><td><code>{esc(rid)}</code></td>'
            f"<td>{req.level}</td><td>{esc(req.profile)}</td><td>{esc(req.title)}</td>"
            f"{''.join(cells)}</tr>"
        )
    return (
        '<h2>Comparison matrix</h2><table id="matrix"><thead><tr><th>requirement</th>'
        f"<th>level</th><th>profile</th><th>title</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
