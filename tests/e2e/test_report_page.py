"""The report page in a real browser: headless Chromium loads ``report.html`` from disk (no network),
lays it out, and paints every chart the writer promised.

The document is a synthetic sweep (built from real recordings; see ``tests/support/reports.py``), the
one mode with all four kinds of chart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from loadtests.engine.charts import VARIANT_COLORS
from loadtests.engine.report import write_report
from tests.support.browser import rendered_dom, screenshot
from tests.support.reports import report_document

pytestmark = pytest.mark.e2e

FIGURE = re.compile(r'<figure class="chart" data-chart="(\w+)"><svg\b')
PAGE_SIZE = "1150,4600"  # tall enough that every chart of the sweep's page is in the picture
NEAR = 40  # how far (per channel) a painted pixel may be from a line's colour after anti-aliasing


def _painted(shot: Path, color: str) -> int:
    """Pixels of the screenshot within ``NEAR`` of ``color`` (``#rrggbb``)."""
    target = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    with Image.open(shot) as image:
        counts = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(n for n, rgb in counts if all(abs(a - b) <= NEAR for a, b in zip(rgb, target, strict=True)))


def test_the_report_page_shows_every_chart_in_a_browser(tmp_path: Path) -> None:
    report = report_document(mode="sweep")
    page = write_report(report, tmp_path / "report")["html"]
    charts = FIGURE.findall(rendered_dom(page))
    targets = len(report["rounds"][0]["runs"])
    assert sorted(charts) == sorted(["series"] * targets + ["spectrum", "capacity", "invariants"])
    shot = screenshot(page, tmp_path / "report.png", size=PAGE_SIZE)
    # Tables are black on white: the variants' colours on the page come from the charts alone.
    for variant in ("naive", "hardened"):
        assert _painted(shot, VARIANT_COLORS[variant]) > 1_000, variant
