"""The order flow's load: Locust users, scenarios and audit."""
