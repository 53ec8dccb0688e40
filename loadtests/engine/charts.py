"""The report's charts, drawn by matplotlib (Agg, no display) as SVG strings to inline in a page.

Each function returns one ``<svg>`` element: no XML prolog, no scripts, no external fonts (text is
drawn as paths), so ``report.html`` stays one file that renders offline and the same everywhere.
matplotlib is imported inside the functions, not at the top: importing it costs about a second, and
the bench's command line and the Locust processes import this package without drawing anything.

Every chart is readable without the page around it: axis labels with units, ticks, a legend, and a
note in the plot when there is nothing to draw (a target with no successful answer).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Fixed colours for the lab's variants so every chart reads the same; "x (again)" takes x's colour
# with a dashed line (the A/A run is the same variant), anything else the next colour of a palette.
VARIANT_COLORS = {"naive": "#d62728", "hardened": "#2ca02c", "mine": "#1f77b4"}
PALETTE = ("#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
AGAIN = " (again)"
SPECTRUM_TICKS = {1: "0%", 2: "50%", 10: "90%", 100: "99%", 1_000: "99.9%", 10_000: "99.99%"}
SPECTRUM_POINTS = 200
WIDE, TALL, SHORT = 10.0, 4.2, 3.2  # inches: a chart spans the page's 1,100 px at 100 dpi


def target_style(target: str, order: Sequence[str]) -> dict[str, Any]:
    base = target.removesuffix(AGAIN)
    others = [name.removesuffix(AGAIN) for name in order if name.removesuffix(AGAIN) not in VARIANT_COLORS]
    others = list(dict.fromkeys(others))
    color = VARIANT_COLORS.get(base) or PALETTE[others.index(base) % len(PALETTE)]
    return {"color": color, "linestyle": "--" if target.endswith(AGAIN) else "-"}


def _figure(height: float = TALL, *, columns: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDE, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _svg(figure: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _nothing_to_draw(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, transform=axes.transAxes, ha="center", va="center", color="#777")


# -- 1. per second --------------------------------------------------------------------------------


def series_chart(target: str, run: Mapping[str, Any]) -> str:
    """One run's seconds: offered, ok and failed+timed-out per second (left), each second's p99 of
    ok answers (right, log scale), the measurement windows shaded, chaos as labelled vertical lines."""
    figure, (counts,) = _figure()
    rows = run["series"]
    seconds = [row["t"] + 0.5 for row in rows]  # a row counts the second [t, t + 1): draw it mid-way
    counts.plot(seconds, [row["offered"] for row in rows], color="#555", label="offered /s")
    counts.plot(seconds, [row["ok"] for row in rows], color="#2ca02c", label="ok /s")
    failed = [row["failed"] + row["timeouts"] for row in rows]
    counts.plot(seconds, failed, color="#d62728", label="failed + timeouts /s")
    counts.set(xlabel="seconds since the run began", ylabel="requests per second", title=target)
    counts.set_ylim(
        0, _headroom(max([1, *(row["offered"] for row in rows), *(row["ok"] for row in rows), *failed]))
    )
    for index, window in enumerate(run["windows"]):
        label = "measured window" if index == 0 else None
        counts.axvspan(window["start_s"], window["end_s"], color="#1f77b4", alpha=0.07, label=label)
    _p99_axis(counts, rows)
    _chaos_markers(counts, run.get("chaos", []))
    _legend_below(figure, counts)
    return _svg(figure)


def _p99_axis(counts: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    points = [(row["t"] + 0.5, row["p99_ms"]) for row in rows if row["p99_ms"]]
    latency = counts.twinx()
    latency.set_ylabel("p99 of the second (ms, log)")
    if not points:
        latency.set_yticks([])
        _nothing_to_draw(counts, "no ok answer: no latency to plot")
        return
    latency.plot(*zip(*points, strict=True), color="#1f77b4", marker=".", linewidth=1, label="p99 (ms)")
    latency.set_yscale("log")
    _plain_numbers(latency)


def _headroom(highest: float) -> float:
    """The top of a count axis, far enough above the highest count that chaos labels fit there."""
    return highest * 1.4


def _plain_numbers(axes: Axes) -> None:
    """Ticks of a log axis written as 20 and 0.5, not 2×10¹ and 5×10⁻¹; between the powers of ten,
    only as many labelled as fit (all of them over a narrow range, 2 and 5 or none over a wide one)."""
    from matplotlib.ticker import LogFormatter

    axes.yaxis.set_major_formatter(LogFormatter())
    axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _chaos_markers(axes: Axes, chaos: Sequence[Mapping[str, Any]]) -> None:
    for event in chaos:
        axes.axvline(event["at_s"], color="#e67e22", linewidth=1.5, linestyle=":")
        text = f"{event['component']} {event['action']}"
        axes.annotate(
            text,
            xy=(event["at_s"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -4),
            textcoords="offset points",
            rotation=90,
            va="top",
            color="#a04000",
            fontsize=9,
        )


def _legend_below(figure: Figure, *axes: Axes) -> None:
    handles, labels = [], []
    for each in [*axes, *(twin for a in axes for twin in a.get_shared_x_axes().get_siblings(a))]:
        for handle, label in zip(*each.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), frameon=False)


# -- 2. the latency spectrum ----------------------------------------------------------------------


def spectrum_chart(histograms: Mapping[str, HdrHistogram], *, slo_p99_ms: float) -> str:
    """Latency against percentile, x on the usual log scale of 1/(1-p): 90%, 99%, 99.9%, 99.99%
    are evenly spaced, so the tail gets the room the median does."""
    figure, (axes,) = _figure(TALL)
    drawn = {
        t: spectrum_points(histogram) for t, histogram in histograms.items() if histogram.get_total_count()
    }
    for target, (xs, ys) in drawn.items():
        axes.plot(xs, ys, label=target, linewidth=2, **target_style(target, list(histograms)))
    axes.set_xscale("log")
    axes.set_xlim(1, max([10_000, *(xs[-1] for xs, _ in drawn.values())]))
    axes.set_xticks(list(SPECTRUM_TICKS), list(SPECTRUM_TICKS.values()))
    axes.minorticks_off()
    axes.grid(True, which="major", color="#ddd")
    axes.set(xlabel="percentile of ok answers", ylabel="latency (ms, log)")
    if drawn:
        # Log latency: a ratio between variants is a fixed gap at every percentile, and a tail far
        # above the median stays on the page with the SLO.
        axes.set_yscale("log")
        _plain_numbers(axes)
        axes.axhline(slo_p99_ms, color="#555", linestyle=":", label=f"SLO p99 {slo_p99_ms:g} ms")
    missing = [target for target in histograms if target not in drawn]
    if not drawn:
        axes.set_yticks([])
    if missing:
        _nothing_to_draw(axes, f"no ok answer to plot: {', '.join(missing)}")
    _legend_below(figure, axes)
    return _svg(figure)


def spectrum_points(histogram: HdrHistogram) -> tuple[list[float], list[float]]:
    """``x = 1/(1-p)`` from 1 to the last sample's rank, and the latency (ms) at each percentile,
    every point at most the max; the max itself closes the line. One pass over the recorded values
    (asking the histogram for each percentile walks all its buckets every time)."""
    count = histogram.get_total_count()
    highest = histogram.get_max_value()
    last = max(float(count), 2.0)
    xs = [last ** (i / (SPECTRUM_POINTS - 1)) for i in range(SPECTRUM_POINTS)]
    cumulative = [
        (item.value_iterated_to, item.total_count_to_this_value) for item in histogram.get_recorded_iterator()
    ]
    ys, step = [], 0
    for x in xs:
        rank = max(1, int((1 - 1 / x) * count + 0.5))  # the rank get_value_at_percentile takes
        while cumulative[step][1] < rank:
            step += 1
        ys.append(min(cumulative[step][0], highest) / 1000)
    return [*xs, last], [*ys, highest / 1000]


# -- 3. capacity ----------------------------------------------------------------------------------


def capacity_chart(capacity: Mapping[str, Mapping[str, Any]], *, slo_p99_ms: float) -> str:
    """p99 against offered rate (left, log) with the SLO, goodput against offered rate (right) with
    the line where goodput equals the offer; filled points met the SLO, the knee is a triangle."""
    figure, (latency, goodput) = _figure(TALL, columns=2)
    for target, result in capacity.items():
        style = target_style(target, list(capacity))
        _capacity_lines(latency, goodput, target, result, style)
    offered = [p["offered_rps"] for result in capacity.values() for p in result["curve"]]
    if offered:
        goodput.plot(
            [0, max(offered)], [0, max(offered)], color="#aaa", linestyle=":", label="goodput = offered"
        )
    latency.axhline(slo_p99_ms, color="#555", linestyle=":", label=f"SLO p99 {slo_p99_ms:g} ms")
    latency.set(xlabel="offered (req/s)", ylabel="p99 of ok answers (ms, log)", title="latency")
    goodput.set(xlabel="offered (req/s)", ylabel="goodput (ok/s)", title="goodput")
    latency.set_yscale("log")
    _plain_numbers(latency)
    goodput.set_ylim(bottom=0)
    for axes in (latency, goodput):
        axes.grid(True, color="#eee")
    _legend_below(figure, latency, goodput)
    return _svg(figure)


def _capacity_lines(
    latency: Axes, goodput: Axes, target: str, result: Mapping[str, Any], style: dict[str, Any]
) -> None:
    curve = result["curve"]
    offered = [point["offered_rps"] for point in curve]
    p99 = [point["p99_ms"] if point["p99_ms"] else math.nan for point in curve]
    latency.plot(offered, p99, label=target, marker="o", **style)
    goodput.plot(offered, [point["goodput_rps"] for point in curve], marker="o", **style)
    missed = [point for point in curve if not point["meets_slo"]]
    hollow = {"marker": "o", "facecolor": "white", "edgecolor": style["color"], "zorder": 3}
    latency.scatter([p["offered_rps"] for p in missed], [p["p99_ms"] or math.nan for p in missed], **hollow)
    goodput.scatter([p["offered_rps"] for p in missed], [p["goodput_rps"] for p in missed], **hollow)
    knee = next((point for point in curve if point["offered_rps"] == result["knee_rps"]), None)
    if knee is not None:
        marker = {"marker": "^", "s": 120, "color": style["color"], "edgecolor": "black", "zorder": 4}
        latency.scatter([knee["offered_rps"]], [knee["p99_ms"]], label=f"{target} knee", **marker)
        goodput.scatter([knee["offered_rps"]], [knee["goodput_rps"]], **marker)


# -- 4. invariants --------------------------------------------------------------------------------


def invariants_chart(worst: Mapping[str, Mapping[str, float]]) -> str:
    """Horizontal bars: each invariant's worst value per target, "target: value" written beside its
    bar (a zero has no bar to see, and the label says whose zero it is)."""
    from matplotlib.ticker import MaxNLocator

    names = list(dict.fromkeys(name for values in worst.values() for name in values))
    figure, (axes,) = _figure(max(SHORT, 0.8 + 0.28 * len(names) * max(len(worst), 1)))
    height = 0.8 / max(len(worst), 1)
    for index, (target, values) in enumerate(worst.items()):
        style = target_style(target, list(worst))
        positions = [row + index * height for row in range(len(names))]
        lengths = [values.get(name, 0.0) for name in names]
        hatch = "//" if style["linestyle"] == "--" else None
        bars = axes.barh(positions, lengths, height=height, color=style["color"], hatch=hatch, label=target)
        labels = [f"{target}: {values[name]:g}" if name in values else f"{target}: –" for name in names]
        axes.bar_label(bars, labels=labels, padding=3, fontsize=9)
    axes.set_yticks([row + 0.4 - height / 2 for row in range(len(names))], names)
    axes.invert_yaxis()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("worst value over the rounds (0 = held)")
    every = [0.0, 1.0, *(value for values in worst.values() for value in values.values())]
    axes.set_xlim(min(every) * 1.3, max(every) * 1.3)  # room for the labels beside the bars
    if not names:
        _nothing_to_draw(axes, "no numeric invariant audited")
    _legend_below(figure, axes)
    return _svg(figure)
