"""A drift report as one self-contained HTML file: no network fetch, no raw rows, size bounded by features.

What the page draws comes from the report's *summaries* (the profile's bins
and the window's counts on them), never from the data: a report of 25
features is the same size for a thousand rows or a billion (Evidently's
reports embed the data; a 0.5 GB input gave its users a 3.5 GB page).
Charts are inline SVG written here; the only script sorts the feature
table. Everything is escaped: feature names and category levels are data.

Input is plain dicts (``DriftReport.to_dict()`` plus per-feature
distributions, and optionally quality windows), so this module knows no
statistics and imports nothing of the services.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

STYLE = """
:root{--ink:#1d2433;--muted:#5b6475;--line:#d9dde5;--ref:#8aa4c8;--cur:#e07b39;--bad:#c0392b;--ok:#2e7d4f}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--ink);
margin:0;padding:24px 32px;background:#fafbfc}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
h3{font-size:15px;margin:0 0 6px}.muted{color:var(--muted)}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:140px}
.card b{display:block;font-size:20px}.bad{color:var(--bad)}.ok{color:var(--ok)}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f0f2f6;white-space:nowrap}th.sorted-asc:after{content:" \\25B2"}
th.sorted-desc:after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
.feature{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, column){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var ascending = !th.classList.contains('sorted-asc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
      th.classList.add(ascending ? 'sorted-asc' : 'sorted-desc');
      rows.sort(function(a, b){
        var x = a.cells[column].dataset.sort || a.cells[column].textContent;
        var y = b.cells[column].dataset.sort || b.cells[column].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
"""

MAX_BARS = 20


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def bars_svg(labels: Sequence[str], reference: Sequence[float], current: Sequence[float],
             width: int = 320, height: int = 130) -> str:
    """Reference vs current shares per bin or level, as grouped bars (counts normalised to shares)."""
    ref_total, cur_total = float(sum(reference)) or 1.0, float(sum(current)) or 1.0
    shares = [(r / ref_total, c / cur_total) for r, c in zip(reference, current, strict=True)]
    if len(shares) > MAX_BARS:  # the largest levels by either sample, in their order
        keep = sorted(sorted(range(len(shares)), key=lambda i: -max(shares[i]))[:MAX_BARS])
        labels, shares = [labels[i] for i in keep], [shares[i] for i in keep]
    top = max((max(s) for s in shares), default=1.0) or 1.0
    n = max(len(shares), 1)
    slot = (width - 10) / n
    bar = max(slot / 2 - 1, 1)
    plot = height - 22
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<line x1="5" y1="{plot}" x2="{width - 5}" y2="{plot}" stroke="#d9dde5"/>']
    for i, ((r, c), label) in enumerate(zip(shares, labels, strict=True)):
        x = 5 + i * slot
        for j, (share, colour) in enumerate(((r, "var(--ref)"), (c, "var(--cur)"))):
            h = plot * share / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{plot - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{_e(label)}: {"reference" if j == 0 else "current"} '
                         f'{share:.1%}</title></rect>')
    if labels:
        parts.append(f'<text x="5" y="{height - 6}">{_e(labels[0])[:18]}</text>')
        parts.append(f'<text x="{width - 5}" y="{height - 6}" text-anchor="end">{_e(labels[-1])[:18]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_svg(series: Mapping[str, Sequence[tuple[float, float, float | None, float | None]]],
             width: int = 640, height: int = 180) -> str:
    """One line per series over time (x = epoch ms), with a band where lower/upper are given."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    xs = [p[0] for p in points]
    ys = [v for p in points for v in (p[1], p[2], p[3]) if v is not None and math.isfinite(v)]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-9
    pad = 30

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad + (y - y0) / (y1 - y0) * (2 * pad - height) * 0.92

    colours = ["#2f6db5", "#e07b39", "#2e7d4f", "#8e44ad", "#c0392b", "#16a085"]
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<text x="4" y="{py(y1):.0f}">{y1:.3g}</text><text x="4" y="{py(y0):.0f}">{y0:.3g}</text>']
    for k, (name, values) in enumerate(sorted(series.items())):
        colour = colours[k % len(colours)]
        ordered = sorted(values)
        band = [(x, lo, hi) for x, _, lo, hi in ordered if lo is not None and hi is not None]
        if band:
            outline = [f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in band] + \
                      [f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(band)]
            parts.append(f'<polygon points="{" ".join(outline)}" fill="{colour}" opacity="0.15"/>')
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _, _ in ordered)
        dash = ' stroke-dasharray="5 3"' if band else ""
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}>'
                     f'<title>{_e(name)}</title></polyline>')
        parts.append(f'<text x="{width - pad}" y="{14 + 13 * k}" text-anchor="end" fill="{colour}">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _feature_rows(features: Mapping[str, Any], multivariate: Mapping[str, Any] | None) -> str:
    rows = []
    items = list(features.items()) + ([("(multivariate)", multivariate)] if multivariate else [])
    for name, f in items:
        tests = f.get("tests", {})
        skew = "; ".join(f"{s['kind']} {s['rate']:.1%}" for s in f.get("skew", []))
        verdict = '<b class="bad">drift</b>' if f.get("drift") else '<span class="ok">ok</span>'
        p_value = f.get("p_value")
        rows.append(
            f'<tr data-feature="{_e(name)}"><td><a href="#f-{_e(name)}">{_e(name)}</a></td><td>{_e(f.get("kind"))}</td>'
            f'<td>{verdict}</td><td>{_e(f.get("method", ""))}</td>'
            f'<td class="num" data-sort="{f.get("value") or 0}">{_number(f.get("value"))}</td>'
            f'<td class="num" data-sort="{p_value if p_value is not None else 1}">{_number(p_value, 2)}</td>'
            f'<td class="num" data-sort="{tests.get("psi", 0)}">{_number(tests.get("psi"), 3)}</td>'
            f'<td class="num" data-sort="{f.get("rows", 0)}">{_number(f.get("rows"))}</td>'
            f'<td>{_e(skew) or "&ndash;"}</td></tr>')
    return "".join(rows)


def render(report: Mapping[str, Any], distributions: Mapping[str, Mapping[str, Any]], *,
           title: str | None = None,
           quality: Sequence[Mapping[str, Any]] = (), generated: datetime | None = None) -> str:
    """The page. ``distributions``: feature -> {labels, reference, current}; ``quality``: QualitySummary
    records (realised and estimated) over windows and versions."""
    model = report.get("model", "")
    heading = title or f"Drift report: {model}"
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    features = report.get("features", {})
    drifted = [n for n, f in features.items() if f.get("drift")]
    multivariate = report.get("multivariate")
    skewed = [n for n, f in features.items() if f.get("skew")]
    cards = [("rows", _number(report.get("rows"))), ("features", str(len(features))),
             ("drift", '<span class="bad">yes</span>' if report.get("drift") else '<span class="ok">no</span>'),
             ("drifted features", f"{len(drifted)} ({report.get('drift_share', 0):.0%})"),
             ("skew", '<span class="bad">yes</span>' if report.get("skew") else '<span class="ok">no</span>'),
             ("alpha per feature", _number(report.get("alpha_per_feature"), 2))]
    if multivariate:
        cards.append(("multivariate", '<span class="bad">drift</span>' if multivariate.get("drift")
                      else '<span class="ok">ok</span>'))
    domain = report.get("domain_classifier")
    if domain:
        cards.append(("domain classifier AUC", f'{domain["auc"]:.3f}' + (" (drift)" if domain["drift"] else "")))
    body = [f"<h1>{_e(heading)}</h1>",
            f'<div class="muted">reference version {_e(report.get("reference_version", ""))} · generated {when} · '
            f'built from summaries, no raw rows</div>',
            '<div class="cards" id="summary">' + "".join(
                f'<div class="card"><span class="muted">{_e(k)}</span><b>{v}</b></div>' for k, v in cards) + "</div>"]
    performance = report.get("performance")
    if performance:
        realised = performance.get("realised", {})
        body.append("<h2>Model quality (estimated without labels)</h2><table id=\"performance\"><thead><tr>"
                    "<th>metric</th><th>estimated</th><th>band</th><th>realised</th></tr></thead><tbody>" + "".join(
                        f'<tr><td>{_e(k)}</td><td class="num">{v["value"]:.4f}</td>'
                        f'<td class="num">[{v["lower"]:.4f}, {v["upper"]:.4f}]</td>'
                        f'<td class="num">{_number(realised.get(k))}</td></tr>'
                        for k, v in performance.get("estimated", {}).items()) + "</tbody></table>")
    body.append('<h2>Features</h2><table class="sortable" id="features"><thead><tr><th>feature</th><th>kind</th>'
                '<th>result</th><th>test</th><th>statistic</th><th>p-value</th><th>PSI</th><th>rows</th>'
                f'<th>skew</th></tr></thead><tbody>{_feature_rows(features, multivariate)}</tbody></table>')
    if skewed:
        body.append("<h2>Skew</h2><ul>" + "".join(
            f"<li><b>{_e(n)}</b>: " + "; ".join(
                f"{_e(s['kind'])} {s['count']:,} rows ({s['rate']:.1%})"
                + (f" e.g. {_e(', '.join(s['examples'][:5]))}" if s.get("examples") else "")
                for s in features[n]["skew"]) + "</li>" for n in skewed) + "</ul>")
    body.append('<h2>Distributions</h2><div class="legend muted">share of rows per bin or level:'
                '<span style="background:var(--ref)"></span>reference<span style="background:var(--cur)"></span>'
                'current</div><div class="grid">')
    for name, f in features.items():
        shape = distributions.get(name)
        chart = bars_svg(shape["labels"], shape["reference"], shape["current"]) if shape else \
            '<div class="muted">no distribution (wrong type or not in the reference)</div>'
        verdict = '<b class="bad">drift</b>' if f.get("drift") else '<span class="ok">ok</span>'
        body.append(f'<div class="feature" id="f-{_e(name)}"><h3>{_e(name)} · {verdict}</h3>{chart}'
                    f'<div class="muted">{_e(f.get("method", ""))} p={_number(f.get("p_value"), 2)}, '
                    f'{_number(f.get("rows"))} rows</div></div>')
    body.append("</div>")
    if quality:
        body.append(_quality_section(quality))
    for segment, results in sorted(report.get("segments", {}).items()):
        found = [n for n, f in results.items() if f.get("drift")]
        if found:
            body.append(f"<p><b>segment {_e(segment)}</b>: drift in {_e(', '.join(found))}</p>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(heading)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}<script>{SORT_SCRIPT}</script></body></html>")


def _quality_section(quality: Sequence[Mapping[str, Any]]) -> str:
    """Each metric over windows, one line per model version (estimated ones dashed, with their band)."""
    metrics = sorted({m for q in quality for m in q.get("metrics", {})})
    parts = ["<h2>Quality over windows and versions</h2>"]
    for metric in metrics:
        series: dict[str, list[tuple[float, float, float | None, float | None]]] = {}
        for q in quality:
            if metric not in q.get("metrics", {}):
                continue
            estimated = bool(q.get("estimated"))
            name = f"v{q['model_version']}" + (" estimated" if estimated else "")
            series.setdefault(name, []).append((
                float(q["window_start"]), float(q["metrics"][metric]),
                q.get("lower", {}).get(metric) if estimated else None,
                q.get("upper", {}).get(metric) if estimated else None))
        parts.append(f'<div class="feature"><h3>{_e(metric)}</h3>{line_svg(series)}</div>')
    return "".join(parts)
