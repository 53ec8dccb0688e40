"""The measurement engine: open-loop load, exact latency, CPU per component and verdicts from rounds."""
