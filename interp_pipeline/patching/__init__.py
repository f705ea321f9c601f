"""Activation patching: grids over model components, their metrics, and their labelled results."""
