"""``lab bench``: rounds of the same load against each variant of a design, measured by the engine.

A design's questions are its named scenarios (:mod:`loadtests.engine.scenario`, declared in
``loadtests/<design>/scenarios.py``): each names its targets (the design's variants, a variant under
other settings, reference endpoints the lab serves beside its own services), its load, its goals, its
reset and its audit; ``lab bench DESIGN`` runs the design's headline scenario.

Every round runs each target once, in a counterbalanced order
(:func:`~loadtests.engine.verdicts.round_orders`), and by default one variant twice, under two labels,
for an A/A comparison that shows the noise. A run is: reset the design's state, start the load
generator (open loop at a rate, a stepped sweep, or the design's closed-loop users), meter every
process family's CPU over the measurement window, apply the chaos timeline on the load's own clock,
audit the design's invariants. Then each goal of the design
is a paired ratio per round, with its median, bootstrap interval and verdict, and the report is
written (``report.json``, ``report.md``, ``report.html``, the merged histograms).

With ``master_bind`` the load generator's workers run elsewhere: every run's Locust master listens
there and waits for ``processes`` workers, and the bench publishes each run on a
:class:`~loadtests.engine.remote.PlanBoard` beside it, which ``lab load-worker`` on the workers'
machines follows from run to run.

The bench sees the lab only through :class:`~loadtests.engine.lab.RunningLab`; the ``lab`` command
brings the lab up and hands one over.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests.chaos import ChaosRunner, ChaosStep, parse_timeline
from loadtests.designs import DESIGNS
from loadtests.engine.cpu import CpuMeter, pin_apart, unpin
from loadtests.engine.generator import LoadPlan, LoadResult, RunningLoad, master_address, start_load
from loadtests.engine.lab import AppSpec, RunningLab
from loadtests.engine.recording import merged_tally
from loadtests.engine.remote import PlanBoard, board_address
from loadtests.engine.scenario import BenchContext, BenchDesign, Goal, Scenario, Target, not_audited
from loadtests.engine.schedule import Schedule
from loadtests.engine.summary import Slo, WindowSummary, series, windows
from loadtests.engine.sweep import broke_at, knee, knee_bound_by_generator, sweep_rates
from loadtests.engine.verdicts import AGAIN_SUFFIX, Comparison, again_label, round_orders
from loadtests.environment import machine_info

MODES = ("rate", "sweep", "closed")
GENERATOR = "load generator"


class BenchError(ValueError):
    """Options that cannot run; raised before anything starts."""


@dataclass(frozen=True)
class BenchOptions:
    design: str
    scenario: str | None = None  # the design's headline scenario when None
    variants: tuple[str, ...] = ()  # the scenario's targets, by label, when empty
    mode: str | None = None  # the scenario's own default when None
    rate: float | None = None  # mode "rate": requests per second
    steps: tuple[float, ...] = ()  # mode "sweep": the offered rates; the design's default when empty
    step_s: float = 4.0
    duration_s: float = 10.0  # modes "rate" and "closed"
    warmup_s: float | None = None  # the design's own when None
    deadline_s: float | None = None  # the design's client deadline when None
    rounds: int = 5
    users: int = 0  # mode "closed": the design's default when 0
    processes: int = 1
    # "host:port": every run's Locust master listens there for ``processes`` workers from elsewhere.
    master_bind: str | None = None
    aa: bool = True
    slo_p99_ms: float | None = None  # the scenario's own SLO when None
    slo_errors: float = 0.01
    chaos: str = ""
    pin: bool = False  # the generator and the services on separate cores, when there are cores to spare
    live_s: float | None = None  # how often the generator hands in its series while it runs (the console)
    load_env: Mapping[str, str] = field(default_factory=dict)  # for the generator, beyond the scenario's
    out: Path | None = None
    command: str = ""


def parse_duration(text: str) -> int:
    """``30s``, ``2m``, ``90`` → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*(s|m)?\s*", text)
    if match is None or int(match[1]) == 0:
        raise BenchError(f"cannot read duration {text!r}; use e.g. 30s, 2m or 45")
    return int(match[1]) * (60 if match[2] == "m" else 1)


