"""The fault matrix, measured: every cell of :data:`loadtests.fault_scenarios.MATRIX` on embedded
servers of the bench's own, written to ``docs/results/faults.md`` and ``faults.json``.

    python -m loadtests.faults_bench [--only SUBSTRING] [--out docs/results]

PostgreSQL keeps its default durability, in the bench and in the test of the same matrix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests.environment import machine_info
from loadtests.fault_scenarios import MATRIX, run_matrix_cell
from loadtests.fault_targets import fault_lab, fault_lab_settings
from loadtests.faults import (
    CLIENT_DEADLINE_S,
    FAULT_AT_S,
    LOAD_S,
    OUTCOMES,
    RATE_PER_S,
    RECOVER_AT_S,
    CellResult,
)
from loadtests.markdown import table_row

COMMAND = ".venv/bin/python -m loadtests.faults_bench"
HEADER = (
    "cell", *OUTCOMES, "no Retry-After", "held", "late", "lost", "doubled", "recovered s", "cell s",
    "verdict",
)  # fmt: skip


def run(*, only: str, state_dir: Path) -> list[CellResult]:
    results = []
    with fault_lab(fault_lab_settings(state_dir)) as lab:
        for cell in (c for c in MATRIX if only in c.id):
            results.append(asyncio.run(run_matrix_cell(lab, cell, state_dir / "cells")))
            print(f"  {cell.id}: {'holds' if results[-1].holds else 'MISSES'}", flush=True)
    return results


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
        f"Each cell: {RATE_PER_S} requests/s for {LOAD_S} s from new connections, each with an overall "
        f"deadline of {CLIENT_DEADLINE_S} s; the fault (SIGKILL or SIGSTOP) at {FAULT_AT_S} s, the "
        f"recovery (restart, or SIGCONT) at {RECOVER_AT_S} s; then the design settles and is audited. "
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="run the cells whose id contains this")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-faults-") as scratch:
        results = run(only=args.only, state_dir=Path(scratch))
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(),
        "command": COMMAND + (f" --only {args.only}" if args.only else ""),
        "cells": [result.to_json() for result in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "faults.md").write_text(render_markdown(report))
    print(f"written {args.out / 'faults.md'}")


if __name__ == "__main__":
    main()
