"""Figures and the HTML report (matplotlib, Agg backend)."""
