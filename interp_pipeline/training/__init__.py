"""Training small HookedTransformers on synthetic tasks."""
