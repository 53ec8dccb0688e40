"""What a command printed, read the way a person reads it."""

from __future__ import annotations

import re

# A usage error comes in a box as wide as the terminal, its message wrapped inside.
_BOX_AND_SPACE = re.compile(r"[\s│╭╮╰╯─]+")


def one_line(output: str) -> str:
    """``output`` as one line: its box drawn away, every run of white space one space."""
    return _BOX_AND_SPACE.sub(" ", output).strip()
