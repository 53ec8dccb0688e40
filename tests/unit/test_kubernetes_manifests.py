"""``compose/kubernetes/``: every overlay renders with a real kustomize (``kubectl kustomize``) and
validates against the Kubernetes API schemas (``kubernetes-validate``), and nothing in it can drift
from the lab: the ConfigMap holds every setting the services read, the Deployments run each service
and worker of ``services/lab/registry.py`` as ``lab up`` runs it, on its port, probed on the health
route, the Locust workers follow a bench as the command line reads their command, and the overlays'
numbers agree with each other (partitions, cluster nodes).

There is no cluster here: what the manifests do once applied is stated in docs/kubernetes.md, not
tested. ``.ci/run`` installs kubectl where it can; without one the render tests skip and say why.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import Field
from pydantic_settings import BaseSettings

from loadtests.engine.generator import master_address
from loadtests.engine.remote import board_address
from services.core.health import router as health_router
from services.core.settings import CoreSettings
from services.lab import registry
from services.lab.cli import app as cli_app
from services.lab.infra import containers
from services.lab.infra.compose import REQUIRED_SECRETS, read_env_file
from services.lab.serve import import_target
from services.lab.settings import LabSettings
from services.lab.supervisor import serve_env, uvicorn_argv
from services.orders.settings import OrdersSettings
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
KUBE_DIR = ROOT / "compose" / "kubernetes"
OVERLAYS = ("small", "load")
ENV_EXAMPLE = ROOT / "compose" / ".env.example"
# kustomize v4 (kubectl 1.21) is the first to know `envs`, `replicas` and `patches` by path.
MIN_KUSTOMIZE = (4, 0)
# The oldest Kubernetes still maintained when these were written, and the newest the validator knows.
SCHEMA_VERSIONS = ("1.30.0", "latest")
LAB_IMAGE = "system-design-lab:local"


@cache
def generator() -> ModuleType:
    return load_script(KUBE_DIR / "generate.py", name="kube_generate")


# -- rendering with a real kustomize ------------------------------------------------------------


@cache
def kubectl() -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed and .ci/run could not install it (apt-get install kubectl)")
    done = subprocess.run(
        [binary, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    found = re.match(r"v(\d+)\.(\d+)", json.loads(done.stdout or "{}").get("kustomizeVersion", ""))
    if found is None or (int(found[1]), int(found[2])) < MIN_KUSTOMIZE:
        pytest.skip(f"kubectl at {binary} embeds no kustomize >= v4 (Debian's kubernetes-client 1.20 has v2)")
    return binary


@cache
def rendered(target: str) -> tuple[dict[str, Any], ...]:
    path = KUBE_DIR / ("base" if target == "base" else f"overlays/{target}")
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def one(target: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in rendered(target) if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def workloads(target: str) -> Iterator[dict[str, Any]]:
    return (d for d in rendered(target) if d["kind"] in {"Deployment", "StatefulSet", "Job"})


def containers_of(workload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def settings_configmap(target: str) -> dict[str, str]:
    data: dict[str, str] = one(target, "ConfigMap", "lab-settings")["data"]
    return data


@pytest.mark.parametrize("target", ["base", *OVERLAYS])
@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_each_overlay_validates_against_the_kubernetes_schemas(target: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    schema_version = kubernetes_validate.latest_version() if version == "latest" else version
    for document in rendered(target):
        kubernetes_validate.validate(document, schema_version, strict=True)


def test_the_validator_rejects_what_kubernetes_would() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = json.loads(json.dumps(one("small", "Deployment", "ratelimit-hardened")))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("target", OVERLAYS)
def test_everything_lands_in_one_namespace(target: str) -> None:
    namespaced = [d for d in rendered(target) if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"system-design-lab"}


# -- no drift: the generated files --------------------------------------------------------------


def test_the_settings_configmap_is_generated_from_the_settings_classes() -> None:
    assert generator().SETTINGS_ENV.read_text() == generator().render_settings_env(), (
        "compose/kubernetes/base/settings.env is stale: run .venv/bin/python compose/kubernetes/generate.py"
    )


def test_the_services_are_generated_from_the_registry() -> None:
    assert generator().SERVICES_YAML.read_text() == generator().render_services_yaml(), (
        "compose/kubernetes/base/services.yaml is stale: run .venv/bin/python compose/kubernetes/generate.py"
    )


def settings_missing_from(configmap: dict[str, str]) -> set[str]:
    """Settings the services read that the ConfigMap does not set (secrets come from the Secret)."""
    return set(generator().setting_fields()) - generator().SECRET_SETTINGS - set(configmap)


def test_the_configmap_sets_every_setting_the_services_read() -> None:
    assert settings_missing_from(settings_configmap("base")) == set()


class SettingsWithANewKnob(CoreSettings):
    brand_new_knob_ms: int = Field(default=5, ge=0)


def test_a_setting_added_to_the_code_but_not_to_the_configmap_is_drift(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    classes: tuple[type[BaseSettings], ...] = (*generator().SERVICE_SETTINGS, SettingsWithANewKnob)
    monkeypatch.setattr(generator(), "SERVICE_SETTINGS", classes)
    assert settings_missing_from(settings_configmap("base")) == {"LAB_BRAND_NEW_KNOB_MS"}
    assert generator().SETTINGS_ENV.read_text() != generator().render_settings_env()
    assert "LAB_BRAND_NEW_KNOB_MS=5\n" in generator().render_settings_env()


def test_the_configmap_holds_settings_only_at_their_defaults_or_the_cluster_topology() -> None:
    configmap = settings_configmap("base")
    assert set(configmap) <= set(generator().setting_fields())
    for name, value in configmap.items():
        cls, field = generator().setting_fields()[name]
        assert value == generator().TOPOLOGY.get(name, generator().env_value(cls, field)), name


def test_every_service_settings_class_reads_the_configmap(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_configmap("base").items():
        monkeypatch.setenv(name, value)
    for cls in generator().SERVICE_SETTINGS:
        settings = cls()  # every value parses (JSON for the lists and maps)
        read = settings.model_dump(mode="json")
        for name, value in generator().TOPOLOGY.items():
            field = name.removeprefix("LAB_").lower()
            if field in read:
                assert str(read[field]).lower() == value, (cls.__name__, name)


def _parsed(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    cls, field = generator().setting_fields()[name]
    monkeypatch.setenv(name, value)
    return getattr(cls(), field)


def test_the_configmap_agrees_with_compose_env_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where .env.example and the ConfigMap set the same setting, a service reads the same value
    (the cluster's own addresses apart)."""
    configmap = settings_configmap("base")
    shared = {k: v for k, v in read_env_file(ENV_EXAMPLE).items() if k in configmap}
    assert len(shared) >= 20
    for name, value in shared.items():
        if name not in generator().TOPOLOGY:
            assert _parsed(name, value, monkeypatch) == _parsed(name, configmap[name], monkeypatch), name


