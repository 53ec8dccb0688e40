"""The report writer on synthetic report documents built with the engine's real recordings: the files
it writes, the tables a person reads, the charts, and the cases a bench can end in (a generator-bound
comparison, a target that never answered)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from loadtests.engine.charts import spectrum_points
from loadtests.engine.recording import new_histogram, record_seconds
from loadtests.engine.report import (
    histogram_file,
    is_noise,
    merged_histogram,
    runs_of,
    target_numbers,
    write_report,
)
from loadtests.engine.verdicts import LOWER_BOUND_NOT_SHOWN
from tests.support.reports import HARDENED, NAIVE, Behaviour, Mode, bound, report_document

Doc = dict[str, Any]
FIGURE = re.compile(r'<figure class="chart" data-chart="(\w+)">\s*<svg')


Written = tuple[Doc, dict[str, Path]]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Mode], Written]:
    """The report of each mode, built and written once for the module (charts take a second)."""
    cache: dict[Mode, Written] = {}

    def write(mode: Mode) -> Written:
        if mode not in cache:
            report = report_document(mode=mode)
            cache[mode] = (report, write_report(report, tmp_path_factory.mktemp(mode)))
        return cache[mode]

    return write


@pytest.fixture
def rate_report(written: Callable[[Mode], Written]) -> Doc:
    return written("rate")[0]


@pytest.fixture
def rate_files(written: Callable[[Mode], Written]) -> dict[str, Path]:
    return written("rate")[1]


def _markdown_row(markdown: str, label: str) -> list[str]:
    """The cells of the first table row whose first cell is ``label``."""
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in the Markdown")


def _ms(cell: str) -> float:
    return float(cell.replace(",", ""))


# -- files ----------------------------------------------------------------------------------------


def test_the_three_files_and_one_histogram_per_target_are_written(
    rate_report: Doc, rate_files: dict[str, Path]
) -> None:
    for kind in ("json", "md", "html"):
        assert rate_files[kind].is_file()
    assert json.loads(rate_files["json"].read_text()) == rate_report
    for target in rate_report["targets"]:
        path = rate_files[f"hdr:{target}"]
        assert path == rate_files["json"].parent / histogram_file(target)
        (line,) = path.read_text().splitlines()
        histogram = HdrHistogram.decode(line)
        windows = [w for run in runs_of(rate_report, target) for w in run["windows"]]
        assert histogram.get_total_count() == sum(w["ok"] for w in windows) > 0
        assert histogram.get_max_value() / 1000 == max(w["latency_ms"]["max"] for w in windows)


def test_histogram_files_have_names_safe_on_any_system() -> None:
    assert histogram_file("hardened (again)") == "histograms/hardened-again.hdr"
    assert histogram_file("naive") == "histograms/naive.hdr"


def test_the_page_is_self_contained(rate_files: dict[str, Path]) -> None:
    page = rate_files["html"].read_text()
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)  # nothing fetched from anywhere
    assert "<?xml" not in page  # the charts are inlined as elements, not as documents


# -- Markdown -------------------------------------------------------------------------------------


def test_the_markdown_begins_with_the_command_that_reproduces_it(
    rate_report: Doc, rate_files: dict[str, Path]
) -> None:
    markdown = rate_files["md"].read_text()
    assert markdown.startswith(f"```sh\n{rate_report['command']}\n```\n")
    assert rate_report["title"] in markdown
    assert rate_report["question"] in markdown
    assert rate_report["machine"]["commit"] in markdown


def test_the_verdict_table_shows_each_interval_and_the_aa_noise(
    rate_report: Doc, rate_files: dict[str, Path]
) -> None:
    markdown = rate_files["md"].read_text()
    comparisons = rate_report["comparisons"]
    assert [is_noise(c) for c in comparisons].count(True) == 1
    for comparison in comparisons:
        interval = f"{comparison['median']:.2f}× [{comparison['low']:.2f}, {comparison['high']:.2f}]"
        name = f"{comparison['name']} ({comparison['numerator']} / {comparison['denominator']})"
        ratio, goal, verdict, rounds, _ = _markdown_row(markdown, name)
        assert ratio == interval
        assert rounds == str(len(rate_report["rounds"]))
        if is_noise(comparison):
            assert (goal, verdict.split()[0]) == ("A/A", "noise")
            assert (
                f"Noise (A/A): {comparison['numerator']} over {comparison['denominator']} reads {interval}"
                in markdown
            )
        else:
            assert verdict == comparison["verdict"]
            assert goal == f"≥ {comparison['goal']:g}× (higher is better)"


def test_percentiles_are_ordered_and_never_above_the_max(
    rate_report: Doc, rate_files: dict[str, Path]
) -> None:
    markdown = rate_files["md"].read_text()
    labels = ["p50", "p90", "p99", "p99.9", "max"]
    for column, target in enumerate(rate_report["targets"]):
        printed = [_ms(_markdown_row(markdown, f"{label} (ms, ok answers)")[column]) for label in labels]
        assert printed == sorted(printed), target
        numbers = target_numbers(runs_of(rate_report, target))
        values = [numbers[key] for key in ("p50", "p90", "p99", "p99_9", "max")]
        assert values == sorted(values)
        assert numbers["max"] == merged_histogram(runs_of(rate_report, target)).get_max_value() / 1000


def test_the_invariants_show_every_round_and_the_audit_explanation(
    rate_report: Doc, rate_files: dict[str, Path]
) -> None:
    markdown = rate_files["md"].read_text()
    rounds = len(rate_report["rounds"])
    naive = markdown.split("**naive**")[-1]
    assert _markdown_row(naive, "clicks_lost") == [str(NAIVE.clicks_lost)] * rounds
    assert _markdown_row(naive, "holds") == ["no"] * rounds
    assert f"{NAIVE.clicks_lost} clicks never reached the counter" in naive
    hardened = markdown.split("**hardened**")[-1]
    assert _markdown_row(hardened, "holds") == ["yes"] * rounds


def test_the_cpu_breakdown_is_per_component_per_request(
    rate_report: Doc, rate_files: dict[str, Path]
) -> None:
    markdown = rate_files["md"].read_text()
    run = runs_of(rate_report, "naive")[0]
    expected = run["cpu"]["components"]["postgres"]["us_per_request"]
    assert _ms(_markdown_row(markdown, "postgres")[0]) == pytest.approx(expected, rel=0.01)
    assert _markdown_row(markdown, "generator bound (any round)")[0] == "no"


# -- charts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rate", "sweep", "closed"])
def test_every_chart_is_drawn_and_the_capacity_curve_only_for_a_sweep(
    mode: Mode, written: Callable[[Mode], Written]
) -> None:
    report, files = written(mode)
    page = files["html"].read_text()
    charts = FIGURE.findall(page)
    assert charts.count("series") == len(report["rounds"][0]["runs"])
    assert charts.count("spectrum") == 1
    assert charts.count("invariants") == 1
    assert charts.count("capacity") == (1 if mode == "sweep" else 0)


def test_a_sweep_shows_each_knee_and_where_it_broke(written: Callable[[Mode], Written]) -> None:
    report, files = written("sweep")
    markdown = files["md"].read_text()
    for target, capacity in report["capacity"].items():
        knee, broke = _markdown_row(markdown, target)[:2]
        assert _ms(knee) == capacity["knee_rps"]
        assert broke == ("–" if capacity["broke_at_rps"] is None else f"{capacity['broke_at_rps']:,.0f}")
    assert report["capacity"]["naive"]["broke_at_rps"] is not None  # the synthetic naive breaks
    assert "overloaded" not in markdown.split("## Verdicts")[0]  # a sweep overloads by design


# -- what a bench can end in ----------------------------------------------------------------------


def test_a_generator_bound_comparison_reads_as_a_lower_bound(tmp_path: Path) -> None:
    report = report_document({"naive": NAIVE, "hardened": bound(HARDENED)})
    (comparison,) = [c for c in report["comparisons"] if not is_noise(c)]
    assert comparison["verdict"] == LOWER_BOUND_NOT_SHOWN
    markdown = write_report(report, tmp_path)["md"].read_text()
    name = f"{comparison['name']} ({comparison['numerator']} / {comparison['denominator']})"
    ratio, _, verdict, _, generator = _markdown_row(markdown, name)
    assert ratio.startswith("≥ ")
    assert verdict == LOWER_BOUND_NOT_SHOWN
    assert generator == "lower bound"
    flags = markdown.split("## Flags")[1].split("## Verdicts")[0]
    assert "hardened round 0: the load generator was bound (0.93 cores)" in flags


def test_a_report_with_no_successful_answer_renders(tmp_path: Path) -> None:
    report = report_document({"naive": Behaviour(latency_ms=5.0, all_time_out=True)})
    files = write_report(report, tmp_path)
    markdown = files["md"].read_text()
    assert _markdown_row(markdown, "p99 (ms, ok answers)") == ["–"]
    assert _markdown_row(markdown, "max (ms, ok answers)") == ["–"]
    offered = _markdown_row(markdown, "offered")
    assert _markdown_row(markdown, "timeouts") == offered
    assert _markdown_row(markdown, "goodput (ok/s, median of rounds)") == ["0"]
    assert HdrHistogram.decode(files["hdr:naive"].read_text().strip()).get_total_count() == 0
    assert len(FIGURE.findall(files["html"].read_text())) == 3  # series, spectrum, invariants


def test_invalid_and_overloaded_windows_are_flagged_after_the_runners_flags(tmp_path: Path) -> None:
    late = Behaviour(latency_ms=3.0, late_s=0.05)  # every send 50 ms behind: the generator fell behind
    report = report_document({"late": late, "naive": Behaviour(latency_ms=3.0, capacity_rps=50.0)}, rounds=1)
    report["flags"] = ["the machine was busy"]
    markdown = write_report(report, tmp_path)["md"].read_text()
    flags = markdown.split("## Flags")[1].split("## Verdicts")[0].strip().splitlines()
    assert flags[0] == "- the machine was busy"
    assert any(f.startswith("- late round 0: 1 of 1 windows invalid") for f in flags)
    assert any(f.startswith("- naive round 0: overloaded") for f in flags)
    assert _markdown_row(markdown, "windows valid") == ["0 of 1", "1 of 1"]


@pytest.mark.parametrize("samples", [1, 3, 500])
def test_the_spectrum_is_the_histograms_percentiles_and_never_above_the_max(samples: int) -> None:
    histogram = new_histogram()
    rng = random.Random(samples)
    for _ in range(samples):
        record_seconds(histogram, rng.expovariate(200.0))
    xs, ys = spectrum_points(histogram)
    highest = histogram.get_max_value() / 1000
    for x, y in zip(xs[:-1], ys[:-1], strict=True):
        expected = min(histogram.get_value_at_percentile(100 * (1 - 1 / x)), histogram.get_max_value())
        assert y == expected / 1000
    assert ys == sorted(ys)
    assert ys[-1] == highest


def test_a_goal_without_a_ratio_says_why_instead_of_disappearing() -> None:
    from loadtests.engine.report import verdict_table

    reason = (
        "naive's knee_rps was 0 in round(s) 2 (medians: hardened 102, naive 25), so the ratio has no value"
    )
    table = verdict_table(
        {"comparisons": [], "uncompared": [{"name": "capacity, hardened / naive", "reason": reason}]}
    )
    assert table.rows == []
    assert table.notes == [f"capacity, hardened / naive: no verdict; {reason}."]
    assert verdict_table({"comparisons": []}).notes == ["No comparison: these runs bear no verdict."]
