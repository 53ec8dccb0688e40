"""Every error an app built by ``build_app`` produces is RFC 9457 problem+json."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from services.core.app import build_app
from services.core.problems import PROBLEM_MEDIA_TYPE, ErrorMapping, Problem
from services.core.settings import CoreSettings


class Greeting(BaseModel):
    name: str


def _app() -> FastAPI:
    app = build_app(title="t", settings=CoreSettings())

    @app.post("/greet")
    async def greet(body: Greeting) -> dict[str, str]:
        return {"hello": body.name}

    @app.get("/busy")
    async def busy() -> None:
        raise Problem(
            status=503, kind="busy", title="Busy", detail="come back later", headers={"Retry-After": "3"}
        )

    @app.get("/database-down")
    async def database_down() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    @app.get("/database-restarting")
    async def database_restarting() -> None:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(_app(), raise_server_exceptions=False)


def _assert_problem(response: object, status: int, kind: str) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def test_domain_problem_keeps_its_headers(client: TestClient) -> None:
    response = client.get("/busy")
    _assert_problem(response, 503, "busy")
    assert response.headers["retry-after"] == "3"


def test_validation_error_is_a_422_problem_naming_the_field(client: TestClient) -> None:
    body = _assert_problem(client.post("/greet", json={"nom": "x"}), 422, "validation-error")
    assert "body.name" in str(body["detail"])


def test_invalid_json_is_a_422_problem(client: TestClient) -> None:
    response = client.post("/greet", content=b"{not json", headers={"content-type": "application/json"})
    _assert_problem(response, 422, "validation-error")


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    _assert_problem(client.get("/nowhere"), 404, "not-found")


def test_wrong_method_is_a_405_problem(client: TestClient) -> None:
    _assert_problem(client.delete("/greet"), 405, "method-not-allowed")


def test_unexpected_error_is_a_500_problem_without_internals(client: TestClient) -> None:
    body = _assert_problem(client.get("/boom"), 500, "internal-error")
    assert "a bug" not in str(body)


@pytest.mark.parametrize("path", ["/database-down", "/database-restarting"])
def test_an_unreachable_store_is_a_503_problem_with_retry_after(client: TestClient, path: str) -> None:
    response = client.get(path)
    _assert_problem(response, 503, "dependency-unavailable")
    assert int(response.headers["retry-after"]) >= 1


def test_healthz_with_no_dependencies_is_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {}}


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/busy")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/busy",status="503"}' in text


def test_oversized_headers_are_a_431_problem(client: TestClient) -> None:
    response = client.get("/busy", headers={"X-Junk": "x" * 20_000})
    _assert_problem(response, 431, "headers-too-large")


def test_ordinary_headers_pass(client: TestClient) -> None:
    assert client.get("/busy", headers={"X-Junk": "x" * 1_000}).status_code == 503


class ParcelError(Exception):
    """A domain's base error, for the mapping test."""


class ParcelLost(ParcelError):
    pass


def _parcel_problem(error: ParcelError) -> Problem:
    return Problem(status=410, kind="parcel-lost", title="Lost", detail=str(error))


def test_a_designs_error_mapping_is_installed_once_for_every_subclass_of_its_base() -> None:
    app = build_app(
        title="t", settings=CoreSettings(), errors=ErrorMapping(base=ParcelError, to_problem=_parcel_problem)
    )

    @app.get("/parcel")
    async def parcel() -> None:
        raise ParcelLost("the parcel fell off the van")

    response = TestClient(app, raise_server_exceptions=False).get("/parcel")

    body = _assert_problem(response, 410, "parcel-lost")
    assert body["detail"] == "the parcel fell off the van"
