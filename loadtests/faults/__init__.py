"""The fault matrix: each component a hardened design depends on killed and paused under load, then
recovered, and what was lost, doubled or answered ``5xx``. :mod:`.model` is the timeline and the
judgement, :mod:`.targets` what can be faulted, :mod:`.scenarios` each design's side and the cells,
:mod:`.bench` the results page (:func:`run_fault_matrix`), which ``lab bench faults`` writes."""

from loadtests.faults.bench import matching_cells, run_fault_matrix

__all__ = ["matching_cells", "run_fault_matrix"]
