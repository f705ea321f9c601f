"""Tracking: the interface stages log through, and its MLflow and null implementations."""
