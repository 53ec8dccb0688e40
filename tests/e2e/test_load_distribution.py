"""The engine's counts when the load is split or cut short, over real TCP with real Locust
processes: an open loop split over two workers (forked here, or joined from elsewhere) adds up to its
rate, a worker with another plan is refused, two ``lab load-worker`` commands follow two consecutive
runs from a plan board (each run's every arrival recorded once) and end with it, and a run ended
early still offers its whole schedule. These check counts, not timing: they run beside other tests
(tests/e2e/test_load_engine.py, which measures latency, has the machine to itself).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loadtests.engine import remote
from loadtests.engine.generator import LoadPlan, start_load, worker_argv
from loadtests.engine.recording import Recording
from loadtests.engine.remote import Follower, PlanBoard, check_listenable
from loadtests.engine.schedule import Schedule
from loadtests.engine.summary import series
from services.lab.cli import app as app_cli
from services.lab.processes import free_port
from tests.e2e.test_load_engine import ROOT, USERS, _only_window, fixed_delay_server
from tests.support.servers import RunningApp
from tests.support.terminal import one_line

pytestmark = pytest.mark.e2e


def test_a_run_ended_early_still_offers_its_whole_schedule_and_shows_it_live(tmp_path: Path) -> None:
    """What a process never issued (its run ended first) is offered and not sent, so the offered
    load is the schedule's whatever the generator managed; the live series shows the run so far."""
    schedule = Schedule.constant(100, 30)
    with fixed_delay_server(tmp_path) as app:
        plan = LoadPlan(
            locustfile=USERS,
            user_class="Arrivals",
            host=app.url,
            schedule=schedule,
            env={"LAB_LOAD_LIVE_S": "0.5"},
        )
        load = start_load(plan, out_dir=tmp_path / "ended-early")
        started = load.wait_started()
        while time.monotonic() < started + 5.2:
            time.sleep(0.1)
        live = load.live()
        load.end_early()
        result = load.finish()
    # A second is final once its requests' 2 s deadline has passed: at 5 s, seconds 0 and 1 (and 2 soon).
    assert 2 <= live.final_before_s <= 3
    assert [row["offered"] for row in live.rows[: live.final_before_s]] == [100] * live.final_before_s
    whole = result.recording.whole_run()
    assert whole.offered == 100 * 30
    assert 400 <= whole.ok <= 1200  # the graceful stop lets the schedule run on for its stop timeout
    assert whole.not_sent >= 100 * 30 - 1200
    assert whole.offered == whole.ok + whole.failed + whole.timeouts + whole.unfinished + whole.not_sent
    final = load.live()  # the last live document: every second the run lasted is final
    assert final.rows[: final.final_before_s] == series(result.recording)[: final.final_before_s]


def _worker_env(out_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment a worker on another machine gets from the master's ``worker.env``."""
    lines = (out_dir / "worker.env").read_text().splitlines()
    shared = dict(shlex.split(line)[0].split("=", 1) for line in lines)
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **shared, **overrides}


@contextmanager
def _remote_workers(plan: LoadPlan, out_dir: Path, envs: list[dict[str, str]]) -> Iterator[None]:
    """Workers as a user starts them on other machines: own processes, joined over TCP."""
    argv = worker_argv(plan, master_host="127.0.0.1")
    argv = [str(Path(sys.executable).parent / argv[0]), *argv[1:]]
    logs = [(out_dir / f"worker-{n}.log").open("wb") for n in range(len(envs))]
    workers = [
        subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        for env, log in zip(envs, logs, strict=True)
    ]
    try:
        yield
    finally:
        for worker, log in zip(workers, logs, strict=True):
            worker.terminate()
            worker.wait(timeout=30)
            log.close()


def _distributed_plan(app: RunningApp, *, master_bind: str | None) -> LoadPlan:
    return LoadPlan(
        locustfile=USERS,
        user_class="Arrivals",
        host=app.url,
        schedule=Schedule.constant(200, 5),
        processes=2,
        master_bind=master_bind,
    )


@pytest.mark.parametrize("joined", [False, True], ids=["forked-here", "joined-from-elsewhere"])
def test_an_open_loop_split_over_two_workers_adds_up_to_its_rate(tmp_path: Path, joined: bool) -> None:
    bind = f"127.0.0.1:{free_port()}" if joined else None
    out_dir = tmp_path / "load"
    with fixed_delay_server(tmp_path) as app:
        plan = _distributed_plan(app, master_bind=bind)
        running = start_load(plan, out_dir=out_dir)
        envs = [_worker_env(out_dir) for _ in range(2)] if joined else []
        with _remote_workers(plan, out_dir, envs) if joined else nullcontext():
            running.wait_started()
            result = running.finish()
    window = _only_window(result)
    assert window.goodput_rps == pytest.approx(200, rel=0.05)
    assert (window.failed, window.timeouts, window.unfinished, window.not_sent) == (0, 0, 0, 0)
    halves = [json.loads(path.read_text()) for path in sorted(out_dir.glob("recording-*.json"))]
    offered = [Recording.from_json(h["recording"]).in_window[0].offered for h in halves]
    assert len(offered) == 2
    assert abs(offered[0] - offered[1]) <= 2  # worker i of 2 issues every other arrival


