"""Test-set evaluation, loudness, FAD and cost (the metrics themselves: ``nablafx.metrics``)."""
