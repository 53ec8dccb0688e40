"""The fault matrix: every component each hardened design depends on, killed and paused under load,
then recovered; the hardened targets hold at the defaults (``loadtests/faults.py`` says which).

The matrix runs on servers of its own (it kills them), not the session's. Naive cells run beside
the hardened ones where the fault is the lesson, and assert that lesson.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.fault_scenarios import MATRIX, run_matrix_cell
from loadtests.fault_targets import FaultLab, fault_lab, fault_lab_settings
from loadtests.faults import Cell, CellResult

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

# Defects the matrix found that nobody is fixing yet: each cell fails for the reason given, and
# ``strict`` makes it fail the suite once the defect is fixed, so the mark cannot outlive it.
KNOWN_DEFECTS = {
    "orders-hardened-kafka-kill": (
        "the embedded broker keeps topics, offsets and groups in memory and comes back empty: the "
        "relay creates its topics again and the consumers' commits are bounded, yet in some runs the "
        "consumers do not resume reading, so orders placed after the restart stay unpaid, beyond what "
        "the broker held at the kill (compose's Apache Kafka keeps them on disk)"
    ),
    "orders-hardened-postgres-kill": (
        "in some runs the relay stops publishing after PostgreSQL comes back (one run: 166 events, "
        "charges and notifications missing when the cell settled); the 5xx and the consumers' "
        "dead-lettering this cell found first are fixed"
    ),
}
# A defect that shows only in some runs cannot be strict: its cell passing once does not mean it is fixed.
INTERMITTENT = {"orders-hardened-kafka-kill", "orders-hardened-postgres-kill"}
HARDENED = [
    pytest.param(
        cell,
        marks=pytest.mark.xfail(strict=cell.id not in INTERMITTENT, reason=KNOWN_DEFECTS[cell.id]),
    )
    if cell.id in KNOWN_DEFECTS
    else cell
    for cell in MATRIX
    if cell.variant == "hardened"
]
NAIVE = [cell for cell in MATRIX if cell.variant == "naive"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    with fault_lab(fault_lab_settings(tmp_path_factory.mktemp("fault-lab"))) as lab:
        yield lab


async def _run(lab: FaultLab, cell: Cell, tmp_path: Path) -> CellResult:
    result = await run_matrix_cell(lab, cell, tmp_path)
    assert result.timeline.error is None, result.timeline.error
    return result


@pytest.mark.parametrize("cell", HARDENED, ids=lambda cell: cell.id)
async def test_hardened_cell_meets_the_targets(lab: FaultLab, cell: Cell, tmp_path: Path) -> None:
    result = await _run(lab, cell, tmp_path)
    assert result.timeline.recovered_at is not None
    assert sum(result.answers.values()) > 0
    assert result.violations == [], result.to_json()


NAIVE_LESSON_HOLDS = {
    "shortener-naive-postgres-kill": lambda r: r.answers["5xx"] + r.answers["503"] > 0,
    "ratelimit-naive-worker-kill": lambda r: r.audit.doubled["admissions"] > 0,
    # Beyond what the broker held at the kill: the events of the outage itself.
    "orders-naive-kafka-kill": lambda r: r.audit.lost["events"] > r.audit.bound.lost["events"],
}


@pytest.mark.parametrize("cell", NAIVE, ids=lambda cell: cell.id)
async def test_naive_cell_shows_its_lesson(lab: FaultLab, cell: Cell, tmp_path: Path) -> None:
    result = await _run(lab, cell, tmp_path)
    assert NAIVE_LESSON_HOLDS[cell.id](result), (cell.lesson, result.to_json())
