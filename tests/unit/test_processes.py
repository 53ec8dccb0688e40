"""Process records identify a process by pid *and* start time, and stopping reaches the whole group."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from services.lab import processes

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")
# A parent that starts a child in its own process group, then ignores SIGTERM: only a group kill ends both.
STUBBORN_PARENT = (
    sys.executable,
    "-c",
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "time.sleep(60)\n",
)


def _spawn(argv: tuple[str, ...], tmp_path: Path) -> processes.ProcessRecord:
    return processes.spawn("t", argv, log_path=tmp_path / "t.log", env=dict(os.environ))


def test_spawned_process_is_running_until_stopped(tmp_path: Path) -> None:
    record = _spawn(SLEEPER, tmp_path)
    assert processes.is_running(record)
    processes.stop(record, timeout_s=5)
    assert not processes.is_running(record)
    assert not psutil.pid_exists(record.pid)


def test_a_reused_pid_is_not_mistaken_for_our_process(tmp_path: Path) -> None:
    record = _spawn(SLEEPER, tmp_path)
    impostor = dataclasses.replace(record, started_at=record.started_at - 3600)
    try:
        assert not processes.is_running(impostor)
        processes.stop(impostor, timeout_s=1)  # must not touch the live process
        assert processes.is_running(record)
    finally:
        processes.stop(record, timeout_s=5)


def test_stop_kills_the_group_when_the_parent_ignores_the_signal(tmp_path: Path) -> None:
    record = _spawn(STUBBORN_PARENT, tmp_path)
    assert processes.wait_for(lambda: len(processes.pids_of(record)) == 2, timeout_s=10)
    family = processes.pids_of(record)
    processes.stop(record, timeout_s=1)
    survivors = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert survivors == []


def test_signal_to_a_gone_process_reports_false(tmp_path: Path) -> None:
    record = _spawn(SLEEPER, tmp_path)
    processes.stop(record, timeout_s=5)
    assert processes.send_signal(record, signal.SIGSTOP) is False


def test_port_is_free_sees_a_listening_socket() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not processes.port_is_free("127.0.0.1", port)
    assert processes.port_is_free("127.0.0.1", port)


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    record = processes.ProcessRecord(name="x", pid=1, started_at=2.5, log="l", port=3, stop_signal=2)
    assert processes.ProcessRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize("lines", [1, 3])
def test_tail_returns_the_last_lines(tmp_path: Path, lines: int) -> None:
    log = tmp_path / "x.log"
    log.write_text("a\nb\nc\nd\n")
    assert processes.tail(log, lines=lines).splitlines() == ["a", "b", "c", "d"][-lines:]
