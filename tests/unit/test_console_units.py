"""The live console without a lab: its catalogue, its refusals, its settings, its API's answers to bad
input, and how the live series of several generator processes add up. A stand-in lab records what
the console asks of it (unit tests only; the console against the real lab is tests/e2e)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loadtests.designs import DESIGNS
from loadtests.engine.generator import read_live
from services.lab.console.app import create_console_app
from services.lab.console.errors import CatalogueError, NoRunGoing
from services.lab.console.presets import (
    checked_targets,
    console_designs,
    describe,
    fault_of,
    setting_of,
)
from services.lab.console.runs import ConsoleRuns

DESIGN_COMPONENTS = [
    "postgres", "redis", "kafka", "orders-gateway", "orders-inventory", "orders-naive", "orders-hardened",
    "orders-relay", "orders-payments", "ratelimit-naive", "ratelimit-hardened", "shortener-naive",
    "shortener-hardened",
]  # fmt: skip


class RecordingLab:
    """What the console asked of the lab, in order; ``refuses``: a setting under which a restart fails."""

    def __init__(self, refuses: tuple[str, str] | None = None) -> None:
        self.restarted: list[list[str]] = []
        self.signals: list[tuple[str, str]] = []
        self.refuses = refuses

    def components(self) -> list[str]:
        return list(DESIGN_COMPONENTS)

    def restart(self, components: Sequence[str]) -> None:
        self.restarted.append(list(components))
        if self.refuses is not None and os.environ.get(self.refuses[0]) == self.refuses[1]:
            raise RuntimeError("orders-gateway did not become healthy")

    def signal(self, component: str, action: str) -> None:
        self.signals.append((component, action))


@pytest.fixture
def clean_environ() -> Iterator[None]:
    """The console sets the services' settings in its own environment: put it back afterwards."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def runs(tmp_path: Path, clean_environ: None) -> ConsoleRuns:
    return ConsoleRuns(RecordingLab(), root=tmp_path, designs=console_designs())  # type: ignore[arg-type]


def test_every_preset_names_a_bench_scenario_and_its_targets() -> None:
    for design in console_designs().values():
        for preset in design.presets.values():
            scenario = DESIGNS[preset.design].scenarios[preset.scenario]
            assert preset.mode in ("rate", "sweep", "closed")
            assert preset.mode == "closed" or scenario.open_user is not None, preset.name
            assert set(preset.default_targets()) == {"naive", "hardened"}, preset.name
            assert scenario.live_audit is not None, f"{preset.name} has no live counts for the page"
            assert preset.run_s > 0


def _components_the_lab_runs() -> set[str]:
    """The servers, services and workers of the registry, and what the scenarios serve beside them."""
    from services.lab import registry

    names = {
        "postgres",
        "redis",
        "kafka",
        *(s.name for s in registry.SERVICES),
        *(w.name for w in registry.WORKERS),
    }
    for bench_design in DESIGNS.values():
        for scenario in bench_design.scenarios.values():
            for target in scenario.targets:
                if target.app is not None:
                    names |= {target.component, *(c.component for c in target.app.companions)}
    return names


def test_every_setting_and_fault_names_what_the_lab_runs() -> None:
    known = _components_the_lab_runs()
    for design in console_designs().values():
        for setting in design.settings.values():
            assert set(setting.restarts) <= known, setting.name
            assert design.value_of(setting, {}) != "", setting.name  # the design's own default
        for fault in design.faults:
            assert fault.component in known