def test_the_cluster_topology_names_real_settings_and_services() -> None:
    topology = generator().TOPOLOGY
    assert set(topology) <= set(generator().setting_fields())
    services = {d["metadata"]["name"]: d for d in rendered("base") if d["kind"] == "Service"}
    for value in topology.values():
        found = re.search(r"(?://)?([a-z][a-z0-9-]*):(\d+)", value)
        if found:
            host, port = found[1], int(found[2])
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}, value


def test_services_reach_the_valkey_cluster_in_cluster_mode() -> None:
    assert settings_configmap("base")["LAB_REDIS_MODE"] == "cluster", (
        "base/ runs Valkey as a cluster: add LAB_REDIS_MODE=cluster to TOPOLOGY in generate.py"
    )


# -- secrets ----------------------------------------------------------------------------------------


def secret_references(target: str) -> Iterator[tuple[str, str | None]]:
    """(Secret name, key or None for a whole-Secret envFrom) of every reference in the render."""
    for workload in workloads(target):
        for container in containers_of(workload):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    yield source["secretRef"]["name"], None
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_secrets_come_from_the_lab_secrets_secret_and_never_from_literals(target: str) -> None:
    assert not [d for d in rendered(target) if d["kind"] == "Secret"]
    references = set(secret_references(target))
    assert {name for name, _ in references} == {generator().SECRET_NAME}
    assert {key for _, key in references if key} <= {*REQUIRED_SECRETS, *generator().SECRET_SETTINGS}
    for workload in workloads(target):
        for container in containers_of(workload):
            for name, value in container_env(container).items():
                assert not re.search(r"PASSWORD|TOKEN|SECRET", name) or not value, (workload, name)
    configmaps = [d for d in rendered(target) if d["kind"] == "ConfigMap"]
    for configmap in configmaps:
        assert not set(configmap["data"]) & {*REQUIRED_SECRETS, *generator().SECRET_SETTINGS}
        assert not any("@" in value for value in configmap["data"].values())  # no URL with a password


