"""Synthetic report documents, built with the engine's real objects (``Recording``, ``summarize``,
``Comparison``, ``knee``) from latencies drawn at random, so a test of the report writer exercises the
schema the runner produces without running any load."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from statistics import median
from typing import Any, Literal

from loadtests.engine.cpu import cpu_per_request
from loadtests.engine.recording import Recording, Tally, windows_of
from loadtests.engine.summary import Slo, WindowSummary, series, windows
from loadtests.engine.sweep import broke_at, knee
from loadtests.engine.verdicts import Comparison, again_label, round_orders

Doc = dict[str, Any]
Mode = Literal["rate", "sweep", "closed"]
SLO = Slo(p99_ms=100.0, max_errors=0.01)
RATE, DURATION_S, WARMUP_S, DEADLINE_S = 100.0, 5.0, 1.0, 2.0
STEPS = (100.0, 200.0, 400.0)
STEP_S = 3.0
ROUNDS = 5
CHAOS = ({"at_s": 3.0, "component": "redis", "action": "pause"},)


@dataclass(frozen=True)
class Behaviour:
    """How a synthetic target answers: exponential latencies around ``latency_ms``; above
    ``capacity_rps`` the excess fails and what is answered is ten times slower."""

    latency_ms: float
    capacity_rps: float = float("inf")
    late_s: float = 0.001  # how late each send leaves
    all_time_out: bool = False
    generator_bound: bool = False
    clicks_lost: int = 0


NAIVE = Behaviour(latency_ms=12.0, capacity_rps=250.0, clicks_lost=7)
HARDENED = Behaviour(latency_ms=3.0)


def _phases(mode: Mode) -> list[tuple[float, float, float | None]]:
    if mode == "sweep":
        return [(i * STEP_S, (i + 1) * STEP_S, rate) for i, rate in enumerate(STEPS)]
    return [(0.0, DURATION_S, None if mode == "closed" else RATE)]


def record(behaviour: Behaviour, *, mode: Mode, seed: str) -> Recording:
    """One run's recording: every scheduled request offered, then answered, failed or timed out."""
    recording = Recording(windows_of(_phases(mode), warmup_s=WARMUP_S))
    rng = random.Random(seed)
    for start, end, rate in _phases(mode):
        offered = rate or RATE
        for index in range(round((end - start) * offered)):
            intended = start + index / offered
            recording.offered(intended_s=intended, sent_s=intended + behaviour.late_s)
            _answer(recording, behaviour, intended, offered, rng)
    return recording


def _answer(
    recording: Recording, behaviour: Behaviour, intended: float, rate: float, rng: random.Random
) -> None:
    if behaviour.all_time_out:
        recording.ended("timeouts", intended_s=intended, at_s=intended + DEADLINE_S)
        return
    overloaded = rate > behaviour.capacity_rps
    # Half the mean is a floor (the work itself), half an exponential tail (queueing).
    floor_s = behaviour.latency_ms / 2000
    latency_s = (floor_s + rng.expovariate(1 / floor_s)) * (10 if overloaded else 1)
    ok = not overloaded or rng.random() < behaviour.capacity_rps / rate
    recording.answered(intended_s=intended, answered_s=intended + latency_s, ok=ok)


def run_document(target: str, behaviour: Behaviour, *, mode: Mode, seed: str) -> Doc:
    """A RUN of the report document, as the runner builds it from one recording."""
    recording = record(behaviour, mode=mode, seed=seed)
    summaries = windows(recording, slo=SLO)
    merged = Tally()
    for tally in recording.in_window:
        merged.add(tally)
    return {
        "target": target,
        "url": "http://127.0.0.1:8001",
        "windows": [summary.to_json() for summary in summaries],
        "series": series(recording),
        "histograms": {
            "ok": merged.ok_latency.encode().decode(),
            "failed": merged.failed_latency.encode().decode(),
        },
        "cpu": _cpu(target, behaviour, requests=max(merged.offered, 1)),
        "audit": _audit(behaviour),
        "chaos": list(CHAOS) if mode == "rate" else [],
    }


def _cpu(target: str, behaviour: Behaviour, *, requests: int) -> Doc:
    window_s = sum(end - start for start, end, _ in _phases("rate"))
    seconds = {f"shortener-{target.removesuffix(' (again)')}": 0.4, "postgres": 0.2, "locust": 0.3}
    components = {
        name: {"cpu_s": cpu_s, "cores": cpu_s / window_s, "us_per_request": cpu_per_request(cpu_s, requests)}
        for name, cpu_s in seconds.items()
    }
    cores = 0.93 if behaviour.generator_bound else 0.41
    return {
        "window_s": window_s,
        "components": components,
        "generator": {"steady_cores": cores, "bound": behaviour.generator_bound},
    }


