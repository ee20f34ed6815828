"""The `factory report` page: one self-contained HTML file rendered from the report's summary dict.

Owns the presentation only: `render(summary) -> str` turns what `factory.report.build_summary` computed into a
page with inline CSS and inline SVG charts drawn here (horizontal bars for the funnel, reject reasons and PII
types; grouped columns for length, turn and cluster-size histograms; 100% bars for the source mixture), and
tables with examples. No script, no external stylesheet, font or image: the page opens offline and prints.
Every piece of text that comes from the run (record text, details, sources, reasons, stage and benchmark
names) goes through `html.escape`.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

OUT, REJECTED, COPIES = "#2f855a", "#c53030", "#6b46c1"
BEFORE, AFTER = "#a0aec0", "#2b6cb0"
PALETTE = ("#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#805ad5", "#d69e2e", "#319795", "#c53030", "#4a5568")
CHART_W = 760
LABEL_W = 190

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1a202c;
  background:#f7fafc;margin:0}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}h3{font-size:15px;margin:16px 0 6px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px 20px;margin:16px 0}
.meta{color:#4a5568}.muted{color:#718096}
.chip{display:inline-block;border-radius:12px;padding:1px 10px;margin:2px 4px 2px 0;font-size:12px}
.done{background:#c6f6d5;color:#22543d}.unfinished{background:#fefcbf;color:#744210}
.missing{background:#edf2f7;color:#718096}
.warn{background:#fffaf0;border-color:#f6ad55}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #edf2f7;vertical-align:top}
th{background:#f7fafc;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;word-break:break-word;margin:0;
  font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;background:#f7fafc;padding:6px;border-radius:4px;
  max-height:180px;overflow:auto}
details summary{cursor:pointer;color:#2b6cb0}
table.examples{table-layout:fixed}table.examples td{overflow-wrap:anywhere}
.charts{display:flex;flex-wrap:wrap;gap:16px}.charts>div{flex:1 1 480px}
svg text{font:12px system-ui,"DejaVu Sans",sans-serif;fill:#2d3748}
svg .axis{stroke:#cbd5e0}svg .grid{stroke:#edf2f7}
"""


