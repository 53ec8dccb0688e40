"""``lab bench``: the same load against each variant of a design, then the audit and the report.

The bench brings the lab up (and down again if it was not running), resets the design's state before
each variant, runs the identical Locust profile against it (one after the other by default, at the
same time with ``concurrent``), records the server processes' CPU and an optional chaos timeline,
audits the design's invariants, and writes ``report.json``, ``report.md`` and ``report.html`` next to
Locust's own report of each run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from loadtests.chaos import SIGNALS, ChaosRunner, ChaosStep, parse_timeline
from loadtests.designs import DESIGNS, BenchContext, BenchDesign
from loadtests.environment import machine_info
from loadtests.locust_runner import LoadSummary, run_locust
from loadtests.report import write_reports
from loadtests.shapes import SHAPES
from services.lab import processes
from services.lab.settings import LabSettings
from services.lab.state import LabState
from services.lab.supervisor import Supervisor

# The bench's own work per variant (reset, audit, start-up of the load generator) beyond this is
# reported as a warning: it should not hide in the run time.
OVERHEAD_BUDGET_S = 5.0


class BenchError(ValueError):
    """Options that cannot run; raised before anything starts."""


@dataclass(frozen=True)
class BenchOptions:
    design: str
    variants: tuple[str, ...] = ("naive", "hardened")
    shape: str = "steady"
    users: int = 20
    duration_s: int = 30
    concurrent: bool = False
    workers: int = 0
    out: Path | None = None
    chaos: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_duration(text: str) -> int:
    """``30s``, ``2m``, ``90`` → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*(s|m)?\s*", text)
    if match is None or int(match[1]) == 0:
        raise BenchError(f"cannot read duration {text!r}; use e.g. 30s, 2m or 45")
    return int(match[1]) * (60 if match[2] == "m" else 1)


def validate(options: BenchOptions, supervisor: Supervisor) -> tuple[BenchDesign, list[ChaosStep]]:
    design = DESIGNS.get(options.design)
    if design is None:
        raise BenchError(f"unknown design {options.design!r}; choose one of {', '.join(DESIGNS)}")
    unknown = [v for v in options.variants if v not in design.services]
    if unknown or not options.variants:
        raise BenchError(f"unknown variant(s) {unknown}; {design.name} has {', '.join(design.services)}")
    if options.shape not in SHAPES:
        raise BenchError(f"unknown shape {options.shape!r}; choose one of {', '.join(SHAPES)}")
    if options.users < 1 or options.workers < 0:
        raise BenchError("--users must be at least 1 and --workers at least 0")
    reason = supervisor.cannot_run(design.name)
    if reason is not None:
        raise BenchError(reason)
    try:
        steps = parse_timeline(options.chaos, components=supervisor.known_components())
    except ValueError as exc:
        raise BenchError(str(exc)) from exc
    return design, steps


Say = Callable[[str], None]
Timer = Callable[[str, float], AbstractContextManager[object]]
"""Shows a timed step (a run under load) as it goes, e.g. as a progress bar."""


def _no_timer(_: str, __: float) -> AbstractContextManager[object]:
    return nullcontext()


def run_bench(
    options: BenchOptions, *, settings: LabSettings, say: Say = lambda _: None, timer: Timer = _no_timer
) -> dict[str, Path]:
    supervisor = Supervisor(settings, report=lambda line: say(f"  {line}"))
    design, steps = validate(options, supervisor)
    for warning in storage_warnings(supervisor, steps):
        say(f"warning: {warning}")
    out_dir = options.out or Path("results") / f"{design.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    lab_was_running = bool(LabState.load(settings.state_dir).processes)
    apply_lab_env(design)
    try:
        say("bringing the lab up")
        endpoints = supervisor.up().endpoints
        context = BenchContext(supervisor=supervisor, endpoints=endpoints)
        runs = _run_variants(design, context, options, steps, out_dir, say, timer)
        report = _report(design, options, runs)
        return write_reports(report, out_dir)
    finally:
        if not lab_was_running:
            say("stopping the lab the bench started")
            supervisor.down()


def storage_warnings(supervisor: Supervisor, steps: Sequence[ChaosStep]) -> list[str]:
    """What the timeline's kills and restarts of an in-memory broker will lose (one line per action)."""
    broker = supervisor.broker()
    actions = dict.fromkeys(step.action for step in steps if step.component == "kafka")
    return [w for w in map(broker.chaos_warning, actions) if w]


def apply_lab_env(design: BenchDesign) -> None:
    """The design's demo settings, where the user set none; inherited by the services ``up`` starts."""
    for name, value in design.lab_env.items():
        os.environ.setdefault(name, value)


