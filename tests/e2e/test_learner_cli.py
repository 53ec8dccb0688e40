"""``lab check`` and ``lab exercise`` as a learner runs them: a real process, servers of the check's
own, and every way a learner's variant or request can be wrong answered in one line, with nothing
left running."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from tests.e2e.test_bench import SMOKE
from tests.e2e.test_lab_cli import _lab, _private_lab_env, _processes_of

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
HALF_FIXES = "tests.support.learner_variants"


def learner_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A private lab whose Python path also holds the test's own modules (``tmp_path/modules``)."""
    modules = tmp_path / "modules"
    modules.mkdir(exist_ok=True)
    return {
        **_private_lab_env(tmp_path / "lab"),
        "PYTHONPATH": os.pathsep.join([str(modules), str(REPO), *sys.path]),
        **settings,
    }


def error_line(stderr: str) -> str:
    """The one line a refusal prints last (the lab's own progress lines may come before it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no message"
    assert lines[-1].startswith("error: "), stderr
    return lines[-1]


def last_results(listing: str, design: str) -> list[str]:
    """The ``mine`` column of one design's table in ``lab exercise list``."""
    tables = re.split(r"^(\w+): ", listing, flags=re.MULTILINE)
    table = tables[tables.index(design) + 1]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if "│" in line]
    return [cells[-1] for cells in rows if cells and cells[0].isdigit()]


def test_unknown_design_stage_or_variant_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = learner_env(tmp_path)
    for args, message in [
        (("check", "queue"), "unknown design 'queue'"),
        (("check", "ratelimit", "--stage", "7"), "ratelimit has no stage 7"),
        (("check", "ratelimit", "--variant", "theirs"), "unknown variant 'theirs'"),
        (("exercise", "start", "queue"), "unknown design 'queue'"),
    ]:
        result = _lab(*args, env=env)
        assert result.returncode == 1, result
        assert message in error_line(result.stderr)
        assert "Traceback" not in result.stderr


def test_a_syntax_error_or_a_module_that_does_not_resolve_is_named_and_exit_2(tmp_path: Path) -> None:
    env = learner_env(tmp_path, LAB_RATELIMIT_MINE="broken_limiter:open_limiter")
    (tmp_path / "modules" / "broken_limiter.py").write_text("async def open_limiter(:\n")

    broken = _lab("check", "ratelimit", env=env)
    missing = _lab("check", "ratelimit", env={**env, "LAB_RATELIMIT_MINE": "nowhere.mine:open_limiter"})

    assert broken.returncode == missing.returncode == 2
    assert "broken_limiter.py:1: syntax error" in error_line(broken.stderr)
    assert "no module 'nowhere.mine'" in error_line(missing.stderr)
    assert "Traceback" not in broken.stderr + missing.stderr


def test_a_missing_method_is_named_by_class_and_exit_2_with_nothing_left_running(tmp_path: Path) -> None:
    env = learner_env(tmp_path, LAB_RATELIMIT_MINE=f"{HALF_FIXES}:open_without_check")

    result = _lab("check", "ratelimit", env=env, timeout_s=180)

    assert result.returncode == 2, result
    assert "NoCheck" in error_line(result.stderr)
    assert "missing check" in error_line(result.stderr)
    assert _processes_of(tmp_path / "lab") == []


def test_a_variant_that_hangs_at_start_up_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    env = learner_env(
        tmp_path, LAB_RATELIMIT_MINE=f"{HALF_FIXES}:open_hanging", LAB_CHECK_STARTUP_TIMEOUT_S="5"
    )

    result = _lab("check", "ratelimit", env=env, timeout_s=180)

    assert result.returncode == 2, result
    assert "did not start within 5s" in error_line(result.stderr)
    assert _processes_of(tmp_path / "lab") == []


def test_a_port_in_use_is_one_line_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = learner_env(tmp_path, LAB_REDIS_PORT=str(port))

        result = _lab("check", "ratelimit", "--variant", "hardened", env=env, timeout_s=180)

    assert result.returncode == 1, result
    assert f"port {port} on 127.0.0.1 is already in use" in error_line(result.stderr)
    assert _processes_of(tmp_path / "lab") == []


def test_check_prints_json_records_progress_and_exercise_list_shows_it(tmp_path: Path) -> None:
    env = learner_env(tmp_path, LAB_RATELIMIT_MINE=f"{HALF_FIXES}:open_shared_fixed_window")

    edge = _lab("check", "ratelimit", "--stage", "2", "--json", env=env, timeout_s=180)
    fields = _lab("check", "ratelimit", "--stage", "3", "--json", env=env, timeout_s=180)
    listing = _lab("exercise", "list", env={**env, "COLUMNS": "200"})

    assert (edge.returncode, fields.returncode, listing.returncode) == (1, 0, 0), (edge, fields)
    [stage_2] = json.loads(edge.stdout)["stages"]
    assert stage_2["outcome"] == "FAIL"
    assert stage_2["value"] > 10  # more than the edge limit
    assert stage_2["hint"]
    assert json.loads(fields.stdout)["passed"] is True
    assert last_results(listing.stdout, "ratelimit") == ["-", "FAIL", "PASS", "-"]
    assert _processes_of(tmp_path / "lab") == []


@pytest.mark.alone  # a bench: its load generator needs the machine to itself
def test_bench_puts_mine_next_to_naive_and_hardened_in_one_report(tmp_path: Path) -> None:
    env = learner_env(
        tmp_path,
        LAB_RATELIMIT_MINE=f"{HALF_FIXES}:open_shared_fixed_window",
        LAB_RATELIMIT_LIMIT="3",
        LAB_LOAD_HOT_KEYS="1",
    )
    out = tmp_path / "report"

    result = _lab(
        "bench", "ratelimit", "--variants", "naive,mine,hardened", *SMOKE, "--no-aa", "--out", str(out),
        env=env, timeout_s=400,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["targets"] == ["naive", "mine", "hardened"]
    assert set(report["rounds"][0]["runs"]) == {"naive", "mine", "hardened"}
    assert _processes_of(tmp_path / "lab") == []