def render(summary: dict) -> str:
    """The whole page for one report summary."""
    parts = [
        _header(summary),
        _warnings(summary["warnings"]),
        _funnel(summary["stages"], summary["inputs"]),
        _rejects(summary["rejects"], summary["stages"]),
        _lengths(summary["before"], summary["after"]),
        _sources(summary["before"], summary["after"], summary["mix"]),
        _dedup(summary["dedup"]),
        _pii(summary["pii"]),
        _decontam(summary["decontam"]),
        _synth(summary["synth"]),
        _mix(summary["mix"]),
        _evals(summary.get("evals") or []),
        _figures(summary["figures"]),
    ]
    body = "\n".join(p for p in parts if p)
    title = escape(f"factory report: {summary['run_dir']}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


# --- sections -----------------------------------------------------------------------------------------------


def _header(s: dict) -> str:
    chips = [
        f'<span class="chip {"done" if r["status"] == "done" else "unfinished"}">{escape(r["stage"])}'
        f"{'' if r['status'] == 'done' else ' (' + escape(r['status']) + ')'}</span>"
        for r in s["stages"]
    ]
    chips += [f'<span class="chip missing">{escape(name)} (not run)</span>' for name in s["missing"]]
    return (
        f"<header><h1>factory report</h1>"
        f'<div class="meta">{escape(s["run_dir"])} &middot; generated {escape(s["generated_at"])} '
        f"&middot; built in {s.get('build_s', 0):.2f} s</div><div>{''.join(chips)}</div></header>"
    )


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<section class="warn"><h2>Warnings</h2><ul>{items}</ul></section>'


def _funnel(stages: list[dict], inputs: list[dict]) -> str:
    top = max([max(r["in"], r["out"] + r["rejected"]) for r in stages] + [1])
    rows = []
    for r in stages:
        kept = r["out"] - r["copies"]
        segments = [
            (kept, OUT, f"out {kept:,}"),
            (r["copies"], COPIES, f"copies {r['copies']:,}"),
            (r["rejected"], REJECTED, f"rejected {r['rejected']:,}"),
        ]
        note = f"{r['in']:,} in → {r['out']:,} out, {r['rejected']:,} rejected"
        if r["status"] != "done":
            note += f" ({r['status']}, partial)"
        rows.append((r["stage"], segments, note))
    chart = hbars(rows, top)
    legend = _legend(
        [("out", OUT), ("rejected", REJECTED)]
        + ([("copies", COPIES)] if any(r["copies"] for r in stages) else [])
    )
    table = _table(
        ["stage", "status", "in", "out", "rejected", "kept", "time", "top reasons"],
        [
            [
                r["stage"],
                r["status"],
                _n(r["in"]),
                _n(r["out"]),
                _n(r["rejected"]),
                f"{100 * r['out'] / r['in']:.1f}%" if r["in"] else "",
                f"{r['duration_s']:.1f} s" if r["duration_s"] is not None else "",
                ", ".join(
                    f"{k} {v:,}"
                    for k, v in sorted(r["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:4]
                ),
            ]
            for r in stages
        ],
        numeric={2, 3, 4, 5, 6},
    )
    files = ""
    if inputs:
        rows = [[i["path"], i["format"], i["source"], _n(i["records"])] for i in inputs]
        files = f"<details><summary>inputs ({len(inputs)})</summary>"
        files += _table(["path", "format", "source", "records"], rows, {3}) + "</details>"
    return f"<section><h2>Funnel</h2>{legend}{chart}{table}{files}</section>"


def _rejects(rejects: list[dict], stages: list[dict]) -> str:
    if not rejects:
        return '<section><h2>Rejects by reason</h2><p class="muted">no rejects</p></section>'
    ins = {r["stage"]: r["in"] for r in stages}
    top = max(r["records"] for r in rejects)
    chart = hbars(
        [
            (f"{r['stage']} · {r['reason']}", [(r["records"], REJECTED, "")], f"{r['records']:,}")
            for r in rejects
        ],
        top,
    )
    rows = []
    for r in rejects:
        n_in = ins.get(r["stage"])
        share = f"{100 * r['records'] / n_in:.2f}% of {n_in:,} in" if n_in else ""
        cells = [_example_cells(e) for e in r["examples"]] or ["<td></td><td></td><td></td>"]
        reason = (
            f"<td rowspan='{len(cells)}'><b>{escape(r['stage'])}</b> · {escape(r['reason'])}<br>"
            f"{r['records']:,} <span class='muted'>{escape(share)}</span></td>"
        )
        rows += [f"<tr>{reason if i == 0 else ''}{c}</tr>" for i, c in enumerate(cells)]
    head = (
        "<tr><th style='width:17%'>reason</th><th style='width:16%'>origin</th>"
        "<th style='width:37%'>record</th><th style='width:30%'>detail</th></tr>"
    )
    return (
        f"<section><h2>Rejects by reason</h2>{chart}<h3>Examples: the first rejects of each reason</h3>"
        f"<table class='examples'>{head}{''.join(rows)}</table></section>"
    )


def _example_cells(e: dict) -> str:
    where = escape(str(e["origin"] or e["id"] or ""))
    return (
        f"<td>{where}<br><span class='muted'>{escape(str(e['source'] or ''))}</span></td>"
        f"<td><pre>{escape(e['text'] or '')}</pre></td><td><pre>{escape(e['detail'] or '')}</pre></td>"
    )


def _lengths(before: dict | None, after: dict | None) -> str:
    if before is None:
        return ""
    sides = _sides(before, after)
    charts, stats = [], []
    for key, name in (
        ("instruction_tokens", "Instruction tokens (user turns)"),
        ("response_tokens", "Response tokens (assistant turns)"),
    ):
        labels, series = _merge_bins(
            [(label, color, side[key]["histogram"]) for label, color, side in sides], "lo"
        )
        charts.append(f"<div><h3>{name}</h3>{columns(labels, series)}</div>")
        for label, _, side in sides:
            f = side[key]
            stats.append(
                [
                    name.split(" (")[0],
                    label,
                    _n(f["records"]),
                    _n(f["total"]),
                    _n(f["mean"]),
                    _n(f["p50"]),
                    _n(f["p90"]),
                    _n(f["p99"]),
                    _n(f["max"]),
                ]
            )
    turns_labels, turns_series = _merge_bins(
        [(label, color, side["user_turns"]) for label, color, side in sides], "lo"
    )
    charts.append(f"<div><h3>User turns per conversation</h3>{columns(turns_labels, turns_series)}</div>")
    table = _table(
        ["", "", "records", "total", "mean", "p50", "p90", "p99", "max"], stats, numeric=set(range(2, 9))
    )
    return (
        f"<section><h2>Lengths in tokens</h2>{_legend([(lbl, c) for lbl, c, _ in sides])}"
        f"<div class='charts'>{''.join(charts)}</div>{table}"
        f"<p class='muted'>Tokens are runs of word characters or single other characters (factory.tokens), "
        f"about a BPE tokenizer's count on English prose. Bins are powers of two.</p></section>"
    )


def _sources(before: dict | None, after: dict | None, mix: dict | None) -> str:
    if before is None and not (mix and mix["mixture"]):
        return ""
    rows: list[tuple[str, dict[str, int]]] = []
    for label, _, side in _sides(before, after) if before else []:
        rows.append((label, {r["source"]: r["records"] for r in side["sources"]}))
    if mix and mix["mixture"]:
        for key in ("planned", "achieved"):
            rows.append((f"mix {key}", {r["source"]: r[key] or 0 for r in mix["mixture"]}))
    names = list(dict.fromkeys(src for _, counts in rows for src in counts))
    colors = {src: PALETTE[i % len(PALETTE)] for i, src in enumerate(names)}
    table = _table(
        ["source"] + [label for label, _ in rows],
        [[src] + [_share_cell(counts, src) for _, counts in rows] for src in names],
        numeric=set(range(1, len(rows) + 1)),
    )
    legend = _legend([(n, colors[n]) for n in names])
    return f"<section><h2>Source mix</h2>{legend}{shares(rows, colors)}{table}</section>"


def _dedup(d: dict | None) -> str:
    if d is None:
        return ""
    labels = [c["size"] for c in d["cluster_sizes"]]
    chart = (
        columns(labels, [("clusters", AFTER, [c["clusters"] for c in d["cluster_sizes"]])]) if labels else ""
    )
    line = (
        f"{_n(d['clusters'])} clusters of duplicates (largest {_n(d['largest_cluster'])} records); "
        f"{_n(d['exact_removed'])} exact and {_n(d['near_removed'])} near duplicates removed "
        f"(Jaccard threshold {_n(d['threshold'])}); "
        f"{_n(d['kept_by_chaining_guard'])} kept by the chaining guard."
    )
    return f"<section><h2>Duplicates: cluster sizes</h2><p>{escape(line)}</p>{chart}</section>"


def _pii(p: dict | None) -> str:
    if p is None:
        return ""
    if not p["entities"]:
        return "<section><h2>PII entities</h2><p class='muted'>none found</p></section>"
    top = max(e["count"] for e in p["entities"])
    chart = hbars(
        [(e["type"], [(e["count"], PALETTE[3], "")], f"{e['count']:,}") for e in p["entities"]], top
    )
    return (
        f"<section><h2>PII entities by type</h2>{chart}<p>{_n(p['records_redacted'])} records redacted "
        f"(entities replaced by typed placeholders).</p></section>"
    )


def _decontam(c: dict | None) -> str:
    if c is None:
        return ""
    rows = [
        [b["benchmark"], b["split"] or "", _n(b["items"]), _n(b["items_hit"]), _n(b["records_removed"])]
        for b in c["benchmarks"]
    ]
    note = f"method {c['method'] or '?'}, {c['ngram'] or '?'}-grams, threshold {c['threshold']}"
    return (
        f"<section><h2>Contamination per benchmark</h2><p class='muted'>{escape(note)}; "
        f"<code>factory audit RUN_DIR</code> shows the matches.</p>"
        f"{_table(['benchmark', 'split', 'items', 'items found', 'records removed'], rows, {2, 3, 4})}"
        "</section>"
    )


def _evals(rows: list[dict]) -> str:
    if not rows:
        return ""
    body = [
        [
            r["eval"],
            r["model"] + (" + adapter" if r["adapter"] else ""),
            r["benchmark"],
            r["metric"],
            f"{r['score']:.3f}" if r["score"] is not None else "",
            f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}" if r["ci95"] and None not in r["ci95"] else "",
            _n(r["tasks"]),
            _n(r["items_hit_in_training_data"])
            if r["items_hit_in_training_data"] is not None
            else "not checked",
        ]
        for r in rows
    ]
    header = [
        "eval",
        "model",
        "benchmark",
        "metric",
        "score",
        "95% interval",
        "tasks",
        "items in training data",
    ]
    return (
        "<section><h2>Evaluations</h2><p class='muted'><code>factory eval</code> runs of models trained on this "
        "run's data; items in training data: benchmark items decontam found (and removed) upstream.</p>"
        f"{_table(header, body, {4, 6})}</section>"
    )


def _synth(s: dict | None) -> str:
    if s is None:
        return ""
    head = [
        ("requests", s["requests"]),
        ("cache hits", s["cache_hits"]),
        ("cache hit rate", f"{100 * s['cache_hit_rate']:.1f}%" if s["cache_hit_rate"] is not None else None),
    ]
    head += list(s["tokens"].items()) + list(s["cost"].items())
    models = f"<p>models: {escape(', '.join(s['models']))}</p>" if s["models"] else ""
    rest = [(k, v) for k, v in s["figures"].items() if k not in s["tokens"] and k not in s["cost"]]
    return (
        f"<section><h2>Synth</h2>{models}"
        f"{_table(['figure', 'value'], [[k, _n(v)] for k, v in head if v is not None], {1})}"
        f"<details><summary>all figures</summary>"
        f"{_table(['figure', 'value'], [[k, _n(v)] for k, v in rest], {1})}"
        f"</details></section>"
    )


def _mix(m: dict | None) -> str:
    if m is None:
        return ""
    split = ", ".join(f"{k} {_n(v)}" for k, v in m["split"].items()) or "-"
    line = f"format {m['format'] or '?'} · splits: {split} · extra copies from up-sampling: {_n(m['copies'])}"
    if m["status"] != "done":
        line += f" · status {m['status']} (unfinished)"
    unit = m["unit"]
    mixture = [[r["source"], _n(r["planned"]), _n(r["achieved"]), _n(r["tokens"])] for r in m["mixture"]]
    rows = [[r["split"], r["source"], _n(r["records"])] for r in m["shards"]]
    return (
        f"<section><h2>Mix (the output dataset)</h2><p>{escape(line)}</p>"
        f"{_table(['source', f'planned ({unit})', f'achieved ({unit})', 'tokens'], mixture, {1, 2, 3})}"
        f"{_table(['split', 'source', 'records in the shards'], rows, {2}) if rows else ''}</section>"
    )


def _figures(figures: dict[str, dict]) -> str:
    blocks = "".join(
        f"<details><summary>{escape(stage)} ({len(f)})</summary>"
        f"{_table(['figure', 'value'], [[k, _n(v)] for k, v in f.items()], {1})}</details>"
        for stage, f in figures.items()
        if f
    )
    return f"<section><h2>All stage figures</h2>{blocks}</section>" if blocks else ""


# --- charts: inline SVG -------------------------------------------------------------------------------------


def hbars(rows: list[tuple[str, list[tuple[float, str, str]], str]], top: float, width: int = CHART_W) -> str:
    """Horizontal stacked bars: per row a label, segments (value, colour, tooltip) scaled to `top`, a note."""
    bar_h, gap, note_w = 20, 6, 250
    span = width - LABEL_W - note_w
    height = len(rows) * (bar_h + gap) + gap
    out = [_svg_open(width, height)]
    for i, (label, segments, note) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        out.append(f'<text x="{LABEL_W - 8}" y="{y + 14}" text-anchor="end">{escape(_cut(label, 28))}</text>')
        x = float(LABEL_W)
        for value, color, title in segments:
            if value <= 0:
                continue
            w = max(span * value / top, 1.0) if top else 0
            tip = f"<title>{escape(title)}</title>" if title else ""
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">{tip}</rect>'
            )
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 14}">{escape(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def columns(
    labels: list[str], series: list[tuple[str, str, list[float]]], width: int = 500, height: int = 230
) -> str:
    """Grouped vertical columns: one group per label, one column per series (name, colour, values)."""
    rotate = len(labels) > 8
    left, bottom, top_pad = 48, 70 if rotate else 30, 10
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    step = _nice_step(max([v for _, _, values in series for v in values] + [1]) / 5)
    ticks = math.ceil(max([v for _, _, values in series for v in values] + [1]) / step)
    top = step * ticks
    out = [_svg_open(width, height)]
    for k in range(ticks + 1):  # gridlines and y ticks at round numbers
        value = step * k
        y = top_pad + plot_h - plot_h * k / ticks
        out.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(value)}</text>')
    group = plot_w / max(len(labels), 1)
    col = group * 0.8 / max(len(series), 1)
    for i, label in enumerate(labels):
        gx = left + i * group + group * 0.1
        for j, (name, color, values) in enumerate(series):
            v = values[i]
            h = plot_h * v / top
            y = top_pad + plot_h - h
            out.append(
                f'<rect x="{gx + j * col:.1f}" y="{y:.1f}" width="{max(col - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{escape(f"{name} {label}: {v:,}")}</title></rect>'
            )
        cx, ly = left + i * group + group / 2, top_pad + plot_h + 14
        if rotate:
            out.append(
                f'<text x="{cx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-40 {cx:.1f} {ly})">'
                f"{escape(label)}</text>"
            )
        else:
            out.append(f'<text x="{cx:.1f}" y="{ly}" text-anchor="middle">{escape(label)}</text>')
    base = top_pad + plot_h
    out.append(f'<line class="axis" x1="{left}" x2="{width - 8}" y1="{base}" y2="{base}"/></svg>')
    return "".join(out)