def parse_rates(text: str) -> tuple[float, ...]:
    """``100,200,400`` → rates; each must be a positive number."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise BenchError(f"cannot read the rates {text!r}; use e.g. 100,200,400") from exc
    if any(rate <= 0 for rate in rates):
        raise BenchError("every rate must be a positive number of requests per second")
    return rates


@dataclass(frozen=True)
class Plan:
    """Options resolved against the design's defaults, and checked."""

    design: BenchDesign
    scenario: Scenario
    targets: dict[str, Target]  # by label, the A/A run's label excluded
    mode: str
    labels: tuple[str, ...]
    chaos: list[ChaosStep]
    rate: float
    steps: tuple[float, ...]
    users: int
    deadline_s: float
    warmup_s: float
    slo: Slo


def design_named(name: str) -> BenchDesign:
    design = DESIGNS.get(name)
    if design is None:
        raise BenchError(f"unknown design {name!r}; choose one of {', '.join(DESIGNS)}")
    return design


def scenario_named(design_name: str, name: str | None) -> Scenario:
    """The design's scenario called ``name`` (its headline one when None)."""
    design = design_named(design_name)
    scenario = design.scenarios.get(name or design.headline)
    if scenario is None:
        raise BenchError(
            f"unknown scenario {name!r} of {design.name}; choose one of {', '.join(design.scenarios)}"
        )
    return scenario


def describe_scenarios(design_name: str) -> list[str]:
    """One line per scenario of the design: its name, mode, targets and question; the headline first."""
    design = design_named(design_name)
    ordered = [design.default, *(s for s in design.scenarios.values() if s.name != design.headline)]
    return [
        f"{s.name}{' (headline)' if s.name == design.headline else ''}: {s.mode}; "
        f"{', '.join(t.label for t in s.targets)}. {s.question}"
        for s in ordered
    ]


def resolve(options: BenchOptions, components: Sequence[str]) -> Plan:
    """The options against the scenario's defaults, checked; ``components``: what a chaos timeline
    may name. The ``lab`` command calls it before it brings the lab up, so bad options start nothing."""
    design = design_named(options.design)
    scenario = scenario_named(options.design, options.scenario)
    variants = options.variants or tuple(t.label for t in scenario.targets)
    unknown = [v for v in variants if scenario.target(v) is None]
    if unknown:
        labels = ", ".join(t.label for t in scenario.targets)
        raise BenchError(f"unknown variant(s) {unknown}; {design.name} {scenario.name} has {labels}")
    mode = options.mode or scenario.mode
    if mode not in MODES:
        raise BenchError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "closed" and scenario.open_user is None:
        raise BenchError(
            f"{design.name} {scenario.name} is measured with closed-loop users only (--mode closed)"
        )
    deadline_s = options.deadline_s or scenario.deadline_s
    warmup_s = scenario.warmup_s if options.warmup_s is None else options.warmup_s
    if options.rounds < 1 or options.processes < 1 or deadline_s <= 0 or warmup_s < 0:
        raise BenchError("--rounds and --processes must be at least 1, --deadline positive, --warmup ≥ 0")
    if options.master_bind is not None:
        check_master_bind(options.master_bind)
    targets = {label: target for label in variants if (target := scenario.target(label))}
    known = [*components, *(t.component for t in targets.values() if t.app)]
    try:
        chaos = parse_timeline(options.chaos, components=list(dict.fromkeys(known)))
    except ValueError as exc:
        raise BenchError(str(exc)) from exc
    return Plan(
        design=design,
        scenario=scenario,
        targets=targets,
        mode=mode,
        labels=tuple(variants) + ((again_label(variants[-1]),) if options.aa else ()),
        chaos=chaos,
        rate=options.rate or scenario.rate,
        steps=options.steps
        or tuple(
            sweep_rates(start=scenario.sweep.start, factor=scenario.sweep.factor, steps=scenario.sweep.steps)
        ),
        users=options.users or scenario.users,
        deadline_s=deadline_s,
        warmup_s=warmup_s,
        slo=_slo(options, scenario),
    )


