"""Analyses of models and their activations: head scores, Fourier analysis, ..."""