def shares(rows: list[tuple[str, dict[str, int]]], colors: dict[str, str], width: int = CHART_W) -> str:
    """100% stacked horizontal bars: per row a label and counts per source; shares written where they fit."""
    bar_h, gap = 24, 8
    span = width - LABEL_W - 10
    out = [_svg_open(width, len(rows) * (bar_h + gap) + gap)]
    for i, (label, counts) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        total = sum(counts.values())
        out.append(f'<text x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end">{escape(_cut(label, 28))}</text>')
        x = float(LABEL_W)
        for src in colors:  # every bar in the same order
            n = counts.get(src, 0)
            if not total or n <= 0:
                continue
            w = span * n / total
            tip = escape(f"{src}: {n:,} ({100 * n / total:.1f}%)")
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors[src]}">'
                f"<title>{tip}</title></rect>"
            )
            if w > 44:
                out.append(
                    f'<text x="{x + 4:.1f}" y="{y + 16}" style="fill:#fff">{100 * n / total:.0f}%</text>'
                )
            x += w
    out.append("</svg>")
    return "".join(out)


# --- helpers ------------------------------------------------------------------------------------------------


def _sides(before: dict, after: dict | None) -> list[tuple[str, str, dict]]:
    """The profiles to draw: before and after, or one when they are the same stage."""
    if after is None or after["stage"] == before["stage"]:
        return [(f"{before['stage']} (only profile)", AFTER, before)]
    return [(f"before ({before['stage']})", BEFORE, before), (f"after ({after['stage']})", AFTER, after)]


