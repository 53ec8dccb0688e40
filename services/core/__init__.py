"""Plumbing every design uses and that knows no design: settings, resources, errors, health, metrics."""
