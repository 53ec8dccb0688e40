"""The one Markdown table row every report writes."""

from __future__ import annotations

from collections.abc import Iterable


def table_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"