# -- no drift: services and workers -------------------------------------------------------------


def health_path() -> str:
    (path,) = [route.path for route in health_router.routes]  # type: ignore[attr-defined]
    return str(path)


@pytest.mark.parametrize("spec", registry.SERVICES, ids=lambda s: s.name)
def test_each_service_runs_as_lab_up_runs_it_on_its_port_probed_on_its_health_route(
    spec: registry.ServiceSpec,
) -> None:
    port = LabSettings.model_fields[spec.port_setting].default
    deployment = one("base", "Deployment", spec.name)
    (container,) = containers_of(deployment)
    assert container["image"] == LAB_IMAGE
    assert container["command"] == [
        "python",
        *uvicorn_argv(host="0.0.0.0", port=port, workers=spec.workers)[1:],
    ]
    assert container_env(container) == serve_env(spec.app_factory, spec.variant)
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": health_path(), "port": "http"}, probe
    service = one("base", "Service", spec.name)
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == (2 if spec.kind == "variant" else 1)


def test_the_ingress_stands_where_nginx_stands_one_host_per_service() -> None:
    ingress = one("base", "Ingress", "lab")
    backends = {
        rule["host"]: rule["http"]["paths"][0]["backend"]["service"] for rule in ingress["spec"]["rules"]
    }
    assert backends == {
        f"{spec.name}.{generator().INGRESS_DOMAIN}": {
            "name": spec.name,
            "port": {"number": LabSettings.model_fields[spec.port_setting].default},
        }
        for spec in registry.SERVICES
    }


@pytest.mark.parametrize("spec", registry.WORKERS, ids=lambda s: s.name)
def test_each_worker_runs_as_lab_up_runs_it(spec: registry.WorkerSpec) -> None:
    (container,) = containers_of(one("base", "Deployment", spec.name))
    assert container["command"] == ["python", "-m", "services.lab.worker", spec.target]
    assert inspect.iscoroutinefunction(import_target(spec.target))


@pytest.mark.parametrize("target", OVERLAYS)
def test_every_lab_process_reads_the_settings_configmap_and_the_secret(target: str) -> None:
    lab_processes = [d for d in workloads(target) if containers_of(d)[0]["image"] == LAB_IMAGE]
    names = {d["metadata"]["name"] for d in lab_processes}
    assert names >= {s.name for s in registry.SERVICES} | {w.name for w in registry.WORKERS}
    for workload in lab_processes:
        container = containers_of(workload)[0]
        if workload["metadata"]["name"] == "locust-worker":  # each run's plan comes from the bench
            assert "envFrom" not in container
        else:
            assert container["envFrom"] == generator().lab_env()["envFrom"], workload["metadata"]["name"]


# -- infrastructure ------------------------------------------------------------------------------


def test_infrastructure_uses_the_images_of_the_containers_mode() -> None:
    images = {name: containers_of(one("base", "StatefulSet", name))[0]["image"] for name in INFRA}
    assert images == {"postgres": containers.POSTGRES_IMAGE, "valkey": containers.VALKEY_IMAGE} | {
        "kafka": containers.KAFKA_IMAGE
    }
    (job,) = containers_of(one("base", "Job", "valkey-cluster"))
    assert job["image"] == containers.VALKEY_IMAGE


