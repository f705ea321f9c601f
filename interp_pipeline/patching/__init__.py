"""Activation patching: sweeps over model components, their metrics, and their labelled results."""
