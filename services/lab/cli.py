"""The ``lab`` command: bring the lab up and down, see what runs, read logs."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.lab import processes, registry
from services.lab.infra import Broker, InfraError
from services.lab.settings import InfraMode, LabSettings
from services.lab.supervisor import LabError, Supervisor, learner_services

app = typer.Typer(
    help="System Design Lab: run classic system designs, naive and hardened, side by side.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

InfraOption = Annotated[
    str | None,
    typer.Option("--infra", help="embedded (default), external, containers or compose; overrides LAB_INFRA"),
]


def _settings(*, infra: str | None = None) -> LabSettings:
    overrides: dict[str, Any] = {}
    if infra is not None:
        if infra not in InfraMode.__args__:  # type: ignore[attr-defined]
            _fail(f"unknown infra mode {infra!r}; choose one of {', '.join(InfraMode.__args__)}")  # type: ignore[attr-defined]
        overrides["infra"] = infra
    try:
        return LabSettings(**overrides)
    except ValidationError as exc:
        _fail(f"invalid LAB_* setting:\n{exc}")


def _fail(message: str) -> NoReturn:
    # soft_wrap: a message stays one line however narrow the terminal (or a pipe's 80 columns).
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _supervisor(
    settings: LabSettings, *, with_mine: bool = False, scale: dict[str, int] | None = None
) -> Supervisor:
    """A supervisor of the whole lab; the learner's variants only ``with_mine`` (or already running);
    ``scale``: instances per worker (``None``: as the running lab was started)."""
    return Supervisor(
        settings,
        services=_services(settings, with_mine=with_mine),
        report=lambda line: console.print(f"  {line}", style="dim"),
        scale=scale,
    )


def _design_supervisor(settings: LabSettings, design: str, *, with_mine: bool = False) -> Supervisor:
    """A supervisor of the infrastructure and ``design``'s services and workers alone: a bench that
    brings the lab up starts only what it measures (a lab already running keeps the rest)."""
    return Supervisor(
        settings,
        services=[spec for spec in _services(settings, with_mine=with_mine) if spec.design == design],
        workers=[spec for spec in registry.WORKERS if spec.design == design],
        report=lambda line: console.print(f"  {line}", style="dim"),
    )


def _services(settings: LabSettings, *, with_mine: bool) -> list[registry.ServiceSpec]:
    return [*registry.SERVICES, *learner_services(settings.state_dir, asked=with_mine)]


def _scale(text: str | None) -> dict[str, int] | None:
    if text is None:
        return None
    try:
        return registry.parse_scale(text)
    except ValueError as exc:
        _fail(str(exc))


ScaleOption = Annotated[
    str | None,
    typer.Option("--scale", help="instances of workers, e.g. relay=2,payments=2 (default one of each)"),
]


@app.command()
def up(
    infra: InfraOption = None,
    with_mine: Annotated[
        bool, typer.Option("--with-mine", help="also serve your own variants (lab exercise start)")
    ] = False,
    scale: ScaleOption = None,
) -> None:
    """Start the infrastructure and every service and worker; wait until all are healthy."""
    supervisor = _supervisor(_settings(infra=infra), with_mine=with_mine, scale=_scale(scale))
    started_at = time.monotonic()
    try:
        report = supervisor.up()
    except (LabError, InfraError) as exc:
        _fail(str(exc))
    for name in report.stale_cleaned:
        console.print(f"cleaned a stale record of [bold]{name}[/] (its process was gone)")
    if report.already_running:
        console.print(f"already running: {', '.join(report.already_running)}")
    took = time.monotonic() - started_at
    started = ", ".join(report.started) or "nothing new"
    console.print(f"[green]lab is up[/] (started: {started}; {took:.1f}s)")


@app.command()
def down() -> None:
    """Stop everything ``lab up`` started (from any shell)."""
    supervisor = _supervisor(_settings())
    report = supervisor.down()
    for name in report.stale_cleaned:
        console.print(f"cleaned a stale record of [bold]{name}[/] (its process was gone)")
    if report.stopped:
        console.print(f"[green]stopped[/] {', '.join(report.stopped)}")
    else:
        console.print("nothing was running")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """Show the infrastructure, services and workers, and whether each is healthy."""
    snapshot = _supervisor(_settings()).status()
    if as_json:
        sys.stdout.write(json.dumps(snapshot) + "\n")
        return
    out.print(_status_table(snapshot))
    out.print(Broker(**snapshot["broker"]).summary(), highlight=False)


def _status_table(snapshot: dict[str, Any]) -> Table:
    table = Table(title=f"System Design Lab ({snapshot['mode']} infrastructure)")
    for column in ("component", "where", "healthy", "pids"):
        table.add_column(column)
    for name, server in snapshot["infra"].items():
        where = server.get("url") or server.get("bootstrap") or "-"
        if "slots" in server:  # a node of the embedded Valkey Cluster
            where += f" slots {server['slots']} ({server['cluster_state']})"
        table.add_row(name, where, _mark(server["healthy"]), _pid_list(server.get("pids", [])))
    for service in snapshot["services"]:
        name = f"{service['design']} {service['variant']}"
        table.add_row(name, service["url"], _mark(service["healthy"]), _pid_list(service["pids"]))
    for worker in snapshot["workers"]:
        table.add_row(worker["name"], "worker", _mark(worker["healthy"]), _pid_list(worker["pids"]))
    return table


def _mark(healthy: bool) -> str:
    return "[green]yes[/]" if healthy else "[red]no[/]"


def _pid_list(pids: list[int]) -> str:
    return " ".join(map(str, pids)) or "-"


@app.command()
def logs(
    component: Annotated[str, typer.Argument(help="postgres, redis, kafka, a service or a worker")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print the end of a component's log."""
    supervisor = _supervisor(_settings())
    path = supervisor.log_path(component)
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.log"))
        _fail(f"no log for {component!r}; known: {', '.join(known) or 'none yet (run lab up)'}")
    sys.stdout.write(processes.tail(path, lines=lines) + "\n")
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    with path.open("r", errors="replace") as log:
        log.seek(0, 2)
        try:
            while True:
                line = log.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return


