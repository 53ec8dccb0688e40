"""One service process outside the lab's state: for tests and benchmarks that need an app on a
free port, started the way ``lab up`` starts services, and gone when the block ends."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.lab import processes
from services.lab.processes import ProcessRecord
from services.lab.supervisor import serve_env, uvicorn_argv

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServedApp:
    url: str
    record: ProcessRecord

    def pause(self) -> None:
        processes.signal_group(self.record, signal.SIGSTOP)

    def resume(self) -> None:
        processes.signal_group(self.record, signal.SIGCONT)


class AppDidNotStart(RuntimeError):
    """The app exited or did not answer ``/healthz`` in time; the message ends with its log's tail."""


def http_ok(url: str, *, timeout_s: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def serve_app(
    app_factory: str,
    variant: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    workers: int = 1,
    startup_timeout_s: float = 30.0,
) -> Iterator[ServedApp]:
    """Run ``app_factory(variant)`` under uvicorn; yield once ``/healthz`` answers 200."""
    port = processes.free_port(HOST)
    # As under `lab up`: every worker writes its metrics where a scrape of any one of them adds them up.
    metrics_dir = log_dir / f"metrics-{variant}-{port}"
    metrics_dir.mkdir(parents=True)
    record = processes.spawn(
        f"{variant}-{port}",
        uvicorn_argv(host=HOST, port=port, workers=workers),
        log_path=log_dir / f"{variant}-{port}.log",
        env={
            **os.environ,
            **env,
            **serve_env(app_factory, variant),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
        port=port,
    )
    app = ServedApp(url=f"http://{HOST}:{port}", record=record)
    try:
        started = processes.wait_for(
            lambda: http_ok(app.url + "/healthz") or not processes.is_running(record),
            timeout_s=startup_timeout_s,
        )
        if not (started and processes.is_running(record)):
            log = processes.tail(Path(record.log))
            raise AppDidNotStart(f"{app_factory} did not start within {startup_timeout_s:g}s:\n{log}")
        yield app
    finally:
        processes.signal_group(record, signal.SIGCONT)  # a paused app cannot shut down
        processes.stop(record, timeout_s=10)


@contextmanager
def run_worker(target: str, *, env: Mapping[str, str], log_dir: Path) -> Iterator[ProcessRecord]:
    """A background worker (``module:async_function``) as its own process, as the lab runs it."""
    name = target.rsplit(":", 1)[-1]
    record = processes.spawn(
        f"{name}-{os.getpid()}-{processes.free_port(HOST)}",
        (sys.executable, "-m", "services.lab.worker", target),
        log_path=log_dir / f"{name}.log",
        env={**os.environ, **env},
    )
    try:
        yield record
    finally:
        processes.stop(record, timeout_s=10)
