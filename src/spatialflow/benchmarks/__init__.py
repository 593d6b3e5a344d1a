"""Benchmark scripts (print figures as JSON; never timed tests)."""
