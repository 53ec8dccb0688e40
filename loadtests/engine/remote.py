"""Load-generator workers on other machines that follow a bench across its runs.

A distributed run (``LoadPlan.master_bind``) starts a Locust master of its own, with the run's own
plan (schedule, worker count, run id): a bench of several targets and rounds starts one per run, so
a worker elsewhere must join each of them with that run's environment. The bench publishes the run
it is starting on a :class:`PlanBoard`, a small HTTP endpoint beside the master's port (``port + 1``,
on the same host), and ``lab load-worker`` (:func:`follow_bench`) on each worker machine polls it:

- ``GET /plan`` answers the board: the bench's id, the current run (its id, whether it can still be
  joined, the locustfile by its path in the repository, the user class, the worker environment that
  ``worker.env`` holds, the digest of the load-test code and the commit), and whether the bench ended.
- For each run it has not seen and that can still be joined, the follower starts ``locust --worker``
  with that run's environment and waits for it to end (the master ends its workers), then polls on.
- A run stops being joinable once its load began (every share of the schedule is taken): a worker
  that comes late, such as a restarted pod, waits for the next run instead of skewing this one.
- A worker whose load-test code differs from the bench's refuses the run (it would follow other
  users or another split of the schedule) and says why on ``POST /refusals``; the bench's error
  for a run that did not start names it.

The follower stops when the bench says it ended (or has been unreachable for ``BENCH_GONE_S`` after
it was seen), on SIGINT or SIGTERM; with ``keep_following`` it waits for the next bench instead,
which is what a Deployment of workers wants (a pod whose process exits is restarted, with backoff).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loadtests.engine.generator import PLAN_PREFIX, LoadPlan, locust_worker_argv, master_address, worker_env
from loadtests.environment import git_commit

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5
# A worker that has seen a bench and cannot reach it for this long takes it for ended (killed).
BENCH_GONE_S = 10.0
# The board answers "ended" this long after the bench's last run, so that polling workers see it.
ENDED_LINGER_S = 3 * POLL_S
STOP_GRACE_S = 10.0  # a Locust worker's graceful stop, before it is killed
REQUEST_TIMEOUT_S = 2.0

Say = Callable[[str], None]


def board_address(master_bind: str) -> tuple[str, int]:
    """Where the board of a master listening on ``host:port`` is: the same host, ``port + 1``."""
    host, port = master_address(master_bind)
    if port == 65535:
        raise ValueError(f"the plan board listens on the master's port + 1: {master_bind!r} leaves none")
    return host, port + 1


def check_listenable(master_bind: str) -> None:
    """Refuse, before anything starts, an address this machine cannot listen on (the master's port
    and the board's): not one of its addresses, or a port in use."""
    host, port = master_address(master_bind)
    for address in ((host, port), board_address(master_bind)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind(address)
            except OSError as exc:
                where = f"{address[0]}:{address[1]}"
                raise ValueError(f"cannot listen for workers on {where}: {exc.strerror}") from exc


def repository_path(path: Path) -> str:
    """``path`` as a worker on another machine with the same checkout names it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        outside = f"{path} is outside {ROOT}"
        raise ValueError(f"a worker elsewhere finds its locustfile in the repository; {outside}") from None


def code_digest(locustfile: Path) -> str:
    """The load-test code a run depends on (every module of ``loadtests`` and the locustfile): two
    machines whose digests differ would not run the same users or split the schedule the same way."""
    digest = hashlib.sha256()
    for path in sorted({*(ROOT / "loadtests").rglob("*.py"), locustfile.resolve()}):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# -- the bench's side ---------------------------------------------------------------------------


class PlanBoard:
    """The current run of a bench, served to its workers; a context manager around the server."""

    def __init__(self, master_bind: str) -> None:
        self._bench = uuid.uuid4().hex[:12]
        self._commit = git_commit()
        self._lock = threading.Lock()
        self._run: dict[str, Any] | None = None
        self._ended = self._closed = False
        self._refusals: list[str] = []
        self._server = ThreadingHTTPServer(board_address(master_bind), _handler_of(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="plan-board", daemon=True)

    def __enter__(self) -> PlanBoard:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def publish(self, plan: LoadPlan, out_dir: Path) -> None:
        run = {
            "id": uuid.uuid4().hex[:12],
            "joinable": True,
            "locustfile": repository_path(plan.locustfile),
            "user_class": plan.user_class,
            "processes": plan.processes,
            "env": worker_env(plan, out_dir),
            "code": code_digest(plan.locustfile),
            "commit": self._commit,
        }
        with self._lock:
            self._run, self._refusals = run, []

    def close_joining(self) -> None:
        with self._lock:
            if self._run is not None:
                self._run = {**self._run, "joinable": False}

    def refusals(self) -> list[str]:
        with self._lock:
            return list(self._refusals)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"bench": self._bench, "run": self._run, "ended": self._ended}

    def refuse(self, worker: str, reason: str) -> None:
        with self._lock:
            self._refusals.append(f"worker {worker} refused the run: {reason}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            with self._lock:
                self._ended, self._run = True, None
            time.sleep(ENDED_LINGER_S)  # polling workers see the end rather than a closed port
            self._server.shutdown()
        self._server.server_close()


def _handler_of(board: PlanBoard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/plan":
                self._answer(404, {"detail": "GET /plan"})
                return
            self._answer(200, board.snapshot())

        def do_POST(self) -> None:
            if self.path != "/refusals":
                self._answer(404, {"detail": "POST /refusals"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                board.refuse(str(body["worker"])[:200], str(body["reason"])[:500])
            except (ValueError, KeyError, TypeError):
                self._answer(400, {"detail": "a JSON object with worker and reason"})
                return
            self._answer(204, None)

        def _answer(self, status: int, document: object) -> None:
            body = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a poll every half second per worker is no news

    return Handler


# -- the worker's side ----------------------------------------------------------------------------


class Follower:
    """``lab load-worker``: joins each run of the bench at ``master`` (``host:port``, as this machine
    reaches the bench's ``--master-bind``) with ``processes`` Locust workers, until told to stop."""

    def __init__(self, master: str, *, processes: int = 1, keep_following: bool = False, say: Say) -> None:
        self.master_host, self.master_port = master_address(master)
        host, port = board_address(master)
        self.board_url = f"http://{host}:{port}"
        self.processes = processes
        self.keep_following = keep_following
        self.say = say
        self.stopping = threading.Event()
        self._seen: set[str] = set()  # bench/run: each run is joined (or refused) once
        self._last_contact: float | None = None

    def stop(self, *_: object) -> None:
        """Stop at the next poll (a signal handler: ``signal.signal(SIGTERM, follower.stop)``)."""
        self.stopping.set()

    def follow(self) -> None:
        self.say(f"following the bench at {self.board_url}/plan")
        while not self.stopping.is_set():
            board = self._poll()
            if self._bench_is_over(board):
                return
            if board is not None and (run := self._new_run(board)) is not None:
                self._join(run)
            self.stopping.wait(POLL_S)
        self.say("stopped")

    def _bench_is_over(self, board: dict[str, Any] | None) -> bool:
        if self.keep_following:
            return False
        if board is not None:
            if board["ended"]:
                self.say("the bench ended")
            return bool(board["ended"])
        gone = self._last_contact is not None and time.monotonic() - self._last_contact > BENCH_GONE_S
        if gone:
            self.say(f"the bench has not answered for {BENCH_GONE_S:g} s: taking it for ended")
        return gone

    def _poll(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.board_url}/plan", timeout=REQUEST_TIMEOUT_S) as answer:
                board: dict[str, Any] = json.loads(answer.read())
        except (OSError, ValueError):  # not up yet, between benches, or gone
            return None
        self._last_contact = time.monotonic()
        return board

    def _new_run(self, board: dict[str, Any]) -> dict[str, Any] | None:
        run = board["run"]
        if run is None or not run["joinable"] or f"{board['bench']}/{run['id']}" in self._seen:
            return None
        self._seen.add(f"{board['bench']}/{run['id']}")
        return dict(run)

    def _join(self, run: dict[str, Any]) -> None:
        reason = self._refusal(run)
        if reason is not None:
            self.say(f"refusing run {run['id']}: {reason}")
            self._tell_refusal(reason)
            return
        self.say(f"joining run {run['id']}: {run['locustfile']} {run['user_class']}, commit {run['commit']}")
        worker = subprocess.Popen(self._argv(run), env=self._env(run), cwd=ROOT, stdin=subprocess.DEVNULL)
        try:
            self._wait_for(worker, run)
        finally:
            _stop(worker)
        self.say(f"run {run['id']} ended (locust exited with {worker.returncode})")

    def _refusal(self, run: dict[str, Any]) -> str | None:
        locustfile = ROOT / run["locustfile"]
        if not locustfile.is_file():
            return f"no {run['locustfile']} under {ROOT}"
        ours = code_digest(locustfile)
        if ours != run["code"]:
            return (
                f"its load-test code differs from the bench's (digest {ours} here, {run['code']} there; "
                f"commit {git_commit()} here, {run['commit']} there)"
            )
        return None

    def _tell_refusal(self, reason: str) -> None:
        body = json.dumps({"worker": socket.gethostname(), "reason": reason}).encode()
        request = urllib.request.Request(f"{self.board_url}/refusals", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        # The refusal is said here too; the bench then reports that its run did not start.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S).close()

    def _argv(self, run: dict[str, Any]) -> list[str]:
        argv = locust_worker_argv(
            str(ROOT / run["locustfile"]), master_host=self.master_host, master_port=self.master_port
        )
        argv = [sys.executable, "-m", *argv, run["user_class"]]
        return argv + (["--processes", str(self.processes)] if self.processes > 1 else [])

    def _env(self, run: dict[str, Any]) -> dict[str, str]:
        """This machine's environment without any plan of its own, and the run's plan."""
        own = {k: v for k, v in os.environ.items() if not k.startswith(PLAN_PREFIX)}
        return {**own, **run["env"]}

    def _wait_for(self, worker: subprocess.Popen[bytes], run: dict[str, Any]) -> None:
        """Until Locust exits (its master ends it with the run), this follower is stopped, or the bench
        moved on without it (another run, its end, or gone)."""
        while worker.poll() is None and not self.stopping.wait(POLL_S):
            board = self._poll()
            current = board["run"] if board is not None else None
            if board is not None and (current is None or current["id"] != run["id"]):
                return
            if board is None and time.monotonic() - (self._last_contact or 0.0) > BENCH_GONE_S:
                return


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Locust's graceful stop (SIGTERM), then a kill if it does not come."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
