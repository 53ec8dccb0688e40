"""``python -m services.lab.exercises.preload SETTING TARGET``: import a learner's variant and say
whether it loads, in a process of its own, so one that hangs at import can be stopped.

Exit 0 when it loads; otherwise exit 2 with the one-line :class:`VariantLoadError` on stderr.
"""

from __future__ import annotations

import sys

from services.core.learner import LearnerSlot, VariantLoadError, load_wiring


def main(argv: list[str]) -> int:
    setting, target = argv
    try:
        load_wiring(LearnerSlot(setting=setting, target=target))
    except VariantLoadError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
