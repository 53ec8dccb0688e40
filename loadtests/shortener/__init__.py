"""The URL shortener's load: Locust users, scenarios, audit and reference endpoints."""