def test_a_worker_whose_plan_differs_from_the_masters_is_refused(tmp_path: Path) -> None:
    out_dir = tmp_path / "load"
    with fixed_delay_server(tmp_path) as app:
        plan = _distributed_plan(app, master_bind=f"127.0.0.1:{free_port()}")
        running = start_load(plan, out_dir=out_dir)
        other = Schedule.constant(900, 5).to_json()
        envs = [_worker_env(out_dir), _worker_env(out_dir, LAB_LOAD_SCHEDULE=other)]
        with _remote_workers(plan, out_dir, envs), pytest.raises(RuntimeError, match="exited with 3"):
            running.finish()
    assert "worker_plan_differs" in (out_dir / "locust.log").read_text()


# -- lab load-worker: workers elsewhere that follow a bench from run to run -----------------------


def _listenable_bind() -> str:
    """``127.0.0.1:port`` with ``port`` and ``port + 1`` (the plan board's) free."""
    for _ in range(100):
        bind = f"127.0.0.1:{free_port()}"
        try:
            check_listenable(bind)
        except ValueError:
            continue
        return bind
    raise AssertionError("no two free ports in a row")


@contextmanager
def _load_worker_commands(
    tmp_path: Path, master: str, *, count: int, extra: tuple[str, ...] = ()
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``lab load-worker`` commands as a user starts them on other machines; killed if a test fails
    before they end by themselves."""
    argv = [str(Path(sys.executable).parent / "lab"), "load-worker", "--master", master, *extra]
    logs = [(tmp_path / f"load-worker-{n}.log").open("wb") for n in range(count)]
    workers = [
        subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=log) for log in logs
    ]
    try:
        yield workers
    finally:
        for worker, log in zip(workers, logs, strict=True):
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()


def test_two_load_workers_follow_two_runs_and_end_with_the_bench(tmp_path: Path) -> None:
    bind = _listenable_bind()
    # Two runs as a bench makes them: each its own run id, and here its own schedule, which the
    # master checks against each worker's: a worker on the first run's plan would be refused.
    schedules = {"first-run": Schedule.constant(100, 2), "second-run": Schedule.constant(160, 2)}
    results = {}
    with (
        fixed_delay_server(tmp_path) as app,
        PlanBoard(bind) as board,
        _load_worker_commands(tmp_path, bind, count=2) as workers,
    ):
        for run_id, schedule in schedules.items():
            plan = LoadPlan(
                locustfile=USERS,
                user_class="Arrivals",
                host=app.url,
                schedule=schedule,
                processes=2,
                deadline_s=1.0,
                master_bind=bind,
                env={"LAB_BENCH_RUN_ID": run_id},
            )
            results[run_id] = start_load(plan, out_dir=tmp_path / run_id, board=board).finish()
        board.close()  # the bench ends: so do the workers that follow it
        exits = [worker.wait(timeout=30) for worker in workers]
    assert exits == [0, 0]
    for run_id, schedule in schedules.items():
        arrivals = len(list(schedule.arrivals(worker=0, workers=1)))
        window = _only_window(results[run_id])
        assert window.offered == window.ok == arrivals, run_id  # every arrival once, none lost
        assert results[run_id].processes == 2
    for n in range(2):
        said = (tmp_path / f"load-worker-{n}.log").read_text()
        assert said.count("joining run") == 2, said
        assert "the bench ended" in said


def test_a_load_worker_waiting_for_a_bench_stops_on_sigterm(tmp_path: Path) -> None:
    with _load_worker_commands(tmp_path, _listenable_bind(), count=1) as (worker,):
        deadline = time.monotonic() + 30
        log = tmp_path / "load-worker-0.log"
        while "following the bench" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.terminate()
        assert worker.wait(timeout=10) == 0
    assert log.read_text().rstrip().endswith("stopped")


def test_a_bench_refuses_a_master_bind_this_machine_cannot_listen_on(tmp_path: Path) -> None:
    bind = _listenable_bind()
    host, port = bind.rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port) + 1))  # the plan board's port
        result = CliRunner().invoke(
            app_cli, ["bench", "ratelimit", "--processes", "2", "--master-bind", bind]
        )
    assert result.exit_code == 2, result.output
    assert f"cannot listen for workers on {host}:{int(port) + 1}" in one_line(result.output)


def test_a_worker_of_other_load_test_code_refuses_the_run_and_the_bench_hears_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bind = _listenable_bind()
    plan = LoadPlan(
        locustfile=USERS,
        user_class="Arrivals",
        host="http://127.0.0.1:9",
        schedule=Schedule.constant(10, 1),
        master_bind=bind,
    )
    said: list[str] = []
    with PlanBoard(bind) as board:
        board.publish(plan, tmp_path)
        monkeypatch.setattr(remote, "code_digest", lambda _: "edited-elsewhere")  # this worker's checkout
        follower = Follower(bind, say=said.append)
        following = threading.Thread(target=follower.follow)
        following.start()
        deadline = time.monotonic() + 10
        while not board.refusals() and time.monotonic() < deadline:
            time.sleep(0.05)
        follower.stop()
        following.join(timeout=10)
        (refusal,) = board.refusals()
    assert "refused the run: its load-test code differs" in refusal
    assert "digest edited-elsewhere here" in refusal
    assert any(line.startswith("refusing run") for line in said)
    assert not any(line.startswith("joining run") for line in said)
