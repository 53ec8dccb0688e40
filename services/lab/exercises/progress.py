"""A learner's progress: each design's last result per stage, kept in the lab's state directory."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.lab.exercises.stages import StageResult

FILE = "exercises.json"


def load(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record(state_dir: Path, *, design: str, variant: str, results: Sequence[StageResult]) -> None:
    """Remember the stages that ran (a NOT RUN keeps the stage's earlier result)."""
    data = load(state_dir)
    stages = data.setdefault(design, {}).setdefault(variant, {})
    for result in results:
        if result.outcome != "NOT RUN":
            stages[str(result.number)] = {**result.to_json(), "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def last_outcome(data: dict[str, Any], *, design: str, variant: str, stage: int) -> str:
    entry = data.get(design, {}).get(variant, {}).get(str(stage))
    return str(entry["outcome"]) if entry else "-"
