"""circuits: placeholder package (see the issue that builds it)."""
