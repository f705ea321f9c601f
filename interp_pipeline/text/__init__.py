"""Text corpora for token datasets: local files, Hugging Face datasets, packing into rows."""
