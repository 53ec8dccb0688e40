"""Reading a service's Prometheus counters from its ``/metrics``, the one way every test does."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families


def counter(url: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of a counter (``name`` without ``_total``) summed over the label sets that match
    ``labels``; 0 when none does."""
    return sum(counter_by(url, name, label=None, labels=labels).values())


def counter_by(
    url: str, name: str, *, label: str | None, labels: Mapping[str, str] | None = None
) -> dict[str, float]:
    """The same counter summed per value of ``label`` (``None``: everything under ``""``)."""
    text = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10).text
    wanted = dict(labels or {})
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_total" and wanted.items() <= sample.labels.items():
                key = sample.labels[label] if label else ""
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals
