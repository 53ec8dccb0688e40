"""The running lab as the bench sees it (:class:`loadtests.engine.lab.RunningLab`).

The bench and the demo know no supervisor: the ``lab`` command brings the lab up, wraps its
supervisor in :class:`SupervisedLab` and hands that over; when the lab was not running before, it is
stopped again afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from services.lab.infra import InfraEndpoints
from services.lab.state import LabState
from services.lab.supervisor import Supervisor

SIGNALS = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}


class SupervisedLab:
    def __init__(self, supervisor: Supervisor, endpoints: InfraEndpoints) -> None:
        self._supervisor = supervisor
        self._endpoints = endpoints

    @property
    def endpoints(self) -> InfraEndpoints:
        return self._endpoints

    def url_of(self, component: str) -> str:
        return self._supervisor.url_of(component)

    def restart(self, components: Sequence[str]) -> None:
        self._supervisor.restart(components)

    def signal(self, component: str, action: str) -> None:
        if action == "restart":
            self._supervisor.restart([component])
        else:
            self._supervisor.signal_component(component, SIGNALS[action])

    def recover(self) -> None:
        for name in self._supervisor.known_components():
            record = self._supervisor.record_of(name)
            if record is not None:
                self._supervisor.signal_component(name, signal.SIGCONT)
        self._supervisor.up()

    def cpu_roots(self) -> dict[str, int]:
        state = LabState.load(self._supervisor.settings.state_dir)
        return {name: record.pid for name, record in state.processes.items()}

    def components(self) -> list[str]:
        return self._supervisor.known_components()

    def admin_token(self) -> str:
        return self._supervisor.admin_token()

    def cannot_run(self, design: str) -> str | None:
        """Why this lab cannot run ``design`` (no broker on this platform…), or None."""
        return self._supervisor.cannot_run(design)


@contextmanager
def running_lab(supervisor: Supervisor, *, say: Callable[[str], None]) -> Iterator[SupervisedLab]:
    """The lab, up; stopped again at the end if it was not running before."""
    was_running = bool(LabState.load(supervisor.settings.state_dir).processes)
    say("bringing the lab up")
    endpoints = supervisor.up().endpoints
    try:
        yield SupervisedLab(supervisor, endpoints)
    finally:
        if not was_running:
            say("stopping the lab the bench started")
            supervisor.down()
