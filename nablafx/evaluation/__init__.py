"""Metrics, test-set evaluation, and (later) FAD and cost."""