def _audit(behaviour: Behaviour) -> Doc:
    lost = behaviour.clicks_lost
    explanation = f"{lost} clicks never reached the counter" if lost else "every click was counted once"
    return {
        "invariants": {"clicks_lost": lost, "clicks_doubled": 0},
        "holds": lost == 0,
        "explanation": explanation,
    }


def report_document(
    behaviours: dict[str, Behaviour] | None = None, *, mode: Mode = "rate", rounds: int = ROUNDS
) -> Doc:
    """A whole report: ``rounds`` interleaved rounds of every target (an A/A target added, the
    hardened variant run again), its comparisons and, for a sweep, its capacity curves."""
    behaviours = dict(behaviours or {"naive": NAIVE, "hardened": HARDENED})
    if "hardened" in behaviours and mode != "sweep":
        behaviours[again_label("hardened")] = behaviours["hardened"]
    targets = list(behaviours)
    orders = round_orders(targets, rounds)
    documents = [
        {
            "index": index,
            "order": list(order),
            "runs": {t: run_document(t, behaviours[t], mode=mode, seed=f"{t}:{index}") for t in order},
        }
        for index, order in enumerate(orders)
    ]
    return {
        "design": "shortener",
        "scenario": "zipf",
        "title": "URL shortener: redirects over a Zipf working set",
        "question": "How many redirects per second does each variant hold at the SLO?",
        "command": f"lab bench shortener --scenario zipf --rounds {rounds} --rate {RATE:g}",
        "when": "2026-12-01 22:30:00 UTC",
        "machine": {
            "cores": 2,
            "cpu": "Synthetic CPU",
            "python": "3.11.7",
            "commit": "abc1234",
            "packages": {"fastapi": "0.115.0", "hdrhistogram": "0.10.3"},
        },
        "settings": {"LAB_SHORTENER_CACHE_TTL_S": "300"},
        "slo": {"p99_ms": SLO.p99_ms, "max_errors": SLO.max_errors},
        "mode": mode,
        "load": _load(mode),
        "targets": list(orders[0]),
        "rounds": documents,
        "comparisons": _comparisons(documents, behaviours),
        **({"capacity": _capacity(documents, targets)} if mode == "sweep" else {}),
        "flags": [],
    }


def _load(mode: Mode) -> Doc:
    load: Doc = {
        "rate": RATE,
        "step_s": STEP_S,  # as the bench writes it: a sweep's steps, a rate or closed run's duration
        "duration_s": DURATION_S,
        "warmup_s": WARMUP_S,
        "deadline_s": DEADLINE_S,
        "processes": 1,
        "users": 10 if mode == "closed" else 0,
    }
    return {**load, "steps": list(STEPS)} if mode == "sweep" else load


def _p99(run: Doc) -> float:
    values = [w["latency_ms"]["p99"] for w in run["windows"] if w["latency_ms"]["p99"] is not None]
    return median(values) if values else 1.0


def _comparisons(documents: list[Doc], behaviours: dict[str, Behaviour]) -> list[Doc]:
    values = {t: [_p99(d["runs"][t]) for d in documents] for t in behaviours}
    bound = any(b.generator_bound for b in behaviours.values())
    pairs = [("p99, naive over hardened", "naive", "hardened", 2.0, True)]
    again = again_label("hardened")
    if again in behaviours:
        pairs.append(("p99, A/A", again, "hardened", 1.1, False))
    return [
        Comparison.from_rounds(
            name,
            numerator=top,
            denominator=bottom,
            values=values,
            goal=goal,
            higher_is_better=higher,
            generator_bound=bound,
        ).to_json()
        for name, top, bottom, goal, higher in pairs
        if top in values and bottom in values
    ]


def _capacity(documents: list[Doc], targets: list[str]) -> Doc:
    # The runner's capacity is read from round 0's sweep; here too.
    steps = {t: [WindowSummary(**w) for w in documents[0]["runs"][t]["windows"]] for t in targets}
    return {
        t: {"knee_rps": knee(s), "broke_at_rps": broke_at(s), "curve": [_point(step) for step in s]}
        for t, s in steps.items()
    }


def _point(step: WindowSummary) -> Doc:
    return {
        "offered_rps": step.offered_rate,
        "goodput_rps": step.goodput_rps,
        "p99_ms": step.latency_ms["p99"],
        "error_fraction": step.error_fraction,
        "meets_slo": step.meets_slo,
    }


def bound(behaviour: Behaviour) -> Behaviour:
    return replace(behaviour, generator_bound=True)
