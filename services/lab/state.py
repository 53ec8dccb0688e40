"""The lab's memory between commands: ``<state_dir>/state.json`` records what ``lab up`` started.

Records are never trusted blindly: on load, a record whose process is gone (a killed session, a
reboot, a reused pid) is dropped and reported as stale.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.core.files import write_whole
from services.lab.processes import ProcessRecord, is_running

logger = logging.getLogger(__name__)


@dataclass
class LabState:
    path: Path
    mode: str | None = None
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    # Ports outlive the records: a server restarted after a crash must come back on the port its
    # clients already know, even when its port setting was 0 ("any free port").
    ports: dict[str, int] = field(default_factory=dict)
    # Instances per worker role (``lab up --scale``), so later commands know the scaled components.
    scale: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path) -> LabState:
        path = state_dir / "state.json"
        raw = _read_json(path)
        state = cls(
            path=path,
            mode=raw.get("mode"),
            ports=dict(raw.get("ports", {})),
            scale=dict(raw.get("scale", {})),
        )
        for name, data in raw.get("processes", {}).items():
            record = _parse_record(data)
            if record is not None and is_running(record):
                state.processes[name] = record
            else:
                state.stale.append(name)
        if raw and not raw.get("processes") and "mode" not in raw:
            state.stale.append("state.json")
        return state

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "mode": self.mode,
            "processes": {name: rec.to_json() for name, rec in self.processes.items()},
            "ports": self.ports,
            "scale": self.scale,
        }
        write_whole(self.path, json.dumps(payload, indent=2))

    def remember(self, record: ProcessRecord) -> None:
        self.processes[record.name] = record
        if record.port:
            self.ports[record.name] = record.port

    def forget_all(self) -> None:
        self.processes.clear()
        self.ports.clear()
        self.scale.clear()
        self.mode = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        logger.warning("state_unreadable path=%s", path)
        return {"corrupt": True}
    return data if isinstance(data, dict) else {"corrupt": True}


def _parse_record(data: Any) -> ProcessRecord | None:
    try:
        return ProcessRecord.from_json(data)
    except TypeError:
        return None


@contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """One ``lab up``/``lab down`` at a time per state directory."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
