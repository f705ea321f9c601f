"""Token datasets from text: prompts, local files, Hugging Face datasets, packing into rows (token_datasets.py)."""