INFRA = ("postgres", "valkey", "kafka")


@pytest.mark.parametrize("target", OVERLAYS)
def test_kafka_runs_kraft_with_a_voter_per_node_and_the_partitions_the_order_flow_creates(
    target: str,
) -> None:
    kafka = one(target, "StatefulSet", "kafka")
    env = container_env(containers_of(kafka)[0])
    nodes = kafka["spec"]["replicas"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == ",".join(
        f"{n}@kafka-{n}.kafka:9093" for n in range(nodes)
    )
    partitions = OrdersSettings.model_fields["orders_topic_partitions"].default
    assert (
        int(env["KAFKA_NUM_PARTITIONS"])
        == partitions
        == int(settings_configmap(target)["LAB_ORDERS_TOPIC_PARTITIONS"])
    )
    replication = int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == replication <= nodes
    assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) <= replication
    assert settings_configmap(target)["LAB_KAFKA_BOOTSTRAP"] == "kafka:9092"


@pytest.mark.parametrize("target", OVERLAYS)
def test_the_valkey_cluster_job_creates_the_nodes_the_statefulset_runs(target: str) -> None:
    nodes = one(target, "StatefulSet", "valkey")["spec"]["replicas"]
    env = container_env(containers_of(one(target, "Job", "valkey-cluster"))[0])
    per_primary = int(env["VALKEY_REPLICAS_PER_PRIMARY"])
    assert int(env["VALKEY_NODES"]) == nodes
    assert nodes % (1 + per_primary) == 0
    assert nodes // (1 + per_primary) >= 3  # a cluster needs three primaries
    args = containers_of(one(target, "StatefulSet", "valkey"))[0]["args"]
    assert args[args.index("--cluster-enabled") + 1] == "yes"


# -- distributed load -----------------------------------------------------------------------------


def named_ports(target: str, service: str) -> dict[str, int]:
    return {p["name"]: p["port"] for p in one(target, "Service", service)["spec"]["ports"]}


def test_the_bench_pod_serves_what_it_measures_where_the_workers_reach_it() -> None:
    master = one("base", "Deployment", "locust-master")
    (bench,) = containers_of(master)
    env = {item["name"]: item for item in bench["env"]}
    assert env["LAB_INFRA"]["value"] == "external"  # the cluster's PostgreSQL, Valkey and Kafka
    assert env["LAB_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    ports = {p["name"]: p["containerPort"] for p in bench["ports"]}
    assert ports == named_ports("base", "locust-master")
    assert board_address(f"0.0.0.0:{ports['workers']}")[1] == ports["plans"]
    writable = {mount["mountPath"] for mount in bench["volumeMounts"]}
    assert bench["workingDir"] in writable  # results/ and the lab's state are written there
    documented = re.findall(r"--master-bind 0\.0\.0\.0:(\d+)", (ROOT / "docs/kubernetes.md").read_text())
    assert documented, "docs/kubernetes.md shows no bench in the master pod"
    assert {int(port) for port in documented} == {ports["workers"]}


@pytest.mark.parametrize("target", OVERLAYS)
def test_locust_workers_follow_the_bench_through_the_master_service(target: str) -> None:
    (worker,) = containers_of(one(target, "Deployment", "locust-worker"))
    command = worker["command"]
    assert command[:2] == ["lab", "load-worker"]
    load_worker = typer.main.get_command(cli_app).get_command(None, "load-worker")  # type: ignore[attr-defined, arg-type]
    params = load_worker.make_context("load-worker", command[2:]).params  # parses as the CLI reads it
    assert params["keep_following"]  # a pod that exited after a bench would miss the next one's runs
    host, port = master_address(params["master"])
    assert named_ports(target, host) == {"workers": port, "plans": board_address(params["master"])[1]}
