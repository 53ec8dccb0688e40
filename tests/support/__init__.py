"""Helpers shared by the test suites: real servers, real processes, polling instead of sleeping."""
