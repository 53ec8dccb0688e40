"""``compose/``: the file is valid for a real compose implementation and the compose-spec schema,
and it cannot drift from the lab: its services, ports, commands and ``LAB_*`` variables are checked
against ``services/lab/registry.py``, ``uvicorn_argv``/``serve_env`` and the settings classes.

There is no Docker engine here; ``docker-compose config`` (Debian's v1) and ``docker compose config``
(v2) parse and validate without one. CI installs Debian's ``docker-compose``; under ``CI=true`` its
absence is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings

from services.core.settings import CoreSettings
from services.lab import registry
from services.lab.infra import containers
from services.lab.infra.compose import REQUIRED_SECRETS, read_env_file
from services.lab.registry import ServiceSpec, WorkerSpec
from services.lab.serve import import_target
from services.lab.settings import LabSettings, env_name
from services.lab.supervisor import serve_env, uvicorn_argv
from services.orders.settings import OrdersSettings
from services.ratelimit.settings import RateLimitSettings
from services.shortener.settings import ShortenerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
NGINX_CONF = COMPOSE_DIR / "nginx.conf"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"

TEST_SECRETS = {"LAB_ADMIN_TOKEN": "compose-test-token", "LAB_POSTGRES_PASSWORD": "composetest"}
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    CoreSettings,
    LabSettings,
    RateLimitSettings,
    ShortenerSettings,
    OrdersSettings,
)
# LAB_* variables that are no settings field, each documented in compose/.env.example.
COMPOSE_ONLY = {"LAB_POSTGRES_PASSWORD", "LAB_COMPOSE_SUBNET", "LAB_COMPOSE_NGINX_IP"}
# How the lab tells a service process which app to build (services/lab/serve.py).
PROCESS_PROTOCOL = set(serve_env("module:function", "variant"))
INFRA = ("postgres", "valkey", "kafka")
HEALTHY_CONDITIONS = {"service_healthy", "service_started", "service_completed_successfully"}

# What the compose file runs, for designs whose registry entries have not landed yet. Registered
# entries always win, so once a design is registered this fallback no longer decides anything.
EXPECTED_SERVICES = (
    ServiceSpec("shortener", "naive", "services.shortener.app:create_app", "shortener_naive_port"),
    ServiceSpec("shortener", "hardened", "services.shortener.app:create_app", "shortener_hardened_port"),
    ServiceSpec("ratelimit", "naive", "services.ratelimit.app:create_app", "ratelimit_naive_port", workers=2),
    ServiceSpec(
        "ratelimit", "hardened", "services.ratelimit.app:create_app", "ratelimit_hardened_port", workers=2
    ),
    ServiceSpec("orders", "naive", "services.orders.app:create_app", "orders_naive_port"),
    ServiceSpec("orders", "hardened", "services.orders.app:create_app", "orders_hardened_port"),
    ServiceSpec("orders", "inventory", "services.orders.inventory:create_app", "inventory_port"),
    ServiceSpec("orders", "gateway", "services.orders.gateway:create_app", "payment_gateway_port"),
)
EXPECTED_WORKERS = (
    WorkerSpec("orders", "orders-relay", "services.orders.relay:run"),
    WorkerSpec("orders", "orders-payments", "services.orders.consumers:run_payments"),
    WorkerSpec("orders", "orders-notifications", "services.orders.consumers:run_notifications"),
)
# The naive/hardened variants run as two replicas behind nginx; their dependencies as one.
REPLICATED_VARIANTS = {"naive", "hardened"}


def lab_services() -> dict[str, ServiceSpec]:
    return {**{s.name: s for s in EXPECTED_SERVICES}, **{s.name: s for s in registry.SERVICES}}


def lab_workers() -> dict[str, WorkerSpec]:
    return {**{w.name: w for w in EXPECTED_WORKERS}, **{w.name: w for w in registry.WORKERS}}


# -- compose's variable syntax -------------------------------------------------------------------

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``,
    ``${X?error}``, ``${X:+other}``, ``$X`` and ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        present = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("-"):
            return value if present and value is not None else arg
        if op.endswith("?"):
            if not present or value is None:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op.endswith("+"):
            return arg if present else ""
        return value or ""

    return VARIABLE.sub(substitute, text)


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


@cache
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def compose_raw() -> dict[str, Any]:
    """The file as written (``${…}`` left in place), YAML anchors and merge keys resolved."""
    document: dict[str, Any] = yaml.safe_load(compose_text())
    return document


def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def compose_resolved() -> dict[str, Any]:
    """The file as compose sees it with ``.env.example`` and the test secrets."""
    return interpolated(compose_raw(), {**example_env(), **TEST_SECRETS})


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose_resolved()["services"]
    return found


def app_services() -> dict[str, Any]:
    """Compose services that run a lab service (they carry the lab's serve protocol)."""
    return {name: s for name, s in services().items() if "LAB_SERVE_FACTORY" in s.get("environment", {})}


def worker_services() -> dict[str, Any]:
    return {
        name: s
        for name, s in services().items()
        if s.get("command", [])[:3] == ["python", "-m", "services.lab.worker"]
    }


def variables_used() -> Iterator[re.Match[str]]:
    return VARIABLE.finditer(compose_text())


# -- a real compose implementation and the official schema ---------------------------------------


def compose_env(**overrides: str) -> dict[str, str]:
    """A clean environment: no LAB_* of the developer's shell, no compose/.env of theirs."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **overrides}


def run_compose_config(cli: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [*cli, "--env-file", str(ENV_EXAMPLE), "--file", str(COMPOSE_FILE), "config", "--quiet"]
    return subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=60, check=False)


def docker_compose_v1() -> list[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must validate the compose file: apt-get install -y docker-compose")
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    return [binary]


def test_docker_compose_accepts_the_file() -> None:
    done = run_compose_config(docker_compose_v1(), compose_env(**TEST_SECRETS))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_docker_compose_refuses_the_file_without_each_required_secret(secret: str) -> None:
    others = {name: value for name, value in TEST_SECRETS.items() if name != secret}
    done = run_compose_config(docker_compose_v1(), compose_env(**others))
    assert done.returncode != 0
    assert f"set {secret} in compose/.env" in done.stderr


def test_docker_compose_v2_accepts_the_file_where_installed() -> None:
    probe = (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if shutil.which("docker")
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose plugin (v2) is not installed")
    done = run_compose_config(["docker", "compose"], compose_env(**TEST_SECRETS))
    assert done.returncode == 0, done.stderr


def test_file_validates_against_the_compose_spec_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    vendored = pytest.importorskip("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((resources.files(vendored) / "compose-spec.json").read_text())
    jsonschema.validate(compose_resolved(), schema)


# -- no drift: services -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(lab_services()))
def test_each_lab_service_runs_in_compose_as_lab_up_runs_it(name: str) -> None:
    spec = lab_services()[name]
    service = services()[name]
    port = LabSettings.model_fields[spec.port_setting].default
    assert service["command"] == [
        "python",
        *uvicorn_argv(host="0.0.0.0", port=port, workers=spec.workers)[1:],
    ]
    assert {k: service["environment"][k] for k in PROCESS_PROTOCOL} == serve_env(
        spec.app_factory, spec.variant
    )
    assert service["profiles"] == [spec.design]
    replicas = service.get("deploy", {}).get("replicas", 1)
    assert replicas == (2 if spec.variant in REPLICATED_VARIANTS else 1)


def test_compose_runs_no_service_or_worker_the_lab_does_not_know() -> None:
    assert set(app_services()) == set(lab_services())
    assert set(worker_services()) == set(lab_workers())


@pytest.mark.parametrize("name", sorted(lab_services()))
def test_nginx_serves_each_lab_service_on_its_lab_port(name: str) -> None:
    spec = lab_services()[name]
    port = LabSettings.model_fields[spec.port_setting].default
    published = compose_raw()["services"]["nginx"]["ports"]
    assert f"${{LAB_HOST:-127.0.0.1}}:${{{env_name(spec.port_setting)}:-{port}}}:{port}" in published
    conf = NGINX_CONF.read_text()
    assert re.search(rf"upstream {name} \{{[^}}]*server {name}:{port} resolve;", conf), conf
    assert f"server {{ listen {port}; location / {{ proxy_pass http://{name}; }} }}" in conf


@pytest.mark.parametrize("name", sorted(lab_workers()))
def test_each_lab_worker_runs_in_compose_as_lab_up_runs_it(name: str) -> None:
    spec = lab_workers()[name]
    service = services()[name]
    assert service["command"] == ["python", "-m", "services.lab.worker", spec.target]
    assert service["profiles"] == [spec.design]
    assert inspect.iscoroutinefunction(import_target(spec.target))


def test_infrastructure_uses_the_images_of_the_containers_mode() -> None:
    images = {name: services()[name]["image"] for name in INFRA}
    assert images == {
        "postgres": containers.POSTGRES_IMAGE,
        "valkey": containers.VALKEY_IMAGE,
        "kafka": containers.KAFKA_IMAGE,
    }


def test_infrastructure_is_published_on_the_ports_the_lab_uses() -> None:
    raw = compose_raw()["services"]
    for service, setting, inner in (
        ("postgres", "postgres_port", 5432),
        ("valkey", "redis_port", 6379),
        ("kafka", "kafka_port", 19092),
    ):
        default = LabSettings.model_fields[setting].default
        assert raw[service]["ports"] == [
            f"${{LAB_HOST:-127.0.0.1}}:${{{env_name(setting)}:-{default}}}:{inner}"
        ]
    advertised = raw["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://localhost:${LAB_KAFKA_PORT:-19092}" in advertised


# -- no drift: variables ----------------------------------------------------------------------------


@cache
def settings_fields() -> dict[str, tuple[type[BaseSettings], str]]:
    """``LAB_X`` → (the class that declares it, its field name)."""
    return {env_name(field): (cls, field) for cls in SETTINGS_CLASSES for field in cls.model_fields}


def lab_names_in(text: str) -> set[str]:
    return set(re.findall(r"\bLAB_[A-Z0-9_]+\b", text))


def test_every_lab_variable_in_compose_is_a_setting_or_documented() -> None:
    unknown = lab_names_in(compose_text()) - set(settings_fields()) - PROCESS_PROTOCOL - COMPOSE_ONLY
    assert not unknown, (
        f"not a field of any settings class, nor a documented compose-only variable: {unknown}"
    )
    undocumented = COMPOSE_ONLY - set(example_env())
    assert not undocumented, f"compose-only variables missing from .env.example: {undocumented}"


def test_every_variable_compose_reads_is_in_env_example() -> None:
    read = {m["name"] or m["bare"] for m in variables_used() if not m["escaped"]}
    assert read - set(example_env()) == set()
    assert lab_names_in(ENV_EXAMPLE.read_text()) <= set(settings_fields()) | COMPOSE_ONLY


def parsed_default(name: str) -> tuple[Any, Any]:
    """A setting's default, and the default compose or .env.example gives it (in the field's type)."""
    cls, field = settings_fields()[name]
    info = cls.model_fields[field]
    return info.get_default(call_default_factory=True), info.annotation


def test_compose_defaults_equal_the_settings_defaults() -> None:
    checked = 0
    for match in variables_used():
        name = match["name"]
        if name in settings_fields() and match["op"] == ":-":
            default, annotation = parsed_default(name)
            assert TypeAdapter(annotation).validate_python(match["arg"]) == default, name
            checked += 1
    assert checked >= 20


def test_env_example_values_equal_the_settings_defaults() -> None:
    for name, value in example_env().items():
        if name in settings_fields() and name not in REQUIRED_SECRETS:
            default, annotation = parsed_default(name)
            assert TypeAdapter(annotation).validate_python(value) == default, name


def test_required_secrets_have_no_default_and_no_value() -> None:
    for secret in REQUIRED_SECRETS:
        uses = [m for m in variables_used() if (m["name"] or m["bare"]) == secret]
        assert uses, secret
        assert all(m["op"] == ":?" for m in uses), secret
        assert example_env()[secret] == ""
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            assert key not in REQUIRED_SECRETS or value == TEST_SECRETS[key], (name, key)


def test_services_reach_the_stack_with_idempotent_kafka_producers() -> None:
    for name, service in {**app_services(), **worker_services()}.items():
        env = service["environment"]
        settings = CoreSettings.model_validate(
            {
                key[len("LAB_") :].lower(): value
                for key, value in env.items()
                if key[4:].lower() in CoreSettings.model_fields
            }
        )
        assert settings.kafka_enable_idempotence, name
        assert settings.kafka_bootstrap == "kafka:9092", name
        assert settings.redis_url == "redis://valkey:6379/0", name
        assert settings.postgres_url.endswith("@postgres:5432/lab"), name


def test_the_rate_limiter_trusts_exactly_nginx() -> None:
    nginx_ip = ip_address(example_env()["LAB_COMPOSE_NGINX_IP"])
    assert nginx_ip in ip_network(example_env()["LAB_COMPOSE_SUBNET"])
    assert services()["nginx"]["networks"]["lab"]["ipv4_address"] == str(nginx_ip)
    for name, service in app_services().items():
        if service["environment"]["LAB_SERVE_FACTORY"].startswith("services.ratelimit."):
            trusted = RateLimitSettings.model_validate(
                {"trusted_proxies": json.loads(service["environment"]["LAB_TRUSTED_PROXIES"])}
            ).trusted_proxies
            assert trusted == [ip_network(f"{nginx_ip}/32")], name
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in NGINX_CONF.read_text()


# -- orchestration ----------------------------------------------------------------------------------


def test_dependencies_wait_for_health() -> None:
    for name, service in services().items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services(), (name, target)
            assert rule["condition"] in HEALTHY_CONDITIONS, (name, target)
            if target in INFRA:
                assert rule["condition"] == "service_healthy", (name, target)
                assert "healthcheck" in services()[target], target


def test_profiles_split_the_stack_by_design() -> None:
    designs = {spec.design for spec in lab_services().values()}
    for name, service in services().items():
        profiles = service.get("profiles", [])
        if name in INFRA or name == "nginx":
            assert profiles == [], name
        else:
            assert len(profiles) == 1, name
            assert profiles[0] in {*designs, "load"}, name


def test_locust_workers_scale() -> None:
    worker = services()["locust-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"][:2] == ["locust", "--worker"]
    assert services()["locust-master"]["command"][:2] == ["locust", "--master"]
    assert (ROOT / example_env()["LOCUST_LOCUSTFILE"]).is_file()


def test_image_is_slim_python_non_root_and_health_checked() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.1[1-9]-slim", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*lab-healthcheck", dockerfile, re.MULTILINE)


def test_image_health_check_finds_the_port_in_the_lab_command() -> None:
    spec = importlib.util.spec_from_file_location("lab_healthcheck", COMPOSE_DIR / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    for name, service in app_services().items():
        command = service["command"]
        assert healthcheck.port_of([*command, ""]) == int(command[command.index("--port") + 1]), name
    for name, service in worker_services().items():
        assert healthcheck.port_of(service["command"]) is None, name
