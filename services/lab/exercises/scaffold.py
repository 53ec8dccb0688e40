"""``lab exercise start DESIGN``: ``services/<design>/mine.py``, written from the naive variant.

The scaffold is generated from the naive variant's own source (its adapters and the opener that
wires them), so it always matches the code it starts from; the lines where the flaw lives get a
``# FLAW:`` marker, and the header names the port to implement and the opener the lab loads.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import services


@dataclass(frozen=True)
class Flaw:
    """A marker above the first line of the naive source that contains ``line``."""

    line: str
    comment: str


@dataclass(frozen=True)
class ScaffoldSpec:
    design: str
    title: str
    naive_opener: str  # module:function of the opener that wires the naive adapters
    opener: str  # the name it gets in mine.py, which LAB_<DESIGN>_MINE names
    port: str
    flaws: tuple[Flaw, ...]

    @property
    def naive_module(self) -> str:
        return f"services.{self.design}.naive"


class ScaffoldExists(FileExistsError):
    pass


def mine_path(design: str) -> Path:
    return Path(services.__file__).parent / design / "mine.py"


def write_scaffold(spec: ScaffoldSpec, *, force: bool = False) -> Path:
    path = mine_path(spec.design)
    if path.exists() and not force:
        raise ScaffoldExists(f"{path} exists; keep it, or start again with --force (it is overwritten)")
    path.write_text(scaffold_source(spec))
    return path


def scaffold_source(spec: ScaffoldSpec) -> str:
    naive = inspect.getsource(importlib.import_module(spec.naive_module))
    docstring, body = _split_docstring(naive)
    opener_module, _, opener_name = spec.naive_opener.partition(":")
    module_source = inspect.getsource(importlib.import_module(opener_module))
    opener = inspect.getsource(getattr(importlib.import_module(opener_module), opener_name))
    imports = _imports_used(module_source, opener, skip=_imported_names(body), naive=spec.naive_module)
    body = _with_imports(_marked(body, spec.flaws), imports)
    return f"{_header(spec, docstring)}{body.rstrip()}\n\n\n{opener.replace(opener_name, spec.opener, 1)}"


def _header(spec: ScaffoldSpec, naive_docstring: str) -> str:
    return (
        f'"""My {spec.title} variant: my own fix, graded by `lab check {spec.design}`.\n\n'
        f"Started from the naive variant (services/{spec.design}/naive.py). Implement the port\n\n"
        f"    {spec.port}\n\n"
        f"so that every stage passes; the lines marked `# FLAW:` are where the naive variant goes\n"
        f"wrong. The lab loads `{spec.opener}` at the end of this file\n"
        f"(LAB_{spec.design.upper()}_MINE=services.{spec.design}.mine:{spec.opener}); keep its signature.\n"
        f"This file is yours: it is git-ignored, and the lab's tests and lint never read it.\n\n"
        f"The naive variant's notes:\n\n{naive_docstring.strip()}\n"
        '"""\n'
    )


def _split_docstring(source: str) -> tuple[str, str]:
    tree = ast.parse(source)
    first = tree.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        lines = source.splitlines(keepends=True)
        return first.value.value, "".join(lines[first.end_lineno or 0 :])
    return "", source


def _marked(body: str, flaws: tuple[Flaw, ...]) -> str:
    lines = body.splitlines(keepends=True)
    for flaw in flaws:
        index = next(i for i, text in enumerate(lines) if flaw.line in text)
        indent = re.match(r"\s*", lines[index]).group(0)  # type: ignore[union-attr]
        lines.insert(index, f"{indent}# FLAW: {flaw.comment}\n")
    return "".join(lines)


def _imported_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _imports_used(module_source: str, code: str, *, skip: set[str], naive: str) -> list[str]:
    """The import statements of ``module_source`` that ``code`` needs and the scaffold lacks."""
    statements = []
    for node in ast.parse(module_source).body:
        if not isinstance(node, ast.ImportFrom) or node.module in (None, naive, "__future__"):
            continue
        used = [a.name for a in node.names if a.name not in skip and re.search(rf"\b{a.name}\b", code)]
        if used:
            statements.append(f"from {node.module} import {', '.join(used)}")
    return statements


def _with_imports(body: str, imports: list[str]) -> str:
    future = "from __future__ import annotations\n"
    return body.replace(future, future + "\n" + "".join(f"{line}\n" for line in imports), 1)