def _merge_bins(
    sides: list[tuple[str, str, list[dict]]], key: str
) -> tuple[list[str], list[tuple[str, str, list[int]]]]:
    """Histograms of several profiles on the union of their bins (by `key`), missing bins as 0."""
    labels = {b[key]: b["label"] for _, _, bins in sides for b in bins}
    order = sorted(labels)
    series = [
        (name, color, [{b[key]: b["records"] for b in bins}.get(k, 0) for k in order])
        for name, color, bins in sides
    ]
    return [labels[k] for k in order], series


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="n"' if i in numeric else ""
        return f"<{tag}{cls}>{escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _legend(items: list[tuple[str, str]]) -> str:
    spans = "".join(
        f'<span style="margin-right:14px"><span style="display:inline-block;width:11px;height:11px;'
        f'background:{color};margin-right:5px;vertical-align:-1px"></span>{escape(name)}</span>'
        for name, color in items
    )
    return f'<div class="muted">{spans}</div>'


def _share_cell(counts: dict[str, int], src: str) -> str:
    total = sum(counts.values())
    n = counts.get(src, 0)
    return f"{n:,} ({100 * n / total:.1f}%)" if total else "-"


def _svg_open(width: int, height: int) -> str:
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" style="max-width:100%;height:auto">'
    )


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{int(value):,}" if isinstance(value, int | float) else str(value)


def _nice_step(raw: float) -> float:
    """The smallest whole 1, 2, 2.5 or 5 x 10^k at least `raw`: a round tick spacing for counts."""
    power = 10 ** math.floor(math.log10(max(raw, 1)))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw and (m * power) % 1 == 0)


def _short(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}" if value % 1 else f"{int(value)}"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
