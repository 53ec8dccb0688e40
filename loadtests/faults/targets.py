"""What the fault matrix kills and pauses: the servers of a private lab, one of a service's two
uvicorn workers, and a background worker process; each knows how to recover."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadtests.faults.model import Fault
from services.lab import processes
from services.lab.infra import InfraEndpoints
from services.lab.processes import ProcessRecord
from services.lab.settings import LabSettings
from services.lab.standalone import ServedApp
from services.lab.supervisor import Supervisor

GONE_TIMEOUT_S = 10.0
# uvicorn's manager checks its workers about every half second and starts a new one for a dead one.
RESPAWN_TIMEOUT_S = 15.0
INFRA = ("postgres", "redis", "kafka")


def _signal_for(fault: Fault) -> int:
    return signal.SIGKILL if fault == "kill" else signal.SIGSTOP


@dataclass(frozen=True)
class FaultLab:
    """Servers of the matrix's own (a kill must not disturb anybody else's), and their supervisor."""

    supervisor: Supervisor
    endpoints: InfraEndpoints

    def server(self, name: str) -> InfraServer:
        return InfraServer(self.supervisor, name)


def fault_lab_settings(state_dir: Path) -> LabSettings:
    """Embedded servers (the matrix kills local processes) on free ports, with PostgreSQL's default
    durability: a commit it acknowledged must survive a SIGKILL, or the matrix would count orders
    lost by a test setting (``synchronous_commit=off``) instead of by the design."""
    return LabSettings(infra="embedded", state_dir=state_dir, postgres_port=0, redis_port=0, kafka_port=0)


@contextmanager
def fault_lab(settings: LabSettings) -> Iterator[FaultLab]:
    supervisor = Supervisor(settings, services=(), workers=())
    try:
        yield FaultLab(supervisor=supervisor, endpoints=supervisor.up().endpoints)
    finally:
        for name in INFRA:  # a cell that failed half way may have left a server paused
            record = supervisor.record_of(name)
            if record is not None:
                processes.signal_group(record, signal.SIGCONT)
        supervisor.down()


@dataclass(frozen=True)
class InfraServer:
    """PostgreSQL, Redis or the broker: signalled as a process group (a paused PostgreSQL pauses its
    backends too); a killed one is started again by the supervisor, on the same port and data."""

    supervisor: Supervisor
    name: str

    def fault(self, fault: Fault) -> None:
        record = self._record()
        self.supervisor.signal_component(self.name, _signal_for(fault))
        if fault == "kill":
            _wait_gone(record)

    def recover(self, fault: Fault) -> None:
        if fault == "kill":
            self.supervisor.up()
        else:
            self.supervisor.signal_component(self.name, signal.SIGCONT)

    def _record(self) -> ProcessRecord:
        record = self.supervisor.record_of(self.name)
        if record is None:
            raise RuntimeError(f"{self.name} is not running")
        return record


def _wait_gone(record: ProcessRecord) -> None:
    """SIGKILL is delivered asynchronously: the port is free only once the process has exited."""
    gone = processes.wait_for(
        lambda: (
            not processes.is_running(record)
            and (record.port is None or processes.port_is_free("127.0.0.1", record.port))
        ),
        timeout_s=GONE_TIMEOUT_S,
    )
    if not gone:
        raise RuntimeError(f"{record.name} still runs {GONE_TIMEOUT_S} s after SIGKILL")


@dataclass
class OneUvicornWorker:
    """One of the two worker processes of a service under uvicorn; uvicorn's manager replaces a dead
    one by itself, so recovering from a kill is waiting for it."""

    app: ServedApp
    victim: int | None = None

    def fault(self, fault: Fault) -> None:
        self.victim = self._workers()[0]
        os.kill(self.victim, _signal_for(fault))

    def recover(self, fault: Fault) -> None:
        assert self.victim is not None
        if fault == "stop":
            os.kill(self.victim, signal.SIGCONT)
            return
        if not processes.wait_for(self._replaced, timeout_s=RESPAWN_TIMEOUT_S):
            raise RuntimeError(f"uvicorn did not replace worker {self.victim} in {RESPAWN_TIMEOUT_S} s")

    def _replaced(self) -> bool:
        workers = self._workers()
        return self.victim not in workers and len(workers) >= 2

    def _workers(self) -> list[int]:
        """The serving children (uvicorn spawns them with multiprocessing's ``spawn``)."""
        try:
            children = psutil.Process(self.app.record.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [c.pid for c in children if _is_spawned_worker(c)]


def _is_spawned_worker(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE and any(
            "spawn_main" in part for part in process.cmdline()
        )
    except psutil.Error:
        return False


@dataclass
class WorkerProcess:
    """A background worker (``module:async_function``) run the way the lab runs it; restarted after
    a kill as a supervisor would."""

    target: str
    env: Mapping[str, str]
    log_dir: Path
    record: ProcessRecord | None = field(default=None)

    def start(self) -> None:
        name = self.target.rsplit(":", 1)[-1]
        self.record = processes.spawn(
            f"{name}-{os.getpid()}-{processes.free_port()}",
            (sys.executable, "-m", "services.lab.worker", self.target),
            log_path=self.log_dir / f"{name}.log",
            env={**os.environ, **self.env},
        )

    def stop(self) -> None:
        if self.record is not None:
            processes.send_signal(self.record, signal.SIGCONT)
            processes.stop(self.record, timeout_s=GONE_TIMEOUT_S)

    def fault(self, fault: Fault) -> None:
        assert self.record is not None
        processes.send_signal(self.record, _signal_for(fault))
        if fault == "kill":
            _wait_gone(self.record)

    def recover(self, fault: Fault) -> None:
        if fault == "kill":
            self.start()
        else:
            assert self.record is not None
            processes.send_signal(self.record, signal.SIGCONT)


@contextmanager
def running_workers(
    targets: Mapping[str, str], *, env: Mapping[str, str], log_dir: Path
) -> Iterator[dict[str, WorkerProcess]]:
    """``name → module:function`` workers, all started, all stopped afterwards."""
    workers = {name: WorkerProcess(target, env, log_dir) for name, target in targets.items()}
    try:
        for worker in workers.values():
            worker.start()
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()
