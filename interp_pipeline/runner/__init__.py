"""The runner: stage cache keys, the on-disk stage cache, and the loop that runs a pipeline."""
