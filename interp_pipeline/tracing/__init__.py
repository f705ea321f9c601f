"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT") of the
facts dicts interp_pipeline.facts makes."""
