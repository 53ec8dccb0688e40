"""The fault matrix: every component each hardened design depends on, killed and paused under load,
then recovered; the hardened targets hold at the defaults (``loadtests/faults/model.py`` says which).

The matrix runs on servers of its own (it kills them), not the session's, and starts each design's
services once for its cells in a row (``loadtests/faults/scenarios.py``). Naive cells run beside the
hardened ones where the fault is the lesson, and assert that lesson.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadtests.faults.model import Cell, CellResult
from loadtests.faults.scenarios import MATRIX, FaultMatrix, fault_matrix

pytestmark = [pytest.mark.integration, pytest.mark.alone, pytest.mark.timeout(150)]

# A defect the matrix found that is not the design's: the cell fails for the reason given. It shows
# only in some runs, so a mark on it could not be strict, and a test that passes either way proves
# nothing: the cell is not run here (it waits out its whole settle time when it fails). `lab bench
# faults` runs it and its page reports it, holds or misses.
BROKER_DEFECTS = {
    "orders-hardened-kafka-kill": (
        "the embedded broker (Tansu 0.6.0, memory storage) sometimes comes back from a SIGKILL with a "
        "topic it cannot serve: it reports high watermarks yet returns no record from offset 0, and every "
        "produce to it fails with UnknownError (its log: AlreadyExists for records/00000000000000000000"
        ".batch), so the events after the restart never reach the consumers; the consumers' own defect "
        "this cell found (positions committed in the lost log) is fixed; compose's Apache Kafka has "
        "neither"
    ),
}
HARDENED = [
    pytest.param(cell, marks=pytest.mark.xfail(run=False, reason=BROKER_DEFECTS[cell.id]))
    if cell.id in BROKER_DEFECTS
    else cell
    for cell in MATRIX
    if cell.variant == "hardened"
]
NAIVE = [cell for cell in MATRIX if cell.variant == "naive"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultMatrix]:
    with fault_matrix(tmp_path_factory.mktemp("fault-matrix")) as matrix:
        yield matrix


async def _run(matrix: FaultMatrix, cell: Cell) -> CellResult:
    result = await matrix.run(cell)
    assert result.timeline.error is None, result.timeline.error
    return result


@pytest.mark.parametrize("cell", HARDENED, ids=lambda cell: cell.id)
async def test_hardened_cell_meets_the_targets(matrix: FaultMatrix, cell: Cell) -> None:
    result = await _run(matrix, cell)
    assert result.timeline.recovered_at is not None
    assert sum(result.answers.values()) > 0
    assert result.violations == [], result.to_json()


NAIVE_LESSON_HOLDS = {
    "shortener-naive-postgres-kill": lambda r: r.answers["5xx"] + r.answers["503"] > 0,
    "ratelimit-naive-worker-kill": lambda r: r.audit.doubled["admissions"] > 0,
    # Beyond what the broker held at the kill: the events of the outage itself.
    "orders-naive-kafka-kill": lambda r: r.audit.lost["events"] > r.audit.bound.lost.get("events", 0),
}


@pytest.mark.parametrize("cell", NAIVE, ids=lambda cell: cell.id)
async def test_naive_cell_shows_its_lesson(matrix: FaultMatrix, cell: Cell) -> None:
    result = await _run(matrix, cell)
    assert NAIVE_LESSON_HOLDS[cell.id](result), (cell.lesson, result.to_json())
