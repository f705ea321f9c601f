"""What every schema dataclass is written with, and how a stage's settings are read through one.

fields (ranges and choices written once, as field metadata), ranges (their checks), settings (a
stage's settings resolved and checked against its schema), records (lists of plain records),
hydra_errors (Hydra's and OmegaConf's errors in one line). The schemas themselves live beside the
code that reads them (``superposition/config.py``, ...); ExperimentConfig, which assembles them and is
registered with Hydra's ConfigStore, is interp_pipeline/experiments/config.py.
"""
