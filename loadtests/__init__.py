"""The load-test lab: Locust users per design, shared load shapes, the bench runner, auditors and reports."""
