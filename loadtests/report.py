"""The bench's report: ``report.json`` (everything), ``report.md`` (the tables) and a self-contained
``report.html`` with charts drawn as inline SVG (no scripts, no network: it opens anywhere)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.markdown import table_row

COLORS = {"naive": "#d62728", "hardened": "#2ca02c"}
FALLBACK_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd")


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(render_markdown(report))
    paths["html"].write_text(render_html(report))
    return paths


def verdict(variant: dict[str, Any]) -> str:
    return "holds" if variant["audit"]["holds"] else "BROKEN"


# -- Markdown ------------------------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    variants = report["variants"]
    lines = [f"# {report['title']}: {' versus '.join(variants)}", "", _provenance(report), ""]
    lines += _table(
        ["", *variants],
        [
            ["verdict", *(verdict(v) for v in variants.values())],
            ["requests", *(v["load"]["requests"] for v in variants.values())],
            ["throughput (req/s)", *(v["load"]["throughput_rps"] for v in variants.values())],
            ["p50 / p95 / p99 (ms)", *(_percentiles(v["load"]) for v in variants.values())],
            ["failed requests", *(v["load"]["failures"] for v in variants.values())],
            ["service CPU (cores)", *(v["service_cpu_cores"] for v in variants.values())],
            [
                "audit waited for the system to settle (s)",
                *(v.get("audit_wait_s", "-") for v in variants.values()),
            ],
            ["Locust CPU peak (% of a core)", *(v["load"]["locust_cpu_percent"] for v in variants.values())],
        ],
    )
    lines += ["", "## Invariants", ""]
    names = sorted({name for v in variants.values() for name in v["audit"]["invariants"]})
    lines += _table(
        ["invariant", *variants],
        [[n, *(v["audit"]["invariants"].get(n, "-") for v in variants.values())] for n in names],
    )
    lines += [""] + [f"- **{name}**: {v['audit']['explanation']}" for name, v in variants.items()]
    lines += _chaos_lines(report) + _flag_lines(report)
    return "\n".join(lines) + "\n"


def _provenance(report: dict[str, Any]) -> str:
    machine = report["machine"]
    run = report["run"]
    return (
        f"{run['when']}; shape `{run['shape']}`, {run['users']} users, {run['duration_s']} s per variant, "
        f"{'at the same time' if run['concurrent'] else 'one after the other'}. Machine: {machine['cores']} "
        f"cores, {machine['memory_gib']} GiB, {machine['cpu']}; Python {machine['python']}; commit "
        f"`{machine['commit']}`."
    )


def _percentiles(load: dict[str, Any]) -> str:
    return f"{load['p50_ms']} / {load['p95_ms']} / {load['p99_ms']}"


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [
        table_row(header),
        "|" + "---|" * len(header),
        *(table_row(row) for row in rows),
    ]


def _chaos_lines(report: dict[str, Any]) -> list[str]:
    if not report.get("chaos"):
        return []
    lines = ["", "## Chaos timeline", ""]
    for variant, steps in report["chaos"].items():
        for step in steps:
            status = step["error"] or f"applied at {step['applied_at_s']} s"
            lines.append(f"- {variant}: {step['component']} {step['action']} @ {step['at_s']} s — {status}")
    return lines


def _flag_lines(report: dict[str, Any]) -> list[str]:
    return ["", "## Warnings", "", *(f"- {flag}" for flag in report["flags"])] if report["flags"] else []


# -- HTML ----------------------------------------------------------------------------------------


def render_html(report: dict[str, Any]) -> str:
    variants = report["variants"]
    series = {name: v["load"]["history"] for name, v in variants.items()}
    markers = _chaos_markers(report)
    body = [
        f"<h1>{html.escape(report['title'])}</h1>",
        f"<p>{html.escape(_provenance(report))}</p>",
        _html_verdicts(variants),
        "<h2>Throughput (requests/s)</h2>",
        line_chart(series, y_key="rps", y_label="req/s", markers=markers),
        "<h2>Latency p99 (ms)</h2>",
        line_chart(series, y_key="p99_ms", y_label="ms", markers=markers),
        "<h2>Latency p50 (ms)</h2>",
        line_chart(series, y_key="p50_ms", y_label="ms", markers=markers),
        "<h2>Failures (per second)</h2>",
        line_chart(series, y_key="failures_per_s", y_label="failures/s", markers=markers),
        "<h2>Invariants</h2>",
        _html_invariants(variants),
        *(f"<p class='flag'>{html.escape(flag)}</p>" for flag in report["flags"]),
        "<p>Locust's own reports: " + " ".join(
            f"<a href='{html.escape(name)}/locust.html'>{html.escape(name)}</a>" for name in variants
        ) + "</p>",
    ]  # fmt: skip
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(report['title'])} — System Design Lab</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.holds{color:#2ca02c;font-weight:bold}"
    ".BROKEN{color:#d62728;font-weight:bold}.flag{color:#b8860b}svg{background:#fafafa;border:1px solid #eee}"
)


def _html_verdicts(variants: dict[str, Any]) -> str:
    rows = [
        ("verdict", {n: f"<span class='{verdict(v)}'>{verdict(v)}</span>" for n, v in variants.items()}),
        ("throughput (req/s)", {n: v["load"]["throughput_rps"] for n, v in variants.items()}),
        ("p50 / p95 / p99 (ms)", {n: _percentiles(v["load"]) for n, v in variants.items()}),
        ("failed requests", {n: v["load"]["failures"] for n, v in variants.items()}),
        ("service CPU (cores)", {n: v["service_cpu_cores"] for n, v in variants.items()}),
    ]
    return _html_table(list(variants), rows)


def _html_invariants(variants: dict[str, Any]) -> str:
    names = sorted({name for v in variants.values() for name in v["audit"]["invariants"]})
    rows = [
        (name, {n: v["audit"]["invariants"].get(name, "-") for n, v in variants.items()}) for name in names
    ]
    return _html_table(list(variants), rows)


def _html_table(columns: list[str], rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{values[c]}</td>" for c in columns) + "</tr>"
        for label, values in rows
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _chaos_markers(report: dict[str, Any]) -> list[tuple[float, str]]:
    steps: list[dict[str, Any]] = next(iter(report.get("chaos", {}).values()), [])
    applied = [s for s in steps if s["applied_at_s"] is not None]
    return [(s["applied_at_s"], f"{s['component']} {s['action']}") for s in applied]


def line_chart(
    series: dict[str, list[dict[str, float]]],
    *,
    y_key: str,
    y_label: str,
    markers: Sequence[tuple[float, str]] = (),
    width: int = 720,
    height: int = 240,
) -> str:
    """One polyline per variant over elapsed seconds, with vertical lines for chaos steps."""
    pad = 45
    xs = [p["t"] for points in series.values() for p in points] or [0.0]
    ys = [p[y_key] for points in series.values() for p in points] or [0.0]
    x_max, y_max = max(max(xs), 1.0), max(max(ys), 1.0) * 1.1

    def at(x: float, y: float) -> str:
        return (
            f"{pad + x / x_max * (width - 2 * pad):.1f},{height - pad - y / y_max * (height - 2 * pad):.1f}"
        )

    axis = "stroke='#888'"
    parts = [
        f"<svg class='chart' role='img' aria-label='{html.escape(y_label)}' "
        f"xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' {axis}/>",
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' {axis}/>",
        _text(pad, pad - 8, f"{y_label} (max {y_max / 1.1:.1f})"),
        _text(width - pad, height - pad + 28, f"seconds ({x_max:.0f})", anchor="end"),
    ]
    for x, label in markers:
        top, bottom = at(x, y_max), at(x, 0)
        dashes = "stroke='#555' stroke-dasharray='4 3' fill='none'"
        parts.append(f"<polyline class='marker' points='{top} {bottom}' {dashes}/>")
        parts.append(_text(float(top.split(",")[0]), pad + 4, label, size=10))
    for index, (name, points) in enumerate(series.items()):
        color = COLORS.get(name, FALLBACK_COLORS[index % len(FALLBACK_COLORS)])
        path = " ".join(at(p["t"], p[y_key]) for p in points)
        parts.append(
            f"<polyline class='series' data-variant='{html.escape(name)}' points='{path}' "
            f"fill='none' stroke='{color}' stroke-width='2'/>"
        )
        parts.append(_text(width - pad - 90, pad + 14 * index, name, size=12, color=color))
    parts.append("</svg>")
    return "".join(parts)


def _text(
    x: float, y: float, text: str, *, size: int = 11, color: str = "#222", anchor: str = "start"
) -> str:
    return (
        f"<text x='{x}' y='{y}' font-size='{size}' fill='{color}' text-anchor='{anchor}'>"
        f"{html.escape(text)}</text>"
    )
