"""Learner mode without I/O: loading a learner's variant and its errors, the port check, the
scaffolds, the check's plan and the progress file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.app import variant_wiring
from services.core.learner import LearnerSlot, VariantLoadError, load_wiring, require_port
from services.lab import registry
from services.lab.exercises import exercises, progress
from services.lab.exercises.check import CheckInputError, plan_check, preload
from services.lab.exercises.check import learner_slot as check_learner_slot
from services.lab.exercises.scaffold import ScaffoldExists, scaffold_source, write_scaffold
from services.lab.exercises.stages import Measured, StageResult
from services.lab.settings import LabSettings
from services.lab.supervisor import Supervisor, is_present, learner_services, learner_slot_of
from services.ratelimit.ports import RateLimiter
from services.shortener.ports import Adapters
from tests.support.learner_variants import NoCheck, SharedFixedWindow


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    """A folder on ``sys.path`` for modules a test writes; they are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def slot(target: str) -> LearnerSlot:
    return LearnerSlot(setting="LAB_RATELIMIT_MINE", target=target)


def test_a_syntax_error_is_named_by_file_and_line(on_path: Path) -> None:
    (on_path / "learner_syntax.py").write_text("x = 1\ndef broken(:\n")

    with pytest.raises(VariantLoadError, match=r"learner_syntax\.py:2: syntax error"):
        load_wiring(slot("learner_syntax:open_limiter"))


def test_an_error_while_importing_is_named_by_file_and_line(on_path: Path) -> None:
    (on_path / "learner_raises.py").write_text("x = 1\nraise RuntimeError('boom')\n")

    with pytest.raises(VariantLoadError, match=r"learner_raises\.py:2: RuntimeError: boom"):
        load_wiring(slot("learner_raises:open_limiter"))


def test_a_module_that_does_not_exist_names_the_setting_and_the_scaffold() -> None:
    with pytest.raises(VariantLoadError, match=r"LAB_RATELIMIT_MINE=nowhere\.mine.*lab exercise start"):
        load_wiring(slot("nowhere.mine:open_limiter"))


def test_a_missing_attribute_and_a_malformed_target_are_named(on_path: Path) -> None:
    (on_path / "learner_empty.py").write_text("x = 1\n")

    with pytest.raises(VariantLoadError, match=r"learner_empty\.py: defines no 'open_limiter'"):
        load_wiring(slot("learner_empty:open_limiter"))
    with pytest.raises(VariantLoadError, match="expected 'module:attribute'"):
        load_wiring(slot("learner_empty"))


def test_an_adapter_without_a_method_of_its_port_is_named_by_its_class() -> None:
    with pytest.raises(VariantLoadError, match=r"learner_variants\.py:\d+: NoCheck .* missing check"):
        require_port(NoCheck(), RateLimiter, name="mine")
    require_port(SharedFixedWindow(redis=None), RateLimiter, name="mine")  # type: ignore[arg-type]


def test_mine_goes_through_the_same_variant_wiring_and_unknown_variants_still_fail() -> None:
    target = "tests.support.learner_variants:open_shared_fixed_window"
    opener = variant_wiring({}, "mine", design="rate-limiter", mine=slot(target), port=RateLimiter)
    assert callable(opener)
    with pytest.raises(ValueError, match=r"expected one of \['mine'\]"):
        variant_wiring({}, "other", design="rate-limiter", mine=slot(target), port=RateLimiter)


@pytest.mark.parametrize("design", ["ratelimit", "shortener", "orders"])
def test_a_scaffold_compiles_marks_every_flaw_and_defines_its_opener(design: str) -> None:
    spec = exercises()[design].scaffold
    source = scaffold_source(spec)

    compile(source, f"services/{design}/mine.py", "exec")
    markers = [line for line in source.splitlines() if line.lstrip().startswith("# FLAW:")]
    assert len(markers) == len(spec.flaws) > 0
    assert f"async def {spec.opener}(" in source
    assert f"LAB_{design.upper()}_MINE" in source


