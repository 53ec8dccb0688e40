"""``python -m loadtests.faults_bench [--only SUBSTRING ...] [--out docs/results]``: the fault
matrix's results page (:func:`loadtests.faults.run_fault_matrix`), until ``lab bench`` runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtests.faults import run_fault_matrix
from loadtests.faults.scenarios import MATRIX


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="run the cells whose id contains this (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    cells = None if args.only is None else [c.id for c in MATRIX if any(part in c.id for part in args.only)]
    run = run_fault_matrix(args.out, cells)
    print(f"written {run.markdown}: {'every hardened cell holds' if run.holds else 'a hardened cell MISSES'}")


if __name__ == "__main__":
    main()
