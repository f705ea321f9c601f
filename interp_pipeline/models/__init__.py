"""Models: their settings (config.py), where they come from and how they are built or trained (loading.py, hub.py:
TransformerLens names, hub ids, local directories), how they are stored (storage.py), and token datasets drawn
from their vocabulary (random_tokens.py)."""
