"""Factual-recall prompts and causal tracing (Meng et al. 2022, "Locating and Editing Factual
Associations in GPT")."""
