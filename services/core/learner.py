"""The learner's own variant, ``mine``: loaded from the ``module:attribute`` a setting names.

A learner's code is the one part of the lab that is expected to be broken. Whatever goes wrong while
loading it (a syntax error, an import that fails, a missing attribute, an adapter without a method its
port requires) becomes a :class:`VariantLoadError` whose one-line message names the file and line, so
the lab can show that instead of a traceback through its own code.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

MINE = "mine"


class VariantLoadError(Exception):
    """The learner's variant cannot be loaded or does not implement its port; the message says where."""


@dataclass(frozen=True)
class LearnerSlot:
    """Where a design finds the learner's variant: ``setting`` (``LAB_ORDERS_MINE``) = ``target``."""

    setting: str
    target: str

    @property
    def module_name(self) -> str:
        return self.target.partition(":")[0]


def learner_slot(settings: object, *, design: str) -> LearnerSlot:
    """``design``'s slot, read from its settings' ``<design>_mine`` (``LAB_<DESIGN>_MINE``): the one
    place the apps, the supervisor and ``lab check`` find the learner's variant."""
    return LearnerSlot(setting=f"LAB_{design.upper()}_MINE", target=str(getattr(settings, f"{design}_mine")))


def load_wiring(slot: LearnerSlot) -> Any:
    """The attribute ``slot.target`` names, or a :class:`VariantLoadError` saying why not."""
    module_name, _, attribute = slot.target.partition(":")
    if not module_name or not attribute:
        raise VariantLoadError(f"{slot.setting}={slot.target!r}: expected 'module:attribute'")
    module = _import(module_name, slot)
    if not hasattr(module, attribute):
        raise VariantLoadError(f"{_file_of(module)}: defines no {attribute!r} (named by {slot.setting})")
    return getattr(module, attribute)


def _import(module_name: str, slot: LearnerSlot) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        raise VariantLoadError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_within(module_name, exc.name):
            raise VariantLoadError(
                f"{slot.setting}={slot.target}: no module {module_name!r} "
                "(scaffold one with 'lab exercise start DESIGN')"
            ) from None
        raise VariantLoadError(f"{_where(exc)}: {exc}") from None
    except Exception as exc:
        raise VariantLoadError(f"{_where(exc)}: {type(exc).__name__}: {exc}") from None


def _is_within(module_name: str, missing: str) -> bool:
    """Whether the missing module is ``module_name`` or a package on its path (not one it imports)."""
    return missing == module_name or module_name.startswith(missing + ".")


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` outside the Python installation's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    frame = frames[-1] if frames else None
    return f"{frame.filename}:{frame.lineno}" if frame else "<unknown>"


def _file_of(module: ModuleType) -> str:
    return str(Path(module.__file__)) if module.__file__ else module.__name__


def require_port(adapter: object, port: type, *, name: str) -> None:
    """Fail, naming the class's file and line, when ``adapter`` lacks a method of the ``port`` Protocol.

    A port that is a dataclass of adapters (the shortener's) needs an instance of it, whose fields
    are checked one by one against the port's annotations.
    """
    if is_dataclass(port):
        _require_adapters(adapter, port, name=name)
        return
    missing = [m for m in _methods_of(port) if not callable(getattr(adapter, m, None))]
    if missing:
        raise VariantLoadError(
            f"{_defined_at(type(adapter))}: {type(adapter).__name__} ({name}) does not implement "
            f"{port.__name__}: missing {', '.join(missing)}"
        )


def _require_adapters(adapter: object, port: type, *, name: str) -> None:
    if not isinstance(adapter, port):
        raise VariantLoadError(f"{name} gave {type(adapter).__name__}, not {port.__module__}.{port.__name__}")
    hints = inspect.get_annotations(port, eval_str=True)
    for field in fields(port):
        require_port(getattr(adapter, field.name), hints[field.name], name=f"{name}.{field.name}")


def _methods_of(port: type) -> list[str]:
    return [name for name, value in vars(port).items() if not name.startswith("_") and callable(value)]


def _defined_at(cls: type) -> str:
    try:
        return f"{inspect.getsourcefile(cls)}:{inspect.getsourcelines(cls)[1]}"
    except (OSError, TypeError):
        return cls.__module__


def checked_opener(
    opener: Callable[..., AbstractAsyncContextManager[T]], *, port: type, name: str
) -> Callable[..., AbstractAsyncContextManager[T]]:
    """``opener``, whose adapters are checked against ``port`` before the service takes them."""

    @asynccontextmanager
    async def open_checked(*args: Any) -> AsyncIterator[T]:
        async with opener(*args) as adapters:
            require_port(adapters, port, name=name)
            yield adapters

    return open_checked


def learner_wiring(slot: LearnerSlot, *, port: type) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """The learner's opener, loaded from ``slot`` and checked against ``port`` when it opens."""
    return checked_opener(load_wiring(slot), port=port, name=slot.target)


__all__ = [
    "MINE",
    "LearnerSlot",
    "VariantLoadError",
    "learner_slot",
    "learner_wiring",
    "load_wiring",
    "require_port",
]
