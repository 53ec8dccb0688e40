"""The live console's server against a real lab: a run of both rate-limiter variants together, its
event stream second by second, a page that connects late, the refusals while it runs, the live
counts, the verdict and the report.

The console serves over real HTTP (uvicorn on a free port) from this process, on a private lab of
the rate limiter's services alone, as ``lab console`` does for the whole lab.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from services.lab import processes, registry
from services.lab.benchlab import running_lab
from services.lab.console.app import create_console_app
from services.lab.console.presets import console_designs
from services.lab.console.runs import ConsoleRuns
from services.lab.settings import LabSettings
from services.lab.supervisor import Supervisor
from tests.conftest import TEST_POSTGRES_OPTIONS

pytestmark = pytest.mark.e2e

PRESET = {"design": "ratelimit", "preset": "hot-keys", "targets": ["naive", "hardened"]}
RUN_S = 20  # the preset's length: one sample a second for each
RATE = 400  # its offered rate, for each target
COUNTS = ("offered", "ok", "failed", "timeouts")


@dataclass(frozen=True)
class Console:
    url: str
    runs: ConsoleRuns


def _private_settings(state_dir: Path) -> LabSettings:
    ports: dict[str, Any] = {
        n: processes.free_port() for n in LabSettings.model_fields if n.endswith("_port")
    }
    return LabSettings(state_dir=state_dir, infra="embedded", postgres_options=TEST_POSTGRES_OPTIONS, **ports)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    saved = dict(os.environ)  # the console sets the services' settings in its own environment
    settings = _private_settings(tmp_path_factory.mktemp("console-lab"))
    services = [spec for spec in registry.SERVICES if spec.design == "ratelimit"]
    supervisor = Supervisor(settings, services=services, workers=[])
    try:
        with running_lab(supervisor, say=lambda _: None) as lab:
            runs = ConsoleRuns(lab, root=tmp_path_factory.mktemp("console-runs"), designs=console_designs())
            app = create_console_app(runs, admin_token=supervisor.admin_token(), require_token=False)
            port = processes.free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            _wait_for(lambda: server.started, timeout_s=30)
            try:
                yield Console(f"http://127.0.0.1:{port}", runs)
            finally:
                runs.close()
                server.should_exit = True
                thread.join(timeout=30)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _wait_for(condition: Any, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """The server-sent events of a stream, as (kind, data)."""
    kind, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


def _watch(url: str, into: list[tuple[str, dict[str, Any]]]) -> None:
    with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=60)) as response:
        for event in _events(response):
            into.append(event)


@pytest.fixture(scope="module")
def watched_run(console: Console) -> dict[str, Any]:
    """A run of the hot-keys preset: the whole stream of a page that watched from the start, the
    first events of one that connected late and left early, and the answers to what was refused."""
    started = httpx.post(f"{console.url}/api/runs", json=PRESET, timeout=120)
    assert started.status_code == 202, started.text
    run = started.json()
    events_url = f"{console.url}/api/runs/{run['id']}/events"
    seen: list[tuple[str, dict[str, Any]]] = []
    watcher = threading.Thread(target=_watch, args=(events_url, seen), daemon=True)
    watcher.start()
    refused = {
        "second run": httpx.post(f"{console.url}/api/runs", json=PRESET, timeout=30),
        "setting": httpx.post(
            f"{console.url}/api/settings", json={"name": "LAB_RATELIMIT_WINDOW_S", "value": "30"}, timeout=30
        ),
    }
    _wait_for(lambda: sum(kind == "sample" for kind, _ in seen) >= 8, timeout_s=120)
    late: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", events_url, timeout=30) as response:
        for event in _events(response):
            late.append(event)
            if sum(kind == "sample" for kind, _ in late) >= 5:
                break  # the page closes mid-run
    state_after_late_page_left = httpx.get(f"{console.url}/api/runs/{run['id']}", timeout=30).json()["state"]
    watcher.join(timeout=240)
    assert not watcher.is_alive(), "the stream did not end with the run"
    return {
        "id": run["id"],
        "events": seen,
        "late": late,
        "refused": refused,
        "state_after_late_page_left": state_after_late_page_left,
        "final": httpx.get(f"{console.url}/api/runs/{run['id']}", timeout=30).json(),
    }


def _samples(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [data for kind, data in events if kind == "sample"]


def test_one_sample_a_second_for_every_target_without_gaps(
    console: Console, watched_run: dict[str, Any]
) -> None:
    samples = _samples(watched_run["events"])
    assert [s["t"] for s in samples] == list(range(RUN_S))
    assert all(set(s["targets"]) == {"naive", "hardened"} for s in samples)
    report = json.loads((console.runs.root / watched_run["id"] / "report.json").read_text())
    for label, run in report["rounds"][0]["runs"].items():
        # What the page saw live is what the run recorded, second by second, exactly.
        recorded = {row["t"]: row for row in run["series"]}
        for sample in samples:
            live, final = sample["targets"][label], recorded.get(sample["t"], {})
            assert {k: live[k] for k in COUNTS} == {k: final.get(k, 0) for k in COUNTS}, (label, sample["t"])
        # The identical open-loop schedule for both: the first second's arrivals, every one offered.
        assert samples[0]["targets"][label]["offered"] == RATE, label


def test_a_page_that_connects_late_catches_up_and_leaving_stops_nothing(watched_run: dict[str, Any]) -> None:
    late = _samples(watched_run["late"])
    assert [s["t"] for s in late] == list(range(5))  # replayed from the first second
    assert late == _samples(watched_run["events"])[:5]
    assert watched_run["state_after_late_page_left"] == "running"  # it left at second 5 of 20
    assert watched_run["final"]["state"] == "done"


def test_what_cannot_happen_during_a_run_is_refused_clearly(watched_run: dict[str, Any]) -> None:
    second, setting = watched_run["refused"]["second run"], watched_run["refused"]["setting"]
    assert second.status_code == 409
    assert second.headers["content-type"].startswith("application/problem+json")
    assert "Hot API key burst" in second.json()["detail"]
    assert setting.status_code == 409
    assert "between runs" in setting.json()["detail"]


def test_the_live_counts_show_the_naive_limiter_over_admitting_as_it_happens(
    watched_run: dict[str, Any],
) -> None:
    kinds = [kind for kind, _ in watched_run["events"]]
    counts = [data for kind, data in watched_run["events"] if kind == "invariants"]
    assert counts, "no live counts during the run"
    auditing = kinds.index("state", kinds.index("invariants"))  # the next state: the loads ended
    assert "invariants" not in kinds[auditing:], "live counts are read while the loads run, not after"
    naive = [c["targets"]["naive"] for c in counts if "naive" in c["targets"]]
    hardened = [c["targets"]["hardened"] for c in counts if "hardened" in c["targets"]]
    assert max(n["over_admitted_requests"] for n in naive) > 0
    assert hardened
    # The hardened limiter admits beyond its limit only through checks it could not make (fail-open,
    # each one counted): on a machine busy enough to miss the 50 ms budget, never otherwise.
    assert all(h["over_admitted_requests"] <= h["degraded_checks"] for h in hardened), hardened


def test_the_run_ends_with_the_benchs_verdict_and_report(
    console: Console, watched_run: dict[str, Any]
) -> None:
    kinds = [kind for kind, _ in watched_run["events"]]
    assert kinds[-2:] == ["state", "end"]
    verdict = next(data for kind, data in watched_run["events"] if kind == "verdict")
    naive, hardened = verdict["verdict"]["naive"], verdict["verdict"]["hardened"]
    assert naive["holds"] is False
    assert naive["invariants"]["over_admitted_requests"] > 0
    assert hardened["invariants"]["over_admitted_requests"] <= hardened["invariants"]["degraded_checks"]
    assert hardened["holds"] is (hardened["invariants"]["degraded_checks"] == 0)
    page = httpx.get(console.url + verdict["report"], timeout=30)
    assert page.status_code == 200
    assert "Rate limiter" in page.text
    listed = httpx.get(f"{console.url}/api/runs", timeout=30).json()["runs"]
    assert [r["id"] for r in listed] == [watched_run["id"]]
    assert listed[0]["verdict"] == verdict["verdict"]
