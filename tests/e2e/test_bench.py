"""``lab bench`` end to end: a short real run per design, its report, its audit, a chaos timeline,
and its refusals of bad input before anything starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_lab_cli import LAB, _private_lab_env, _processes_of
from tests.support.browser import rendered_dom, screenshot

pytestmark = pytest.mark.e2e

SMOKE = ("--duration", "6s", "--users", "6")


def _bench(
    tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**_private_lab_env(tmp_path / "lab"), **(extra_env or {})}
    return subprocess.run(
        [*LAB, "bench", *args, "--out", str(tmp_path / "report")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def _report(tmp_path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((tmp_path / "report" / "report.json").read_text())
    return report


@pytest.fixture(scope="module")
def ratelimit_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke run shared by the checks below: a low limit and one hot key, so that even a slow
    machine sends that key past the limit on both workers within a few seconds."""
    tmp_path = tmp_path_factory.mktemp("bench-ratelimit")
    low_limit = {"LAB_RATELIMIT_LIMIT": "3", "LAB_LOAD_HOT_KEYS": "1"}
    result = _bench(tmp_path, "ratelimit", *SMOKE, extra_env=low_limit)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _processes_of(tmp_path / "lab") == []  # the bench stopped the lab it started
    return tmp_path


def test_ratelimit_report_is_well_formed(ratelimit_bench: Path) -> None:
    report = _report(ratelimit_bench)
    assert set(report["variants"]) == {"naive", "hardened"}
    for run in report["variants"].values():
        load = run["load"]
        assert load["requests"] > 0
        assert load["throughput_rps"] > 0
        assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"]
        assert load["history"]
        assert run["service_cpu_cores"] > 0
        assert "over_admitted_requests" in run["audit"]["invariants"]
    assert report["machine"]["cores"]
    assert report["machine"]["commit"]
    assert report["settings"]["LAB_RATELIMIT_LIMIT"] == "3"
    for name in ("report.md", "report.html", "naive/locust.html", "hardened/locust.html"):
        assert (ratelimit_bench / "report" / name).stat().st_size > 0


def test_ratelimit_bench_shows_the_flaw_and_the_fix(ratelimit_bench: Path) -> None:
    variants = _report(ratelimit_bench)["variants"]
    assert variants["naive"]["audit"]["invariants"]["over_admitted_requests"] > 0
    assert variants["naive"]["audit"]["holds"] is False
    assert variants["hardened"]["audit"]["invariants"]["over_admitted_requests"] == 0
    assert variants["hardened"]["audit"]["invariants"]["degraded_checks"] == 0  # Redis was healthy
    assert variants["hardened"]["audit"]["holds"] is True


def test_html_report_renders_its_charts_in_a_browser(ratelimit_bench: Path) -> None:
    page = ratelimit_bench / "report" / "report.html"
    dom = rendered_dom(page)
    assert dom.count('class="series"') == 8  # four charts, two variants
    assert "BROKEN" in dom
    assert "holds" in dom
    shot = screenshot(page, ratelimit_bench / "report.png")
    assert shot.stat().st_size > 20_000  # a blank page is a few kilobytes


def test_chaos_timeline_is_applied_at_its_moments(tmp_path: Path) -> None:
    result = _bench(
        tmp_path,
        "ratelimit",
        "--variants",
        "hardened",
        *SMOKE,
        "--chaos",
        "redis:pause@2s,redis:resume@4s",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(tmp_path)
    steps = report["chaos"]["hardened"]
    assert [(s["component"], s["action"], s["error"]) for s in steps] == [
        ("redis", "pause", None),
        ("redis", "resume", None),
    ]
    for step in steps:
        assert step["at_s"] <= step["applied_at_s"] < step["at_s"] + 1.0
    assert "redis pause" in (tmp_path / "report" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("nonesuch",), "unknown design"),
        (("ratelimit", "--variants", "naive,clever"), "unknown variant"),
        (("ratelimit", "--shape", "zigzag"), "unknown shape"),
        (("ratelimit", "--duration", "soon"), "cannot read duration"),
        (("ratelimit", "--chaos", "mainframe:kill@1s"), "unknown chaos target"),
        (("ratelimit", "--chaos", "redis:kill"), "cannot read"),
    ],
)
def test_bad_options_fail_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    result = _bench(tmp_path, *args)
    assert result.returncode == 1
    assert complaint in result.stderr
    assert not (tmp_path / "lab" / "state.json").exists()


def test_shortener_report_is_well_formed_and_every_click_counted(tmp_path: Path) -> None:
    result = _bench(tmp_path, "shortener", *SMOKE)
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(tmp_path)
    for run in report["variants"].values():
        assert run["load"]["requests"] > 0
        assert run["load"]["p99_ms"] > 0
        invariants = run["audit"]["invariants"]
        assert invariants["redirects_served"] > 0
        assert invariants["clicks_lost"] == 0
        assert invariants["wrong_redirects"] == 0
        assert run["audit"]["holds"] is True


def test_flash_sale_bench_shows_the_naive_failure_and_the_hardened_fix(tmp_path: Path) -> None:
    result = _bench(tmp_path, "orders", "--duration", "10s", "--users", "200", "--shape", "spike")
    assert result.returncode == 0, result.stderr[-3000:]
    variants = _report(tmp_path)["variants"]
    naive, hardened = variants["naive"]["audit"], variants["hardened"]["audit"]
    assert naive["invariants"]["oversold_units"] > 0
    assert naive["invariants"]["customers_charged_more_than_once"] > 0
    assert naive["holds"] is False
    assert hardened["invariants"]["units_sold"] == hardened["invariants"]["initial_stock"] == 100
    assert hardened["invariants"]["oversold_units"] == 0
    assert hardened["invariants"]["customers_charged_more_than_once"] == 0
    assert hardened["invariants"]["events_lost"] == 0
    assert hardened["holds"] is True
