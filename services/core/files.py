"""Files that several processes read while another writes them (the lab's state, a load generator's
records, the console's runs)."""

from __future__ import annotations

from pathlib import Path


def write_whole(path: Path, text: str) -> None:
    """``text`` into ``path``, written aside and renamed: a reader, or a crash, never sees half of it."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    staging.replace(path)
