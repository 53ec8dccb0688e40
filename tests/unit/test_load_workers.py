"""Load workers on other machines, without starting any: ``--master-bind`` and ``--master`` refuse
what is no ``host:port`` (a usage error, exit 2, before the lab starts), the bench's reported command
names the form it ran, and ``lab load-worker`` decides from the plan board which runs to join (each
new joinable run once, never one whose load began) and when to stop. The runs themselves, with real
Locust processes, are in tests/e2e/test_load_engine.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from typer.testing import CliRunner

from loadtests.bench import BenchError, BenchOptions, reproducing_command, resolve
from loadtests.engine import remote
from loadtests.engine.remote import Follower, code_digest
from services.lab.cli import app
from tests.support.terminal import one_line

BAD_ADDRESSES = ["5557", "localhost", ":5557", "host:port", "127.0.0.1:0", "127.0.0.1:70000", "0.0.0.0:65535"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_bench_refuses_a_master_bind_that_is_no_host_and_port(address: str) -> None:
    options = BenchOptions(design="ratelimit", processes=2, master_bind=address)

    with pytest.raises(BenchError, match="--master-bind"):
        resolve(options, components=[])


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_the_command_line_refuses_it_as_a_usage_error(address: str) -> None:
    result = CliRunner().invoke(app, ["bench", "ratelimit", "--processes", "2", "--master-bind", address])

    assert result.exit_code == 2, result.output
    assert "--master-bind" in one_line(result.output)


def test_a_port_without_one_above_it_is_named_for_the_plan_board() -> None:
    result = CliRunner().invoke(app, ["bench", "ratelimit", "--master-bind", "0.0.0.0:65535"])

    assert result.exit_code == 2
    assert "port + 1" in one_line(result.output)


@pytest.mark.parametrize("address", ["5557", "bench-host", "bench-host:none"])
def test_a_load_worker_refuses_a_master_that_is_no_host_and_port(address: str) -> None:
    result = CliRunner().invoke(app, ["load-worker", "--master", address])

    assert result.exit_code == 2, result.output
    assert "--master" in one_line(result.output)


def test_the_reported_command_names_the_workers_elsewhere() -> None:
    options = BenchOptions(design="ratelimit", processes=4, master_bind="0.0.0.0:5557", rounds=1)

    command = reproducing_command(resolve(options, components=[]), options)

    assert "--processes 4 --master-bind 0.0.0.0:5557" in command


# -- which runs a worker joins --------------------------------------------------------------------


def run(run_id: str, *, joinable: bool = True, code: str = "") -> dict[str, Any]:
    return {
        "id": run_id,
        "joinable": joinable,
        "locustfile": "loadtests/ratelimit/users.py",
        "user_class": "RateLimitedArrivals",
        "processes": 2,
        "env": {},
        "code": code,
        "commit": "abc1234",
    }


def board(current: dict[str, Any] | None, *, bench: str = "b1", ended: bool = False) -> dict[str, Any]:
    return {"bench": bench, "run": current, "ended": ended}


class ScriptedFollower(Follower):
    """A follower whose board answers come from a list (``None``: unreachable), and whose joins are
    noted instead of starting Locust."""

    def __init__(self, answers: list[dict[str, Any] | None], **options: Any) -> None:
        self.lines: list[str] = []
        super().__init__("127.0.0.1:5557", say=self.lines.append, **options)
        self.answers = answers
        self.joined: list[str] = []

    def _poll(self) -> dict[str, Any] | None:
        if not self.answers:
            self.stop()
            return None
        answer = self.answers.pop(0)
        if answer is not None:
            self._last_contact = time.monotonic()
        return answer

    def _join(self, run: dict[str, Any]) -> None:
        self.joined.append(run["id"])


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "POLL_S", 0.0)


def test_each_new_run_is_joined_once_and_a_run_whose_load_began_not_at_all() -> None:
    follower = ScriptedFollower(
        [
            None,  # the bench is not up yet
            board(run("r1", joinable=False)),  # begun before this worker came
            board(run("r2")),
            board(run("r2")),  # the same run, polled again after its Locust ended
            board(run("r2", joinable=False)),
            board(run("r3")),
            board(run("r1"), bench="b2"),  # another bench's run of the same id is another run
            board(None, ended=True),
        ]
    )

    follower.follow()

    assert follower.joined == ["r2", "r3", "r1"]
    assert follower.lines[-1] == "the bench ended"


def test_with_keep_following_a_worker_waits_for_the_next_bench() -> None:
    follower = ScriptedFollower(
        [board(run("r1")), board(None, ended=True), None, board(run("r1"), bench="b2")],
        keep_following=True,
    )

    follower.follow()

    assert follower.joined == ["r1", "r1"]
    assert follower.lines[-1] == "stopped"  # by its own stop (the script ran out), not the bench's end


def test_a_bench_gone_after_it_was_seen_counts_as_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BENCH_GONE_S", 0.0)
    follower = ScriptedFollower([board(run("r1")), None, None])

    follower.follow()

    assert follower.joined == ["r1"]
    assert "taking it for ended" in follower.lines[-1]


def test_a_worker_refuses_a_run_of_other_load_test_code() -> None:
    follower = ScriptedFollower([])
    ours = code_digest(remote.ROOT / "loadtests/ratelimit/users.py")

    assert follower._refusal(run("r1", code=ours)) is None
    reason = follower._refusal(run("r1", code="0123456789abcdef"))
    assert reason is not None
    assert "load-test code differs" in reason
    assert "abc1234 there" in reason
    assert "no loadtests/nope.py" in (
        follower._refusal({**run("r1"), "locustfile": "loadtests/nope.py"}) or ""
    )
