"""The systems under study: shared plumbing (`core`), one package per design, and the lab's control plane."""