def _run_variants(
    design: BenchDesign,
    context: BenchContext,
    options: BenchOptions,
    steps: list[ChaosStep],
    out_dir: Path,
    say: Say,
    timer: Timer,
) -> dict[str, dict[str, Any]]:
    if not options.concurrent:
        return {
            v: _run_variant(design, context, options, v, steps, out_dir, say, timer) for v in options.variants
        }
    for variant in options.variants:
        design.reset(context, variant)
    results: dict[str, dict[str, Any]] = {}
    threads = [
        threading.Thread(
            target=lambda v=variant: results.__setitem__(
                v, _run_variant(design, context, options, v, steps, out_dir, say, timer, reset=False)
            )
        )
        for variant in options.variants
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {v: results[v] for v in options.variants}


def _run_variant(
    design: BenchDesign,
    context: BenchContext,
    options: BenchOptions,
    variant: str,
    steps: list[ChaosStep],
    out_dir: Path,
    say: Say,
    timer: Timer,
    *,
    reset: bool = True,
) -> dict[str, Any]:
    started = time.monotonic()
    run_dir = out_dir / variant
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]  # names what this run creates, so its audit finds exactly that
    (run_dir / "run.json").write_text(
        json.dumps({"run_id": run_id, "variant": variant, "users": options.users})
    )
    if reset:
        say(f"{variant}: resetting {design.name}'s state")
        design.reset(context, variant)
    component = design.services[variant]
    url = context.supervisor.url_of(component)
    chaos = ChaosRunner(steps, apply=lambda step: _apply(context.supervisor, step))
    cpu_before = _cpu_seconds(context.supervisor, component)
    say(f"{variant}: {options.users} users, shape {options.shape}, {options.duration_s} s against {url}")
    chaos.start()
    try:
        with timer(f"{variant} under load", options.duration_s):
            load = _load(design, options, url, run_dir, run_id)
    finally:
        chaos.stop()
        _undo_chaos(context.supervisor, steps)
    cpu_used = _cpu_seconds(context.supervisor, component) - cpu_before
    say(f"{variant}: auditing")
    audit_started = time.monotonic()
    audit = design.audit(context, variant, run_dir)
    # Waiting for the system to settle (late answers, lagging consumers) is a property of the
    # design under test, reported on its own; the bench's overhead is everything else.
    audit_s = time.monotonic() - audit_started
    overhead = time.monotonic() - started - options.duration_s - audit_s
    return {
        "url": url,
        "load": load.to_json(),
        "service_cpu_cores": round(cpu_used / max(load.duration_s, 1e-9), 2),
        "audit": audit.to_json(),
        "chaos": [step.to_json() for step in chaos.applied],
        "bench_overhead_s": round(max(overhead, 0.0), 1),
        "audit_wait_s": round(audit_s, 1),
    }


def _load(design: BenchDesign, options: BenchOptions, url: str, run_dir: Path, run_id: str) -> LoadSummary:
    return run_locust(
        design.locustfile,
        host=url,
        users=options.users,
        duration_s=options.duration_s,
        shape=options.shape,
        env={**design.load_env, "LAB_BENCH_RECORD_DIR": str(run_dir), "LAB_BENCH_RUN_ID": run_id},
        out_dir=run_dir,
        processes=options.workers,
    )


def _cpu_seconds(supervisor: Supervisor, component: str) -> float:
    record = supervisor.record_of(component)
    total = 0.0
    for pid in processes.pids_of(record) if record else []:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _apply(supervisor: Supervisor, step: ChaosStep) -> None:
    if step.action == "restart":
        supervisor.restart([step.component])
    else:
        supervisor.signal_component(step.component, SIGNALS[step.action])


def _undo_chaos(supervisor: Supervisor, steps: Sequence[ChaosStep]) -> None:
    """Leave the lab as the run found it: resume what was paused, start what was killed."""
    if not steps:
        return
    for name in {step.component for step in steps}:
        record = supervisor.record_of(name)
        if record is not None:
            processes.signal_group(record, signal.SIGCONT)
    supervisor.up()


def _report(design: BenchDesign, options: BenchOptions, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    flags = [
        f"{variant}: the load generator peaked at {run['load']['locust_cpu_percent']}% of a core; "
        "its numbers measure Locust as much as the service (use --workers)"
        for variant, run in runs.items()
        if run["load"]["locust_saturated"]
    ] + [
        f"{variant}: the bench spent {run['bench_overhead_s']} s beyond the run time"
        for variant, run in runs.items()
        if run["bench_overhead_s"] > OVERHEAD_BUDGET_S
    ]
    return {
        "design": design.name,
        "title": design.title,
        "run": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "shape": options.shape,
            "users": options.users,
            "duration_s": options.duration_s,
            "concurrent": options.concurrent,
            "workers": options.workers,
            "chaos": options.chaos,
        },
        "machine": machine_info(),
        "settings": _lab_settings_env(),
        "variants": {
            variant: {k: v for k, v in run.items() if k != "chaos"} for variant, run in runs.items()
        },
        "chaos": {variant: run["chaos"] for variant, run in runs.items() if run["chaos"]},
        "flags": flags,
    }


def _lab_settings_env() -> dict[str, str]:
    secret = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)
    return {
        k: ("***" if secret.search(k) else v) for k, v in sorted(os.environ.items()) if k.startswith("LAB_")
    }