def _host_port(value: str | None) -> str | None:
    """A usage error (exit 2) for an address that is no ``host:port`` with a port to spare above it
    (the plan board's), before anything starts."""
    from loadtests.engine.remote import board_address

    if value is not None:
        try:
            board_address(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def _check_listenable(master_bind: str) -> None:
    """An address this machine cannot listen on is a usage error too, found before the lab starts
    (not in the option's callback: parsing a documented command must not bind ports)."""
    from loadtests.engine.remote import check_listenable

    try:
        check_listenable(master_bind)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--master-bind'") from None


@app.command()
def bench(
    design: Annotated[str, typer.Argument(help="ratelimit, shortener or orders")],
    scenario: Annotated[
        str | None, typer.Option(help="one of the design's questions (default: its headline one)")
    ] = None,
    list_scenarios: Annotated[
        bool, typer.Option("--list-scenarios", help="list the design's scenarios and exit")
    ] = False,
    variants: Annotated[str, typer.Option(help="comma-separated targets (default: the scenario's)")] = "",
    mode: Annotated[
        str | None, typer.Option(help="rate (open loop), sweep (open loop, stepped) or closed (users)")
    ] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="shorthand for --mode sweep")] = False,
    rate: Annotated[float | None, typer.Option(min=0.1, help="offered requests/s (mode rate)")] = None,
    steps: Annotated[str, typer.Option(help="offered rates of a sweep, e.g. 100,200,400")] = "",
    step: Annotated[str, typer.Option(help="length of each sweep step")] = "4s",
    duration: Annotated[str, typer.Option(help="length of a rate or closed-loop run")] = "10s",
    warmup: Annotated[
        float | None, typer.Option(min=0, help="seconds trimmed from each window's start")
    ] = None,
    deadline: Annotated[float | None, typer.Option(min=0.01, help="client deadline per request, s")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="interleaved rounds (5 or more bear a verdict)")] = 5,
    users: Annotated[int, typer.Option(min=0, help="closed-loop users (0: the design's own)")] = 0,
    processes: Annotated[
        int, typer.Option(min=1, help="Locust worker processes (with --master-bind: workers elsewhere)")
    ] = 1,
    master_bind: Annotated[
        str | None,
        typer.Option(
            "--master-bind",
            callback=_host_port,
            help="HOST:PORT: every run waits for --processes workers from other machines "
            "(lab load-worker --master ADDRESS:PORT), which find each run on PORT+1",
        ),
    ] = None,
    aa: Annotated[bool, typer.Option(help="run one variant twice, for the A/A noise")] = True,
    slo_p99_ms: Annotated[
        float | None, typer.Option(min=0.001, help="SLO: p99 of good answers, ms (default: the scenario's)")
    ] = None,
    slo_errors: Annotated[float, typer.Option(min=0, max=0.99, help="SLO: error fraction")] = 0.01,
    out: Annotated[Path | None, typer.Option(help="report folder")] = None,
    chaos: Annotated[str, typer.Option(help="e.g. 'kafka:pause@3s,kafka:resume@6s'")] = "",
    pin: Annotated[
        bool, typer.Option("--pin", help="the load generator on its own core, the services on the others")
    ] = False,
    infra: InfraOption = None,
    cells: Annotated[
        str, typer.Option(help="lab bench faults: the cells whose id contains any of these, comma-separated")
    ] = "",
) -> None:
    """Rounds of the same load against each target of a design's scenario, measured exactly; the report.

    ``lab bench faults`` runs the fault matrix instead: each component a hardened design depends on
    killed and paused under load, on servers of its own (it kills them), with its own page."""
    if design == FAULT_MATRIX:
        _bench_fault_matrix(cells, out)
        return
    if master_bind is not None:
        _check_listenable(master_bind)
    from loadtests.bench import (
        BenchError,
        BenchOptions,
        apply_lab_env,
        describe_scenarios,
        parse_duration,
        parse_rates,
        resolve,
        run_bench,
    )
    from loadtests.engine.generator import LoadGeneratorError
    from services.lab.benchlab import running_lab

    try:
        if list_scenarios:
            sys.stdout.write("\n".join(describe_scenarios(design)) + "\n")
            return
        options = BenchOptions(
            design=design,
            scenario=scenario,
            variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
            mode="sweep" if sweep else mode,
            rate=rate,
            steps=parse_rates(steps),
            step_s=parse_duration(step),
            duration_s=parse_duration(duration),
            warmup_s=warmup,
            deadline_s=deadline,
            rounds=rounds,
            users=users,
            processes=processes,
            master_bind=master_bind,
            aa=aa,
            slo_p99_ms=slo_p99_ms,
            slo_errors=slo_errors,
            chaos=chaos,
            pin=pin,
            out=out,
            command=shlex.join(["lab", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "",
        )
        supervisor = _design_supervisor(_settings(infra=infra), design, with_mine="mine" in options.variants)
        resolve(options, supervisor.known_components())  # bad options start nothing
        reason = supervisor.cannot_run(design)
        if reason is not None:
            _fail(reason)
        if "mine" in options.variants and not supervisor.serves(f"{design}-mine"):
            _fail(f"no {design} variant of yours to bench: run 'lab exercise start {design}' first")
        apply_lab_env(design, scenario)
        with running_lab(supervisor, say=_say) as lab:
            paths = run_bench(options, lab=lab, say=_say)
    except (BenchError, LabError, InfraError, LoadGeneratorError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"[green]report[/] {paths['html']}  ({paths['md']}, {paths['json']})")


FAULT_MATRIX = "faults"


@app.command("load-worker")
def load_worker(
    master: Annotated[
        str,
        typer.Option(
            callback=_host_port, help="HOST:PORT of the bench's --master-bind, as this machine reaches it"
        ),
    ],
    processes: Annotated[int, typer.Option(min=1, help="Locust worker processes on this machine")] = 1,
    keep_following: Annotated[
        bool,
        typer.Option(
            "--keep-following", help="after a bench ends, wait for the next one (a Deployment's workers)"
        ),
    ] = False,
) -> None:
    """Be a load generator for a `lab bench --master-bind` on another machine: join each of its runs
    with that run's plan, until the bench ends (or Ctrl-C / SIGTERM)."""
    import signal

    from loadtests.engine.remote import Follower

    follower = Follower(master, processes=processes, keep_following=keep_following, say=_say)
    signal.signal(signal.SIGTERM, follower.stop)
    signal.signal(signal.SIGINT, follower.stop)
    follower.follow()


def _bench_fault_matrix(cells: str, out: Path | None) -> None:
    from loadtests.faults import matching_cells, run_fault_matrix

    try:
        chosen = matching_cells([part.strip() for part in cells.split(",") if part.strip()])
        out_dir = out or Path("results") / f"faults-{time.strftime('%Y%m%d-%H%M%S')}"
        run = run_fault_matrix(out_dir, chosen)
    except (LabError, InfraError, ValueError) as exc:
        _fail(str(exc))
    verdict = "every hardened cell holds" if run.holds else "[bold red]a hardened cell MISSES[/]"
    console.print(f"[green]report[/] {run.markdown} ({run.json}): {verdict}")
    if not run.holds:
        raise typer.Exit(code=1)


@contextlib.contextmanager
def timed_bar(label: str, seconds: float) -> Iterator[None]:
    """A progress bar that fills over ``seconds`` while the step runs (Locust reports only at the end)."""
    done = threading.Event()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(label, total=seconds)

        def tick() -> None:
            started = time.monotonic()
            while not done.wait(0.25):
                bar.update(task, completed=min(time.monotonic() - started, seconds))

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _say(line: str) -> None:
    console.print(line, style="dim" if line.startswith("  ") else None, highlight=False)


@app.command()
def chaos(
    component: Annotated[str, typer.Argument(help="postgres, redis, kafka, a service or a worker")],
    action: Annotated[str, typer.Argument(help="kill, pause, resume or restart")],
) -> None:
    """Inject a fault into a running component."""
    from loadtests.chaos import ACTIONS, SIGNALS

    supervisor = _supervisor(_settings())
    if component not in supervisor.known_components():
        _fail(f"unknown component {component!r}; known: {', '.join(supervisor.known_components())}")
    if action not in ACTIONS:
        _fail(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    try:
        if action == "restart":
            supervisor.restart([component])
        else:
            supervisor.signal_component(component, SIGNALS[action])
    except LabError as exc:
        _fail(str(exc))
    console.print(f"{component}: {action} done")
    warning = supervisor.broker().chaos_warning(action) if component == "kafka" else None
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)


@app.command()
def locust(
    design: Annotated[str, typer.Argument(help="ratelimit, shortener or orders")],
    variant: Annotated[str, typer.Argument(help="naive or hardened")],
    port: Annotated[int, typer.Option(help="port of Locust's web UI")] = 8089,
) -> None:
    """Open Locust's web UI against a running variant, for live classes."""
    import subprocess

    from loadtests.designs import DESIGNS

    settings = _settings()
    supervisor = _supervisor(settings)
    bench_design = DESIGNS.get(design)
    scenario = bench_design.default if bench_design else None
    target = scenario.target(variant) if scenario else None
    if scenario is None or target is None or target.app is not None:
        _fail(f"unknown design or variant {design!r} {variant!r}; designs: {', '.join(DESIGNS)}")
    host = supervisor.url_of(target.component)
    console.print(f"Locust web UI on http://{settings.host}:{port} driving {host} (Ctrl-C to stop)")
    argv = [sys.executable, "-m", "locust", "-f", str(scenario.locustfile), "--host", host,
            "--web-host", settings.host, "--web-port", str(port)]  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(argv, check=False)


@app.command()
def demo(
    which: Annotated[str, typer.Argument(help="flash-sale, shortener, ratelimit or all")] = "all",
    duration: Annotated[str, typer.Option(help="per variant")] = "20s",
    users: Annotated[int | None, typer.Option(min=1, help="default: each act's own")] = None,
) -> None:
    """The instructor's script: narrate, run each design's bench, end with a verdict table."""
    from loadtests.bench import apply_lab_env
    from loadtests.demo import DemoError, run_demo, runnable_acts
    from services.lab.benchlab import running_lab

    try:
        supervisor = _supervisor(_settings())
        acts = runnable_acts(which, cannot_run=supervisor.cannot_run)
        for act in acts:
            apply_lab_env(act.design)
        console.print("Bringing up PostgreSQL, Valkey, the Kafka-protocol broker and every service.")
        with running_lab(supervisor, say=_say) as lab:
            run_demo(acts, lab=lab, duration=duration, users=users, console=console)
    except (DemoError, LabError, InfraError, ValueError) as exc:
        _fail(str(exc))


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@app.command("console")
def console_command(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default: the lab's, 127.0.0.1)")
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="port of the console's page")] = 8090,
    out: Annotated[Path, typer.Option(help="where the console keeps its runs")] = Path("results/console"),
    infra: InfraOption = None,
    with_mine: Annotated[
        bool, typer.Option("--with-mine", help="also serve your own variants (lab exercise start)")
    ] = False,
) -> None:
    """The live console: a page per design where a class watches naive and hardened side by side."""
    import uvicorn

    from services.lab.benchlab import running_lab
    from services.lab.console.app import create_console_app
    from services.lab.console.presets import console_designs
    from services.lab.console.runs import ConsoleRuns

    settings = _settings(infra=infra)
    listen = host or settings.host
    supervisor = _supervisor(settings, with_mine=with_mine)
    require_token = listen not in LOOPBACK
    try:
        with running_lab(supervisor, say=_say) as lab:
            runs = ConsoleRuns(lab, root=out, designs=console_designs())
            page = create_console_app(runs, admin_token=supervisor.admin_token(), require_token=require_token)
            console.print(f"[green]console[/] http://{listen}:{port}/ (Ctrl-C to stop)")
            if require_token:
                console.print(
                    "runs, faults and settings need the lab's admin token (LAB_ADMIN_TOKEN, or the file "
                    f"{settings.state_dir / 'admin-token'}): open the page with ?token=<it>"
                )
            try:
                # Open event streams last as long as a run: they are not waited for on Ctrl-C.
                uvicorn.run(page, host=listen, port=port, log_level="warning", timeout_graceful_shutdown=3)
            finally:
                runs.close()
    except (LabError, InfraError) as exc:
        _fail(str(exc))


