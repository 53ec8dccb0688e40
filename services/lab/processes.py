"""Detached child processes that outlive the ``lab up`` that started them, and their records.

A record keeps the pid *and* the process's start time: a pid alone can be reused by an unrelated
process after a crash, and the lab must never signal a process it did not start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

# psutil rounds start times; two readings of one process agree well within this.
_START_TIME_TOLERANCE_S = 1.0

# Children this process spawned, kept so that stopping one also reaps it (no zombie in a
# long-lived parent such as the test runner). A 'lab up' exits with its children still running:
# that is the point of detaching them.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    started_at: float
    log: str
    port: int | None = None
    stop_signal: int = signal.SIGTERM

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(**data)


def spawn(
    name: str,
    argv: tuple[str, ...],
    *,
    log_path: Path,
    env: Mapping[str, str],
    port: int | None = None,
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
) -> ProcessRecord:
    """Start ``argv`` in its own session, output appended to ``log_path``.

    Its own session means a Ctrl-C in the shell that ran ``lab up`` does not reach it, and
    ``lab down`` can signal the whole process group (uvicorn workers, postgres backends).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            user=user,
            group=_primary_group(user),
            extra_groups=[] if user else None,
        )
    _children[child.pid] = child
    return ProcessRecord(
        name=name,
        pid=child.pid,
        started_at=psutil.Process(child.pid).create_time(),
        log=str(log_path),
        port=port,
        stop_signal=stop_signal,
    )


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process, and not a later one with the same pid, is alive."""
    child = _children.get(record.pid)
    if child is not None and child.poll() is not None:  # our own child, exited: reaped here
        del _children[record.pid]
        return False
    process = _process(record)
    return process is not None and process.status() != psutil.STATUS_ZOMBIE


def _process(record: ProcessRecord) -> psutil.Process | None:
    try:
        process = psutil.Process(record.pid)
        same = abs(process.create_time() - record.started_at) < _START_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process if same else None


def pids_of(record: ProcessRecord) -> list[int]:
    """The recorded process and its children (uvicorn workers), the parent first."""
    process = _process(record)
    if process is None:
        return []
    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [process.pid, *(child.pid for child in children)]


def stop(record: ProcessRecord, *, timeout_s: float) -> None:
    """Ask the process to stop with its own stop signal, wait, then kill its whole group."""
    process = _process(record)
    if process is None:
        return
    family = _family(process)
    _signal_quietly(process, record.stop_signal)
    _, alive = psutil.wait_procs([process], timeout=timeout_s)
    if alive:
        _kill_group(record.pid)
        psutil.wait_procs(alive, timeout=timeout_s)
    _kill_group(record.pid)  # stragglers of the group, e.g. a postgres backend mid-query
    _reap(record.pid)
    # SIGKILL is delivered asynchronously: return only once the whole family has exited.
    wait_for(lambda: not any(_alive(member) for member in family), timeout_s=timeout_s)


def _family(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [process]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; see :func:`_alive`."""
    try:
        return _alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _alive(process: psutil.Process) -> bool:
    """Still running; an exited process that nobody reaped (a zombie) holds nothing and counts as gone."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _signal_quietly(process: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(sig)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def _reap(pid: int) -> None:
    """Collect the exit status when the process was our own child, so no zombie is left."""
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()


def send_signal(record: ProcessRecord, sig: int) -> bool:
    """Signal the recorded process (e.g. SIGSTOP for a fault drill); False when it is not running."""
    process = _process(record)
    if process is None:
        return False
    _signal_quietly(process, sig)
    return True


def signal_group(record: ProcessRecord, sig: int) -> bool:
    """Signal the recorded process's whole group; False when it is not running."""
    if _process(record) is None:
        return False
    try:
        os.killpg(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# Ports handed out by this process, never handed out twice.
_handed_out: set[int] = set()
_LOWEST_PORT = 10_000


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, for a server the caller starts soon after.

    Chosen below the kernel's ephemeral range, not by binding port 0 (which answers from inside
    it): between the check and the server's own bind, any outgoing connection on the machine may
    take an ephemeral port, and a lab makes hundreds of them while it starts.
    """
    lowest_ephemeral = _ephemeral_range()[0]
    for _ in range(1000):
        port = random.randrange(_LOWEST_PORT, lowest_ephemeral)
        if port not in _handed_out and port_is_free(host, port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port between {_LOWEST_PORT} and {lowest_ephemeral} on {host}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default; macOS starts at 49152


def tail(path: Path, *, lines: int = 20) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(content[-lines:])


def wait_for(predicate: Any, *, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
