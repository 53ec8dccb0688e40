"""The order flow's load: Locust users, scenarios, the audit, and its services started the way the lab
runs them (services.py)."""
