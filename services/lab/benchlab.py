"""The running lab as the bench sees it (:class:`loadtests.engine.lab.RunningLab`).

The bench and the demo know no supervisor: the ``lab`` command brings the lab up, wraps its
supervisor in :class:`SupervisedLab` and hands that over; when the lab was not running before, it is
stopped again afterwards. Apps a scenario asks for beside the lab's own services (reference
endpoints, a variant under other settings) are served here and stopped when the lab is handed back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from loadtests.engine.lab import AppSpec
from services.lab import processes
from services.lab.infra import InfraEndpoints
from services.lab.standalone import ServedApp, serve_app
from services.lab.state import LabState
from services.lab.supervisor import Supervisor

SIGNALS = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}


@dataclass
class _Served:
    spec: AppSpec
    stack: ExitStack
    app: ServedApp


class SupervisedLab:
    """Safe to use from several threads (targets run together reset at once): what changes the
    lab's processes, and the state file that records them, goes one at a time."""

    def __init__(self, supervisor: Supervisor, endpoints: InfraEndpoints) -> None:
        self._supervisor = supervisor
        self._endpoints = endpoints
        self._served: dict[str, _Served] = {}
        self._changing = threading.RLock()

    @property
    def endpoints(self) -> InfraEndpoints:
        return self._endpoints

    def url_of(self, component: str) -> str:
        if component in self._served:
            return self._served[component].app.url
        return self._supervisor.url_of(component)

    def serve(self, component: str, app: AppSpec) -> None:
        with self._changing:
            if component not in self._served:
                self._served[component] = self._start_served(component, app)

    def _start_served(self, component: str, spec: AppSpec) -> _Served:
        stack = ExitStack()
        env = {**self._supervisor.service_env(self._endpoints), **spec.env}
        log_dir = self._supervisor.settings.state_dir / "served" / component
        log_dir.mkdir(parents=True, exist_ok=True)
        served = serve_app(
            spec.app_factory,
            spec.variant,
            env=env,
            log_dir=log_dir,
            workers=spec.workers,
            startup_timeout_s=self._supervisor.settings.startup_timeout_s,
        )
        app = stack.enter_context(served)
        return _Served(spec=spec, stack=stack, app=app)

    def restart(self, components: Sequence[str]) -> None:
        with self._changing:
            own = [name for name in components if name not in self._served]
            for name in components:
                if name in self._served:
                    served = self._served.pop(name)
                    served.stack.close()
                    self.serve(name, served.spec)
            if own:
                self._supervisor.restart(own)

    def signal(self, component: str, action: str) -> None:
        with self._changing:
            if action == "restart":
                self.restart([component])
            elif component in self._served:
                processes.signal_group(self._served[component].app.record, SIGNALS[action])
            else:
                self._supervisor.signal_component(component, SIGNALS[action])

    def recover(self) -> None:
        with self._changing:
            for name in self._supervisor.known_components():
                record = self._supervisor.record_of(name)
                if record is not None:
                    self._supervisor.signal_component(name, signal.SIGCONT)
            self._supervisor.up()
            for name, served in list(self._served.items()):
                served.app.resume()
                if not processes.is_running(served.app.record):
                    self.restart([name])

    def cpu_roots(self) -> dict[str, int]:
        state = LabState.load(self._supervisor.settings.state_dir)
        own = {name: record.pid for name, record in state.processes.items()}
        return {**own, **{name: served.app.record.pid for name, served in self._served.items()}}

    def components(self) -> list[str]:
        return [*self._supervisor.known_components(), *self._served]

    def admin_token(self) -> str:
        return self._supervisor.admin_token()

    def cannot_run(self, design: str) -> str | None:
        """Why this lab cannot run ``design`` (no broker on this platform…), or None."""
        return self._supervisor.cannot_run(design)

    def close(self) -> None:
        """Stop what was served beside the lab."""
        while self._served:
            _, served = self._served.popitem()
            served.stack.close()


@contextmanager
def running_lab(supervisor: Supervisor, *, say: Callable[[str], None]) -> Iterator[SupervisedLab]:
    """The lab, up; stopped again at the end if it was not running before."""
    was_running = bool(LabState.load(supervisor.settings.state_dir).processes)
    say("bringing the lab up")
    lab = SupervisedLab(supervisor, supervisor.up().endpoints)
    try:
        yield lab
    finally:
        lab.close()
        if not was_running:
            say("stopping the lab the bench started")
            supervisor.down()