def check_master_bind(bind: str) -> None:
    """``host:port`` with a port to spare above it (the plan board's), or a clear error."""
    try:
        board_address(bind)
    except ValueError as exc:
        raise BenchError(f"--master-bind: {exc}") from exc


def _slo(options: BenchOptions, scenario: Scenario) -> Slo:
    try:
        return Slo(p99_ms=options.slo_p99_ms or scenario.slo_p99_ms, max_errors=options.slo_errors)
    except ValueError as exc:
        raise BenchError(str(exc)) from exc


Say = Callable[[str], None]


class RunObserver:
    """What the bench tells whoever watches its runs while they happen (the live console); a bench
    alone needs none. Called from the threads that run the targets."""

    def load_started(self, label: str, load: RunningLoad, started_monotonic: float) -> None:
        """``label``'s load began its run at ``started_monotonic``; its live rows are in ``load.out_dir``."""

    def load_finished(self, label: str) -> None:
        """``label``'s load ended; its audit follows."""

    def faults(self, label: str, started_monotonic: float) -> list[dict[str, Any]]:
        """Faults applied by hand during ``label``'s run, each with ``at_s`` on that run's clock."""
        return []


WATCHED_BY_NOBODY = RunObserver()
# How long targets run together wait for each other's reset (a naive service restarts in its reset).
TOGETHER_TIMEOUT_S = 120.0


def apply_lab_env(design_name: str, scenario_name: str | None = None) -> None:
    """The scenario's settings, where the user set none; inherited by the services the lab starts
    next (a lab already running keeps its own). Nothing for an unknown design or scenario: the
    bench refuses those itself."""
    try:
        scenario = scenario_named(design_name, scenario_name)
    except BenchError:
        return
    for name, value in scenario.lab_env.items():
        os.environ.setdefault(name, value)


def run_bench(
    options: BenchOptions,
    *,
    lab: RunningLab,
    say: Say = lambda _: None,
    observer: RunObserver = WATCHED_BY_NOBODY,
    together: bool = False,
) -> dict[str, Path]:
    """Every round, every target; ``together``: a round's targets at the same time, each load
    starting once every target's reset is done (the live console's side-by-side run), instead of
    one after the other, which is what a measurement needs (they would share the cores)."""
    from loadtests.engine.report import write_report  # matplotlib loads only when a report is written

    plan = resolve(options, lab.components())
    if together and options.master_bind is not None:
        raise BenchError("workers elsewhere follow one run at a time: --master-bind runs targets in turn")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = options.out or Path("results") / f"{plan.design.name}-{plan.scenario.name}-{stamp}"
    context = BenchContext(lab=lab)
    for target in plan.targets.values():
        if target.app is not None:
            say(f"serving {target.label} beside the lab")
            serve_with_companions(lab, target.component, target.app)
    rounds = []
    urls = [context.lab.url_of(target.component) for target in plan.targets.values()]
    with _plan_board(options, urls, say) as board:
        for index, order in enumerate(round_orders(plan.labels, options.rounds)):
            round_dir = out_dir / f"round-{index + 1}"
            run_one = partial(_run_target, plan, options, context, round_dir, observer=observer, board=board)
            run_round = _run_together if together else _run_in_turn
            runs = run_round(order, run_one, say=say, heading=f"round {index + 1}/{options.rounds}: ")
            rounds.append({"index": index, "order": list(order), "runs": runs})
    return write_report(_report(plan, options, rounds), out_dir)


