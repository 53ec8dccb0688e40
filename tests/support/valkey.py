"""A Valkey server of one test's own, which the test may kill, pause and start again without
disturbing the session's servers."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

from services.lab import processes
from services.lab.infra.embedded import valkey_server_bin
from services.lab.processes import ProcessRecord


@dataclasses.dataclass
class OwnRedis:
    port: int
    log_dir: Path
    record: ProcessRecord | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = (str(valkey_server_bin()), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "")
        self.record = processes.spawn(
            "valkey", argv, log_path=self.log_dir / "valkey.log", env=dict(os.environ), port=self.port
        )
        assert processes.wait_for(lambda: not processes.port_is_free("127.0.0.1", self.port), timeout_s=10)

    def signal(self, sig: int) -> None:
        assert self.record is not None
        processes.send_signal(self.record, sig)

    def kill(self) -> None:
        assert self.record is not None
        processes.stop(dataclasses.replace(self.record, stop_signal=signal.SIGKILL), timeout_s=5)
