"""``lab up``, ``lab status --json``, ``lab logs`` and ``lab down`` as a user runs them: real
processes, real servers, a private state directory and free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from services.lab import processes
from services.lab.settings import LabSettings
from tests.conftest import TEST_POSTGRES_OPTIONS

pytestmark = pytest.mark.e2e

LAB = (sys.executable, "-m", "services.lab.cli")


def _private_lab_env(state_dir: Path) -> dict[str, str]:
    """Every port the lab knows, moved to a free one, so a user's own lab is never touched."""
    ports = {
        f"LAB_{name.upper()}": str(processes.free_port())
        for name in LabSettings.model_fields
        if name.endswith("_port")
    }
    return {
        **os.environ,
        **ports,
        "LAB_STATE_DIR": str(state_dir),
        "LAB_INFRA": "embedded",
        "LAB_POSTGRES_OPTIONS": json.dumps(TEST_POSTGRES_OPTIONS),
    }


def _lab(*args: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAB, *args], env=env, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
    )


def _processes_of(state_dir: Path) -> list[psutil.Process]:
    """Any live process whose command line or working files point into this lab's state dir."""
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        text = " ".join(process.info["cmdline"] or []) + str(process.info.get("environ") or {})
        if str(state_dir) in text and processes.pid_alive(process.pid):
            found.append(process)
    return found


def test_up_status_down_round_trip(tmp_path: Path) -> None:
    state_dir = tmp_path / "lab"
    env = _private_lab_env(state_dir)
    up = _lab("up", "--scale", "relay=2", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "lab is up" in up.stderr

        status = _lab("status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        snapshot = json.loads(status.stdout)  # exactly one JSON object on stdout
        assert set(snapshot) >= {"infra", "services", "workers"}
        infra = snapshot["infra"]
        assert infra["postgres"]["healthy"]
        assert infra["redis"]["healthy"]
        assert infra["kafka"]["healthy"]
        assert infra["postgres"]["url"].endswith(f":{env['LAB_POSTGRES_PORT']}/postgres")
        assert infra["kafka"]["bootstrap"] == f"127.0.0.1:{env['LAB_KAFKA_PORT']}"
        assert all(s["healthy"] for s in snapshot["services"]), snapshot["services"]
        relays = [w for w in snapshot["workers"] if w["name"].startswith("orders-relay")]
        assert [(w["name"], w["healthy"]) for w in relays] == [
            ("orders-relay", True),
            ("orders-relay-2", True),
        ]
        pids = [
            pid
            for entry in [*infra.values(), *snapshot["services"], *snapshot["workers"]]
            for pid in entry["pids"]
        ]
        assert pids

        again = _lab("up", env=env)
        assert again.returncode == 0
        assert "already running" in again.stderr

        # The embedded broker keeps messages in memory: status says so, a restart warns what it lost.
        table = _lab("status", env=env)
        assert snapshot["broker"]["durable"] is False
        assert f"{snapshot['broker']['name']}, messages kept in memory" in " ".join(table.stdout.split())
        restart = _lab("chaos", "kafka", "restart", env=env)
        assert restart.returncode == 0, restart.stderr
        assert "events_lost_by_broker_storage" in " ".join(restart.stderr.split())
        paused = _lab("chaos", "kafka", "pause", env=env)
        assert "warning" not in paused.stderr  # a paused broker keeps what it holds
        assert _lab("chaos", "kafka", "resume", env=env).returncode == 0

        logs = _lab("logs", "postgres", "--lines", "5", env=env)
        assert logs.returncode == 0
        assert logs.stdout.strip()
    finally:
        down = _lab("down", env=env)
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if processes.pid_alive(pid)] == []
    assert _processes_of(state_dir) == []


def test_down_with_nothing_running_says_so(tmp_path: Path) -> None:
    result = _lab("down", env=_private_lab_env(tmp_path / "lab"))
    assert result.returncode == 0
    assert "nothing was running" in result.stderr


def test_up_on_a_taken_port_names_it_and_the_setting(tmp_path: Path) -> None:
    env = _private_lab_env(tmp_path / "lab")
    port = int(env["LAB_REDIS_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _lab("up", env=env)
    assert result.returncode == 1
    assert str(port) in result.stderr
    assert "LAB_REDIS_PORT" in result.stderr
    assert _processes_of(tmp_path / "lab") == []


def test_logs_of_an_unknown_component_is_a_clear_error(tmp_path: Path) -> None:
    result = _lab("logs", "nonesuch", env=_private_lab_env(tmp_path / "lab"))
    assert result.returncode == 1
    assert "no log for 'nonesuch'" in result.stderr


def test_unknown_infra_mode_is_rejected_before_anything_starts(tmp_path: Path) -> None:
    result = _lab("up", "--infra", "mainframe", env=_private_lab_env(tmp_path / "lab"))
    assert result.returncode == 1
    assert "unknown infra mode" in result.stderr
    assert not (tmp_path / "lab" / "state.json").exists()


@pytest.mark.parametrize("scale", ["nope=2", "relay=0"])
def test_a_scale_naming_no_worker_or_no_instance_is_a_one_line_error(tmp_path: Path, scale: str) -> None:
    result = _lab("up", "--scale", scale, env=_private_lab_env(tmp_path / "lab"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert not (tmp_path / "lab" / "state.json").exists()
