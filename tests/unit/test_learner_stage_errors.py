"""A stage that breaks, and a service that hangs or drops the connection, end as a FAIL line, never a
traceback or a hang of ``lab check``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loadtests.shortener.rawhttp import Call, exchange
from services.lab.exercises.stages import CheckContext, Measured, Stage, run_stages
from services.lab.infra import InfraEndpoints

pytestmark = pytest.mark.timeout(10)


def context(tmp_path: Path) -> CheckContext:
    infra = InfraEndpoints(postgres_url="", redis_url="", kafka_bootstrap="")
    return CheckContext(infra=infra, variant="mine", log_dir=tmp_path / "logs")


async def breaks(ctx: CheckContext) -> Measured:
    raise KeyError("total")


async def test_a_stage_that_raises_is_a_fail_naming_the_error_with_its_hint_and_the_logs(
    tmp_path: Path,
) -> None:
    stages = [Stage(1, "claim", "look at the counter", breaks), Stage(2, "next", "", breaks)]

    first, second = await run_stages(stages, context(tmp_path))

    assert first.outcome == "FAIL"
    assert first.hint == "look at the counter"
    assert first.error.startswith("stage could not run: KeyError: 'total'")
    assert str(tmp_path / "logs") in first.error
    assert first.to_json()["detail"] == first.error
    assert second.outcome == "NOT RUN"


class Sink:
    """A writer that keeps what it is given (the request is not what these tests look at)."""

    def write(self, data: bytes) -> None:
        self.data = data


def answering(answer: bytes | None) -> asyncio.StreamReader:
    """A reader holding ``answer`` and then the end of the stream; ``None``: a service that never answers."""
    reader = asyncio.StreamReader()
    if answer is not None:
        reader.feed_data(answer)
        reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (None, TimeoutError, "no answer within 0.2 s"),
        (b"", ConnectionError, "dropped"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ConnectionError, "dropped"),
    ],
)
async def test_a_service_that_hangs_or_drops_the_connection_is_an_error_not_a_hang(
    answer: bytes | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await exchange(answering(answer), Sink(), "h", Call("GET", "/x"), timeout_s=0.2)  # type: ignore[arg-type]


async def test_a_whole_answer_is_read() -> None:
    reader = answering(b"HTTP/1.1 410 Gone\r\nContent-Length: 2\r\n\r\n{}")

    reply = await exchange(reader, Sink(), "h", Call("GET", "/x"), timeout_s=0.2)  # type: ignore[arg-type]

    assert (reply.status, reply.json()) == (410, {})
