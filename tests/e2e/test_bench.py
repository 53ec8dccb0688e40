"""``lab bench`` end to end: a short real run per design, its report, its audit, a chaos timeline,
a named scenario with its reference endpoints, and its refusals of bad input before anything starts.

The lab comes up once for the module (``lab up``) with the settings the runs here need, and the
bench runs use it: a bench leaves a lab it did not start running. The flash sale brings up a lab of
its own (its design's alone, with the sale's stalled gateway), which also shows that the bench stops
what it started.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from loadtests.engine.generator import read_failure_reasons
from services.lab.cli import app
from tests.e2e.test_lab_cli import LAB, _lab, _private_lab_env, _processes_of
from tests.support.browser import rendered_dom, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.alone]

SMOKE = ("--mode", "rate", "--rate", "150", "--duration", "6s", "--warmup", "1", "--rounds", "1")
# What the runs below need of the services, set before the shared lab comes up: a low limit, so that
# even a slow machine sends a hot key past it on both workers within a few seconds.
SHARED_LAB_SETTINGS = {"LAB_RATELIMIT_LIMIT": "3"}


def _bench(
    env: dict[str, str], out: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAB, "bench", *args, "--out", str(out / "report")],
        env={**env, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=400,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a lab that is up for the whole module."""
    env = {**_private_lab_env(tmp_path_factory.mktemp("bench-lab") / "lab"), **SHARED_LAB_SETTINGS}
    started = _lab("up", env=env, timeout_s=240)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield env
    finally:
        _lab("down", env=env)


