"""The HTTP contract of the rate-limiter design, identical for both variants."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from loadtests.environment import counter_by
from services.lab.infra import InfraEndpoints
from tests.support.ratelimit import RESOURCE, fire, get, run_limiter
from tests.support.servers import RunningApp

pytestmark = pytest.mark.integration

VARIANTS = ["naive", "hardened"]
LIMIT = 5
WRITES = '{"POST /api/v1/resource": {"name": "writes", "limit": 2, "window_s": 60}}'


@pytest.fixture(scope="module", params=VARIANTS)
def limiter(
    request: pytest.FixtureRequest, infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    with run_limiter(
        request.param,
        infra=infra,
        log_dir=tmp_path_factory.mktemp("ratelimit"),
        limit=LIMIT,
        window_s=60,
        route_policies=WRITES,
        LAB_TRUSTED_PROXIES='["127.0.0.2/32"]',
    ) as app:
        yield app


def _fields(headers: httpx.Headers | dict[str, str]) -> tuple[int, int]:
    match = re.fullmatch(r'"default";r=(\d+);t=(\d+)', headers["ratelimit"])
    assert match, headers["ratelimit"]
    return int(match[1]), int(match[2])


async def test_every_answer_carries_the_ratelimit_fields(limiter: RunningApp, unique_id: str) -> None:
    answers = await fire(limiter.url, count=LIMIT, headers={"X-API-Key": unique_id}, concurrency=1)
    assert [a.status for a in answers] == [200] * LIMIT
    assert {a.headers["ratelimit-policy"] for a in answers} == {f'"default";q={LIMIT};w=60'}
    assert [_fields(a.headers)[0] for a in answers] == list(range(LIMIT - 1, -1, -1))
    assert all(0 <= _fields(a.headers)[1] <= 60 for a in answers)
    assert answers[0].body["client"] == f"key:{unique_id}"


async def test_over_the_limit_is_a_429_problem_with_retry_after(limiter: RunningApp, unique_id: str) -> None:
    answers = await fire(limiter.url, count=LIMIT + 2, headers={"X-API-Key": unique_id}, concurrency=1)
    refused = answers[LIMIT:]
    assert [a.status for a in refused] == [429, 429]
    for answer in refused:
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.body["type"] == "/problems/quota-exceeded"
        remaining, t = _fields(answer.headers)
        assert remaining == 0
        assert int(answer.headers["retry-after"]) >= t > 0


def _decisions(url: str) -> dict[str, float]:
    """``ratelimit_decisions_total`` of the default policy, by outcome."""
    return counter_by(url, "ratelimit_decisions", label="outcome", labels={"policy": "default"})


async def test_metrics_count_every_decision_by_outcome(limiter: RunningApp, unique_id: str) -> None:
    before = _decisions(limiter.url)
    await fire(limiter.url, count=LIMIT + 3, headers={"X-API-Key": unique_id}, concurrency=1)
    after = _decisions(limiter.url)
    counted = {outcome: after[outcome] - before.get(outcome, 0.0) for outcome in after}
    counted = {outcome: count for outcome, count in counted.items() if count}
    assert counted == {"admitted": LIMIT, "refused": 3}


async def test_each_api_key_has_its_own_bucket(limiter: RunningApp, unique_id: str) -> None:
    await fire(limiter.url, count=LIMIT, headers={"X-API-Key": f"{unique_id}-a"}, concurrency=1)
    other = await fire(limiter.url, count=1, headers={"X-API-Key": f"{unique_id}-b"})
    assert other[0].status == 200


async def test_a_route_override_has_its_own_policy(limiter: RunningApp, unique_id: str) -> None:
    async with httpx.AsyncClient(base_url=limiter.url) as client:
        statuses = []
        for n in range(3):
            response = await client.post(
                RESOURCE, json={"message": f"m{n}"}, headers={"X-API-Key": unique_id}
            )
            statuses.append(response.status_code)
        assert response.headers["ratelimit-policy"] == '"writes";q=2;w=60'
        assert response.headers["ratelimit"].startswith('"writes";r=0;')
        read = await client.get(RESOURCE, headers={"X-API-Key": unique_id})
    assert statuses == [201, 201, 429]
    assert read.status_code == 200  # the default policy's bucket is untouched


@pytest.mark.parametrize(
    "api_key",
    ["", "has space", "semi;colon", "ü-umlaut", "x" * 129, "k" * 10_000],
    ids=["empty", "space", "semicolon", "non-ascii", "129-chars", "10kB"],
)
async def test_invalid_api_keys_are_a_400_problem(limiter: RunningApp, api_key: str) -> None:
    async with httpx.AsyncClient(base_url=limiter.url) as client:
        response = await client.get(RESOURCE, headers={"X-API-Key": api_key.encode()})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-api-key"


async def test_huge_headers_are_a_431_problem(limiter: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=limiter.url) as client:
        response = await client.get(RESOURCE, headers={"X-Padding": "p" * 60_000})
    assert response.status_code == 431
    assert response.json()["type"] == "/problems/headers-too-large"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"message": 42}', "application/json"),
        (b"{}", "application/json"),
        (b'{"message": ""}', "application/json"),
        (b"message=hi", "application/x-www-form-urlencoded"),
    ],
    ids=["invalid-json", "wrong-type", "missing-field", "empty-message", "form-body"],
)
async def test_bad_bodies_are_a_422_problem(
    limiter: RunningApp, unique_id: str, content: bytes, content_type: str
) -> None:
    async with httpx.AsyncClient(base_url=limiter.url) as client:
        response = await client.post(
            RESOURCE, content=content, headers={"content-type": content_type, "X-API-Key": unique_id}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_forwarded_for_from_an_untrusted_peer_changes_nothing(limiter: RunningApp) -> None:
    """127.0.0.1 is not a trusted proxy: a forged header neither renames nor escapes the bucket."""
    async with httpx.AsyncClient(base_url=limiter.url) as client:
        answers = [await get(client, headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(LIMIT + 1)]
    assert {a.body.get("client") for a in answers if a.status == 200} == {"ip:127.0.0.1"}
    assert answers[-1].status == 429


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(limiter: RunningApp) -> None:
    """Through a trusted proxy (127.0.0.2) the client is the rightmost untrusted hop."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=limiter.url, transport=transport) as client:
        forged_then_real = await get(client, headers={"X-Forwarded-For": "198.51.100.7, 192.0.2.10"})
        via_two_proxies = await get(client, headers={"X-Forwarded-For": "192.0.2.11, 127.0.0.2"})
    assert forged_then_real.body["client"] == "ip:192.0.2.10"
    assert via_two_proxies.body["client"] == "ip:192.0.2.11"


async def test_after_waiting_retry_after_a_request_is_admitted(
    infra: InfraEndpoints, tmp_path_factory: pytest.TempPathFactory, unique_id: str
) -> None:
    for variant in VARIANTS:
        with run_limiter(
            variant, infra=infra, log_dir=tmp_path_factory.mktemp("retry"), limit=2, window_s=2
        ) as app:
            key = {"X-API-Key": f"{unique_id}-{variant}"}
            answers = await fire(app.url, count=3, headers=key, concurrency=1)
            assert [a.status for a in answers] == [200, 200, 429], variant
            await asyncio.sleep(int(answers[-1].headers["retry-after"]))
            again = await fire(app.url, count=1, headers=key)
            assert again[0].status == 200, variant