exercise = typer.Typer(
    help="Learn by fixing it: write your own variant, graded stage by stage.", no_args_is_help=True
)
app.add_typer(exercise, name="exercise")

# A variant that cannot load or start is not a failed stage: it gets its own exit code.
BROKEN_VARIANT_EXIT = 2


@exercise.command("list")
def exercise_list() -> None:
    """The exercises, their stages, and the last result of your variant (mine) at each."""
    from services.lab.exercises import exercises, progress
    from services.lab.supervisor import is_present

    done = progress.load(_settings().state_dir)
    for ex in exercises().values():
        started = (
            "started"
            if is_present(registry.learner_service(ex.design))
            else f"not started: lab exercise start {ex.design}"
        )
        table = Table(title=f"{ex.design}: {ex.title} ({started})", title_justify="left")
        for column in ("stage", "claim", "mine"):
            table.add_column(column)
        for stage in ex.stages:
            last = progress.last_outcome(done, design=ex.design, variant="mine", stage=stage.number)
            table.add_row(str(stage.number), stage.claim, _outcome_mark(last))
        out.print(table)


@exercise.command("start")
def exercise_start(
    design: Annotated[str, typer.Argument(help="ratelimit, shortener or orders")],
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing mine.py")] = False,
) -> None:
    """Write services/<design>/mine.py from the naive variant, its flaw marked."""
    from services.lab.exercises import exercises
    from services.lab.exercises.scaffold import ScaffoldExists, write_scaffold

    known = exercises()
    if design not in known:
        _fail(f"unknown design {design!r}; choose one of {', '.join(known)}")
    try:
        path = write_scaffold(known[design].scaffold, force=force)
    except ScaffoldExists as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/] {path}: edit it, then run 'lab check {design}'", highlight=False)


