"""Every command the README and the docs show must exist as shown, so the docs cannot rot.

Shell blocks are read line by line. ``lab`` commands are parsed by the real command line (unknown
commands, options or designs fail); ``make`` targets must exist; ``python -m`` modules must be
importable. Commands that need Docker or the network (``docker``, ``curl``) are left to the
compose tests. The commands that change state (``lab up``, ``bench``…) are run for real by the e2e
tests; here their spelling is what is checked.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from loadtests.demo import ACTS
from loadtests.designs import DESIGNS
from loadtests.faults import matching_cells
from services.lab.cli import FAULT_MATRIX, app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"```(?:sh|bash|shell|console)\n(.*?)```", re.DOTALL)
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
LAB = typer.main.get_command(app)


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                for command in _split(line):
                    found.append((f"{doc.relative_to(ROOT)}: {' '.join(command)}", command))
    return found


def _split(line: str) -> list[list[str]]:
    words = shlex.split(line.lstrip("$ "), comments=True)
    commands, current = [], []
    for word in words:
        if word in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        elif not (not current and ENV_ASSIGNMENT.match(word)):
            current.append(word)
    return [c for c in [*commands, current] if c]


def _check_lab(args: list[str]) -> None:
    name, rest = args[0], args[1:]
    command = LAB.get_command(None, name)  # type: ignore[attr-defined, arg-type]
    assert command is not None, f"'lab {name}' does not exist"
    context = command.make_context(name, rest)  # raises on unknown options or bad values
    design = context.params.get("design")
    if design == FAULT_MATRIX:  # lab bench faults: the fault matrix, its cells chosen by --cells
        matching_cells([part for part in context.params["cells"].split(",") if part])
    elif design is not None:
        assert design in DESIGNS, f"the docs use design {design!r}; the bench has {sorted(DESIGNS)}"
        scenario = context.params.get("scenario")
        known = DESIGNS[design].scenarios
        assert scenario is None or scenario in known, (
            f"{design} has no scenario {scenario!r}: {sorted(known)}"
        )
    which = context.params.get("which")
    if which is not None:
        assert which == "all" or which in ACTS, f"no demo called {which!r}"


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))


@pytest.mark.parametrize(("where", "command"), _commands(), ids=[w for w, _ in _commands()])
def test_documented_command_exists(where: str, command: list[str]) -> None:
    program = Path(command[0]).name
    if program == "lab":
        _check_lab(command[1:])
    elif program == "make":
        assert set(c for c in command[1:] if "=" not in c) <= _make_targets(), where
    elif program.startswith("python") and command[1:2] == ["-m"]:
        module = command[2]
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
    else:
        pytest.skip(f"{program} needs Docker, the network or a shell; covered elsewhere")


def test_the_docs_show_commands_at_all() -> None:
    assert any(Path(c[0]).name == "lab" for _, c in _commands())
