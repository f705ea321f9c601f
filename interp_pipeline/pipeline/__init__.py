"""Pipelines: the stage registry, the pipeline format and its validation."""