def test_the_page_description_is_json_with_the_settings_in_effect() -> None:
    orders = console_designs()["orders"]
    described = describe(orders, {"LAB_PAYMENT_GATEWAY_LATENCY_MS": "750"})
    json.dumps(described)
    latency = next(s for s in described["settings"] if s["name"] == "LAB_PAYMENT_GATEWAY_LATENCY_MS")
    locking = next(s for s in described["settings"] if s["name"] == "LAB_ORDERS_NAIVE_LOCKING")
    assert latency["value"] == "750"
    delay = next(s for s in described["settings"] if s["name"] == "LAB_INVENTORY_DELAY_MS")
    assert delay["value"] == "20"  # the design's default, as a person types it
    assert locking["value"] == "none"
    assert locking["choices"] == ["none", "row-lock"]
    assert [p["name"] for p in described["presets"]] == ["flash-sale", "hot-sku"]


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("LAB_PAYMENT_GATEWAY_LATENCY_MS", "400", "400"),
        ("LAB_PAYMENT_GATEWAY_LATENCY_MS", " 12.5 ", "12.5"),
        ("LAB_ORDERS_NAIVE_LOCKING", "row-lock", "row-lock"),
        ("LAB_RATELIMIT_ALGORITHM", "sliding-counter", "sliding-counter"),
    ],
)
def test_a_setting_accepts_what_the_design_accepts(name: str, value: str, accepted: str) -> None:
    assert _checked(name, value) == accepted


def _checked(name: str, value: str) -> str:
    design, setting = setting_of(console_designs(), name)
    return design.checked(setting, value)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LAB_PAYMENT_GATEWAY_LATENCY_MS", "-1", "from 0 to 5000"),
        ("LAB_PAYMENT_GATEWAY_LATENCY_MS", "soon", "is a number"),
        ("LAB_PAYMENT_GATEWAY_LATENCY_MS", "nan", "from 0 to 5000"),
        ("LAB_ORDERS_NAIVE_LOCKING", "table-lock", "one of none, row-lock"),
        ("LAB_ADMIN_TOKEN", "x", "does not tune"),
        # In the console's bounds, but the design reads an integer: refused before any restart.
        ("LAB_RATELIMIT_WINDOW_S", "1.5", "cannot be '1.5'"),
        ("LAB_SHORTENER_HOT_CACHE_TTL_MS", "0.5", "cannot be '0.5'"),
    ],
)
def test_a_setting_refuses_what_the_design_would_not_start_with(name: str, value: str, says: str) -> None:
    with pytest.raises(CatalogueError, match=says):
        _checked(name, value)


def test_targets_and_faults_outside_the_catalogue_are_refused() -> None:
    orders = console_designs()["orders"]
    flash = orders.presets["flash-sale"]
    assert checked_targets(flash, []) == ("naive", "hardened")
    assert checked_targets(flash, ["hardened", "hardened"]) == ("hardened",)
    with pytest.raises(CatalogueError, match="unknown target"):
        checked_targets(flash, ["naive", "sharded"])
    with pytest.raises(CatalogueError, match="at most 3"):
        checked_targets(orders.presets["hot-sku"], ["naive", "naive-row-lock", "hardened", "mine"])
    with pytest.raises(CatalogueError, match="no fault kafka:kill"):
        fault_of(orders, "kafka", "kill")


def test_a_tuned_setting_is_set_and_restarts_what_reads_it(runs: ConsoleRuns) -> None:
    changed = runs.tune("LAB_RATELIMIT_WINDOW_S", "10")
    assert changed == {"name": "LAB_RATELIMIT_WINDOW_S", "value": "10",
                       "restarted": ["ratelimit-naive", "ratelimit-hardened"]}  # fmt: skip
    assert os.environ["LAB_RATELIMIT_WINDOW_S"] == "10"
    assert runs.tune("LAB_RATELIMIT_WINDOW_S", "10")["restarted"] == []  # nothing changed


def test_a_fault_needs_a_run(runs: ConsoleRuns) -> None:
    lab: Any = runs.lab
    with pytest.raises(NoRunGoing, match="start one first"):
        runs.press("kafka", "pause")
    assert lab.signals == []