def _report(tmp_path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((tmp_path / "report" / "report.json").read_text())
    return report


def _runs(report: dict[str, Any]) -> dict[str, Any]:
    runs: dict[str, Any] = report["rounds"][0]["runs"]
    return runs


@pytest.fixture(scope="module")
def ratelimit_bench(shared_lab: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke run shared by the checks below, with one hot key past the shared lab's low limit."""
    tmp_path = tmp_path_factory.mktemp("bench-ratelimit")
    result = _bench(
        shared_lab, tmp_path, "ratelimit", *SMOKE, "--no-aa", extra_env={"LAB_LOAD_HOT_KEYS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path


def test_ratelimit_report_is_well_formed(ratelimit_bench: Path) -> None:
    report = _report(ratelimit_bench)
    assert report["targets"] == ["naive", "hardened"]
    assert report["command"].startswith("lab bench ratelimit")
    assert report["scenario"] == "hot-keys"  # the headline scenario, when none is named
    for run in _runs(report).values():
        (window,) = run["windows"]
        assert window["offered"] > 0
        assert window["offered_rate"] == 150
        latency = window["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert sum(row["offered"] for row in run["series"]) >= window["offered"]
        assert run["cpu"]["components"][run["cpu"]["service"]]["cpu_s"] > 0
        assert "load generator" in run["cpu"]["components"]
        assert run["histograms"]["ok"]
        assert "over_admitted_requests" in run["audit"]["invariants"]
    assert report["machine"]["cores"]
    assert report["machine"]["commit"]
    assert report["settings"]["LAB_RATELIMIT_LIMIT"] == "3"
    for name in ("report.md", "report.html", "histograms/naive.hdr", "histograms/hardened.hdr"):
        assert (ratelimit_bench / "report" / name).stat().st_size > 0


def test_ratelimit_bench_shows_the_flaw_and_the_fix(ratelimit_bench: Path) -> None:
    runs = _runs(_report(ratelimit_bench))
    naive, hardened = runs["naive"]["audit"], runs["hardened"]["audit"]
    assert naive["invariants"]["over_admitted_requests"] > 0
    assert naive["holds"] is False
    assert hardened["invariants"]["over_admitted_requests"] == 0
    assert hardened["invariants"]["degraded_checks"] == 0  # Redis was healthy
    assert hardened["holds"] is True


def test_html_report_renders_its_charts_in_a_browser(ratelimit_bench: Path) -> None:
    page = ratelimit_bench / "report" / "report.html"
    dom = rendered_dom(page)
    assert dom.count('class="chart"') >= 3  # series, spectrum, invariants: no sweep, no capacity chart
    assert "BROKEN" in dom
    assert "holds" in dom
    shot = screenshot(page, ratelimit_bench / "report.png")
    assert shot.stat().st_size > 20_000  # a blank page is a few kilobytes


def test_chaos_timeline_is_applied_on_the_loads_clock(shared_lab: dict[str, str], tmp_path: Path) -> None:
    chaos = "redis:pause@2s,redis:resume@4s"
    args = ("ratelimit", "--variants", "hardened", *SMOKE, "--no-aa", "--chaos", chaos)
    result = _bench(shared_lab, tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = _runs(_report(tmp_path))["hardened"]["chaos"]
    assert [(s["component"], s["action"], s["error"]) for s in steps] == [
        ("redis", "pause", None),
        ("redis", "resume", None),
    ]
    for step, planned in zip(steps, (2.0, 4.0), strict=True):
        assert planned <= step["at_s"] < planned + 1.0  # seconds since the load's t = 0, as the series


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("nonesuch",), "unknown design"),
        (("ratelimit", "--variants", "naive,clever"), "unknown variant"),
        (("ratelimit", "--mode", "zigzag"), "unknown mode"),
        (("ratelimit", "--duration", "soon"), "cannot read duration"),
        (("ratelimit", "--steps", "100,fast"), "cannot read the rates"),
        (("ratelimit", "--chaos", "mainframe:kill@1s"), "unknown chaos target"),
        (("ratelimit", "--chaos", "redis:kill"), "cannot read"),
        (("orders", "--mode", "sweep"), "closed-loop users only"),
        (("shortener", "--scenario", "nonesuch"), "unknown scenario 'nonesuch' of shortener; choose one of"),
        (("ratelimit", "--scenario", "floor", "--variants", "naive"), "ratelimit floor has floor, hardened"),
        (("faults", "--cells", "orders-hardened-nonesuch"), "no cell matches orders-hardened-nonesuch"),
    ],
)
def test_bad_options_fail_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    """The real command line, in this process (a refusal starts nothing, so no process is needed)."""
    env = _private_lab_env(tmp_path / "lab")
    result = CliRunner().invoke(app, ["bench", *args, "--out", str(tmp_path / "report")], env=env)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()  # one line, however wide the terminal
    assert complaint in line
    assert not (tmp_path / "lab").exists()  # no lab was brought up, not even its state
    assert _processes_of(tmp_path / "lab") == []


def test_shortener_report_counts_every_click_and_shows_the_noise(
    shared_lab: dict[str, str], tmp_path: Path
) -> None:
    result = _bench(shared_lab, tmp_path, "shortener", *SMOKE)  # with the A/A run
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(tmp_path)
    assert report["targets"] == ["naive", "hardened", "hardened (again)"]
    for run in _runs(report).values():
        invariants = run["audit"]["invariants"]
        assert invariants["redirects_served"] > 0
        assert invariants["clicks_lost"] == 0
        assert invariants["wrong_redirects"] == 0
    # The naive flaw as a number: every redirect reads PostgreSQL. The hardened one reads it at most
    # once per link redirected (a cold miss), which the naive variant exceeds even in a run this short.
    runs = _runs(report)
    assert runs["naive"]["audit"]["invariants"]["database_reads_per_redirect"] >= 0.99
    assert runs["naive"]["audit"]["invariants"]["database_reads_beyond_cold_misses"] > 0
    assert runs["naive"]["audit"]["holds"] is False
    for label in ("hardened", "hardened (again)"):
        assert runs[label]["audit"]["invariants"]["database_reads_beyond_cold_misses"] == 0
        assert runs[label]["audit"]["invariants"]["database_reads_per_redirect"] < 0.9
        assert runs[label]["audit"]["holds"] is True
    verdicts = {c["name"]: c["verdict"] for c in report["comparisons"]}
    noise = [name for name in verdicts if name.startswith("A/A")]
    assert noise
    assert all(verdicts[name] == "too few rounds" for name in verdicts)  # one round bears no verdict


def test_flash_sale_bench_shows_the_naive_failure_and_the_hardened_fix(tmp_path: Path) -> None:
    args = ("orders", "--duration", "10s", "--users", "200", "--rounds", "1", "--no-aa")
    result = _bench(_private_lab_env(tmp_path / "lab"), tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _processes_of(tmp_path / "lab") == []  # the bench stopped the lab it started
    runs = _runs(_report(tmp_path))
    naive, hardened = runs["naive"]["audit"], runs["hardened"]["audit"]
    assert naive["invariants"]["oversold_units"] > 0
    assert naive["invariants"]["customers_charged_more_than_once"] > 0
    assert naive["holds"] is False
    assert hardened["invariants"]["units_sold"] == hardened["invariants"]["initial_stock"] == 100
    assert hardened["invariants"]["oversold_units"] == 0
    assert hardened["invariants"]["customers_charged_more_than_once"] == 0
    assert hardened["invariants"]["events_lost"] == 0
    assert hardened["holds"] is True
    (window,) = runs["hardened"]["windows"]
    assert window["timeouts"] == 0  # every buyer answered within the deadline


def _a_wrong_answer(reason: str) -> bool:
    """A redirect to a wrong Location, or an HTTP status that is not the 302 (status 0 is no answer
    at all, a dropped connection: the machine's, not the endpoint's)."""
    return "wrong Location" in reason or ("unexpected status" in reason and not reason.endswith("status 0"))


def _references_running(state_dir: Path) -> list[psutil.Process]:
    """The lab's processes serving a reference endpoint of the shortener."""
    return [
        process
        for process in psutil.process_iter(["environ"])
        if "loadtests.shortener.references" in str(process.info.get("environ") or {})
        and str(state_dir) in str(process.info.get("environ") or {})
    ]


def test_scenarios_are_listed_headline_first(tmp_path: Path) -> None:
    env = _private_lab_env(tmp_path / "lab")
    listed = subprocess.run(
        [*LAB, "bench", "shortener", "--list-scenarios"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    names = [line.split(":")[0] for line in listed.stdout.splitlines()]
    assert names == ["zipf (headline)", "ceiling", "viral", "creates"]
    assert not (tmp_path / "lab").exists()


def test_a_scenario_runs_its_reference_endpoints_pinned(shared_lab: dict[str, str], tmp_path: Path) -> None:
    """The redirect ceiling, short: the bare 302 and the floor served beside the lab, each a column
    of the report, and stopped again with the bench; the generator pinned apart."""
    args = ("shortener", "--scenario", "ceiling", "--variants", "bare-302,floor,hardened", "--pin")
    result = _bench(shared_lab, tmp_path, *args, *SMOKE, "--no-aa")
    assert result.returncode == 0, result.stderr[-3000:]
    assert _references_running(Path(shared_lab["LAB_STATE_DIR"])) == []  # stopped with the bench
    report = _report(tmp_path)
    assert report["scenario"] == "ceiling"
    assert report["command"].startswith("lab bench shortener --scenario ceiling")
    assert report["targets"] == ["bare-302", "floor", "hardened"]
    assert report["references"] == ["bare-302", "floor"]
    runs = _runs(report)
    for label in ("bare-302", "floor"):
        assert runs[label]["audit"]["holds"] is None  # a reference claims no invariants
        assert runs[label]["cpu"]["components"][f"shortener-{label}"]["cpu_s"] > 0
        (window,) = runs[label]["windows"]
        assert window["ok"] > 0
        reasons = read_failure_reasons(tmp_path / "report" / "round-1" / label)
        assert not [r for r in reasons if _a_wrong_answer(r)], reasons
    assert runs["hardened"]["audit"]["holds"] is True
    assert report["pinning"]["asked"] is True
    assert report["pinning"]["pinned"] is True, report["pinning"]  # 2 cores: one each is allowed
    page = (tmp_path / "report" / "report.md").read_text()
    assert page.startswith("```sh\nlab bench shortener --scenario ceiling")
    assert "| bare-302 | floor | hardened |" in page
    assert "Pinned: load generator on core(s)" in page