@app.command()
def check(
    design: Annotated[str, typer.Argument(help="ratelimit, shortener or orders")],
    variant: Annotated[str, typer.Option(help="mine (default), naive or hardened")] = "mine",
    stage: Annotated[int | None, typer.Option(help="run this stage alone")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Run the design's stages against a variant on servers of its own; exit 0 only if all pass."""
    from services.core.learner import VariantLoadError
    from services.lab.exercises import exercises, progress
    from services.lab.exercises.check import CheckInputError, all_passed, check_servers, plan_check, preload
    from services.lab.exercises.check import run_check as run_plan
    from services.lab.exercises.serving import VariantBroken

    settings = _settings()
    try:
        plan = plan_check(exercises(), design, variant=variant, stage=stage)
        preload(plan, timeout_s=settings.check_startup_timeout_s)
        with check_servers(settings) as ctx:
            results = run_plan(plan, ctx, on_result=None if as_json else _print_stage)
    except CheckInputError as exc:
        _fail(str(exc))
    except (VariantLoadError, VariantBroken) as exc:
        console.print(
            f"[bold red]error:[/] {variant} variant of {design}: {exc}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=BROKEN_VARIANT_EXIT) from None
    except (LabError, InfraError) as exc:
        _fail(str(exc))
    progress.record(settings.state_dir, design=design, variant=variant, results=results)
    passed = all_passed(results)
    if as_json:
        document = {
            "design": design,
            "variant": variant,
            "passed": passed,
            "stages": [r.to_json() for r in results],
        }
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        _print_verdict(results, passed=passed, logs=ctx.log_dir)
    raise typer.Exit(code=0 if passed else 1)


def _print_stage(result: Any) -> None:
    measured = result.measured
    number = "" if measured is None else f": {measured.value:g} (bound {measured.bound})"
    out.print(
        f"{_outcome_mark(result.outcome)} stage {result.number}  {result.claim}{number}", highlight=False
    )
    if measured is not None and measured.detail:
        out.print(f"         {measured.detail}", style="dim", highlight=False)
    if result.error:
        out.print(f"         {result.error}", style="red", highlight=False)
    if result.hint:
        out.print(f"         hint: {result.hint}", style="yellow", highlight=False)


def _print_verdict(results: list[Any], *, passed: bool, logs: Path) -> None:
    failed = next((r for r in results if r.outcome == "FAIL"), None)
    if passed:
        out.print("[green]every stage passes[/]")
    elif failed is not None:
        out.print(f"[red]stage {failed.number} fails[/]: {failed.claim}", highlight=False)
        out.print(f"the services' logs: {logs}", style="dim", highlight=False)


def _outcome_mark(outcome: str) -> str:
    colour = {"PASS": "green", "FAIL": "red"}.get(outcome, "dim")
    return f"[{colour}]{outcome:<7}[/]"


audit = typer.Typer(help="A design's invariants as numbers, read from its stores.", no_args_is_help=True)
app.add_typer(audit, name="audit")


@audit.callback()
def _point_audits_at_the_lab() -> None:
    """The auditors read their settings from the environment: point them at this lab's servers."""
    supervisor = _supervisor(_settings())
    endpoints = supervisor.endpoints()
    if endpoints is not None:
        os.environ.update(endpoints.as_env())


def _register_audits() -> None:
    from services.orders.audit import audit_orders

    audit.command("orders")(audit_orders)


_register_audits()


def _exit_on_terminate(signum: int, _: object) -> NoReturn:
    """SIGTERM (a supervisor, ``kill``, a CI's timeout) unwinds like Ctrl-C: a bench or a console
    stops the load generators and the apps it served, and a lab it brought up, instead of leaving
    them running."""
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _exit_on_terminate)


def main() -> None:
    install_signal_handlers()
    app()


if __name__ == "__main__":
    main()
