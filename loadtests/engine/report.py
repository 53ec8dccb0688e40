"""The report of a measured comparison: ``report.json``, ``report.md``, a self-contained ``report.html``
and one merged HdrHistogram per target under ``histograms/``.

The runner hands :func:`write_report` ONE report document, a JSON-able dict::

    title, question, command, when, design, scenario, machine {cores, cpu, python, commit, packages},
    settings, slo {p99_ms, max_errors}, mode ("rate" | "sweep" | "closed"),
    load {rate, duration_s, warmup_s, deadline_s, processes, master_bind (workers from elsewhere),
          users, steps (a sweep's)},
    targets (round 0's order), rounds [{index, order, runs {target: RUN}}],
    comparisons [Comparison.to_json()], capacity {target: {knee_rps, broke_at_rps, curve}} (a sweep),
    flags [str]
    RUN = {target, url, windows [WindowSummary.to_json()], series [summary.series() rows],
           histograms {ok, failed} (encoded, window-merged), cpu {window_s, components
           {name: {cpu_s, cores, us_per_request}}, generator {steady_cores, bound}},
           audit {invariants, holds, explanation}, chaos [{at_s, component, action}]}

Nothing here measures or decides anything; it reads that document:

- **Verdicts**: every comparison's median ratio and 95% interval, goal, verdict and rounds; a
  generator-bound comparison is marked as a lower bound; the A/A comparison is the noise.
- **Per target, over rounds**: goodput and attempts (median over rounds of each run's rate over its
  windows), latency percentiles from the histogram of every round's ``ok`` answers merged (so no
  percentile is above the max), the error breakdown and lateness summed over every window, and CPU
  per request per component (median over rounds).
- **Invariants**: every round's audited value, and each target's explanation.
- **Flags**: the runner's, and those the runs themselves show (a generator-bound run, an invalid
  window; an overloaded window outside a sweep, where overload is what the sweep looks for).
- **Charts** (HTML only, :mod:`loadtests.engine.charts`): per-second series of each target's round-0
  run, the latency spectrum, the capacity curve of a sweep and the invariants.

A ``histograms/<target>.hdr`` file holds one base64 line, the encoded merged ``ok`` histogram
(microseconds), so a result can be re-read with ``HdrHistogram.decode``; names are made safe for a
file (``hardened (again)`` → ``hardened-again.hdr``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtests.engine import charts
from loadtests.engine.recording import latency_ms, new_histogram
from loadtests.engine.verdicts import again_label
from loadtests.markdown import table_row

Doc = dict[str, Any]
MISSING = "–"
PERCENTILE_ROWS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"), ("max", "max"))
ERROR_OUTCOMES = (
    ("failed", "failed"),
    ("timeouts", "timeouts"),
    ("unfinished", "unfinished"),
    ("not sent", "not_sent"),
)


# -- writing --------------------------------------------------------------------------------------


def write_report(report: Doc, out_dir: Path) -> dict[str, Path]:
    """Write the report's files into ``out_dir``; returns their paths: ``json``, ``md``, ``html`` and
    ``hdr:<target>`` for each target's histogram."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    for target, histogram in ok_histograms(report).items():
        path = out_dir / histogram_file(target)
        path.parent.mkdir(exist_ok=True)
        path.write_text(histogram.encode().decode() + "\n", encoding="ascii")
        paths[f"hdr:{target}"] = path
    return paths


def histogram_file(target: str) -> str:
    """``histograms/<target>.hdr``, the target's name made safe for a file on any system."""
    slug = re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-") or "target"
    return f"histograms/{slug}.hdr"


# -- reading the document -------------------------------------------------------------------------


def targets_of(report: Doc) -> list[str]:
    """The targets that ran, in the document's order."""
    return [target for target in report["targets"] if runs_of(report, target)]


def runs_of(report: Doc, target: str) -> list[Doc]:
    """The target's runs, in round order, with the round's index as ``round``."""
    return [
        {**rnd["runs"][target], "round": rnd["index"]} for rnd in report["rounds"] if target in rnd["runs"]
    ]


