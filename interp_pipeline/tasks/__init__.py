"""Synthetic tasks that small HookedTransformers are trained on, each with its own config."""
