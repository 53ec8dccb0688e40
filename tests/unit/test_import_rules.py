"""The import rules of docs (DESIGN.md, "Imports go one way"), read from the source with ``ast``.

``core`` ← designs ← ``loadtests`` ← the ``lab`` command: a design imports no other design, no
``services.lab`` and no ``loadtests``; ``core`` imports no design; the lab's infrastructure and
supervisor know no design. DESIGN.md lets a design reuse another design's public piece where that
is the point (the hardened order flow putting the hardened limiter in front of checkout); no design
does today, so none is allowed here: the first one is named in this file when it lands.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGNS = ("shortener", "ratelimit", "orders")

# The bench, the demo, the designs' scenarios and audits see the lab through
# loadtests.engine.lab.RunningLab, which the `lab` command hands them. What is left starts servers of
# its own through services.lab: the fault matrix (loadtests/faults/), which kills and restarts its
# own processes, and the order flow's services started the way the lab runs them
# (loadtests/orders/services.py), which the fault matrix, learner mode and the tests share.
LOADTESTS_STILL_USING_THE_LAB = frozenset(
    {
        "loadtests.faults.scenarios",
        "loadtests.faults.targets",
        "loadtests.orders.services",
    }
)


def modules_under(package: str) -> Iterator[tuple[str, Path]]:
    """The modules of a package, or the module itself when ``package`` names one file."""
    base = ROOT / package.replace(".", "/")
    paths = [base.with_suffix(".py")] if base.with_suffix(".py").is_file() else sorted(base.rglob("*.py"))
    assert paths, f"no module {package}: the rule checks nothing"
    for path in paths:
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


def imported_by(path: Path) -> set[str]:
    """Every absolute module a file imports, at its top or inside a function."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
    return imported


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def imports_of(package: str, *, into: tuple[str, ...]) -> list[str]:
    """``importer -> imported`` for each import from a module of ``package`` into one of ``into``."""
    return [
        f"{module} -> {target}"
        for module, path in modules_under(package)
        for target in sorted(imported_by(path))
        if any(is_within(target, forbidden) for forbidden in into)
    ]


def other_designs(design: str) -> tuple[str, ...]:
    return tuple(f"services.{other}" for other in DESIGNS if other != design)


@pytest.mark.parametrize("design", DESIGNS)
def test_a_design_imports_no_other_design_nor_the_lab_nor_the_load_tests(design: str) -> None:
    forbidden = (*other_designs(design), "services.lab", "loadtests")

    assert imports_of(f"services.{design}", into=forbidden) == []


def test_core_imports_no_design_nor_the_lab_nor_the_load_tests() -> None:
    forbidden = (*(f"services.{design}" for design in DESIGNS), "services.lab", "loadtests")

    assert imports_of("services.core", into=forbidden) == []


@pytest.mark.parametrize("package", ["services.lab.infra", "services.lab.supervisor"])
def test_the_labs_infrastructure_and_supervisor_know_no_design(package: str) -> None:
    forbidden = (*(f"services.{design}" for design in DESIGNS), "loadtests")

    assert imports_of(package, into=forbidden) == []


def test_only_the_named_bench_modules_still_import_the_lab() -> None:
    importers = {line.split(" -> ")[0] for line in imports_of("loadtests", into=("services.lab",))}

    assert importers == LOADTESTS_STILL_USING_THE_LAB, (
        "loadtests uses its own interface for a running lab, never services.lab; a module that no "
        "longer imports it leaves LOADTESTS_STILL_USING_THE_LAB, and no new one joins it"
    )