def merged_histogram(runs: Sequence[Doc], kind: str = "ok") -> HdrHistogram:
    histogram = new_histogram()
    for run in runs:
        histogram.decode_and_add(run["histograms"][kind])
    return histogram


def ok_histograms(report: Doc) -> dict[str, HdrHistogram]:
    return {target: merged_histogram(runs_of(report, target)) for target in targets_of(report)}


def is_noise(comparison: Doc) -> bool:
    """The A/A comparison: one variant against itself run again under a second label."""
    top, bottom = str(comparison["numerator"]), str(comparison["denominator"])
    return top == again_label(bottom) or bottom == again_label(top)


def _windows(runs: Sequence[Doc]) -> list[Doc]:
    return [window for run in runs for window in run["windows"]]


def _run_rate(run: Doc, count: str) -> float:
    seconds = sum(w["end_s"] - w["start_s"] for w in run["windows"])
    return sum(w[count] for w in run["windows"]) / seconds if seconds > 0 else 0.0


def _weighted_share(windows: Sequence[Doc], key: str) -> float | None:
    """A share of what was offered, over several windows: each window's share weighed by its offer."""
    offered = sum(w["offered"] for w in windows)
    return sum(w[key] * w["offered"] for w in windows) / offered if offered else None


def _errors(windows: Sequence[Doc]) -> int:
    return sum(w[key] for _, key in ERROR_OUTCOMES for w in windows)


def target_numbers(runs: Sequence[Doc]) -> Doc:
    """What a target did over all its rounds (see the module's docstring for how each is combined)."""
    windows = _windows(runs)
    offered = sum(w["offered"] for w in windows)
    lateness = [w["lateness_p99_ms"] for w in windows if w["lateness_p99_ms"] is not None]
    return {
        "goodput_rps": median(_run_rate(run, "ok") for run in runs),
        "attempts_rps": median(_run_rate(run, "offered") for run in runs),
        **latency_ms(merged_histogram(runs)),
        "offered": offered,
        "ok": sum(w["ok"] for w in windows),
        **{key: sum(w[key] for w in windows) for _, key in ERROR_OUTCOMES},
        "error_fraction": _errors(windows) / offered if offered else None,
        "lateness_p99_ms": max(lateness, default=None),
        "late_fraction": _weighted_share(windows, "late_fraction"),
        "windows": len(windows),
        "invalid_windows": sum(not w["valid"] for w in windows),
        "overloaded_windows": sum(w["overloaded"] for w in windows),
        "rounds": len(runs),
    }


# -- flags ----------------------------------------------------------------------------------------


def flags_of(report: Doc) -> list[str]:
    """The runner's flags first, then what the runs show that the runner did not already say."""
    flags = list(report.get("flags", []))
    derived = [
        flag
        for target in targets_of(report)
        for run in runs_of(report, target)
        for flag in _run_flags(target, run, sweep=report["mode"] == "sweep")
    ]
    return flags + [flag for flag in derived if flag not in flags]


def _run_flags(target: str, run: Doc, *, sweep: bool) -> list[str]:
    where = f"{target} round {run['round']}"
    flags = [_generator_flag(run), _invalid_flag(run), None if sweep else _overload_flag(run)]
    return [f"{where}: {flag}" for flag in flags if flag]


def _generator_flag(run: Doc) -> str | None:
    generator = (run.get("cpu") or {}).get("generator") or {}
    if not generator.get("bound"):
        return None
    cores = generator.get("steady_cores")
    at = f" ({cores:.2f} cores)" if isinstance(cores, int | float) else ""
    return f"the load generator was bound{at}; its numbers are a lower bound"


def _invalid_flag(run: Doc) -> str | None:
    invalid = [w for w in run["windows"] if not w["valid"]]
    if not invalid:
        return None
    late = max(w["late_fraction"] for w in invalid)
    return (
        f"{len(invalid)} of {len(run['windows'])} windows invalid "
        f"(up to {late:.1%} of sends late: the generator fell behind its schedule)"
    )