def _plan_board(
    options: BenchOptions, urls: Sequence[str], say: Say
) -> AbstractContextManager[PlanBoard | None]:
    """Where workers elsewhere find each run, for the whole bench (none when they are forked here)."""
    if options.master_bind is None:
        return nullcontext()
    host, port = master_address(options.master_bind)
    try:
        board = PlanBoard(options.master_bind)
    except OSError as exc:
        raise BenchError(f"cannot serve the workers' plans beside {options.master_bind}: {exc}") from exc
    address = "THIS-MACHINE" if _is_unspecified(host) else host
    say(f"every run waits for {options.processes} load worker(s); on each worker machine, in a checkout")
    say(f"  of the same commit: lab load-worker --master {address}:{port}")
    local = [url for url in urls if _is_loopback(urlsplit(url).hostname or "")]
    if local and not _is_loopback(host):
        say(f"  warning: workers on other machines cannot reach {', '.join(local)}: serve the lab on an")
        say("  address they reach (LAB_HOST=this machine's address) or keep the workers on this machine")
    return board


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_unspecified(host: str) -> bool:
    """``0.0.0.0`` or ``::``: every address of this machine, none that a worker could dial."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def serve_with_companions(lab: RunningLab, component: str, app: AppSpec) -> None:
    """``app`` served beside the lab, after the apps of its own it calls, pointed at them."""
    for companion in app.companions:
        lab.serve(companion.component, companion.app)
    urls = {c.url_setting: lab.url_of(c.component) for c in app.companions}
    lab.serve(component, replace(app, env={**app.env, **urls}, companions=()))


RunOne = Callable[[str, "Rendezvous"], dict[str, Any]]


class Rendezvous:
    """Where targets run together wait for each other: until every one is ready to start its load,
    and until every load has ended before any audit (a fault pressed during the run is recovered
    by then)."""

    def __init__(self, parties: int) -> None:
        self._barrier = threading.Barrier(parties, timeout=TOGETHER_TIMEOUT_S)

    def arrive(self) -> None:
        self._barrier.wait()

    def abandon(self) -> None:
        """This target cannot start: the others stop waiting for it (and fail too)."""
        self._barrier.abort()


def _run_in_turn(order: Sequence[str], run_one: RunOne, *, say: Say, heading: str) -> dict[str, Any]:
    runs = {}
    for label in order:
        say(heading + label)
        runs[label] = run_one(label, Rendezvous(1))
    return runs


def _run_together(order: Sequence[str], run_one: RunOne, *, say: Say, heading: str) -> dict[str, Any]:
    say(f"{heading}{', '.join(order)}, together")
    rendezvous = Rendezvous(len(order))
    with ThreadPoolExecutor(len(order), thread_name_prefix="target") as pool:
        futures = {label: pool.submit(run_one, label, rendezvous) for label in order}
        return {label: future.result() for label, future in futures.items()}


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def variant_of(label: str) -> str:
    return label.removesuffix(AGAIN_SUFFIX)


def _run_target(
    plan: Plan,
    options: BenchOptions,
    context: BenchContext,
    round_dir: Path,
    label: str,
    ready: Rendezvous,
    *,
    observer: RunObserver,
    board: PlanBoard | None,
) -> dict[str, Any]:
    target = plan.targets[variant_of(label)]
    run_dir = round_dir / _slug(label)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        plan.scenario.reset(context, target)
    except BaseException:
        ready.abandon()
        raise
    ready.arrive()
    component = target.component
    url = context.lab.url_of(component)
    run_id = uuid.uuid4().hex[:12]  # names what this run creates, so its audit finds exactly that
    load_plan = _load_plan(plan, options, url, run_dir, run_id)
    (run_dir / "run.json").write_text(
        f'{{"run_id": "{run_id}", "variant": "{target.variant}", "users": {load_plan.users}}}'
    )
    try:
        result, cpu, applied, pinning = _measure(
            plan, options, context.lab, load_plan, run_dir, label, observer=observer, board=board
        )
    except BaseException:
        ready.abandon()
        raise
    ready.arrive()  # targets run together are audited once every load ended and the lab recovered
    summaries = windows(result.recording, slo=plan.slo)
    audit = (plan.scenario.audit if target.audited else not_audited)(context, target, run_dir)
    tally = merged_tally(result.recording)
    answered_in_cpu_span = result.recording.ok_between(*cpu_span(result, load_plan))
    return {
        "target": label,
        "url": url,
        "windows": [w.to_json() for w in summaries],
        "series": series(result.recording),
        "histograms": {
            "ok": tally.ok_latency.encode().decode(),
            "failed": tally.failed_latency.encode().decode(),
        },
        "cpu": _cpu_report(cpu, component=component, ok=answered_in_cpu_span),
        "metrics": _metrics(summaries, cpu, component=component, mode=plan.mode, cpu_ok=answered_in_cpu_span),
        "audit": audit.to_json(),
        "chaos": applied,
        "pinning": pinning,
    }


def _load_plan(plan: Plan, options: BenchOptions, url: str, run_dir: Path, run_id: str) -> LoadPlan:
    scenario = plan.scenario
    env = {**scenario.load_env, **options.load_env, "LAB_BENCH_RUN_ID": run_id}
    if options.live_s is not None:
        env["LAB_LOAD_LIVE_S"] = str(options.live_s)
    common = {
        "host": url,
        "deadline_s": plan.deadline_s,
        "processes": options.processes,
        "env": env,
        "master_bind": options.master_bind,
    }
    if plan.mode == "closed":
        return LoadPlan(
            locustfile=scenario.closed_locustfile or scenario.locustfile,
            user_class=scenario.closed_user,
            users=plan.users,
            duration_s=options.duration_s,
            warmup_s=plan.warmup_s,
            **common,  # type: ignore[arg-type]
        )
    schedule = (
        Schedule.stepped(plan.steps, options.step_s)
        if plan.mode == "sweep"
        else Schedule.constant(plan.rate, options.duration_s)
    )
    assert scenario.open_user is not None  # resolve() refused an open loop without one
    warmup_s = min(plan.warmup_s, options.step_s / 2) if plan.mode == "sweep" else plan.warmup_s
    return LoadPlan(
        locustfile=scenario.locustfile,
        user_class=scenario.open_user,
        schedule=schedule,
        warmup_s=warmup_s,
        **common,  # type: ignore[arg-type]
    )


def _measure(
    plan: Plan,
    options: BenchOptions,
    lab: RunningLab,
    load_plan: LoadPlan,
    run_dir: Path,
    label: str,
    *,
    observer: RunObserver,
    board: PlanBoard | None,
) -> tuple[LoadResult, Any, list[dict[str, Any]], dict[str, Any]]:
    """The load, the CPU of every process family over its window, the chaos applied on its clock
    (the timeline's and the faults applied by hand), and where the generator and the services ran
    (``--pin``). The generator's CPU is this machine's Locust: workers elsewhere are not metered
    (their lateness still shows in the recording)."""
    load = start_load(load_plan, out_dir=run_dir, board=board)
    services = lab.cpu_roots()
    pinning = pin_apart(generator=load.pid, services=services.values()) if options.pin else UNPINNED
    meter = CpuMeter({**services, GENERATOR: load.pid}, generators=[GENERATOR])
    meter.start()
    try:
        started = load.wait_started()
        observer.load_started(label, load, started)
        chaos = ChaosRunner(plan.chaos, apply=lambda step: lab.signal(step.component, step.action))
        chaos.start()
        offset = time.monotonic() - started  # the timeline starts this long after the load's t = 0
        try:
            result = load.finish()
        finally:
            chaos.stop()
            observer.load_finished(label)
            if plan.chaos:
                lab.recover()
        start_s, end_s = cpu_span(result, load_plan)
        meter.mark("window-start", at=result.started_monotonic + start_s)
        meter.mark("window-end", at=result.started_monotonic + end_s)
    except BaseException:
        load.stop()  # a load whose run went wrong is never left running
        raise
    finally:
        meter.stop()
        if options.pin:
            unpin(services.values())  # a lab that runs on after the bench gets all its cores back
    applied = [
        {**step.to_json(), "at_s": round(offset + (step.applied_at_s or step.at_s), 3)}
        for step in chaos.applied
    ]
    return result, meter.window(), [*applied, *observer.faults(label, started)], pinning


def cpu_span(result: LoadResult, load_plan: LoadPlan) -> tuple[float, float]:
    """Where the CPU is measured, in seconds of the load: from the first window's start to the last
    one's end. A sweep's warm-ups between its windows lie inside: the CPU per request divides by the
    answers of this whole span (:meth:`Recording.ok_between`), not by the windows' alone."""
    first, last = result.recording.windows[0], result.recording.windows[-1]
    return first.start_s, min(last.end_s, load_plan.run_s)


UNPINNED = {"asked": False, "pinned": False, "reason": "not asked (--pin pins the generator apart)"}


def _cpu_report(cpu: Any, *, component: str, ok: int) -> dict[str, Any]:
    per_request = cpu.per_request(ok) if ok else {}
    return {
        "window_s": round(cpu.duration_s, 3),
        "components": {
            name: {
                "cpu_s": round(usage.seconds, 4),
                "cores": round(usage.cores, 3),
                "us_per_request": round(per_request[name], 1) if name in per_request else None,
            }
            for name, usage in cpu.components.items()
        },
        "service": component,
        "generator": {
            "steady_cores": round(max(cpu.generator_processes.get(GENERATOR, {}).values(), default=0.0), 3),
            "bound": cpu.generator_bound,
        },
    }


def _metrics(
    summaries: Sequence[WindowSummary], cpu: Any, *, component: str, mode: str, cpu_ok: int
) -> dict[str, Any]:
    """The numbers goals are made of, for one run; ``cpu_ok``: the good answers of the CPU's span."""
    ok = sum(w.ok for w in summaries)
    length = sum(w.end_s - w.start_s for w in summaries)
    system_s = sum(u.seconds for name, u in cpu.components.items() if name != GENERATOR)
    service_s = cpu.components[component].seconds if component in cpu.components else 0.0
    return {
        "goodput_rps": round(ok / length, 2) if length else 0.0,
        "p99_ms": summaries[0].latency_ms["p99"] if len(summaries) == 1 else None,
        "knee_rps": knee(summaries) if mode == "sweep" else None,
        "broke_at_rps": broke_at(summaries) if mode == "sweep" else None,
        "service_us_per_request": round(service_s / cpu_ok * 1e6, 1) if cpu_ok else None,
        "system_us_per_request": round(system_s / cpu_ok * 1e6, 1) if cpu_ok else None,
        # Bound by its CPU, or a sweep that stopped where the generator fell behind its schedule.
        "generator_bound": cpu.generator_bound or (mode == "sweep" and knee_bound_by_generator(summaries)),
    }


def _report(plan: Plan, options: BenchOptions, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    scenario = plan.scenario
    return {
        "design": plan.design.name,
        "scenario": scenario.name,
        "title": scenario.title,
        "question": scenario.question,
        "what_to_watch": scenario.what_to_watch,
        "command": reproducing_command(plan, options),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine_info(),
        "settings": _lab_settings_env(),
        "slo": {"p99_ms": plan.slo.p99_ms, "max_errors": plan.slo.max_errors},
        "mode": plan.mode,
        "load": {
            "rate": plan.rate if plan.mode == "rate" else None,
            "steps": list(plan.steps) if plan.mode == "sweep" else [],
            "step_s": options.step_s,
            "duration_s": options.duration_s,
            "warmup_s": plan.warmup_s,
            "deadline_s": plan.deadline_s,
            "processes": options.processes,
            "master_bind": options.master_bind,
            "users": plan.users if plan.mode == "closed" else 0,
            "chaos": options.chaos,
        },
        "targets": list(plan.labels),
        "references": [label for label, t in plan.targets.items() if not t.audited],
        "pinning": _pinning(rounds),
        "rounds": rounds,
        "comparisons": [c.to_json() for c in _comparisons(plan, rounds)],
        "uncompared": _uncompared(plan, rounds),
        "capacity": _capacity(rounds, plan.labels) if plan.mode == "sweep" else {},
        "flags": [],  # the report names generator-bound, invalid and overloaded runs itself
    }


def _lab_settings_env() -> dict[str, str]:
    secret = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)
    return {
        k: ("***" if secret.search(k) else v) for k, v in sorted(os.environ.items()) if k.startswith("LAB_")
    }


def reproducing_command(plan: Plan, options: BenchOptions) -> str:
    """The user's own command, naming the scenario it ran (a headline may change), or one built
    from the options."""
    if not options.command:
        return _command(plan, options)
    named = "" if options.scenario else f" --scenario {shlex.quote(plan.scenario.name)}"
    return options.command + named


def _pinning(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the runs ran: pinned only when every run was."""
    runs = [run["pinning"] for r in rounds for run in r["runs"].values()]
    failed = next((p for p in runs if not p["pinned"]), None)
    return (failed or runs[0]) if runs else UNPINNED


def _command(plan: Plan, options: BenchOptions) -> str:
    words = ["lab", "bench", plan.design.name, "--scenario", plan.scenario.name, "--mode", plan.mode]
    words += ["--rounds", str(options.rounds)]
    if options.variants:
        words += ["--variants", ",".join(options.variants)]
    if plan.mode == "rate":
        words += ["--rate", f"{plan.rate:g}", "--duration", f"{options.duration_s:g}s"]
    elif plan.mode == "sweep":
        words += ["--steps", ",".join(f"{r:g}" for r in plan.steps), "--step", f"{options.step_s:g}s"]
    else:
        words += ["--users", str(plan.users), "--duration", f"{options.duration_s:g}s"]
    if options.slo_p99_ms is not None:
        words += ["--slo-p99-ms", f"{options.slo_p99_ms:g}"]
    if options.slo_errors != BenchOptions.slo_errors:
        words += ["--slo-errors", f"{options.slo_errors:g}"]
    if options.processes != 1:
        words += ["--processes", str(options.processes)]
    if options.master_bind is not None:
        words += ["--master-bind", options.master_bind]
    if options.chaos:
        words += ["--chaos", options.chaos]
    if not options.aa:
        words.append("--no-aa")
    if options.pin:
        words.append("--pin")
    return shlex.join(words)


def _values(rounds: list[dict[str, Any]], label: str, metric: str) -> list[float]:
    return [float(r["runs"][label]["metrics"][metric] or 0.0) for r in rounds]


def _bound(rounds: list[dict[str, Any]], goal: Goal) -> bool:
    """The ratio is only a lower bound: a run behind it was bound by its generator, or the
    numerator's capacity lies above the sweep (it held every step)."""
    labels = (goal.numerator, goal.denominator)
    generator = any(r["runs"][label]["metrics"]["generator_bound"] for r in rounds for label in labels)
    return generator or bool(_held_every_step(rounds, goal.numerator, goal.metric))


def _held_every_step(rounds: list[dict[str, Any]], label: str, metric: str) -> list[int]:
    """The rounds (from 1) in which ``label`` held every step of a sweep: its knee is the sweep's
    top only because the sweep stopped there."""
    if metric != "knee_rps":
        return []
    return [
        index + 1
        for index, r in enumerate(rounds)
        if r["runs"][label]["metrics"]["knee_rps"] and r["runs"][label]["metrics"]["broke_at_rps"] is None
    ]


def _comparisons(plan: Plan, rounds: list[dict[str, Any]]) -> list[Comparison]:
    goals = [
        g
        for g in plan.scenario.goals
        if g.mode == plan.mode and {g.numerator, g.denominator} <= set(plan.labels)
    ]
    noise = _noise_goal(plan)
    return [_compare(goal, rounds) for goal in [*goals, *noise] if _comparable(goal, rounds)]


def _noise_goal(plan: Plan) -> list[Goal]:
    """The A/A comparison: one variant against itself, on the mode's headline number."""
    again = [label for label in plan.labels if label.endswith(AGAIN_SUFFIX)]
    if not again:
        return []
    metric = {"sweep": "knee_rps", "rate": "system_us_per_request", "closed": "goodput_rps"}[plan.mode]
    first = variant_of(again[0])
    return [Goal(f"A/A noise: {metric}, {again[0]} / {first}", again[0], first, metric, 1.0, plan.mode)]


def _comparable(goal: Goal, rounds: list[dict[str, Any]]) -> bool:
    """A ratio needs a denominator measured in every round: above 0, and for a capacity not the
    sweep's top held (the true capacity lies above it by an unknown amount)."""
    measured = all(v > 0 for v in _values(rounds, goal.denominator, goal.metric))
    return measured and not _held_every_step(rounds, goal.denominator, goal.metric)


def _uncompared(plan: Plan, rounds: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The goals of these runs, and the A/A comparison, that have no ratio, and why: a denominator
    of 0 in some round (a variant that held no offered rate at the SLO), or one whose capacity lies
    above the sweep, leaves the ratio without a value, which the page says rather than leaving it out."""
    goals = [g for g in plan.scenario.goals if g.mode == plan.mode]
    goals = [g for g in goals if {g.numerator, g.denominator} <= set(plan.labels)] + _noise_goal(plan)
    return [
        {"name": goal.name, "reason": _why_no_ratio(goal, rounds)}
        for goal in goals
        if not _comparable(goal, rounds)
    ]


def _why_no_ratio(goal: Goal, rounds: list[dict[str, Any]]) -> str:
    held = _held_every_step(rounds, goal.denominator, goal.metric)
    if held:
        top = max(_values(rounds, goal.denominator, goal.metric))
        return (
            f"{goal.denominator} held every offered rate of the sweep in round(s) "
            f"{', '.join(map(str, held))}, up to {top:g} req/s: its capacity lies above the sweep, so "
            "the ratio has no value (a sweep with higher steps, --steps, measures it)"
        )
    denominators = _values(rounds, goal.denominator, goal.metric)
    zero_rounds = ", ".join(str(index + 1) for index, value in enumerate(denominators) if value <= 0)
    numerator = _median(rounds, goal.numerator, goal.metric)
    denominator = statistics.median(denominators)
    return (
        f"{goal.denominator}'s {goal.metric} was 0 in round(s) {zero_rounds} (medians: {goal.numerator} "
        f"{numerator:g}, {goal.denominator} {denominator:g}), so the ratio has no value"
    )


def _median(rounds: list[dict[str, Any]], label: str, metric: str) -> float:
    return statistics.median(_values(rounds, label, metric))


def _compare(goal: Goal, rounds: list[dict[str, Any]]) -> Comparison:
    return Comparison.from_rounds(
        goal.name,
        numerator=goal.numerator,
        denominator=goal.denominator,
        values={label: _values(rounds, label, goal.metric) for label in (goal.numerator, goal.denominator)},
        goal=goal.goal,
        higher_is_better=goal.higher_is_better,
        generator_bound=_bound(rounds, goal),
    )


def _capacity(rounds: list[dict[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """Per target: the median knee over rounds and the curve of its first round."""
    capacity = {}
    for label in labels:
        knees = sorted(r["runs"][label]["metrics"]["knee_rps"] or 0.0 for r in rounds)
        first = rounds[0]["runs"][label]
        capacity[label] = {
            "knee_rps": knees[len(knees) // 2] or None,
            "broke_at_rps": first["metrics"]["broke_at_rps"],
            "curve": [
                {
                    "offered_rps": w["offered_rate"],
                    "goodput_rps": w["goodput_rps"],
                    "p99_ms": w["latency_ms"]["p99"],
                    "error_fraction": w["error_fraction"],
                    "meets_slo": w["meets_slo"],
                }
                for w in first["windows"]
            ],
        }
    return capacity
