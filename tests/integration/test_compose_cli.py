"""``lab up --infra compose`` and ``lab bench … --infra compose`` as a user runs them on a machine
where no Docker engine answers: a clear message, exit status 1, and nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.lab.state import LabState

pytestmark = pytest.mark.integration

LAB = (sys.executable, "-m", "services.lab.cli")


def _lab(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LAB_STATE_DIR": str(state_dir),
        # Whatever Docker this machine has, this socket has no engine behind it.
        "DOCKER_HOST": f"unix://{state_dir}/no-engine.sock",
    }
    return subprocess.run(
        [*LAB, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    "command",
    [("up", "--infra", "compose"), ("bench", "ratelimit", "--duration", "5s", "--infra", "compose")],
    ids=["up", "bench"],
)
def test_compose_without_an_engine_fails_with_a_clear_message(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    done = _lab(*command, state_dir=tmp_path)
    message = " ".join(done.stderr.split())  # the console wraps long lines
    assert done.returncode == 1, done.stderr
    assert "error: LAB_INFRA=compose needs" in message
    assert "use LAB_INFRA=embedded (the default)" in message
    assert "Traceback" not in done.stderr
    assert LabState.load(tmp_path).processes == {}