def _overload_flag(run: Doc) -> str | None:
    overloaded = [w for w in run["windows"] if w["overloaded"]]
    if not overloaded:
        return None
    worst = min(overloaded, key=lambda w: w["goodput_rps"])
    return (
        f"overloaded, goodput {worst['goodput_rps']:g} req/s of {worst['offered_rate']:g} offered: "
        "it showed its limit, not its latency at that rate"
    )


# -- tables: built once, printed as Markdown and as HTML ------------------------------------------


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""
    notes: Sequence[str] = field(default_factory=tuple)

    def markdown(self) -> list[str]:
        lines = [f"**{self.caption}**", ""] if self.caption else []
        lines += [table_row(map(_md_cell, self.header)), table_row("---" for _ in self.header)]
        lines += [table_row(map(_md_cell, row)) for row in self.rows]
        return [*lines, *(["", *self.notes] if self.notes else [])]

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows
        )
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in self.notes)
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|")


def number(value: Any, *, unit: str = "") -> str:
    """A measured number for a reader: three significant figures or so, never an exponent."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        text = f"{value:,.0f}"
    else:
        size = abs(value)
        text = f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.2f}"
    return text + unit


def share(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2%}"


def ratio_text(comparison: Doc) -> str:
    """``3.97× [3.41, 4.40]``; a generator-bound ratio reads ``≥ …``: it is a lower bound."""
    text = f"{comparison['median']:.2f}× [{comparison['low']:.2f}, {comparison['high']:.2f}]"
    return f"≥ {text}" if comparison["generator_bound"] else text


def verdict_table(report: Doc) -> Table:
    comparisons = report["comparisons"]
    rows = [_verdict_row(c) for c in comparisons if not is_noise(c)]
    rows += [_noise_row(c) for c in comparisons if is_noise(c)]
    notes = [_noise_line(c) for c in comparisons if is_noise(c)]
    if any(c["generator_bound"] for c in comparisons):
        notes.append(
            "≥ marks a ratio that is only a lower bound (the load generator was bound, or the "
            "numerator held every step of the sweep, so its capacity lies above it): the true ratio "
            "is at least this, so it cannot read “met”."
        )
    header = ["comparison", "ratio (median [95% interval])", "goal", "verdict", "rounds", "bound"]
    uncompared = report.get("uncompared", [])
    notes += [f"{goal['name']}: no verdict; {goal['reason']}." for goal in uncompared]
    if not rows and not uncompared:
        notes.insert(0, "No comparison: these runs bear no verdict.")
    return Table(header, rows, notes=notes)


def _verdict_row(comparison: Doc) -> list[str]:
    sign = "≥" if comparison["direction"] == "higher is better" else "≤"
    return [
        _comparison_name(comparison),
        ratio_text(comparison),
        f"{sign} {comparison['goal']:g}× ({comparison['direction']})",
        comparison["verdict"],
        str(comparison["rounds"]),
        "lower bound" if comparison["generator_bound"] else "measured",
    ]


def _noise_row(comparison: Doc) -> list[str]:
    return [
        *_verdict_row(comparison)[:2],
        "A/A",
        f"noise ±{_noise(comparison):.1%}",
        *_verdict_row(comparison)[4:],
    ]


def _comparison_name(comparison: Doc) -> str:
    return f"{comparison['name']} ({comparison['numerator']} / {comparison['denominator']})"


def _noise(comparison: Doc) -> float:
    return max(float(comparison["high"]) - 1.0, 1.0 - float(comparison["low"]))


def _noise_line(comparison: Doc) -> str:
    return (
        f"Noise (A/A): {comparison['numerator']} over {comparison['denominator']} reads "
        f"{ratio_text(comparison)}: the same variant differs by up to ±{_noise(comparison):.1%} from "
        "itself here, so a ratio that close to 1 cannot be told from the machine's drift."
    )


def _verdict_of(runs: list[Doc]) -> str:
    """The design's verdict on a target: ``holds`` only when its audit held in every round."""
    held = [run.get("audit", {}).get("holds") for run in runs]
    if not held or any(h is None for h in held):
        return "–"
    return "holds" if all(held) else "BROKEN"


