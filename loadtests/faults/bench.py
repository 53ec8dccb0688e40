"""The fault matrix, measured: the cells of :data:`loadtests.faults.scenarios.MATRIX` on embedded
servers of the bench's own, written as ``faults.md`` and ``faults.json`` (``docs/results/`` holds the
page). PostgreSQL keeps its default durability, in the bench and in the test of the same matrix.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.environment import machine_info
from loadtests.faults.model import (
    AFTER_RECOVERY_S,
    CLIENT_DEADLINE_S,
    FAULT_AT_S,
    OUTCOMES,
    RATE_PER_S,
    RECOVER_AT_S,
    Cell,
    CellResult,
)
from loadtests.faults.scenarios import MATRIX, fault_matrix
from loadtests.markdown import table_row

COMMAND = ".venv/bin/lab bench faults"
HEADER = (
    "cell", *OUTCOMES, "no Retry-After", "held", "late", "lost", "doubled", "recovered s", "cell s",
    "verdict",
)  # fmt: skip


@dataclass(frozen=True)
class FaultMatrixRun:
    results: list[CellResult]
    markdown: Path
    json: Path

    @property
    def holds(self) -> bool:
        """Every hardened cell met its targets (naive cells are shown, not judged)."""
        return all(result.holds for result in self.results)


def matching_cells(parts: Sequence[str]) -> list[str] | None:
    """The ids of the cells whose id contains any of ``parts`` (``None``, every cell, when there are
    none); a part that matches nothing is an error, before anything starts."""
    if not parts:
        return None
    unmatched = [part for part in parts if not any(part in cell.id for cell in MATRIX)]
    if unmatched:
        known = ", ".join(cell.id for cell in MATRIX)
        raise ValueError(f"no cell matches {', '.join(unmatched)} (the cells: {known})")
    return [cell.id for cell in MATRIX if any(part in cell.id for part in parts)]


def run_fault_matrix(out_dir: Path, cells: Sequence[str] | None = None) -> FaultMatrixRun:
    """Run the cells named by id (all of :data:`MATRIX` when ``None``) and write ``faults.md`` and
    ``faults.json`` into ``out_dir``."""
    chosen = _cells(cells)
    with tempfile.TemporaryDirectory(prefix="lab-faults-") as scratch, fault_matrix(Path(scratch)) as matrix:
        results = [asyncio.run(matrix.run(cell)) for cell in chosen]
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(),
        "command": COMMAND + ("" if cells is None else f" --cells {','.join(cell.id for cell in chosen)}"),
        "cells": [result.to_json() for result in results],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    run = FaultMatrixRun(results=results, markdown=out_dir / "faults.md", json=out_dir / "faults.json")
    run.json.write_text(json.dumps(report, indent=2) + "\n")
    run.markdown.write_text(render_markdown(report))
    return run


def _cells(ids: Sequence[str] | None) -> list[Cell]:
    if ids is None:
        return list(MATRIX)
    by_id = {cell.id: cell for cell in MATRIX}
    unknown = [cell_id for cell_id in ids if cell_id not in by_id]
    if unknown:
        raise ValueError(f"no such cell: {', '.join(unknown)} (the cells: {', '.join(by_id)})")
    return [by_id[cell_id] for cell_id in ids]


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# Fault matrix",
        "",
        f"Measured {report['when']} on {machine['cores']} cores, {machine['memory_gib']} GiB "
        f"({machine['cpu']}), Python {machine['python']}, commit `{machine['commit']}`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
        + f". Reproduce: `{report['command']}`.",
        "",
        f"Each cell: {RATE_PER_S} requests/s from new connections, each with an overall deadline of "
        f"{CLIENT_DEADLINE_S} s; the fault (SIGKILL or SIGSTOP) at {FAULT_AT_S} s, the recovery "
        f"(restart, or SIGCONT) at {RECOVER_AT_S} s, the load until {AFTER_RECOVERY_S} s after the "
        "recovery is done; then the design settles and is audited. Each design's services start once "
        "and serve its cells in a row, as they would through faults in production. "
        "Hardened variants at their default settings. *held*: requests in flight at the fault (what "
        "the faulted process may have held); *late*: requests without an answer within the deadline "
        "beyond those; *recovered*: seconds from the recovery to the first served answer to a request "
        "sent after it. A hardened cell holds when it has no 5xx but 503, every 429/503 carries "
        "`Retry-After`, nothing is late, and nothing is lost or doubled beyond its stated bound.",
        "",
        table_row(HEADER),
        "|" + "---|" * len(HEADER),
    ]
    lines += [_row(cell) for cell in report["cells"]]
    lines += ["", "## Bounds, lessons and misses", ""]
    lines += [_notes(cell) for cell in report["cells"]]
    return "\n".join(lines) + "\n"


def _row(cell: dict[str, Any]) -> str:
    audit = cell["audit"]
    verdict = "naive" if cell["cell"]["variant"] == "naive" else ("holds" if cell["holds"] else "MISSES")
    return table_row(
        [
            f"`{cell['cell']['id']}`",
            *(cell["answers"][outcome] for outcome in OUTCOMES),
            cell["without_retry_after"],
            cell["held_at_fault"],
            cell["late_beyond_fault"],
            _counts(audit["lost"]),
            _counts(audit["doubled"]),
            "-" if cell["recovered_s"] is None else cell["recovered_s"],
            cell["took_s"],
            verdict,
        ]
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {name}" for name, value in counts.items() if value) or "0"


def _notes(cell: dict[str, Any]) -> str:
    text = f"- `{cell['cell']['id']}`: "
    if cell["cell"]["lesson"]:
        text += f"lesson: {cell['cell']['lesson']}. "
    text += f"Bound: {cell['audit']['bound']['why']}. "
    numbers = ", ".join(f"{k} {v}" for k, v in cell["audit"]["numbers"].items())
    text += f"Audit: {numbers}."
    if cell["violations"]:
        text += " **Misses:** " + "; ".join(cell["violations"]) + "."
    return text
