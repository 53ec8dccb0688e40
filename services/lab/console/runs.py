"""The console's runs: one at a time, each a bench run of a preset's targets together, watched live.

A :class:`LiveRun` is :func:`loadtests.bench.run_bench` (one round, no A/A run, every target at once
with the identical load, the generator handing in its series every second) on a thread of its own,
and its observer: it turns what the generators hand in into one ``sample`` event a second on one
time axis (t = 0 when the first target's load began), reads the design's live counts
(:data:`~loadtests.engine.scenario.LiveAudit`) every :data:`LIVE_AUDIT_PERIOD_S`, records every
fault pressed, and ends with the bench's own audit, verdict and report. Its events are kept, so a
page that connects late replays them and catches up; a page that leaves stops nothing.

:class:`ConsoleRuns` keeps the one run going, refuses a second, applies the settings a preset or a
class asks for (restarting the components that read them), and lists past runs from their folders.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench import BenchOptions, RunObserver, run_bench
from loadtests.engine.generator import RunningLoad
from loadtests.engine.lab import RunningLab
from loadtests.engine.scenario import BenchContext
from services.core.files import write_whole
from services.lab.console.errors import CatalogueError, ConsoleBusy, NoRunGoing, RestartFailed
from services.lab.console.presets import (
    ConsoleDesign,
    Preset,
    checked_targets,
    design_of,
    fault_of,
    preset_of,
    setting_of,
)

logger = logging.getLogger(__name__)

LIVE_S = 1.0  # how often each generator hands in its series
LIVE_AUDIT_PERIOD_S = 2.0  # the live counts are read at most this often per target
POLL_S = 0.25
WATCHERS_JOIN_S = 30.0  # a live count stuck on a paused database does not hold the run's end longer
EMPTY_ROW = {"offered": 0, "ok": 0, "failed": 0, "timeouts": 0, "p50_ms": None, "p99_ms": None}
RUN_FILE = "console-run.json"


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    data: dict[str, Any]


@dataclass
class FaultPress:
    at_monotonic: float
    component: str
    action: str
    error: str | None = None


@dataclass
class _Target:
    load: RunningLoad
    started_monotonic: float
    finished: bool = False


@dataclass
class LiveRun(RunObserver):
    run_id: str
    design: ConsoleDesign
    preset: Preset
    targets: tuple[str, ...]
    lab: RunningLab
    folder: Path
    state: str = "starting"
    error: str | None = None
    verdict: dict[str, Any] | None = None
    report: str | None = None
    started_at: float = field(default_factory=time.time)
    stopped_early: bool = False
    _events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: dict[str, _Target] = field(default_factory=dict)
    _presses: list[FaultPress] = field(default_factory=list)
    _t0: float | None = None
    _loads_done: threading.Event = field(default_factory=threading.Event)
    _ended: threading.Event = field(default_factory=threading.Event)
    _watchers: list[threading.Thread] = field(default_factory=list)
    _count_ms: list[float] = field(default_factory=list)  # how long each live count took, for the docs
    _faulting: threading.Lock = field(default_factory=threading.Lock)  # presses against the loads' end
    _recovered: bool = False
    _stopped_at_s: float | None = None

    # -- what the page reads ------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "design": self.design.name,
            "preset": self.preset.name,
            "title": self.preset.title,
            "targets": list(self.targets),
            "state": self.state,
            "started_at": self.started_at,
            "duration_s": self.preset.run_s,
            "stopped_early": self.stopped_early,
            "error": self.error,
            "verdict": self.verdict,
            "report": self.report,
            "live_counts": _timings(self._count_ms),
        }

    def events_from(self, seq: int) -> list[Event]:
        with self._lock:
            return self._events[seq:]

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    # -- the run ------------------------------------------------------------------------------

    def start(self) -> None:
        self._emit("state", {"state": self.state, "error": None})
        self._save()
        threading.Thread(target=self._run, name=f"console-{self.run_id}", daemon=True).start()

    def _run(self) -> None:
        try:
            paths = run_bench(self._options(), lab=self.lab, observer=self, together=True)
            self._conclude(paths["json"])
        except Exception as exc:  # the page must hear why, and the console must take the next run
            logger.exception("console_run_failed run=%s", self.run_id)
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_state("failed")
        finally:
            self._loads_done.set()
            with self._faulting:
                self._recover()  # a run that failed half-way leaves no fault applied either
            for watcher in self._watchers:  # their last samples come before the end
                watcher.join(timeout=WATCHERS_JOIN_S)
            self._emit("end", {})
            self._save()
            self._ended.set()

    def _options(self) -> BenchOptions:
        preset = self.preset
        return BenchOptions(
            design=preset.design,
            scenario=preset.scenario,
            variants=self.targets,
            mode=preset.mode,
            rate=preset.rate,
            steps=preset.steps,
            step_s=preset.step_s,
            duration_s=preset.duration_s,
            rounds=1,
            aa=False,
            live_s=LIVE_S,
            load_env=preset.load_env,
            out=self.folder,
        )

    def _conclude(self, report_json: Path) -> None:
        report = json.loads(report_json.read_text())
        runs = report["rounds"][0]["runs"]
        self.verdict = {label: runs[label]["audit"] for label in self.targets}
        self.report = f"/reports/{self.run_id}/report.html"
        self._emit("verdict", {"verdict": self.verdict, "report": self.report})
        self._set_state("done")

    def _set_state(self, state: str) -> None:
        self.state = state
        self._emit("state", {"state": state, "error": self.error})
        self._save()

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(Event(len(self._events), kind, data))

    def _save(self) -> None:
        with self._lock:  # several threads save, one at a time
            write_whole(self.folder / RUN_FILE, json.dumps(self.summary(), indent=2))

    # -- what the bench tells it (RunObserver) ----------------------------------------------------

    def load_started(self, label: str, load: RunningLoad, started_monotonic: float) -> None:
        with self._lock:
            self._running[label] = _Target(load, started_monotonic)
            first = self._t0 is None
            self._t0 = min(started_monotonic, self._t0 or math.inf)
        if self.stopped_early:  # stop was pressed while the targets were being reset
            load.end_early()
        if first:
            self._set_state("running")
            self._watchers = [
                threading.Thread(target=self._sample, name="console-samples", daemon=True),
                threading.Thread(target=self._count_live, name="console-counts", daemon=True),
            ]
            for watcher in self._watchers:
                watcher.start()

    def load_finished(self, label: str) -> None:
        """Faults stop with the first load to end; once every load ended, what the class paused or
        killed is recovered. Targets run together wait for each other before their audits (the
        bench's rendezvous), so no audit reads a lab with a fault still applied."""
        with self._faulting:
            with self._lock:
                self._running[label].finished = True
                every_one = len(self._running) == len(self.targets) and all(
                    t.finished for t in self._running.values()
                )
            if every_one:
                self._loads_done.set()
                self._recover()
                self._set_state("auditing")

    def _recover(self) -> None:
        """Once: nothing the class paused or killed stays so after the loads."""
        if self._presses and not self._recovered:
            self._recovered = True
            self.lab.recover()

    def faults(self, label: str, started_monotonic: float) -> list[dict[str, Any]]:
        return [
            {
                "component": press.component,
                "action": press.action,
                "at_s": round(press.at_monotonic - started_monotonic, 3),
                "applied_at_s": round(press.at_monotonic - started_monotonic, 3),
                "error": press.error,
                "pressed": True,
            }
            for press in self._presses
        ]

    # -- live samples and counts ----------------------------------------------------------------

    def _now_s(self) -> float:
        assert self._t0 is not None
        return time.monotonic() - self._t0

    def _sample(self) -> None:
        """One ``sample`` a second of the run, every target in it, each once its second is final in
        that target's generator (its requests issued and their deadline passed: the row no longer
        changes). Each target's row is that second of its own load: the loads run the identical
        schedule and start together (within the time a generator takes to start), so second t of
        one is second t of the other."""
        try:
            self._sample_every_second()
        except Exception as exc:  # the page hears it; the run, its audit and its report go on
            logger.exception("console_samples_failed run=%s", self.run_id)
            self._emit("state", {"state": self.state, "error": f"live samples stopped: {exc}"})

    def _sample_every_second(self) -> None:
        for second in range(math.ceil(self.preset.run_s)):
            if self._stopped_at_s is not None and second >= self._stopped_at_s:
                return  # stopped: the rest of the schedule was never sent, and is not shown as load
            rows = self._final_rows(second)
            while rows is None and not self._loads_done.is_set():
                time.sleep(POLL_S)
                rows = self._final_rows(second)
            if rows is None:  # the loads are over: what is missing now never came
                rows = self._final_rows(second, over=True)
            if rows is None:
                return
            self._emit("sample", {"t": second, "targets": rows})

    def _final_rows(self, second: int, *, over: bool = False) -> dict[str, Any] | None:
        """Every target's final row of ``second``; None while one is still filling. ``over``: the
        loads ended, and a second no target reached (a run stopped early) is None."""
        rows, reached = {}, False
        for label in self.targets:
            target = self._running.get(label)
            row = target.load.live().final_row(second) if target is not None else None
            if row is None and not over:
                return None
            reached = reached or (row is not None and len(row) > 1)
            rows[label] = {name: (row or {}).get(name, empty) for name, empty in EMPTY_ROW.items()}
        return rows if reached or not over else None

    def _count_live(self) -> None:
        """The design's live counts, per target, read-only, at most every LIVE_AUDIT_PERIOD_S."""
        scenario = self.preset.bench_scenario()
        if scenario.live_audit is None:
            return
        context = BenchContext(lab=self.lab)
        while not self._loads_done.wait(LIVE_AUDIT_PERIOD_S):
            counts = {}
            for label, target in list(self._running.items()):
                bench_target = scenario.target(label)
                if bench_target is None or not bench_target.audited:
                    continue
                started = time.perf_counter()
                try:
                    counts[label] = dict(scenario.live_audit(context, bench_target, target.load.out_dir))
                except Exception as exc:  # a paused database: the counts wait, the run goes on
                    logger.warning("live_count_failed target=%s error=%s", label, exc)
                self._count_ms.append((time.perf_counter() - started) * 1000)
            with self._faulting:  # a count read as the loads ended is not a live one
                if counts and not self._loads_done.is_set():
                    self._emit("invariants", {"t": round(self._now_s(), 1), "targets": counts})

    # -- what the class does during the run ----------------------------------------------------

    def press(self, component: str, action: str) -> dict[str, Any]:
        with self._faulting:  # never between a load's end and the recovery
            if self._t0 is None or any(t.finished for t in self._running.values()):
                raise NoRunGoing("faults are pressed while every load runs; start a run first")
            press = FaultPress(time.monotonic(), component, action)
            try:
                self.lab.signal(component, action)
            except Exception as exc:  # shown on the timeline: the class sees the press did not land
                press.error = f"{type(exc).__name__}: {exc}"
            self._presses.append(press)
        event = {"at_s": round(press.at_monotonic - self._t0, 3), "component": component, "action": action}
        self._emit("fault", {**event, "error": press.error})
        return {**event, "error": press.error}

    def wait(self, *, timeout_s: float) -> bool:
        """Until the run has its verdict (or failed); False when ``timeout_s`` passed first."""
        return self._ended.wait(timeout_s)

    def stop(self) -> None:
        """End the loads now; the audit and the report follow as at the end of the run."""
        self.stopped_early = True
        if self._t0 is not None:
            self._stopped_at_s = math.ceil(self._now_s())
        for target in list(self._running.values()):
            target.load.end_early()


def _timings(milliseconds: Sequence[float]) -> dict[str, Any]:
    """What watching cost: how many live counts were read, and how long they took."""
    if not milliseconds:
        return {"reads": 0}
    return {
        "reads": len(milliseconds),
        "median_ms": round(statistics.median(milliseconds), 1),
        "max_ms": round(max(milliseconds), 1),
    }


FINAL_STATES = frozenset({"done", "failed"})


class ConsoleRuns:
    """The console's one run at a time, the settings in effect, and the runs kept in ``root``."""

    def __init__(self, lab: RunningLab, *, root: Path, designs: Mapping[str, ConsoleDesign]) -> None:
        self.lab = lab
        self.root = root
        self.designs = designs
        self._current: LiveRun | None = None
        self._lock = threading.Lock()
        self._applied: dict[str, str] = {}  # what this console set, and restarted for
        self._tuned: dict[str, str] = {}  # what the class chose, which wins over a preset's own

    def start(self, design_name: str, preset_name: str, targets: Sequence[str]) -> LiveRun:
        design = design_of(self.designs, design_name)
        preset = preset_of(design, preset_name)
        chosen = checked_targets(preset, list(targets))
        self._check_served(preset, chosen)
        with self._lock:
            if self._current is not None and not self._current.finished:
                raise ConsoleBusy(
                    f"{self._current.preset.title} ({self._current.run_id}) is still {self._current.state}; "
                    "stop it or wait for its verdict"
                )
            self._apply({**preset.bench_scenario().lab_env, **preset.settings, **self._tuned}, design)
            run_id, folder = self._new_folder(preset)
            run = LiveRun(run_id, design, preset, chosen, self.lab, folder)
            self._current = run
        run.start()
        return run

    def _new_folder(self, preset: Preset) -> tuple[str, Path]:
        """A run's id and folder, new even for two runs started within one second."""
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset.design}-{preset.name}"
        for attempt in range(1, 100):
            run_id = stamp if attempt == 1 else f"{stamp}-{attempt}"
            folder = self.root / run_id
            try:
                folder.mkdir(parents=True)
            except FileExistsError:
                continue
            return run_id, folder
        raise ConsoleBusy(f"too many runs named {stamp} this second")

    def _check_served(self, preset: Preset, targets: Sequence[str]) -> None:
        """A target the lab does not run (a learner's variant not started) is refused before anything
        starts; what the scenario serves itself (a reference, another setting) is started by the run."""
        scenario, running = preset.bench_scenario(), set(self.lab.components())
        for label in targets:
            target = scenario.target(label)
            if target is not None and target.app is None and target.component not in running:
                raise CatalogueError(
                    f"the lab does not run {target.component}: for your own variant, run "
                    f"'lab exercise start {preset.design}' and start the console with --with-mine"
                )

    def current(self) -> LiveRun | None:
        return self._current

    def run(self, run_id: str) -> LiveRun | dict[str, Any] | None:
        """The run going (live), or a past one's summary from its folder."""
        if self._current is not None and self._current.run_id == run_id:
            return self._current
        folder = self.folder_of(run_id)
        path = folder / RUN_FILE if folder is not None else None
        return _stored(path) if path is not None and path.exists() else None

    def folder_of(self, run_id: str) -> Path | None:
        """A run's folder, for a well-formed id only (it is part of a URL)."""
        return self.root / run_id if RUN_ID.fullmatch(run_id) else None

    def past(self) -> list[dict[str, Any]]:
        """Every run kept in the folder, newest first."""
        summaries = []
        for path in sorted(self.root.glob(f"*/{RUN_FILE}"), reverse=True):
            current = self._current
            if current is not None and path.parent == current.folder:
                summaries.append(current.summary())
                continue
            try:
                summaries.append(_stored(path))
            except (ValueError, KeyError, OSError) as exc:  # a console killed mid-write: skip, say so
                logger.warning("console_run_unreadable path=%s error=%s", path, exc)
        return summaries

    def press(self, component: str, action: str) -> dict[str, Any]:
        run = self._current
        if run is None or run.finished:
            raise NoRunGoing("faults are pressed during a run; start one first")
        fault_of(run.design, component, action)
        return run.press(component, action)

    def tune(self, name: str, value: str) -> dict[str, Any]:
        design, setting = setting_of(self.designs, name)
        checked = design.checked(setting, value)
        with self._lock:
            if self._current is not None and not self._current.finished:
                raise ConsoleBusy("settings change between runs: the services they need restart")
            self._tuned[name] = checked
            restarted = self._apply({name: checked}, None)
        return {"name": name, "value": checked, "restarted": restarted}

    def _apply(self, wanted: Mapping[str, str], design: ConsoleDesign | None) -> list[str]:
        """Set what differs from what this console applied last, and restart what reads it: the
        lab's services take their settings from the environment they are started with."""
        changed = {name: value for name, value in wanted.items() if self._applied.get(name) != value}
        restarts = [c for name in changed for c in self._restarts_for(name, design)]
        known = set(self.lab.components())
        restarted = [c for c in dict.fromkeys(restarts) if c in known]
        before = {name: os.environ.get(name) for name in changed}
        os.environ.update(changed)
        try:
            if restarted:
                self.lab.restart(restarted)
        except Exception as exc:  # put the settings back, and the services with them
            _restore(before)
            self.lab.restart(restarted)
            raise RestartFailed(f"{', '.join(restarted)} did not start with {changed}: {exc}") from exc
        self._applied.update(changed)
        return restarted

    def _restarts_for(self, name: str, design: ConsoleDesign | None) -> list[str]:
        try:
            return list(setting_of(self.designs, name)[1].restarts)
        except CatalogueError:  # a scenario's own setting the page does not tune: its design's variants
            return [f"{design.name}-{variant}" for variant in ("naive", "hardened")] if design else []

    def environ(self) -> Mapping[str, str]:
        return os.environ

    def close(self, *, wait_s: float = 60.0) -> None:
        """The console is going away: a run still going ends now, and its load generators with it."""
        run = self._current
        if run is None or run.finished:
            return
        run.stop()
        run.wait(timeout_s=wait_s)


def _restore(environ: Mapping[str, str | None]) -> None:
    for name, value in environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _stored(path: Path) -> dict[str, Any]:
    """A past run's summary; one that a console left before its end reads ``interrupted``."""
    summary: dict[str, Any] = json.loads(path.read_text())
    if summary["state"] not in FINAL_STATES:
        summary["state"] = "interrupted"
    return summary


RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[a-z]+-[a-z0-9-]+")