def load_table(report: Doc) -> Table:
    targets = targets_of(report)
    numbers = {target: target_numbers(runs_of(report, target)) for target in targets}

    def row(label: str, show: Callable[[Doc], str]) -> list[str]:
        return [label, *(show(numbers[target]) for target in targets)]

    rows = [
        ["invariants", *(_verdict_of(runs_of(report, target)) for target in targets)],
        row("goodput (ok/s, median of rounds)", lambda n: number(n["goodput_rps"])),
        row("attempts (offered/s, median of rounds)", lambda n: number(n["attempts_rps"])),
        *(row(f"{label} (ms, ok answers)", _getter(key)) for label, key in PERCENTILE_ROWS),
        row("offered", lambda n: number(n["offered"])),
        row("ok", lambda n: number(n["ok"])),
        *(row(label, _getter(key)) for label, key in ERROR_OUTCOMES),
        row("errors (share of offered)", lambda n: share(n["error_fraction"])),
        row("lateness p99 (ms, worst window)", _getter("lateness_p99_ms")),
        row("late sends (share of offered)", lambda n: share(n["late_fraction"])),
        row("windows valid", lambda n: f"{n['windows'] - n['invalid_windows']} of {n['windows']}"),
        row("windows overloaded", lambda n: f"{n['overloaded_windows']} of {n['windows']}"),
        row("rounds", lambda n: str(n["rounds"])),
    ]
    return Table(["", *targets], rows)


def _getter(key: str) -> Callable[[Doc], str]:
    return lambda numbers: number(numbers[key])


def cpu_table(report: Doc) -> Table:
    targets = targets_of(report)
    cpus = {target: [run["cpu"] for run in runs_of(report, target) if run.get("cpu")] for target in targets}
    components = list(
        dict.fromkeys(name for runs in cpus.values() for cpu in runs for name in cpu["components"])
    )
    rows = [[name, *(_median_cpu(cpus[target], name) for target in targets)] for name in components]
    rows.append(
        ["generator steady state (cores, worst round)", *(_generator_cores(cpus[t]) for t in targets)]
    )
    rows.append(["generator bound (any round)", *(_generator_bound(cpus[t]) for t in targets)])
    caption = "CPU per request (µs, median over rounds)"
    return Table(["component", *targets], rows, caption=caption)


def _median_cpu(cpus: Sequence[Doc], component: str) -> str:
    values = [
        cpu["components"][component].get("us_per_request") for cpu in cpus if component in cpu["components"]
    ]
    present = [value for value in values if value is not None]
    return number(median(present)) if present else MISSING


def _generator_cores(cpus: Sequence[Doc]) -> str:
    cores = [cpu["generator"]["steady_cores"] for cpu in cpus if "generator" in cpu]
    return number(max(cores)) if cores else MISSING


def _generator_bound(cpus: Sequence[Doc]) -> str:
    bound = [cpu["generator"]["bound"] for cpu in cpus if "generator" in cpu]
    return number(any(bound)) if bound else MISSING


def capacity_tables(report: Doc) -> list[Table]:
    if report["mode"] != "sweep":
        return []
    capacity = report.get("capacity", {})
    summary = Table(
        ["target", "knee (req/s held at the SLO)", "broke at (req/s)"],
        [[t, number(c["knee_rps"]), number(c["broke_at_rps"])] for t, c in capacity.items()],
    )
    header = ["offered (req/s)", "goodput (ok/s)", "p99 (ms)", "errors", "meets the SLO"]
    curves = [
        Table(header, [_capacity_row(point) for point in c["curve"]], caption=target)
        for target, c in capacity.items()
    ]
    return [summary, *curves]


def _capacity_row(point: Doc) -> list[str]:
    return [
        number(point["offered_rps"]),
        number(point["goodput_rps"]),
        number(point["p99_ms"]),
        share(point["error_fraction"]),
        number(point["meets_slo"]),
    ]


def invariant_tables(report: Doc) -> list[Table]:
    return [_invariant_table(target, runs_of(report, target)) for target in targets_of(report)]


