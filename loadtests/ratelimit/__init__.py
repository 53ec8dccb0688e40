"""The rate limiter's load: Locust users, scenarios, audit and reference endpoints."""
