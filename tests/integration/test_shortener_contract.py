"""The shortener's HTTP contract, every status and every bad input, for both variants."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from services.lab import processes
from services.lab.infra import InfraEndpoints
from tests.support.servers import RunningApp, run_app
from tests.support.shortener import APP, FAST_ENV, VARIANTS

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=VARIANTS)
def service(
    request: pytest.FixtureRequest, infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    env = {**infra.as_env(), **FAST_ENV, "LAB_SHORTENER_MAX_TTL_SECONDS": "86400"}
    with run_app(APP, request.param, env=env, log_dir=tmp_path_factory.mktemp("shortener")) as app:
        yield app


@pytest.fixture
def client(service: RunningApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10) as http:
        yield http


def _create(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/api/v1/urls", json={"long_url": "https://example.com/some/page?q=1", **body})


def _assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


def test_create_returns_the_short_link(client: httpx.Client, service: RunningApp) -> None:
    response = _create(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"code", "short_url", "long_url", "expires_at"}
    assert re.fullmatch("[0-9A-Za-z]{7}", body["code"])
    assert body["short_url"] == f"{service.url}/{body['code']}"
    assert body["long_url"] == "https://example.com/some/page?q=1"
    assert body["expires_at"] is None
    assert response.headers["location"] == f"{service.url}/api/v1/urls/{body['code']}"


def test_redirect_is_a_counted_302(client: httpx.Client) -> None:
    code = _create(client).json()["code"]
    for _ in range(3):
        response = client.get(f"/{code}")
        assert response.status_code == 302
        assert response.headers["location"] == "https://example.com/some/page?q=1"
        assert response.headers["cache-control"] == "private, max-age=0"
    stats = client.get(f"/api/v1/urls/{code}")
    assert stats.status_code == 200
    body = stats.json()
    assert set(body) == {"code", "long_url", "created_at", "expires_at", "clicks"}
    assert body["code"] == code
    # The hardened count is exact once a flush is not half-way (its batch is briefly in neither place).
    assert processes.wait_for(lambda: client.get(f"/api/v1/urls/{code}").json()["clicks"] == 3, timeout_s=5)


def test_custom_alias_is_the_code_and_taken_once(client: httpx.Client, unique_id: str) -> None:
    alias = f"my-{unique_id}"
    created = _create(client, custom_alias=alias)
    assert created.status_code == 201
    assert created.json()["code"] == alias
    assert client.get(f"/{alias}").status_code == 302
    _assert_problem(_create(client, custom_alias=alias), 409)


def test_an_alias_tried_before_it_existed_then_redirects(client: httpx.Client, unique_id: str) -> None:
    alias = f"late_{unique_id}"
    _assert_problem(client.get(f"/{alias}"), 404)  # the hardened variant caches this "missing"
    assert _create(client, custom_alias=alias).status_code == 201
    assert client.get(f"/{alias}").status_code == 302


def test_ttl_sets_expiry_and_an_expired_link_is_gone(client: httpx.Client) -> None:
    created = _create(client, ttl_seconds=1)
    assert created.status_code == 201
    body = created.json()
    assert body["expires_at"] is not None
    deadline = time.monotonic() + 10
    while (response := client.get(f"/{body['code']}")).status_code == 302 and time.monotonic() < deadline:
        time.sleep(0.1)  # the window the link lives in has to pass
    _assert_problem(response, 410)
    _assert_problem(client.get(f"/api/v1/urls/{body['code']}"), 410)


def test_delete_makes_the_link_gone(client: httpx.Client) -> None:
    code = _create(client).json()["code"]
    assert client.get(f"/{code}").status_code == 302
    deleted = client.delete(f"/api/v1/urls/{code}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    _assert_problem(client.get(f"/{code}"), 410)
    _assert_problem(client.get(f"/api/v1/urls/{code}"), 410)
    _assert_problem(client.delete(f"/api/v1/urls/{code}"), 410)


@pytest.mark.parametrize("path", ["/{code}", "/api/v1/urls/{code}"])
def test_unknown_code_is_404(client: httpx.Client, path: str) -> None:
    _assert_problem(client.get(path.format(code="Zz9unknown")), 404)


@pytest.mark.parametrize("code", ["Zz9unknown", "has.dot", "x" * 40])
def test_deleting_an_unknown_code_is_404(client: httpx.Client, code: str) -> None:
    _assert_problem(client.delete(f"/api/v1/urls/{code}"), 404)


@pytest.mark.parametrize("path", ["/has.dot", "/%C3%BCml", "/" + "y" * 200])
def test_a_path_no_code_can_have_is_404(client: httpx.Client, path: str) -> None:
    _assert_problem(client.get(path), 404)


@pytest.mark.parametrize(
    "long_url",
    [
        "",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/relative/path",
        "example.com/no-scheme",
        "ftp://example.com/file",
        "http://",
        "https:///path-without-host",
        "http://exa mple.com/",
        "http://example.com/\x00nul",
        "http://example.com/\nnewline",
        "http://example.com:99999/",
        "http://[::1/",
        "https://exämple.com/",
        "https://example.com/" + "a" * 2030,
    ],
)
def test_a_bad_long_url_is_422(client: httpx.Client, long_url: str) -> None:
    _assert_problem(client.post("/api/v1/urls", json={"long_url": long_url}), 422)


def test_the_longest_allowed_url_is_accepted(client: httpx.Client) -> None:
    long_url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    created = client.post("/api/v1/urls", json={"long_url": long_url})
    assert created.status_code == 201
    assert client.get(f"/{created.json()['code']}").headers["location"] == long_url


@pytest.mark.parametrize(
    "alias",
    ["abc", "a" * 33, "has space", "slash/y", "dot.dot", "ünïcode", "api", "healthz", "metrics", "docs"],
)
def test_a_bad_custom_alias_is_422(client: httpx.Client, alias: str) -> None:
    _assert_problem(_create(client, custom_alias=alias), 422)


@pytest.mark.parametrize("ttl", [0, -5, 86401, "ten", "10s", 1.5, True, [60]])
def test_a_bad_ttl_is_422(client: httpx.Client, ttl: object) -> None:
    _assert_problem(_create(client, ttl_seconds=ttl), 422)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"long_url": 123},
        {"long_url": "https://example.com/", "unexpected": 1},
        ["https://example.com/"],
    ],
)
def test_a_malformed_body_is_422(client: httpx.Client, body: object) -> None:
    _assert_problem(client.post("/api/v1/urls", json=body), 422)


def test_a_body_that_is_not_json_is_422(client: httpx.Client) -> None:
    response = client.post("/api/v1/urls", content=b"{not json", headers={"content-type": "application/json"})
    _assert_problem(response, 422)