def _invariant_table(target: str, runs: Sequence[Doc]) -> Table:
    audits = [run.get("audit") or {"invariants": {}, "holds": None, "explanation": ""} for run in runs]
    names = list(dict.fromkeys(name for audit in audits for name in audit["invariants"]))
    rows = [[name, *(number(audit["invariants"].get(name)) for audit in audits)] for name in names]
    rows.append(["holds", *(number(audit["holds"]) for audit in audits)])
    explanations = list(dict.fromkeys(audit["explanation"] for audit in audits if audit["explanation"]))
    header = ["invariant", *(f"round {run['round']}" for run in runs)]
    return Table(header, rows, caption=target, notes=explanations)


def worst_invariants(report: Doc) -> dict[str, dict[str, float]]:
    """Per target, each numeric invariant's value furthest from zero over the rounds (every
    invariant the audits count is a number of things that went wrong, zero when it held)."""
    worst: dict[str, dict[str, float]] = {}
    for target in targets_of(report):
        values: dict[str, float] = {}
        for run in runs_of(report, target):
            for name, value in (run.get("audit") or {}).get("invariants", {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    values[name] = max(values.get(name, 0.0), float(value), key=abs)
        worst[target] = values
    return worst


# -- the page's top -------------------------------------------------------------------------------


def provenance(report: Doc) -> list[str]:
    machine = report["machine"]
    return [
        f"Measured {report['when']} on {machine['cores']} cores ({machine['cpu']}), Python "
        f"{machine['python']}, commit {machine['commit']}.",
        load_sentence(report),
        f"SLO: p99 of ok answers ≤ {report['slo']['p99_ms']:g} ms and errors ≤ "
        f"{report['slo']['max_errors']:.1%} of what was offered.",
        *reference_sentence(report),
        pinning_sentence(report),
    ]


def reference_sentence(report: Doc) -> list[str]:
    references = report.get("references", [])
    if not references:
        return []
    return [
        f"Reference endpoints, served beside the lab, with no invariants claimed: {', '.join(references)}."
    ]


def pinning_sentence(report: Doc) -> str:
    pinning = report.get("pinning") or {"asked": False, "reason": "not asked"}
    if pinning.get("pinned"):
        return f"Pinned: {pinning['reason']}."
    if pinning.get("asked"):
        return f"Not pinned (asked for with --pin): {pinning['reason']}."
    return "Not pinned: the load generator shares every core with the services (--pin puts it apart)."


def _joined_from(load: Doc) -> str:
    bind = load.get("master_bind")  # reports written before workers could join from elsewhere have none
    return f" joined from other machines at {bind}" if bind else ""


def load_sentence(report: Doc) -> str:
    load, rounds = report["load"], len(report["rounds"])
    trimmed = f"first {load['warmup_s']:g} s of each window trimmed"
    common = f"{trimmed}, a {load['deadline_s']:g} s deadline per request, {load['processes']} generator "
    common += f"process(es){_joined_from(load)}, {rounds} interleaved round(s)"
    if report["mode"] == "sweep":
        steps = " → ".join(f"{step:g}" for step in load["steps"])
        return f"Open loop, stepped sweep {steps} req/s, {load['step_s']:g} s per step; {common}."
    if report["mode"] == "closed":
        return f"Closed loop: {load['users']} users for {load['duration_s']:g} s per run; {common}."
    return f"Open loop at {load['rate']:g} req/s for {load['duration_s']:g} s per run; {common}."


def versions_table(report: Doc) -> Table:
    packages = report["machine"].get("packages", {})
    settings = report.get("settings", {})
    rows = [[name, str(version)] for name, version in packages.items()]
    rows += [[name, str(value)] for name, value in settings.items()]
    return Table(["package or setting", "version or value"], rows)


# -- Markdown -------------------------------------------------------------------------------------


def render_markdown(report: Doc) -> str:
    """The tables, readable on GitHub: what a ``docs/results`` page is. It begins with the command."""
    lines = ["```sh", report["command"], "```", "", f"# {report['title']}", "", f"**{report['question']}**"]
    lines += [line for sentence in provenance(report) for line in ("", sentence)]
    lines += _md_section("Flags", [f"- {flag}" for flag in flags_of(report)])
    lines += _md_section("Verdicts", verdict_table(report).markdown())
    lines += _md_section("Per target, over every round", _md_tables([load_table(report), cpu_table(report)]))
    lines += _md_section("Capacity at the SLO", _md_tables(capacity_tables(report)))
    lines += _md_section("Invariants", _md_tables(invariant_tables(report)))
    lines += _md_section("Histograms", _histogram_lines(report))
    lines += _md_section("Versions and settings", versions_table(report).markdown())
    return "\n".join(lines) + "\n"


def _md_section(title: str, body: list[str]) -> list[str]:
    return ["", f"## {title}", "", *body] if body else []


def _md_tables(tables: Sequence[Table]) -> list[str]:
    lines: list[str] = []
    for table in tables:
        lines += [*([""] if lines else []), *table.markdown()]
    return lines


def _histogram_lines(report: Doc) -> list[str]:
    return [
        f"- {target}: `{histogram_file(target)}` (ok answers, µs; `HdrHistogram.decode` reads it)"
        for target in targets_of(report)
    ]


# -- HTML -----------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem;
       color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.question { font-size: 1.15rem; font-weight: 600; }
pre { background: #f5f5f5; padding: .6rem .8rem; overflow-x: auto; }
table { border-collapse: collapse; margin: .8rem 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.flags { background: #fff4e5; border-left: 4px solid #e67e22; padding: .4rem 1rem; }
.note { color: #555; font-size: .92rem; margin: .2rem 0; }
figure.chart { margin: 1rem 0; } figure.chart svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .92rem; }
"""


def render_html(report: Doc) -> str:
    title = html.escape(report["title"])
    body = [
        f"<h1>{title}</h1>",
        f'<p class="question">{html.escape(report["question"])}</p>',
        f"<pre><code>{html.escape(report['command'])}</code></pre>",
        *(f"<p>{html.escape(line)}</p>" for line in provenance(report)),
        _html_flags(flags_of(report)),
        "<h2>Verdicts</h2>",
        verdict_table(report).html(),
        "<h2>Per target, over every round</h2>",
        load_table(report).html(),
        cpu_table(report).html(),
        *_html_charts(report),
        "<h2>Invariants</h2>",
        *(table.html() for table in invariant_tables(report)),
        _figure("invariants", charts.invariants_chart(worst_invariants(report)), _INVARIANTS_CAPTION),
        "<h2>Versions and settings</h2>",
        versions_table(report).html(),
    ]
    head = f'<meta charset="utf-8"><title>{title}</title><style>{STYLE}</style>'
    return f'<!doctype html>\n<html lang="en"><head>{head}</head><body>{"".join(body)}</body></html>\n'


_INVARIANTS_CAPTION = (
    "Each invariant's worst value over the rounds, per target: zero is what holding looks like."
)


def _html_flags(flags: Sequence[str]) -> str:
    if not flags:
        return ""
    items = "".join(f"<li>{html.escape(flag)}</li>" for flag in flags)
    return f'<div class="flags"><strong>Flags</strong><ul>{items}</ul></div>'


def _html_charts(report: Doc) -> list[str]:
    parts = ["<h2>Per second, round 0</h2>"]
    first = report["rounds"][0]["runs"] if report["rounds"] else {}
    for target in targets_of(report):
        if target in first:
            caption = f"{target}, round 0: requests per second and each second's p99; shaded: measured."
            parts.append(_figure("series", charts.series_chart(target, first[target]), caption))
    parts.append("<h2>Latency spectrum</h2>")
    spectrum = charts.spectrum_chart(ok_histograms(report), slo_p99_ms=report["slo"]["p99_ms"])
    parts.append(_figure("spectrum", spectrum, "Latency of ok answers by percentile, every round merged."))
    if report["mode"] == "sweep":
        parts.append("<h2>Capacity at the SLO</h2>")
        curve = charts.capacity_chart(report.get("capacity", {}), slo_p99_ms=report["slo"]["p99_ms"])
        parts.append(_figure("capacity", curve, "p99 and goodput against the offered rate; ▲ the knee."))
        parts += [table.html() for table in capacity_tables(report)]
    return parts


def _figure(kind: str, svg: str, caption: str) -> str:
    return (
        f'<figure class="chart" data-chart="{kind}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