def test_the_live_series_of_several_processes_adds_up_by_second(tmp_path: Path) -> None:
    def row(t: int, ok: int, p99: float | None) -> dict[str, Any]:
        return {"t": t, "offered": ok, "ok": ok, "failed": 0, "timeouts": 1, "unfinished": 0,
                "not_sent": 0, "p50_ms": p99, "p99_ms": p99}  # fmt: skip

    documents = {
        "live-1.json": {
            "started_monotonic": 100.0,
            "final_before_s": 3,
            "rows": [row(0, 5, 10.0), row(1, 6, 30.0)],
        },
        # Began a second later, and its second 0 (the run's second 1) is still filling.
        "live-2.json": {"started_monotonic": 101.0, "final_before_s": 0, "rows": [row(0, 7, None)]},
    }
    for name, document in documents.items():
        (tmp_path / name).write_text(json.dumps(document))
    view = read_live(tmp_path)
    assert view.started_monotonic == 100.0
    assert [(r["t"], r["ok"], r["timeouts"], r["p99_ms"]) for r in view.rows] == [
        (0, 5, 1, 10.0),
        (1, 13, 2, 30.0),
    ]
    assert view.final_before_s == 1  # the run's second 1 is final in one process only
    assert view.final_row(0) == view.rows[0]
    assert view.final_row(1) is None
    assert read_live(tmp_path / "nothing-yet").rows == []
    quiet = read_live_of(
        tmp_path / "quiet", {"started_monotonic": 5.0, "final_before_s": 4, "rows": [row(0, 1, 2.0)]}
    )
    assert quiet.final_row(2) == {"t": 2}  # final and empty: nothing happened in it
    assert quiet.final_row(4) is None


def read_live_of(folder: Path, document: dict[str, Any]) -> Any:
    folder.mkdir()
    (folder / "live-1.json").write_text(json.dumps(document))
    return read_live(folder)


# -- the API's answers to bad input ------------------------------------------------------------


def _client(runs: ConsoleRuns, *, require_token: bool = False) -> TestClient:
    return TestClient(create_console_app(runs, admin_token="s3cret", require_token=require_token))


def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    return detail


def test_bad_choices_get_422_problems(runs: ConsoleRuns) -> None:
    client = _client(runs)
    assert "unknown preset 'fire-sale'" in _problem(
        client.post("/api/runs", json={"design": "orders", "preset": "fire-sale"}), 422
    )
    assert "unknown design" in _problem(client.post("/api/runs", json={"design": "chat", "preset": "x"}), 422)
    assert "unknown target" in _problem(
        client.post("/api/runs", json={"design": "orders", "preset": "flash-sale", "targets": ["sharded"]}),
        422,
    )
    _problem(client.post("/api/runs", json={"design": "orders"}), 422)  # no preset at all
    _problem(client.post("/api/runs", content=b"{", headers={"content-type": "application/json"}), 422)
    assert "is a number" in _problem(
        client.post("/api/settings", json={"name": "LAB_INVENTORY_DELAY_MS", "value": "slow"}), 422
    )


def test_a_fault_without_a_run_is_a_409(runs: ConsoleRuns) -> None:
    detail = _problem(_client(runs).post("/api/faults", json={"component": "kafka", "action": "pause"}), 409)
    assert "start one first" in detail


def test_unknown_pages_runs_and_report_files_are_404(runs: ConsoleRuns, tmp_path: Path) -> None:
    client = _client(runs)
    _problem(client.get("/designs/chat"), 404)
    _problem(client.get("/api/runs/20260101-000000-orders-flash-sale"), 404)
    _problem(client.get("/api/runs/..%2F..%2Fetc"), 404)
    (tmp_path / "secret.txt").write_text("no")
    _problem(client.get("/reports/20260101-000000-orders-flash-sale/report.html"), 404)
    (tmp_path.parent / "report.json").write_text("{}")  # a file the path below would reach
    _problem(client.get("/reports/..%2F..%2F/report.json"), 404)
    _problem(client.get("/reports/..%2F/report.json"), 404)
    assert client.get("/api/runs").json() == {"runs": []}


def test_changes_need_the_token_when_the_console_listens_beyond_loopback(runs: ConsoleRuns) -> None:
    client = _client(runs, require_token=True)
    body = {"name": "LAB_INVENTORY_DELAY_MS", "value": "30"}
    assert "admin token" in _problem(client.post("/api/settings", json=body), 401)
    wrong = {"Authorization": "Bearer guess"}
    _problem(client.post("/api/settings", json=body, headers=wrong), 401)
    right = {"Authorization": "Bearer s3cret"}
    assert client.post("/api/settings", json=body, headers=right).json()["restarted"] == ["orders-inventory"]
    assert client.get("/api/designs").status_code == 200  # reading needs no token


