"""State from a killed session is detected and dropped, never trusted."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from services.lab import processes
from services.lab.settings import LabSettings
from services.lab.state import LabState
from services.lab.supervisor import Supervisor


def test_records_of_dead_processes_are_reported_stale(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(
        json.dumps(
            {
                "mode": "embedded",
                "processes": {
                    "redis": {"name": "redis", "pid": 2**22 + 7, "started_at": 1.0, "log": "x", "port": 1},
                },
            }
        )
    )
    state = LabState.load(tmp_path)
    assert state.processes == {}
    assert state.stale == ["redis"]


def test_live_records_are_kept(tmp_path: Path) -> None:
    record = processes.spawn(
        "sleeper",
        (sys.executable, "-c", "import time; time.sleep(60)"),
        log_path=tmp_path / "s.log",
        env=dict(os.environ),
    )
    try:
        state = LabState(path=tmp_path / "state.json", mode="embedded", processes={"sleeper": record})
        state.save()
        loaded = LabState.load(tmp_path)
        assert loaded.processes == {"sleeper": record}
        assert loaded.stale == []
    finally:
        processes.stop(record, timeout_s=5)


def test_a_corrupt_state_file_is_stale_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{ half a file")
    state = LabState.load(tmp_path)
    assert state.processes == {}
    assert state.stale == ["state.json"]


def test_no_state_file_is_an_empty_lab(tmp_path: Path) -> None:
    state = LabState.load(tmp_path)
    assert (state.mode, state.processes, state.stale) == (None, {}, [])


def test_a_later_command_knows_the_worker_instances_the_lab_was_scaled_to(tmp_path: Path) -> None:
    state = LabState.load(tmp_path)
    state.scale = {"relay": 2}
    state.save()

    later = Supervisor(LabSettings(state_dir=tmp_path))

    assert "orders-relay-2" in later.known_components()
    assert "orders-payments-2" not in later.known_components()
