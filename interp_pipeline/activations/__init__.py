"""Activation stores: cache hook activations to zarr and read them back for training and analysis."""
