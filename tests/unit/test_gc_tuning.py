"""The collector is tuned once the app has started, once per process, and can be left alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.core import gc_tuning
from services.core.app import build_app
from services.core.settings import CoreSettings


@pytest.fixture
def pristine_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Python's own collector settings before and after the test, whatever the test does."""
    monkeypatch.setattr(gc_tuning, "_tuned", False)
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_startup_freezes_what_it_built_and_makes_young_collections_rarer(pristine_gc: None) -> None:
    app = build_app(title="t", settings=CoreSettings(gc_young_threshold=12_345))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 1_000  # modules, the app, its routes


async def test_a_second_app_in_the_same_process_changes_nothing(pristine_gc: None) -> None:
    first = build_app(title="first", settings=CoreSettings(gc_young_threshold=12_345))
    async with first.router.lifespan_context(first):
        frozen = gc.get_freeze_count()
    second = build_app(title="second", settings=CoreSettings(gc_young_threshold=99_999))
    async with second.router.lifespan_context(second):
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() <= frozen  # nothing frozen again (some frozen objects were freed)


async def test_zero_keeps_pythons_defaults(pristine_gc: None) -> None:
    before = gc.get_threshold()
    app = build_app(title="t", settings=CoreSettings(gc_young_threshold=0))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