def test_a_variant_the_lab_does_not_run_is_refused_before_anything_starts(runs: ConsoleRuns) -> None:
    with pytest.raises(CatalogueError, match="lab exercise start orders"):
        runs.start("orders", "flash-sale", ["naive", "mine"])
    assert runs.current() is None
    assert runs.lab.restarted == []  # type: ignore[attr-defined]


def test_a_run_the_console_left_mid_way_is_listed_as_interrupted(runs: ConsoleRuns, tmp_path: Path) -> None:
    folder = tmp_path / "20261202-061500-orders-flash-sale"
    folder.mkdir()
    (folder / "console-run.json").write_text(json.dumps({"id": folder.name, "state": "running"}))
    assert runs.past() == [{"id": folder.name, "state": "interrupted"}]
    assert runs.run(folder.name) == {"id": folder.name, "state": "interrupted"}


def test_sigterm_unwinds_the_lab_command_like_ctrl_c() -> None:
    """A bench or a console killed with SIGTERM runs its clean-up (the apps it served, the lab it
    brought up) instead of leaving them running: the signal becomes a SystemExit."""
    import signal

    from services.lab.cli import _exit_on_terminate, install_signal_handlers

    before = signal.getsignal(signal.SIGTERM)
    try:
        install_signal_handlers()  # what main() does first
        assert signal.getsignal(signal.SIGTERM) is _exit_on_terminate
    finally:
        signal.signal(signal.SIGTERM, before)
    with pytest.raises(SystemExit) as exited:
        _exit_on_terminate(signal.SIGTERM, None)
    assert exited.value.code == 128 + signal.SIGTERM


def test_a_setting_the_service_does_not_start_with_is_put_back_and_said(
    tmp_path: Path, clean_environ: None
) -> None:
    lab = RecordingLab(refuses=("LAB_PAYMENT_GATEWAY_LATENCY_MS", "4000"))
    runs = ConsoleRuns(lab, root=tmp_path, designs=console_designs())  # type: ignore[arg-type]
    os.environ["LAB_PAYMENT_GATEWAY_LATENCY_MS"] = "50"
    detail = _problem(
        _client(runs).post("/api/settings", json={"name": "LAB_PAYMENT_GATEWAY_LATENCY_MS", "value": "4000"}),
        503,
    )
    assert "did not start" in detail
    assert os.environ["LAB_PAYMENT_GATEWAY_LATENCY_MS"] == "50"  # the old value, and the service on it
    assert lab.restarted == [["orders-gateway"], ["orders-gateway"]]


def test_changes_from_another_sites_page_are_refused(runs: ConsoleRuns) -> None:
    client = _client(runs)
    body = {"name": "LAB_INVENTORY_DELAY_MS", "value": "30"}
    detail = _problem(
        client.post("/api/settings", json=body, headers={"Origin": "https://elsewhere.example"}), 403
    )
    assert "elsewhere.example" in detail
    same = client.post("/api/settings", json=body, headers={"Origin": "http://testserver"})
    assert same.status_code == 200, same.text


def test_an_unreadable_run_file_is_skipped_and_two_runs_in_one_second_get_two_folders(
    runs: ConsoleRuns, tmp_path: Path
) -> None:
    broken = tmp_path / "20261202-061500-orders-flash-sale"
    broken.mkdir()
    (broken / "console-run.json").write_text('{"id": "20261202-06')  # a console killed mid-write
    assert runs.past() == []
    preset = console_designs()["orders"].presets["flash-sale"]
    first, second = runs._new_folder(preset), runs._new_folder(preset)
    assert first[0] != second[0]
    assert first[1].is_dir()
    assert second[1].is_dir()
    assert runs.folder_of(second[0]) == second[1]
