"""Placeholder registered in pyproject.toml: filled in by the issue that builds it."""
