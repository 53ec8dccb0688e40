"""Brings the lab up and down: infrastructure first, then services, then workers.

``up`` is idempotent: what already runs is left alone, what died is started again. It checks every
port before starting anything and, if any component fails to become healthy, stops what this call
started, so a failed ``lab up`` never leaves a half-started lab behind.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.core.learner import LearnerSlot, learner_slot
from services.lab import processes, registry
from services.lab.components import Component, ComponentKind, ExplainingProbe
from services.lab.infra import Broker, Infra, InfraEndpoints, select_infra
from services.lab.infra.probes import probe_http, probe_kafka, probe_postgres, probe_redis
from services.lab.infra.valkey_cluster import ClusterNode, node_name, node_status
from services.lab.processes import ProcessRecord
from services.lab.settings import LabSettings, env_name
from services.lab.state import LabState, exclusive

logger = logging.getLogger(__name__)

TIERS: tuple[ComponentKind, ...] = ("infra", "service", "worker")
_POLL_INTERVAL_S = 0.1

# One bound for every probe of `lab status`, run side by side: a loaded laptop can take over a
# second to fork a PostgreSQL backend, which is slow, not down.
STATUS_PROBE_TIMEOUT_S = 2.0


class LabError(RuntimeError):
    """A failure the user can act on; the message says what happened and what to change."""


class PortInUse(LabError):
    pass


class StartupFailed(LabError):
    pass


@dataclass
class UpReport:
    endpoints: InfraEndpoints
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    stale_cleaned: list[str] = field(default_factory=list)


@dataclass
class DownReport:
    stopped: list[str] = field(default_factory=list)
    stale_cleaned: list[str] = field(default_factory=list)


def _silent(_: str) -> None:
    pass


class Supervisor:
    def __init__(
        self,
        settings: LabSettings,
        *,
        services: Sequence[registry.ServiceSpec] = registry.SERVICES,
        workers: Sequence[registry.WorkerSpec] = registry.WORKERS,
        report: Callable[[str], None] = _silent,
        scale: Mapping[str, int] | None = None,
    ) -> None:
        """``scale``: instances per worker role (``registry.parse_scale``); ``None`` keeps what the
        running lab was started with."""
        self.settings = settings
        self.services = [spec for spec in services if is_present(spec)]
        self._state_dir = settings.state_dir
        self.scale = dict(scale) if scale is not None else LabState.load(self._state_dir).scale
        self.workers = registry.scale_workers(workers, self.scale)
        self._report = report

    # -- up ---------------------------------------------------------------------------------

    def up(self) -> UpReport:
        with exclusive(self._state_dir):
            state = LabState.load(self._state_dir)
            self._refuse_mode_switch(state)
            infra = self._infra(state, mode=self.settings.infra)
            self._report(f"providing infrastructure ({infra.mode})")
            if not infra.broker().available:
                self._report(infra.broker().note)
            endpoints = infra.provision()
            components = self.components(infra, endpoints)
            pending = [c for c in components if c.name not in state.processes]
            self.check_ports(pending)
            state.mode = self.settings.infra
            state.scale = self.scale
            outcome = UpReport(
                endpoints=endpoints,
                already_running=[c.name for c in components if c.name in state.processes],
                stale_cleaned=list(state.stale),
            )
            self._start_all(pending, state=state, env=self.service_env(endpoints))
            outcome.started = [c.name for c in pending]
            state.save()
            return outcome

    def _refuse_mode_switch(self, state: LabState) -> None:
        if state.processes and state.mode not in (None, self.settings.infra):
            raise LabError(
                f"the lab already runs with LAB_INFRA={state.mode}; run 'lab down' before "
                f"switching to {self.settings.infra}"
            )

    def _infra(self, state: LabState, *, mode: str) -> Infra:
        settings = self.settings.model_copy(update={"infra": mode})
        return select_infra(settings, recorded_ports=state.ports)

    def components(self, infra: Infra, endpoints: InfraEndpoints) -> list[Component]:
        """Everything the lab runs, in start order; without a broker, none of the designs that need one."""
        runs = (lambda design: True) if infra.broker().available else _needs_no_broker
        return [
            *infra.components(),
            *(self._service_component(spec) for spec in self.services if runs(spec.design)),
            *(self._worker_component(spec) for spec in self.workers if runs(spec.design)),
        ]

    def broker(self) -> Broker:
        """The broker this lab's mode provides and what its storage keeps."""
        state = LabState.load(self._state_dir)
        return self._infra(state, mode=state.mode or self.settings.infra).broker()

    def cannot_run(self, design: str) -> str | None:
        """Why ``design`` cannot run in this lab (None: it can)."""
        broker = self.broker()
        return None if broker.available or _needs_no_broker(design) else broker.note

    def _service_component(self, spec: registry.ServiceSpec) -> Component:
        port = self.settings.port_of(spec.port_setting)
        argv = uvicorn_argv(host=self.settings.host, port=port, workers=spec.workers)
        metrics_dir = self._state_dir.resolve() / "metrics" / spec.name
        return Component(
            name=spec.name,
            kind="service",
            argv=argv,
            port=port,
            port_setting=env_name(spec.port_setting),
            probe=lambda: probe_http(self.service_url(spec) + "/healthz"),
            env={**serve_env(spec.app_factory, spec.variant), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            prepare=lambda: _empty_dir(metrics_dir),
            design=spec.design,
            variant=spec.variant,
        )

    def _worker_component(self, spec: registry.WorkerSpec) -> Component:
        return Component(
            name=spec.name,
            kind="worker",
            argv=(sys.executable, "-m", "services.lab.worker", spec.target),
            design=spec.design,
        )

    def serves(self, component: str) -> bool:
        """Whether ``component`` is one of this lab's services (a learner's only once it exists)."""
        return any(spec.name == component for spec in self.services)

    def url_of(self, component: str) -> str:
        """The URL of a registered service, by its component name (``orders-naive``)."""
        spec = next((s for s in self.services if s.name == component), None)
        if spec is None:
            raise LabError(f"no service called {component!r}")
        return self.service_url(spec)

    def service_url(self, spec: registry.ServiceSpec) -> str:
        return f"http://{self.settings.host}:{self.settings.port_of(spec.port_setting)}"

    def check_ports(self, pending: Iterable[Component]) -> None:
        """Refuse, before anything starts, a component whose port (or other port) is taken."""
        for component in pending:
            taken = [p for p in _ports_of(component) if not processes.port_is_free(self.settings.host, p)]
            if taken:
                raise PortInUse(
                    f"port {taken[0]} on {self.settings.host} is already in use, so "
                    f"{component.name} cannot start; free it or move {component.name} with "
                    f"{component.port_setting}=<another port>. Nothing was started."
                )

    def service_env(self, endpoints: InfraEndpoints) -> dict[str, str]:
        """The environment every service and worker starts with: the infrastructure, the other
        services' URLs, the admin token."""
        service_urls = {
            spec.url_setting: self.service_url(spec) for spec in self.services if spec.url_setting
        }
        return {**os.environ, **endpoints.as_env(), **service_urls, "LAB_ADMIN_TOKEN": self.admin_token()}

    def admin_token(self) -> str:
        """``LAB_ADMIN_TOKEN`` when set; otherwise one the lab makes once and keeps (mode 0600) in
        its state directory, so the bench and the demo can use the admin endpoints of the
        services they did not configure."""
        if os.environ.get("LAB_ADMIN_TOKEN"):
            return os.environ["LAB_ADMIN_TOKEN"]
        path = self._state_dir / "admin-token"
        if not path.exists():
            self._state_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _start_all(self, pending: list[Component], *, state: LabState, env: Mapping[str, str]) -> None:
        started: list[ProcessRecord] = []
        try:
            for tier in TIERS:
                batch = [c for c in pending if c.kind == tier]
                if batch:
                    started += self._start_batch(batch, state=state, env=env)
        except BaseException:
            self._report("start-up failed; stopping what this call started")
            for record in reversed(started):
                processes.stop(record, timeout_s=self.settings.stop_timeout_s)
                state.processes.pop(record.name, None)
            state.save()
            raise

    def _start_batch(
        self, batch: list[Component], *, state: LabState, env: Mapping[str, str]
    ) -> list[ProcessRecord]:
        """Start a tier at once and wait for all of it: servers boot in parallel."""
        records = []
        for component in batch:
            self._report(f"starting {component.name}")
            records.append(self._spawn(component, env=env))
            state.remember(records[-1])
            state.save()  # saved at once, so even a killed 'lab up' leaves 'lab down' a record
        asyncio.run(self._await_healthy(list(zip(batch, records, strict=True))))
        return records

    def _spawn(self, component: Component, *, env: Mapping[str, str]) -> ProcessRecord:
        if component.prepare is not None:
            component.prepare()
        return processes.spawn(
            component.name,
            component.argv,
            log_path=self.log_path(component.name),
            env={**env, **component.env},
            port=component.port,
            user=component.user,
            stop_signal=component.stop_signal,
        )

    async def _await_healthy(self, started: list[tuple[Component, ProcessRecord]]) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        await asyncio.gather(*(self._await_one(c, r, deadline=deadline) for c, r in started))

    async def _await_one(self, component: Component, record: ProcessRecord, *, deadline: float) -> None:
        while True:
            if not processes.is_running(record):
                raise StartupFailed(self._failure(component, record, "exited during start-up"))
            if component.probe is None or await component.probe():
                self._report(f"{component.name} is healthy")
                return
            if time.monotonic() > deadline:
                raise StartupFailed(self._failure(component, record, never_healthy(component)))
            await asyncio.sleep(_POLL_INTERVAL_S)

    def _failure(self, component: Component, record: ProcessRecord, what: str) -> str:
        log = processes.tail(Path(record.log), lines=15)
        return f"{component.name} {what} (log: {record.log}):\n{log}"

    def log_path(self, name: str) -> Path:
        return self._state_dir.resolve() / "logs" / f"{name}.log"

    # -- single components (chaos drills, resets) ------------------------------------------------

    def known_components(self) -> list[str]:
        """Every name ``lab chaos`` and ``lab logs`` accept, in start order."""
        return [
            *self.infra_components(),
            *(spec.name for spec in self.services),
            *(spec.name for spec in self.workers),
        ]  # fmt: skip

    def infra_components(self) -> list[str]:
        """The servers this lab runs itself, by the names its infra gives them: one Redis is
        ``redis``, an embedded cluster's nodes ``redis-1``…; none where the servers are not the lab's."""
        state = LabState.load(self._state_dir)
        return [c.name for c in self._infra(state, mode=state.mode or self.settings.infra).components()]

    def redis_components(self) -> list[str]:
        """The Redis servers among them: what a drill that pauses "Redis" must pause, every node."""
        return [name for name in self.infra_components() if is_redis_component(name)]

    def signal_component(self, name: str, sig: int) -> None:
        """Send ``sig`` to a running component's whole process group (a paused PostgreSQL must
        pause its backends too, not only the postmaster)."""
        record = self.record_of(name)
        if record is None:
            raise LabError(f"{name} is not running (start it with 'lab up')")
        processes.signal_group(record, sig)

    def restart(self, names: Iterable[str]) -> UpReport:
        """Stop the named components and start them again with ``up`` (clean in-process state)."""
        with exclusive(self._state_dir):
            state = LabState.load(self._state_dir)
            for name in names:
                record = state.processes.pop(name, None)
                if record is not None:
                    processes.signal_group(record, signal.SIGCONT)  # a paused process cannot stop
                    processes.stop(record, timeout_s=self.settings.stop_timeout_s)
            state.save()
        return self.up()

    # -- down -------------------------------------------------------------------------------

    def down(self) -> DownReport:
        with exclusive(self._state_dir):
            state = LabState.load(self._state_dir)
            outcome = DownReport(stale_cleaned=list(state.stale))
            for name, record in reversed(list(state.processes.items())):
                self._report(f"stopping {name}")
                processes.stop(record, timeout_s=self.settings.stop_timeout_s)
                outcome.stopped.append(name)
            if state.mode is not None:
                self._infra(state, mode=state.mode).release()
            state.forget_all()
            state.save()
            return outcome

    # -- status -----------------------------------------------------------------------------

    def endpoints(self) -> InfraEndpoints | None:
        """Where this lab's servers are, without starting anything."""
        state = LabState.load(self._state_dir)
        return self._infra(state, mode=state.mode or self.settings.infra).endpoints()

    def status(self) -> dict[str, Any]:
        """The shape ``lab status --json`` prints."""
        state = LabState.load(self._state_dir)
        mode = state.mode or self.settings.infra
        endpoints = self._infra(state, mode=mode).endpoints()
        return asyncio.run(self._status(state, mode=mode, endpoints=endpoints))

    async def _status(
        self, state: LabState, *, mode: str, endpoints: InfraEndpoints | None
    ) -> dict[str, Any]:
        infra, services = await asyncio.gather(
            self._infra_status(endpoints, state), self._services_status(state)
        )
        return {
            "mode": mode,
            "state_dir": str(self._state_dir.resolve()),
            "broker": asdict(self._infra(state, mode=mode).broker()),
            "infra": infra,
            "services": services,
            "workers": [self._worker_status(spec, state) for spec in self.workers],
        }

    async def _infra_status(self, endpoints: InfraEndpoints | None, state: LabState) -> dict[str, Any]:
        """Each server probed over its protocol; ``pids`` only where the lab runs it locally."""
        if endpoints is None:
            return {
                "postgres": {"url": None, "healthy": False, "pids": []},
                "redis": {"url": None, "healthy": False, "pids": []},
                "kafka": {"bootstrap": None, "healthy": False, "pids": []},
            }
        postgres, redis, kafka = await asyncio.gather(
            probe_postgres(endpoints.postgres_url, timeout_s=STATUS_PROBE_TIMEOUT_S),
            self._redis_status(endpoints, state),
            probe_kafka(endpoints.kafka_bootstrap, timeout_s=STATUS_PROBE_TIMEOUT_S),
        )
        return {
            "postgres": {
                "url": endpoints.postgres_url,
                "healthy": postgres,
                "pids": _pids(state, "postgres"),
            },
            **redis,
            "kafka": {
                "bootstrap": endpoints.kafka_bootstrap,
                "healthy": kafka,
                "pids": _pids(state, "kafka"),
            },
        }

    async def _redis_status(self, endpoints: InfraEndpoints, state: LabState) -> dict[str, Any]:
        """One server, or each node of the embedded cluster with the slots it serves."""
        if not endpoints.redis_nodes:
            healthy = await probe_redis(endpoints.redis_url, timeout_s=STATUS_PROBE_TIMEOUT_S)
            return {"redis": {"url": endpoints.redis_url, "healthy": healthy, "pids": _pids(state, "redis")}}
        nodes = [ClusterNode.from_url(url) for url in endpoints.redis_nodes]
        statuses = await asyncio.gather(
            *(node_status(node, timeout_s=STATUS_PROBE_TIMEOUT_S) for node in nodes)
        )
        return {
            node_name(index): {"url": node.url, **status, "pids": _pids(state, node_name(index))}
            for index, (node, status) in enumerate(zip(nodes, statuses, strict=True))
        }

    async def _services_status(self, state: LabState) -> list[dict[str, Any]]:
        health = await asyncio.gather(
            *(
                probe_http(self.service_url(spec) + "/healthz", timeout_s=STATUS_PROBE_TIMEOUT_S)
                for spec in self.services
            )
        )
        return [
            {
                "design": spec.design,
                "variant": spec.variant,
                "kind": spec.kind,
                "url": self.service_url(spec),
                "healthy": healthy,
                "pids": _pids(state, spec.name),
            }
            for spec, healthy in zip(self.services, health, strict=True)
        ]

    def _worker_status(self, spec: registry.WorkerSpec, state: LabState) -> dict[str, Any]:
        pids = _pids(state, spec.name)
        return {"name": spec.name, "design": spec.design, "healthy": bool(pids), "pids": pids}

    def record_of(self, name: str) -> ProcessRecord | None:
        return LabState.load(self._state_dir).processes.get(name)


def _ports_of(component: Component) -> list[int]:
    return [port for port in (component.port, *component.other_ports) if port]


def never_healthy(component: Component) -> str:
    """The start-up failure's words, with what the probe last saw when it can say."""
    probe = component.probe
    why = probe.last_error if isinstance(probe, ExplainingProbe) and probe.last_error else ""
    return f"did not become healthy in time (last probe: {why})" if why else "did not become healthy in time"


def is_redis_component(name: str) -> bool:
    return name == "redis" or name.startswith("redis-")


def uvicorn_argv(*, host: str, port: int, workers: int) -> tuple[str, ...]:
    """How every service runs: uvicorn building the app in each worker from the environment.

    ``--no-proxy-headers``: uvicorn otherwise believes ``X-Forwarded-For`` from 127.0.0.1 and
    rewrites the client address before the app sees it; the apps decide whom to trust themselves
    (``LAB_TRUSTED_PROXIES``).
    """
    return (
        sys.executable, "-m", "uvicorn", "services.lab.serve:app_from_env", "--factory",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--no-proxy-headers",
    )  # fmt: skip


def serve_env(app_factory: str, variant: str) -> dict[str, str]:
    return {"LAB_SERVE_FACTORY": app_factory, "LAB_SERVE_VARIANT": variant}


def learner_services(state_dir: Path, *, asked: bool) -> list[registry.ServiceSpec]:
    """A learner's variants this lab runs: each scaffolded one when asked for (``lab up --with-mine``,
    a bench of ``mine``), otherwise only those an earlier ask left running, so ``status``, ``chaos``
    and ``down`` still see them. A learner's broken module never joins a lab that did not ask for it."""
    if asked:
        return list(registry.LEARNER_SERVICES)
    running = LabState.load(state_dir).processes
    return [spec for spec in registry.LEARNER_SERVICES if spec.name in running]


def is_present(spec: registry.ServiceSpec) -> bool:
    """Whether the service's code exists: always, but for a learner's variant not yet scaffolded
    (or whose settings are malformed, so that it could not start either)."""
    if spec.learner_settings is None:
        return True
    try:
        module = learner_slot_of(spec).module_name
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a pydantic ValidationError is a ValueError
        return False


def learner_slot_of(spec: registry.ServiceSpec) -> LearnerSlot:
    """Where a learner's variant is, read from the design's settings as its app reads them."""
    assert spec.learner_settings is not None, f"{spec.name} is not a learner's variant"
    module, _, name = spec.learner_settings.partition(":")
    settings = getattr(importlib.import_module(module), name)()
    return learner_slot(settings, design=spec.design)


def _needs_no_broker(design: str) -> bool:
    return design not in registry.BROKER_DESIGNS


def _pids(state: LabState, name: str) -> list[int]:
    record = state.processes.get(name)
    return processes.pids_of(record) if record else []


def _empty_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
