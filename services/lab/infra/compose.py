"""``LAB_INFRA=compose``: PostgreSQL, Valkey and Apache Kafka from ``compose/docker-compose.yml``.

``lab up --infra compose`` starts only the stack's infrastructure services (``docker compose up -d
postgres valkey kafka``) on the ports the embedded servers would use, and the lab runs its services
locally against them, as in every other mode. The whole stack, with replicas behind nginx and Locust
workers, is started with ``docker compose`` itself (see the compose file's header).

Works with ``docker compose`` (v2) or ``docker-compose`` (v1). Where no Docker engine answers it
fails at once with an :class:`InfraError` that says so, before anything is started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.lab.components import Component
from services.lab.infra.base import Broker, InfraEndpoints, InfraError
from services.lab.infra.probes import probe_kafka, probe_postgres, probe_redis
from services.lab.settings import LabSettings

logger = logging.getLogger(__name__)

INFRA_SERVICES = ("postgres", "valkey", "kafka")
PROJECT = "system-design-lab"
REQUIRED_SECRETS = ("LAB_ADMIN_TOKEN", "LAB_POSTGRES_PASSWORD")
# The compose file of a source checkout; LAB_COMPOSE_FILE points elsewhere (an installed lab has none).
DEFAULT_COMPOSE_FILE = Path(__file__).resolve().parents[3] / "compose" / "docker-compose.yml"
# A JVM broker in a container takes longer to answer than the embedded servers.
MIN_STARTUP_TIMEOUT_S = 120.0
_ENGINE_CHECK_TIMEOUT_S = 15.0
_POLL_INTERVAL_S = 1.0


class ComposeInfra:
    mode = "compose"

    def __init__(self, settings: LabSettings, *, environ: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._environ = dict(os.environ if environ is None else environ)
        self._file = Path(self._environ.get("LAB_COMPOSE_FILE") or DEFAULT_COMPOSE_FILE)
        self._record = settings.state_dir / "compose.json"

    def components(self) -> list[Component]:
        return []

    def broker(self) -> Broker:
        return Broker(name="Apache Kafka (compose)", storage="on disk", durable=True)

    def endpoints(self) -> InfraEndpoints | None:
        return self._endpoints() if self._record.exists() else None

    def provision(self) -> InfraEndpoints:
        compose = self.compose_command()
        self._check_ports()
        self._run(compose, "up", "--detach", *INFRA_SERVICES)
        self._save_record()
        endpoints = self._endpoints()
        self._await_healthy(endpoints)
        return endpoints

    def release(self) -> None:
        """Remove the infrastructure containers ``provision`` started (the data volume stays).

        Without an engine nothing of ours can run, so ``lab down`` still succeeds and says why.
        """
        if not self._record.exists():
            return
        try:
            compose = self.compose_command(require_secrets=False)
        except InfraError as exc:
            logger.warning("compose_not_released reason=%s", exc)
        else:
            self._run(compose, "rm", "--stop", "--force", *INFRA_SERVICES)
        self._record.unlink(missing_ok=True)

    # -- the compose command line ----------------------------------------------------------------

    def compose_command(self, *, require_secrets: bool = True) -> list[str]:
        """``docker compose`` or ``docker-compose`` with this lab's file and project, once an engine
        answers and the required secrets are set; otherwise an :class:`InfraError` saying what to do."""
        self._require_engine()
        self._require_file()
        if require_secrets:
            self._require_secrets()
        return [*self._compose_cli(), "--file", str(self._file), "--project-name", PROJECT]

    def _require_engine(self) -> None:
        docker = shutil.which("docker", path=self._environ.get("PATH"))
        if docker is None:
            raise InfraError(
                "LAB_INFRA=compose needs Docker, and there is no 'docker' command on PATH; install "
                "Docker with the compose plugin, or use LAB_INFRA=embedded (the default)"
            )
        answer = self._probe([docker, "version", "--format", "{{.Server.Version}}"])
        if answer.returncode != 0:
            reason = _first_line(answer.stderr) or f"exit status {answer.returncode}"
            raise InfraError(
                f"LAB_INFRA=compose needs a running Docker engine and none answered ({reason}); "
                "start Docker, or use LAB_INFRA=embedded (the default)"
            )

    def _compose_cli(self) -> list[str]:
        if self._probe(["docker", "compose", "version"]).returncode == 0:
            return ["docker", "compose"]
        legacy = shutil.which("docker-compose", path=self._environ.get("PATH"))
        if legacy is not None:
            return [legacy]
        raise InfraError(
            "LAB_INFRA=compose needs Docker Compose ('docker compose' or 'docker-compose') and "
            "neither is installed; install the compose plugin, or use LAB_INFRA=embedded"
        )

    def _require_file(self) -> None:
        if not self._file.is_file():
            raise InfraError(
                f"compose file {self._file} not found; run from a checkout of the lab or set "
                "LAB_COMPOSE_FILE to its compose/docker-compose.yml"
            )

    def _require_secrets(self) -> None:
        values = self._compose_environment()
        missing = [name for name in REQUIRED_SECRETS if not values.get(name)]
        if missing:
            raise InfraError(
                f"the compose stack needs {', '.join(missing)}: cp compose/.env.example "
                f"compose/.env and set {'them' if len(missing) > 1 else 'it'} there (or export "
                f"{'them' if len(missing) > 1 else 'it'})"
            )

    def _compose_environment(self) -> dict[str, str]:
        """What compose interpolates the file with: its ``.env``, the environment over it, and the
        lab's own host and ports over both, so the containers publish where the lab looks."""
        return {**read_env_file(self._file.parent / ".env"), **self._environ, **self._lab_ports()}

    def _lab_ports(self) -> dict[str, str]:
        s = self._settings
        return {
            "LAB_HOST": s.host,
            "LAB_POSTGRES_PORT": str(s.postgres_port),
            "LAB_REDIS_PORT": str(s.redis_port),
            "LAB_KAFKA_PORT": str(s.kafka_port),
        }

    def _check_ports(self) -> None:
        if 0 in (self._settings.postgres_port, self._settings.redis_port, self._settings.kafka_port):
            raise InfraError(
                "LAB_INFRA=compose publishes fixed ports; set LAB_POSTGRES_PORT, LAB_REDIS_PORT and "
                "LAB_KAFKA_PORT to port numbers (0, 'any free port', only works with embedded)"
            )

    def _run(self, compose: Sequence[str], *args: str) -> None:
        argv = [*compose, *args]
        done = subprocess.run(argv, env=self._process_env(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InfraError(f"'{' '.join(argv)}' failed ({done.returncode}):\n{done.stderr.strip()}")

    def _probe(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                env=self._environ,
                capture_output=True,
                text=True,
                timeout=_ENGINE_CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(argv, returncode=127, stdout="", stderr=str(exc))

    def _process_env(self) -> dict[str, str]:
        # Compose interpolates the whole file for any command; removing containers needs no real
        # secret, so a placeholder stands in for one that is not set.
        placeholders = {name: "unset" for name in REQUIRED_SECRETS}
        return {
            **placeholders,
            **read_env_file(self._file.parent / ".env"),
            **self._environ,
            **self._lab_ports(),
        }

    # -- where the servers are -------------------------------------------------------------------

    def _endpoints(self) -> InfraEndpoints:
        s = self._settings
        password = self._compose_environment().get("LAB_POSTGRES_PASSWORD", "")
        return InfraEndpoints(
            postgres_url=f"postgresql://lab:{password}@{s.host}:{s.postgres_port}/lab",
            redis_url=f"redis://{s.host}:{s.redis_port}/0",
            kafka_bootstrap=f"{s.host}:{s.kafka_port}",
        )

    def _await_healthy(self, endpoints: InfraEndpoints) -> None:
        timeout_s = max(self._settings.startup_timeout_s, MIN_STARTUP_TIMEOUT_S)
        if not asyncio.run(_all_healthy(endpoints, timeout_s=timeout_s)):
            raise InfraError(
                f"the compose infrastructure did not become healthy in {timeout_s:.0f}s; see "
                f"'docker compose --file {self._file} --project-name {PROJECT} logs'"
            )

    def _save_record(self) -> None:
        """Remember that the containers are ours to remove; no secrets are written."""
        self._record.parent.mkdir(parents=True, exist_ok=True)
        self._record.write_text(json.dumps({"project": PROJECT, "file": str(self._file)}, indent=2))


async def _all_healthy(endpoints: InfraEndpoints, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answers = await asyncio.gather(
            probe_postgres(endpoints.postgres_url),
            probe_redis(endpoints.redis_url),
            probe_kafka(endpoints.kafka_bootstrap),
        )
        if all(answers):
            return True
        await asyncio.sleep(_POLL_INTERVAL_S)
    return False


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a compose ``.env`` file (comments and blank lines skipped); none if absent."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): _unquote(value.strip()) for key, value in pairs}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


__all__ = ["ComposeInfra", "read_env_file"]
