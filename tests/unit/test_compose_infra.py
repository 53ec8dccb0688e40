"""``LAB_INFRA=compose`` (services/lab/infra/compose.py): a clear refusal where Docker cannot run
it, and the compose command lines it runs where it can (a stand-in ``docker`` records them)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from services.lab.infra import InfraError, select_infra
from services.lab.infra.compose import DEFAULT_COMPOSE_FILE, ComposeInfra, read_env_file
from services.lab.settings import LabSettings

NO_ENGINE = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
)
SECRETS = "LAB_ADMIN_TOKEN=token-from-env-file\nLAB_POSTGRES_PASSWORD=pw123\n"


def fake_docker(bin_dir: Path, *, engine: bool) -> Path:
    """A ``docker`` that answers like one with (or without) an engine and logs each call."""
    log = bin_dir / "calls.log"
    body = (
        f'echo "$* LAB_POSTGRES_PORT=$LAB_POSTGRES_PORT" >> {log}\nexit 0\n'
        if engine
        else f'echo "{NO_ENGINE}" >&2\nexit 1\n'
    )
    script = bin_dir / "docker"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """A copy of compose/docker-compose.yml away from any compose/.env of the developer's."""
    path = tmp_path / "compose"
    path.mkdir()
    shutil.copy(DEFAULT_COMPOSE_FILE, path / "docker-compose.yml")
    return path


def settings(tmp_path: Path, **overrides: object) -> LabSettings:
    return LabSettings(infra="compose", state_dir=tmp_path / "state", **overrides)  # type: ignore[arg-type]


def infra(tmp_path: Path, bin_dir: Path, compose_dir: Path, **overrides: object) -> ComposeInfra:
    environ = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LAB_COMPOSE_FILE": str(compose_dir / "docker-compose.yml"),
    }
    return ComposeInfra(settings(tmp_path, **overrides), environ=environ)


def test_lab_infra_compose_selects_the_compose_provider(tmp_path: Path) -> None:
    assert isinstance(select_infra(settings(tmp_path)), ComposeInfra)


def test_refuses_without_a_docker_command(tmp_path: Path, bin_dir: Path) -> None:
    provider = ComposeInfra(settings(tmp_path), environ={"PATH": str(bin_dir)})
    with pytest.raises(InfraError, match=r"no 'docker' command on PATH.*LAB_INFRA=embedded"):
        provider.provision()


def test_refuses_when_no_engine_answers(tmp_path: Path, bin_dir: Path, compose_dir: Path) -> None:
    fake_docker(bin_dir, engine=False)
    with pytest.raises(InfraError) as refused:
        infra(tmp_path, bin_dir, compose_dir).provision()
    assert str(refused.value) == (
        f"LAB_INFRA=compose needs a running Docker engine and none answered ({NO_ENGINE}); "
        "start Docker, or use LAB_INFRA=embedded (the default)"
    )
    assert not (tmp_path / "state" / "compose.json").exists()


def test_refuses_with_the_real_docker_cli_and_no_engine(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    environ = {
        "PATH": str(Path(docker).parent) + ":/usr/bin:/bin",
        "DOCKER_HOST": f"unix://{tmp_path}/none.sock",
    }
    with pytest.raises(InfraError, match="needs a running Docker engine and none answered"):
        ComposeInfra(settings(tmp_path), environ=environ).provision()


def test_refuses_without_the_required_secrets(tmp_path: Path, bin_dir: Path, compose_dir: Path) -> None:
    fake_docker(bin_dir, engine=True)
    with pytest.raises(
        InfraError, match=r"needs LAB_ADMIN_TOKEN, LAB_POSTGRES_PASSWORD: cp compose/\.env\.example"
    ):
        infra(tmp_path, bin_dir, compose_dir).provision()


def test_refuses_ports_picked_at_random(tmp_path: Path, bin_dir: Path, compose_dir: Path) -> None:
    fake_docker(bin_dir, engine=True)
    (compose_dir / ".env").write_text(SECRETS)
    with pytest.raises(InfraError, match="publishes fixed ports"):
        infra(tmp_path, bin_dir, compose_dir, postgres_port=0).provision()


def test_compose_command_names_the_file_and_project(tmp_path: Path, bin_dir: Path, compose_dir: Path) -> None:
    fake_docker(bin_dir, engine=True)
    (compose_dir / ".env").write_text(SECRETS)
    assert infra(tmp_path, bin_dir, compose_dir).compose_command() == [
        "docker", "compose", "--file", str(compose_dir / "docker-compose.yml"),
        "--project-name", "system-design-lab",
    ]  # fmt: skip


def test_endpoints_use_the_lab_ports_and_the_env_file_password(
    tmp_path: Path, bin_dir: Path, compose_dir: Path
) -> None:
    (compose_dir / ".env").write_text(SECRETS)
    provider = infra(tmp_path, bin_dir, compose_dir, postgres_port=15432, redis_port=16379, kafka_port=19093)
    assert provider.endpoints() is None  # nothing provisioned yet
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "compose.json").write_text("{}")
    endpoints = provider.endpoints()
    assert endpoints is not None
    assert endpoints.as_env() == {
        "LAB_POSTGRES_URL": "postgresql://lab:pw123@127.0.0.1:15432/lab",
        "LAB_REDIS_URL": "redis://127.0.0.1:16379/0",
        "LAB_KAFKA_BOOTSTRAP": "127.0.0.1:19093",
    }


def test_release_removes_the_infrastructure_containers(
    tmp_path: Path, bin_dir: Path, compose_dir: Path
) -> None:
    log = fake_docker(bin_dir, engine=True)
    record = tmp_path / "state" / "compose.json"
    record.parent.mkdir()
    record.write_text("{}")
    infra(tmp_path, bin_dir, compose_dir, postgres_port=15432).release()  # no secrets needed to remove
    assert log.read_text().splitlines()[-1] == (
        f"compose --file {compose_dir / 'docker-compose.yml'} --project-name system-design-lab "
        "rm --stop --force postgres valkey kafka LAB_POSTGRES_PORT=15432"
    )
    assert not record.exists()


def test_release_without_an_engine_still_forgets(tmp_path: Path, bin_dir: Path, compose_dir: Path) -> None:
    fake_docker(bin_dir, engine=False)
    record = tmp_path / "state" / "compose.json"
    record.parent.mkdir()
    record.write_text("{}")
    infra(tmp_path, bin_dir, compose_dir).release()
    assert not record.exists()


def test_env_file_reader(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# comment\n\nA=1\nB = 'two words'\nC=\"x=y\"\nEMPTY=\n")
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "x=y", "EMPTY": ""}
    assert read_env_file(tmp_path / "missing") == {}
