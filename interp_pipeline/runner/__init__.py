"""The runner: the on-disk stage cache and its integrity, and the loop that runs a pipeline (keys: storage/cache_keys.py)."""
