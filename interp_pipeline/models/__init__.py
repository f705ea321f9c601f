"""Models: where they come from (hub.py: TransformerLens names, hub ids, local directories) and how they are stored (storage.py)."""