def test_a_scaffold_is_never_overwritten_without_force(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "mine.py"
    monkeypatch.setattr("services.lab.exercises.scaffold.mine_path", lambda design: target)
    spec = exercises()["ratelimit"].scaffold
    target.write_text("# my work\n")

    with pytest.raises(ScaffoldExists, match="--force"):
        write_scaffold(spec)
    assert target.read_text() == "# my work\n"
    write_scaffold(spec, force=True)
    assert "# FLAW:" in target.read_text()


def test_the_plan_refuses_an_unknown_design_variant_or_stage() -> None:
    known = exercises()
    with pytest.raises(CheckInputError, match="unknown design 'nope'"):
        plan_check(known, "nope", variant="mine", stage=None)
    with pytest.raises(CheckInputError, match="unknown variant 'theirs'"):
        plan_check(known, "orders", variant="theirs", stage=None)
    with pytest.raises(CheckInputError, match="has no stage 9; its stages are 1-4"):
        plan_check(known, "ratelimit", variant="mine", stage=9)
    assert [s.number for s in plan_check(known, "shortener", variant="naive", stage=2).stages] == [2]


def test_progress_keeps_the_last_result_of_each_stage_that_ran(tmp_path: Path) -> None:
    passed = StageResult(1, "claim", "PASS", measured=Measured(100, "== 100", True))
    failed = StageResult(2, "edge", "FAIL", measured=Measured(20, "<= 10", False), hint="look")
    progress.record(tmp_path, design="ratelimit", variant="mine", results=[passed, failed])
    progress.record(tmp_path, design="ratelimit", variant="mine", results=[StageResult(2, "edge", "NOT RUN")])

    data = progress.load(tmp_path)
    assert progress.last_outcome(data, design="ratelimit", variant="mine", stage=1) == "PASS"
    assert progress.last_outcome(data, design="ratelimit", variant="mine", stage=2) == "FAIL"
    assert progress.last_outcome(data, design="orders", variant="mine", stage=1) == "-"


def test_a_learner_variant_runs_only_once_its_module_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = next(s for s in registry.LEARNER_SERVICES if s.design == "ratelimit")
    assert mine.kind == "learner"
    monkeypatch.setenv("LAB_RATELIMIT_MINE", "tests.support.no_such_module:open_limiter")
    assert not is_present(mine)
    monkeypatch.setenv("LAB_RATELIMIT_MINE", "tests.support.learner_variants:open_shared_fixed_window")
    assert is_present(mine)


@pytest.mark.parametrize("given", [None, object(), {"codes": None}])
def test_a_shortener_opener_must_yield_its_adapters_dataclass(given: object) -> None:
    with pytest.raises(VariantLoadError, match=r"mine gave \w+, not services\.shortener\.ports\.Adapters"):
        require_port(given, Adapters, name="mine")


def test_the_shortener_adapters_are_checked_field_by_field() -> None:
    adapters = Adapters(codes=NoCheck(), redirects=NoCheck(), clicks=NoCheck())  # type: ignore[arg-type]

    with pytest.raises(VariantLoadError, match=r"NoCheck \(mine\.codes\) does not implement CodeSource"):
        require_port(adapters, Adapters, name="mine")


def test_a_failing_import_inside_the_learners_module_is_named_not_taken_for_a_missing_scaffold(
    on_path: Path,
) -> None:
    (on_path / "learner_pkg").mkdir()
    (on_path / "learner_pkg" / "__init__.py").write_text("")
    (on_path / "learner_pkg" / "mine.py").write_text("x = 1\nimport learner_pk\n")

    with pytest.raises(VariantLoadError, match=r"mine\.py:2: No module named 'learner_pk'"):
        load_wiring(slot("learner_pkg.mine:open_limiter"))
    with pytest.raises(VariantLoadError, match="lab exercise start"):
        load_wiring(slot("learner_pkg.other:open_limiter"))


def test_a_learner_variant_joins_the_lab_only_when_asked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAB_RATELIMIT_MINE", "tests.support.learner_variants:open_shared_fixed_window")
    settings = LabSettings(state_dir=tmp_path)

    assert learner_services(tmp_path, asked=False) == []
    asked = Supervisor(settings, services=learner_services(tmp_path, asked=True))
    assert asked.serves("ratelimit-mine")
    assert not Supervisor(settings).serves("ratelimit-mine")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import time\ntime.sleep(60)\n",
            r"importing it took longer than 1 s \(LAB_CHECK_STARTUP_TIMEOUT_S\)",
        ),
        ("x = 1\ndef broken(:\n", r"learner_preloaded\.py:2: syntax error"),
    ],
)
def test_the_check_imports_the_learners_module_apart_and_bounded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "learner_preloaded.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("LAB_RATELIMIT_MINE", "learner_preloaded:open_limiter")
    plan = plan_check(exercises(), "ratelimit", variant="mine", stage=None)

    with pytest.raises(VariantLoadError, match=message):
        preload(plan, timeout_s=1)


@pytest.mark.parametrize("design", ["ratelimit", "shortener", "orders"])
def test_the_lab_finds_the_learners_variant_where_the_design_reads_it(
    monkeypatch: pytest.MonkeyPatch, design: str
) -> None:
    monkeypatch.setenv(f"LAB_{design.upper()}_MINE", "elsewhere.theirs:open_it")

    assert check_learner_slot(exercises()[design]) == LearnerSlot(
        f"LAB_{design.upper()}_MINE", "elsewhere.theirs:open_it"
    )
    assert learner_slot_of(registry.learner_service(design)).target == "elsewhere.theirs:open_it"


def test_a_malformed_setting_of_the_design_is_a_one_line_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_RATELIMIT_LIMIT", "many")

    with pytest.raises(CheckInputError, match=r"^invalid setting: LAB_RATELIMIT_LIMIT: [^\n]+$"):
        check_learner_slot(exercises()["ratelimit"])
    assert not is_present(registry.learner_service("ratelimit"))
